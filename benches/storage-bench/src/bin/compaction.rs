//! Log compaction benchmark, in one run on one pinned core:
//! 1. cleaning throughput: a compacted log is filled with keyed records, then cleaned once with
//!    a key -> offset map of `--map-mib`; MB/s of segments read per second of cleaning;
//! 2. its effect on produce latency: a producer on another log of the same core appends 1 KiB
//!    batches at a fixed rate (`Wait::Durable`, fsync per batch), latency measured from each
//!    batch's scheduled send time (no coordinated omission): alone, during an unpaced cleaning,
//!    and during cleanings paced to each `--paced-mib-s`. The cleaner runs in its own glommio
//!    task queue with low shares, as the broker runs it.
//!
//! Usage: `cargo run --release -p shoal-storage-bench --bin compaction -- --help`.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::future::join_all;
use glommio::{Latency, Shares};
use hdrhistogram::Histogram;
use shoal_io::SystemClock;
use shoal_runtime::executor::{BlockingThread, ExecutorOptions};
use shoal_runtime::GlommioDisk;
use shoal_storage::{
    build_batch, BatchCache, BufferPool, Compacted, CompactionConfig, CompactionThrottle,
    Durability, Log, LogConfig, LogContext, OffsetMap, Wait,
};

#[derive(Parser, Debug, Clone)]
#[command(about = "Shoal log compaction: cleaning MB/s per core and its effect on produce p99")]
struct Args {
    /// Directory on the file system under test (must support O_DIRECT).
    #[arg(long, default_value = "/var/tmp/shoal-compaction-bench")]
    dir: PathBuf,
    /// CPU the executor (producer and cleaner) is pinned to.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
    /// MiB of keyed records written before each cleaning.
    #[arg(long, default_value_t = 512)]
    data_mib: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    #[arg(long, default_value_t = 16)]
    records_per_batch: usize,
    /// The cleaner's key -> offset map budget.
    #[arg(long, default_value_t = 64)]
    map_mib: usize,
    /// Produce batches per second during the latency runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of the produce-alone run.
    #[arg(long, default_value_t = 5)]
    baseline_seconds: u64,
    /// Paced cleanings to run (MiB/s of cleaner I/O each).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    paced_mib_s: Vec<u64>,
}

/// Cleaner I/O pace (as the broker's `cleaner.rs`), yielding to other task queues each step.
struct Pace {
    bytes_per_second: u64,
    started: Instant,
    spent_bytes: Cell<u64>,
}

