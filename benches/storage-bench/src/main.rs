//! Storage engine benchmark: the engine's append+fdatasync path against fio doing the
//! equivalent job (O_DIRECT, io_uring, fdatasync after every write, same size, same file
//! system, same CPU), interleaved round by round so both see the same disk weather.
//!
//! Scenarios:
//! - single writer, one partition, for each batch size and file policy: engine acks/s vs
//!   fio syncs/s, and engine fdatasync-to-ack percentiles vs fio's fdatasync percentiles;
//! - many partitions per core (one writer each) vs fio with as many jobs on the same CPU;
//! - group commit: many writers on one partition vs the single-writer fio rate.
//!
//! Usage: `cargo run --release -p shoal-storage-bench -- --help`. Results go to stdout and,
//! with `--markdown FILE`, to a Markdown table (see benches/RESULTS.md).

mod engine;
mod fio;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Policy {
    /// Every write extends the file (no pre-allocation).
    Append,
    /// fallocate(KEEP_SIZE) ahead of the writes.
    FallocateAhead,
    /// fallocate ahead and extend the size.
    ExtendAhead,
    /// Overwrite a segment file that already holds written data (a recycled segment).
    Recycle,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) acks_per_s: f64,
    pub(crate) syncs_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
}

#[derive(Parser, Debug)]
#[command(about = "Shoal storage engine vs fio, side by side")]
struct Args {
    /// Directory on the file system under test (must support O_DIRECT).
    #[arg(long, default_value = "/var/tmp/shoal-storage-bench")]
    dir: PathBuf,
    /// CPU both fio and the engine are pinned to.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Interleaved rounds (fio, engine, fio, engine, ...) per configuration.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Batch sizes in bytes for the single-writer scenario.
    #[arg(long, value_delimiter = ',', default_value = "4096,65536,1048576")]
    sizes: Vec<usize>,
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "append,fallocate-ahead,extend-ahead,recycle"
    )]
    policies: Vec<Policy>,
    /// Partitions for the many-partitions scenario.
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Writers on one partition for the group-commit scenario.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Busy-poll this many microseconds before the engine's executor parks.
    #[arg(long)]
    spin_us: Option<u64>,
    /// Append a Markdown report to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

pub(crate) fn recycle_file_bytes(batch_bytes: usize) -> u64 {
    if batch_bytes >= 1024 * 1024 {
        1 << 30
    } else {
        256 << 20
    }
}

/// Leaves `dir/recycle/` holding one segment file of `bytes` real (non-zero) data, reusing the
/// file of a previous run when there is one.
pub(crate) fn prepare_recycled(dir: &Path, bytes: u64) -> std::io::Result<()> {
    let recycle = dir.join("recycle");
    std::fs::create_dir_all(&recycle)?;
    let target = recycle.join("00000000000000000000-0.log");
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log = path.extension().is_some_and(|e| e == "log");
        let big_enough = std::fs::metadata(&path)
            .map(|m| m.len() >= bytes)
            .unwrap_or(false);
        if is_log && big_enough && !target.exists() {
            std::fs::rename(&path, &target)?;
        } else if path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    if std::fs::metadata(&target)
        .map(|m| m.len() >= bytes)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut file = std::fs::File::create(&target)?;
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 1)
        .collect();
    for _ in 0..bytes / block.len() as u64 {
        file.write_all(&block)?;
    }
    file.sync_all()
}

