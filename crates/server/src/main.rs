//! `shoal start`: a Kafka-compatible broker, one glommio executor per core.
//!
//! Data flow: connections are accepted on every core (SO_REUSEPORT) and served where they
//! landed (`connection.rs`); each request's partition calls go to the owning core
//! (`cluster_impl.rs`, `mesh.rs`); metadata changes go to core 0 (`controller.rs`). See
//! `README.md` of this crate.

mod admin;
mod cluster_impl;
mod config;
mod connection;
mod controller;
mod groups;
mod mesh;
mod metadata;
mod metrics;
mod run;
mod shard;
mod topic_config;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use glommio::channels::channel_mesh::MeshBuilder;
use shoal_runtime::executor::{BlockingThread, ExecutorOptions};

use crate::config::{Cli, Command, Config};

/// Huge allocations (a decoder trusting an array length off the wire) become lazy reservations
/// instead of aborting the broker; see `shoal_runtime::alloc`.
#[global_allocator]
static ALLOCATOR: shoal_runtime::alloc::ReservingAllocator =
    shoal_runtime::alloc::ReservingAllocator;

/// Messages queued per core pair before a sender waits.
const MESH_CHANNEL_CAPACITY: usize = 1024;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => Config::resolve(&args).and_then(start),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("data dir {}: {e}", config.data_dir.display()))?;
    warn_about_host(&config);
    let snapshot = metadata::load_or_init(&config.data_dir, config.cores)?;
    metadata::remove_orphans(&config.data_dir, &snapshot)?;
    let snapshot = Arc::new(snapshot);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(signal, stop.clone())?;
    }
    // Core i runs on the i-th CPU the process may use, so taskset/cpusets place the broker.
    let cpus = shoal_runtime::executor::allowed_cpus();
    let mesh = MeshBuilder::full(config.cores, MESH_CHANNEL_CAPACITY);
    let core_metrics: Vec<_> = (0..config.cores)
        .map(|_| Arc::new(metrics::CoreMetrics::new()))
        .collect();
    let admin = admin::AdminView {
        metrics: core_metrics.clone(),
        ready_cores: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let mut handles = Vec::with_capacity(config.cores);
    for (core, metrics) in core_metrics.iter().enumerate() {
        let cpu = cpus[core % cpus.len()];
        let options = ExecutorOptions {
            name: format!("shoal-{core}"),
            cpu,
            // Registered DMA memory covers the write buffer pool, plus room for reads.
            io_memory_bytes: config.pool_bytes_per_core() + (8 << 20),
            ring_depth: 256,
            preempt_timer: Duration::from_millis(10),
            spin_before_park: None,
            blocking_thread: BlockingThread::Unpinned,
        };
        let (config, snapshot, mesh, stop) =
            (config.clone(), snapshot.clone(), mesh.clone(), stop.clone());
        let (metrics, admin) = (metrics.clone(), admin.clone());
        let handle = options
            .spawn(move || run::run_core(config, snapshot, mesh, stop, metrics, admin))
            .map_err(|e| anyhow::anyhow!("starting core {core} on CPU {cpu}: {e} (glommio needs locked memory: raise LimitMEMLOCK / ulimit -l)"))?;
        handles.push(handle);
    }
    tracing::info!(cores = config.cores, data_dir = %config.data_dir.display(), kafka = %config.kafka_addr, "shoal started");
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failed = Some(error),
            Err(error) => failed = Some(anyhow::anyhow!("core thread failed: {error:?}")),
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Logs the host checks that fail (rpk-tune), so an untuned host is visible in the log.
fn warn_about_host(config: &Config) {
    match rpk_tune::check_summary(&config.data_dir) {
        Ok(rows) if rows.is_empty() => tracing::info!("host checks pass"),
        Ok(rows) => {
            let names: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {} (is {}, wants {})",
                        r.tuner,
                        r.target,
                        r.current.as_deref().unwrap_or("?"),
                        r.required.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            tracing::warn!(
                "host is not tuned for Shoal; run `rpk-tune apply`. Failing checks: {}",
                names.join("; ")
            );
        }
        Err(error) => tracing::warn!(%error, "host checks could not run"),
    }
}
