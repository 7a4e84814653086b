//! `shoal start`: a Kafka-compatible broker, one glommio executor per core.
//!
//! Data flow: connections are accepted on every core (SO_REUSEPORT) and served where they
//! landed (`connection.rs`); each request's partition calls go to the owning core
//! (`cluster_impl.rs`, `mesh.rs`); metadata changes go to core 0 (`controller.rs`). See
//! `README.md` of this crate.

mod admin;
mod cleaner;
mod cluster;
mod cluster_admin;
mod cluster_impl;
mod config;
mod connection;
mod controller;
mod disk_guard;
mod groups;
mod health;
mod mesh;
mod metadata;
mod metrics;
mod quotas;
mod replication;
mod rpc_net;
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

/// Log lines the broker could not write (stderr full or gone); reported in `/metrics`.
pub(crate) static LOG_LINES_DROPPED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// The log writer: stderr, where a failed write (a full disk under a redirected log, a closed
/// pipe) drops the line and counts it. Logging must never take the broker down: `eprint!`
/// would panic, and a panic aborts every core.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            let _ = LOG_LINES_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(ansi)
        // Its own report of a failed write goes through eprint!, which panics on a full disk.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => enable_fault_switches()
            .and_then(|()| Config::resolve(&args))
            .and_then(start),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `SHOAL_FAULT_SWITCHES=a,b`: test-only switches that break safety rules, for the fault
/// suite's mutation runs. A binary built without them refuses to start when asked for them,
/// so a mutation run can never pass by silently running the correct broker.
fn enable_fault_switches() -> anyhow::Result<()> {
    let Ok(names) = std::env::var("SHOAL_FAULT_SWITCHES") else {
        return Ok(());
    };
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        shoal_storage::fault_switches::enable(name).map_err(|e| anyhow::anyhow!(e))?;
        tracing::warn!(
            switch = name,
            "FAULT SWITCH ON: this broker breaks a safety rule on purpose"
        );
    }
    Ok(())
}

/// Test-only: SIGUSR2 is a simulated power cut (`shoal_runtime::power_cut`): unsynced writes
/// are lost and the process dies as if by SIGKILL. The fault suite's `powercut` fault.
#[cfg(feature = "fault-switches")]
fn power_cut_on_sigusr2() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])?;
    std::thread::Builder::new()
        .name("power-cut".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                shoal_runtime::power_cut::cut_and_exit();
            }
        })?;
    tracing::warn!("FAULT SWITCH: SIGUSR2 is a simulated power cut in this build");
    Ok(())
}

fn start(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("data dir {}: {e}", config.data_dir.display()))?;
    // Held until the process exits (the kernel drops the lock with the file descriptor).
    let _data_dir_lock = lock_data_dir(&config.data_dir)?;
    check_addresses_free(&config)?;
    let disk = Arc::new(disk_guard::DiskGuard::arm(
        &config.data_dir,
        config.disk_reserve_bytes,
    )?);
    warn_about_host(&config);
    let cluster_id = config.cluster.as_ref().map(|c| c.cluster_id.to_string());
    let snapshot = metadata::load_or_init(
        &config.data_dir,
        config.cores,
        config.node_id,
        cluster_id.as_deref(),
    )?;
    metadata::remove_orphans(&config.data_dir, &snapshot)?;
    let snapshot = Arc::new(snapshot);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(signal, stop.clone())?;
    }
    #[cfg(feature = "fault-switches")]
    power_cut_on_sigusr2()?;
    // Core i runs on the i-th CPU the process may use, so taskset/cpusets place the broker.
    let cpus = shoal_runtime::executor::allowed_cpus();
    // Requests, control and replies each have their own mesh (see `mesh.rs`).
    let meshes: [MeshBuilder<_, _>; 3] =
        std::array::from_fn(|_| MeshBuilder::full(config.cores, MESH_CHANNEL_CAPACITY));
    let core_metrics: Vec<_> = (0..config.cores)
        .map(|_| Arc::new(metrics::CoreMetrics::new()))
        .collect();
    let admin = admin::AdminView {
        metrics: core_metrics.clone(),
        ready_cores: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        disk: disk.clone(),
    };
    let shared = health::Shared {
        health: Arc::new(health::Health::default()),
        disk,
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
        let (config, snapshot, stop) = (config.clone(), snapshot.clone(), stop.clone());
        let meshes = meshes.clone();
        let (metrics, admin, shared) = (metrics.clone(), admin.clone(), shared.clone());
        let handle = options
            .spawn(move || {
                run::run_core(config, snapshot, meshes, stop, metrics, admin, shared)
            })
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

/// Two brokers on one data directory would append to the same segment files and corrupt
/// them, so the first holds an exclusive lock on `<data_dir>/.lock` (as Kafka does on each log
/// directory) and a second one stops with a clear error. The lock is advisory (flock) and dies
/// with the process, kill -9 included, so a restart never finds a stale lock.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("data dir lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "data dir {} is in use by another broker process ({} is locked)",
            data_dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("data dir lock {}: {e}", path.display()))
        }
    }
}

/// Every core listens on the Kafka address with SO_REUSEPORT (and glommio binds the admin
/// address the same way), which would let a second broker started on the same address share
/// the port silently: the kernel would spread new connections over both processes. So before
/// binding, connect to each address: if anything accepts, another process listens there and
/// this one stops with a clear error. (A plain bind as the probe would also trip over the
/// TIME_WAIT sockets a broker that just stopped leaves behind, and refuse a restart.)
///
/// A broker killed with SIGKILL keeps accepting for a moment after it is gone: its listening
/// sockets are held by io_uring, whose teardown finishes asynchronously after the process is
/// reaped. So a busy address is retried for `ADDRESS_WAIT_MS` before giving up, which lets a
/// supervisor restart a crashed broker at once.
fn check_addresses_free(config: &Config) -> anyhow::Result<()> {
    const ADDRESS_WAIT_MS: u64 = 10_000;
    let deadline = std::time::Instant::now() + Duration::from_millis(ADDRESS_WAIT_MS);
    let mut logged = false;
    loop {
        let rpc = config.cluster.as_ref().map(|c| ("rpc", c.rpc_addr));
        let busy = [("kafka", config.kafka_addr), ("admin", config.admin_addr)]
            .into_iter()
            .chain(rpc)
            .find(|&(_, addr)| someone_listens(addr));
        let Some((what, addr)) = busy else {
            return Ok(());
        };
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{what} address {addr} is already in use: another process listens there \
                 (another broker?)"
            );
        }
        if !logged {
            tracing::warn!(%addr, "{what} address answers; waiting up to {ADDRESS_WAIT_MS} ms for it to be released");
            logged = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a TCP connection to `addr` (the loopback for a wildcard address) is accepted.
fn someone_listens(addr: std::net::SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok()
}