impl CompactionThrottle for Pace {
    async fn spent(&self, bytes: u64) {
        let spent = self.spent_bytes.get() + bytes;
        self.spent_bytes.set(spent);
        if self.bytes_per_second > 0 {
            let due = Duration::from_secs_f64(spent as f64 / self.bytes_per_second as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// An uncompressed v2 batch of keyed records (key `k{n}`, value of `value_bytes`).
fn keyed_batch(keys: &[u64], value_bytes: usize, ts_ms: i64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut records = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let key = format!("k{key}");
        let mut body = vec![0u8]; // attributes
        varint(&mut body, 0); // timestamp delta
        varint(&mut body, i as i64);
        varint(&mut body, key.len() as i64);
        body.extend_from_slice(key.as_bytes());
        varint(&mut body, value_bytes as i64);
        body.extend(std::iter::repeat_n(b'v', value_bytes));
        varint(&mut body, 0); // headers
        varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut out = Vec::with_capacity(61 + records.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&((keys.len() - 1) as i32).to_be_bytes());
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&(keys.len() as i32).to_be_bytes());
    out.extend_from_slice(&records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Writes `mib` MiB of keyed batches to `log` (8 writers, fsync per batch as produced).
async fn fill(log: &Log<GlommioDisk>, args: &Args, seed: u64) -> Result<u64, String> {
    let batch_bytes = (args.value_bytes + 16) * args.records_per_batch;
    let batches = (args.data_mib << 20) / batch_bytes as u64;
    let next = Rc::new(Cell::new(0u64));
    let writers = (0..8).map(|w| {
        let (log, next, args) = (log.clone(), next.clone(), args.clone());
        async move {
            let mut state = seed.wrapping_mul(6364136223846793005) ^ w;
            loop {
                let i = next.get();
                if i >= batches {
                    return Ok::<_, String>(());
                }
                next.set(i + 1);
                let keys: Vec<u64> = (0..args.records_per_batch)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 33) % args.keys
                    })
                    .collect();
                let now = shoal_io::Clock::now_ms(&SystemClock);
                let batch = keyed_batch(&keys, args.value_bytes, now);
                log.append(batch, Wait::Durable)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    });
    for result in join_all(writers).await {
        result?;
    }
    Ok(log.size_bytes())
}

/// Appends 1 KiB batches to `log` at `rate` per second until `stop` is set (or `seconds`
/// passed); latency from each batch's scheduled time to its durable ack.
async fn produce(
    log: Log<GlommioDisk>,
    rate: u64,
    stop: Rc<Cell<bool>>,
    seconds: Option<u64>,
) -> Result<Histogram<u64>, String> {
    let value = vec![b'p'; 1000];
    let batch = build_batch(&[&value], 0);
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut i = 0u32;
    let in_flight = Rc::new(Cell::new(0usize));
    let (done_tx, done_rx) = futures::channel::mpsc::unbounded::<u64>();
    while !stop.get() && seconds.is_none_or(|s| started.elapsed() < Duration::from_secs(s)) {
        let scheduled = started + interval * i;
        i += 1;
        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
            glommio::timer::sleep(wait).await;
        }
        // Open loop: each batch its own task, so a slow ack does not delay the next send.
        let (log, batch, done, in_flight) = (
            log.clone(),
            batch.clone(),
            done_tx.clone(),
            in_flight.clone(),
        );
        in_flight.set(in_flight.get() + 1);
        glommio::spawn_local(async move {
            let ok = log.append(batch, Wait::Durable).await.is_ok();
            in_flight.set(in_flight.get() - 1);
            let micros = if ok {
                scheduled.elapsed().as_micros() as u64
            } else {
                u64::MAX
            };
            let _ = done.unbounded_send(micros);
        })
        .detach();
    }
    drop(done_tx);
    use futures::StreamExt;
    let all: Vec<u64> = done_rx.collect().await;
    for micros in all {
        if micros == u64::MAX {
            return Err("a produce failed".into());
        }
        let _ = histogram.record(micros);
    }
    Ok(histogram)
}

struct Row {
    label: String,
    seconds: f64,
    produced: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    cleaned: Option<(f64, u64, u64)>, // (MB/s read, bytes before, bytes after)
}

async fn run_on_core(args: Args) -> Result<Vec<Row>, String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    let ctx = LogContext {
        disk: Rc::new(GlommioDisk),
        clock: Rc::new(SystemClock),
        pool: BufferPool::new(48 * 1024 * 1024),
        cache: BatchCache::new(16 * 1024 * 1024),
    };
    let compacted = LogConfig {
        segment_bytes_max: 64 * 1024 * 1024,
        durability: Durability::Fsync,
        retention_ms: None,
        compaction: Some(CompactionConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    };
    let plain = LogConfig {
        retention_ms: None,
        ..LogConfig::default()
    };
    let open = |name: &str, config: LogConfig| {
        let (ctx, dir) = (ctx.clone(), args.dir.join(name));
        async move {
            let log = Log::open(ctx, dir, config)
                .await
                .map_err(|e| e.to_string())?;
            let flusher = log.clone();
            glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
            Ok::<_, String>(log)
        }
    };
    let table = open("compacted-0", compacted).await?;
    let produced_log = open("produce-0", plain).await?;
    let cleaner_queue = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::Matters(Duration::from_millis(1)),
        "cleaner",
    );
    let mut map = Some(OffsetMap::with_budget(args.map_mib << 20));
    let mut rows = Vec::new();

    // Produce alone.
    let never = Rc::new(Cell::new(false));
    let started = Instant::now();
    let alone = produce(
        produced_log.clone(),
        args.rate,
        never,
        Some(args.baseline_seconds),
    )
    .await?;
    rows.push(row(
        "produce alone",
        started.elapsed().as_secs_f64(),
        &alone,
        None,
    ));

    let paces: Vec<u64> = std::iter::once(0)
        .chain(args.paced_mib_s.iter().copied())
        .collect();
    for (round, pace_mib) in paces.into_iter().enumerate() {
        let size = fill(&table, &args, round as u64 + 1).await?;
        eprintln!(
            "round {round}: log of {} MiB, cleaning at {pace_mib} MiB/s (0: unpaced)",
            size >> 20
        );
        let stop = Rc::new(Cell::new(false));
        let producer =
            glommio::spawn_local(produce(produced_log.clone(), args.rate, stop.clone(), None));
        let (log, stop_after) = (table.clone(), stop.clone());
        let mut owned_map = map.take().expect("the map is back after each round");
        let cleaning = glommio::spawn_local_into(
            async move {
                let pace = Pace {
                    bytes_per_second: pace_mib << 20,
                    started: Instant::now(),
                    spent_bytes: Cell::new(0),
                };
                let started = Instant::now();
                let outcome = log.compact(&mut owned_map, &pace).await;
                let seconds = started.elapsed().as_secs_f64();
                stop_after.set(true);
                (outcome, seconds, owned_map)
            },
            cleaner_queue,
        )
        .map_err(|e| format!("{e:?}"))?;
        let (outcome, seconds, returned) = cleaning.await;
        map = Some(returned);
        let histogram = producer.await?;
        let report = match outcome.map_err(|e| e.to_string())? {
            Compacted::Cleaned(report) => report,
            other => return Err(format!("round {round}: no cleaning: {other:?}")),
        };
        let label = if pace_mib == 0 {
            "produce during an unpaced cleaning".to_string()
        } else {
            format!("produce during a cleaning paced to {pace_mib} MiB/s")
        };
        let mb_s = report.bytes_before as f64 / 1e6 / seconds;
        rows.push(row(
            &label,
            seconds,
            &histogram,
            Some((mb_s, report.bytes_before, report.bytes_after)),
        ));
    }
    table.close().await.map_err(|e| e.to_string())?;
    produced_log.close().await.map_err(|e| e.to_string())?;
    Ok(rows)
}

fn row(label: &str, seconds: f64, h: &Histogram<u64>, cleaned: Option<(f64, u64, u64)>) -> Row {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Row {
        label: label.to_string(),
        seconds,
        produced: h.len(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
        cleaned,
    }
}

fn main() {
    let args = Args::parse();
    let options = ExecutorOptions {
        name: "compaction-bench".to_string(),
        cpu: args.cpu,
        io_memory_bytes: 64 * 1024 * 1024,
        ring_depth: 256,
        preempt_timer: Duration::from_millis(10),
        spin_before_park: None,
        blocking_thread: BlockingThread::Unpinned,
    };
    let run_args = args.clone();
    let rows = match options.spawn(move || async move { run_on_core(run_args).await }) {
        Ok(handle) => match handle.join() {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                eprintln!("compaction bench failed: {error}");
                std::process::exit(1);
            }
            Err(error) => {
                eprintln!("compaction bench executor: {error:?}");
                std::process::exit(1);
            }
        },
        Err(error) => {
            eprintln!("starting the executor: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "{} MiB per cleaning, {} keys, {} B values, {} records per batch, map {} MiB, produce {} x 1 KiB batches/s (fsync each), CPU {}",
        args.data_mib, args.keys, args.value_bytes, args.records_per_batch, args.map_mib, args.rate, args.cpu
    );
    println!("| run | seconds | cleaning MB/s read | bytes before -> after | produced | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let (mb_s, sizes) = match r.cleaned {
            Some((mb_s, before, after)) => (
                format!("{mb_s:.0}"),
                format!("{} MiB -> {} MiB", before >> 20, after >> 20),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "| {} | {:.1} | {mb_s} | {sizes} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.label, r.seconds, r.produced, r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms
        );
    }
}