fn clean(dir: &Path, keep_recycled: bool) -> std::io::Result<()> {
    if dir.exists() && !keep_recycled {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

struct Row {
    scenario: String,
    fio: Vec<Stats>,
    fio_dsync: Vec<Stats>,
    engine: Vec<Stats>,
}

impl Row {
    fn ratio(&self) -> f64 {
        let ratios = self
            .fio
            .iter()
            .zip(&self.engine)
            .map(|(f, e)| e.acks_per_s / f.syncs_per_s)
            .collect();
        median(ratios)
    }
    fn p999_ratio(&self) -> f64 {
        let ratios = self
            .fio_dsync
            .iter()
            .zip(&self.engine)
            .map(|(f, e)| e.p999_us / f.p999_us)
            .collect();
        median(ratios)
    }
    fn med(stats: &[Stats], f: fn(&Stats) -> f64) -> f64 {
        median(stats.iter().map(f).collect())
    }
    fn markdown(&self) -> String {
        let (f, d, e) = (&self.fio, &self.fio_dsync, &self.engine);
        let pcts = |stats: &[Stats]| {
            format!(
                "{:.0} / {:.0} / {:.0}",
                Row::med(stats, |s| s.p50_us),
                Row::med(stats, |s| s.p99_us),
                Row::med(stats, |s| s.p999_us)
            )
        };
        format!(
            "| {} | {:.0} | {:.0} | {:.0} | **{:.2}** | {} | {} | {} | **{:.2}** |",
            self.scenario,
            Row::med(f, |s| s.syncs_per_s),
            Row::med(e, |s| s.acks_per_s),
            Row::med(e, |s| s.syncs_per_s),
            self.ratio(),
            pcts(f),
            pcts(d),
            pcts(e),
            self.p999_ratio(),
        )
    }
}

const HEADER: &str = "| scenario | fio write+fdatasync /s | engine acks/s | engine durable writes/s | acks/s ratio | fio fdatasync p50/p99/p99.9 µs | fio O_DSYNC write p50/p99/p99.9 µs | engine durable-write-to-ack p50/p99/p99.9 µs | p99.9 ratio (engine / fio O_DSYNC) |\n|---|---|---|---|---|---|---|---|---|";

struct Scenario {
    name: String,
    batch_bytes: usize,
    policy: Policy,
    partitions: usize,
    writers: usize,
    fio_jobs: usize,
}

fn run_scenario(args: &Args, s: &Scenario) -> Result<Row, String> {
    let mut row = Row {
        scenario: s.name.clone(),
        fio: Vec::new(),
        fio_dsync: Vec::new(),
        engine: Vec::new(),
    };
    let recycle = s.policy == Policy::Recycle;
    for round in 0..args.rounds {
        let fio_dir = args.dir.join("fio");
        clean(&fio_dir, recycle).map_err(|e| e.to_string())?;
        let fio = fio::run(
            &fio_dir,
            s.batch_bytes,
            s.fio_jobs,
            s.policy,
            args.cpu,
            args.seconds,
            false,
        )?;
        clean(&fio_dir, recycle).map_err(|e| e.to_string())?;
        let fio_dsync = fio::run(
            &fio_dir,
            s.batch_bytes,
            s.fio_jobs,
            s.policy,
            args.cpu,
            args.seconds,
            true,
        )?;
        let engine_dir = args.dir.join("engine");
        clean(&engine_dir, recycle).map_err(|e| e.to_string())?;
        let job = engine::EngineJob {
            dir: engine_dir,
            batch_bytes: s.batch_bytes,
            partitions: s.partitions,
            writers_per_partition: s.writers,
            policy: s.policy,
            cpu: args.cpu,
            seconds: args.seconds,
            spin_us: args.spin_us,
        };
        let engine = engine::run(job)?;
        eprintln!(
            "{} round {round}: fio {:.0} syncs/s p99.9 {:.0} µs | engine {:.0} acks/s ({:.0} syncs/s) p99.9 {:.0} µs | ratio {:.2}",
            s.name, fio.syncs_per_s, fio.p999_us, engine.acks_per_s, engine.syncs_per_s, engine.p999_us, engine.acks_per_s / fio.syncs_per_s
        );
        row.fio.push(fio);
        row.fio_dsync.push(fio_dsync);
        row.engine.push(engine);
    }
    Ok(row)
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fio = std::process::Command::new("fio")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, kernel {kernel}, {fio}")
}

fn main() {
    let args = Args::parse();
    let mut scenarios = Vec::new();
    for &size in &args.sizes {
        for &policy in &args.policies {
            let name = format!("1 writer, 1 partition, {} KiB, {policy:?}", size / 1024);
            scenarios.push(Scenario {
                name,
                batch_bytes: size,
                policy,
                partitions: 1,
                writers: 1,
                fio_jobs: 1,
            });
        }
    }
    for &policy in &args.policies {
        let name = format!(
            "{} partitions x 1 writer, 4 KiB, {policy:?} (fio {} jobs)",
            args.partitions, args.partitions
        );
        scenarios.push(Scenario {
            name,
            batch_bytes: 4096,
            policy,
            partitions: args.partitions,
            writers: 1,
            fio_jobs: args.partitions,
        });
        let name = format!(
            "group commit: {} writers, 1 partition, 4 KiB, {policy:?} (fio 1 job)",
            args.writers
        );
        scenarios.push(Scenario {
            name,
            batch_bytes: 4096,
            policy,
            partitions: 1,
            writers: args.writers,
            fio_jobs: 1,
        });
    }
    let mut report = String::new();
    let _ = writeln!(report, "Machine: {}; directory {} ({}), CPU {} for both; {} s runs, {} interleaved rounds, medians shown.\n", machine(), args.dir.display(), fs_of(&args.dir), args.cpu, args.seconds, args.rounds);
    let _ = writeln!(report, "{HEADER}");
    println!("{report}");
    for scenario in &scenarios {
        match run_scenario(&args, scenario) {
            Ok(row) => {
                let line = row.markdown();
                println!("{line}");
                let _ = writeln!(report, "{line}");
            }
            Err(error) => {
                eprintln!("{}: {error}", scenario.name);
                std::process::exit(1);
            }
        }
    }
    if let Some(path) = &args.markdown {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(report.as_bytes()));
        if let Err(error) = appended {
            eprintln!("cannot write {}: {error}", path.display());
            std::process::exit(1);
        }
    }
    let _ = std::fs::remove_dir_all(&args.dir);
}

fn fs_of(dir: &Path) -> String {
    let _ = std::fs::create_dir_all(dir);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && canonical.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max()
        .map(|(_, s)| s)
        .unwrap_or_else(|| "?".to_string())
}
