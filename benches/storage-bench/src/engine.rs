//! Runs the storage engine's append+sync path on a pinned glommio executor.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hdrhistogram::Histogram;
use shoal_io::SystemClock;
use shoal_runtime::executor::{BlockingThread, ExecutorOptions};
use shoal_runtime::ObservedDisk;
use shoal_storage::{
    build_batch, validate_batch, BatchCache, BufferPool, Durability, Fallocation, Log, LogConfig,
    LogContext, Wait,
};

use crate::{Policy, Stats};

pub(crate) struct EngineJob {
    pub(crate) dir: PathBuf,
    pub(crate) batch_bytes: usize,
    pub(crate) partitions: usize,
    pub(crate) writers_per_partition: usize,
    pub(crate) policy: Policy,
    pub(crate) cpu: usize,
    pub(crate) seconds: u64,
    pub(crate) spin_us: Option<u64>,
}

/// A batch of exactly `total_bytes` (so each synced write is the same size as fio's).
fn batch_of(total_bytes: usize) -> Vec<u8> {
    let probe = build_batch(&[b""], 0).len();
    let mut value_bytes = total_bytes.saturating_sub(probe);
    loop {
        let value = vec![b'x'; value_bytes];
        let batch = build_batch(&[&value], 0);
        if batch.len() <= total_bytes {
            assert!(validate_batch(&batch).is_ok());
            if batch.len() == total_bytes {
                return batch;
            }
            value_bytes += total_bytes - batch.len();
        } else {
            value_bytes -= batch.len() - total_bytes;
        }
    }
}

pub(crate) fn run(job: EngineJob) -> Result<Stats, String> {
    let options = ExecutorOptions {
        name: "storage-bench".to_string(),
        cpu: job.cpu,
        io_memory_bytes: 64 * 1024 * 1024,
        ring_depth: 256,
        preempt_timer: Duration::from_millis(100),
        spin_before_park: job.spin_us.map(Duration::from_micros),
        blocking_thread: BlockingThread::Unpinned,
    };
    let handle = options
        .spawn(move || async move { run_on_core(job).await })
        .map_err(|e| e.to_string())?;
    handle
        .join()
        .map_err(|e| format!("bench executor: {e:?}"))?
}

async fn run_on_core(job: EngineJob) -> Result<Stats, String> {
    // The start of the most recent durable operation: with one writer, the one covering its
    // batch, so ack time minus this is fdatasync-to-ack.
    let last_sync_start = Rc::new(std::cell::Cell::new(Instant::now()));
    let recorder = last_sync_start.clone();
    let disk = ObservedDisk::new(Rc::new(move |started, _| recorder.set(started)));
    let ctx = LogContext {
        disk: Rc::new(disk.clone()),
        clock: Rc::new(SystemClock),
        pool: BufferPool::new(48 * 1024 * 1024),
        cache: BatchCache::new(16 * 1024 * 1024),
    };
    let fallocation = match job.policy {
        Policy::Append | Policy::Recycle => Fallocation::None,
        Policy::FallocateAhead => Fallocation::FallocateAhead,
        Policy::ExtendAhead => Fallocation::ExtendAhead,
    };
    let config = LogConfig {
        segment_bytes_max: 64 * 1024 * 1024 * 1024,
        durability: Durability::Fsync,
        fallocation,
        recycled_segments_max: usize::from(job.policy == Policy::Recycle),
        // A chunk holds many batches, so a group commit is one DMA write, not one per batch.
        write_chunk_bytes: job.batch_bytes.next_multiple_of(4096).max(1024 * 1024),
        retention_ms: None,
        ..LogConfig::default()
    };
    let mut logs = Vec::new();
    for partition in 0..job.partitions {
        let dir = job.dir.join(format!("engine-{partition}"));
        if job.policy == Policy::Recycle {
            crate::prepare_recycled(&dir, crate::recycle_file_bytes(job.batch_bytes))
                .map_err(|e| format!("prepare recycled file: {e}"))?;
        }
        let log = Log::open(ctx.clone(), dir, config.clone())
            .await
            .map_err(|e| e.to_string())?;
        let flusher = log.clone();
        glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
        logs.push(log);
    }
    let batch = batch_of(job.batch_bytes);
    let deadline = Instant::now() + Duration::from_secs(job.seconds);
    // Recycled files are finite: stop before a writer runs past the pre-written bytes.
    let bytes_max = crate::recycle_file_bytes(job.batch_bytes) - 2 * job.batch_bytes as u64;
    let started = Instant::now();
    let mut writers = Vec::new();
    for log in &logs {
        for _ in 0..job.writers_per_partition {
            let (log, batch, last_sync) = (log.clone(), batch.clone(), last_sync_start.clone());
            let single = job.writers_per_partition == 1 && job.partitions == 1;
            let recycle = job.policy == Policy::Recycle;
            writers.push(glommio::spawn_local(async move {
                let mut histogram = Histogram::<u64>::new(3).expect("histogram");
                let mut acks = 0u64;
                while Instant::now() < deadline && !(recycle && log.size_bytes() >= bytes_max) {
                    let appended_at = Instant::now();
                    let appended = log
                        .append(batch.clone(), Wait::Durable)
                        .await
                        .map_err(|e| e.to_string())?;
                    assert!(appended.guarantee == shoal_storage::Guarantee::Synced);
                    // With one writer the covering sync is the last one issued, so this is
                    // fdatasync-to-ack; with many writers it is append-to-ack.
                    let from = if single { last_sync.get() } else { appended_at };
                    let _ = histogram.record(from.elapsed().as_micros() as u64);
                    acks += 1;
                }
                Ok::<_, String>((acks, histogram))
            }));
        }
    }
    let results = join_all(writers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut acks = 0;
    for result in results {
        let (count, h) = result?;
        acks += count;
        histogram.add(h).map_err(|e| e.to_string())?;
    }
    let syncs: u64 = logs.iter().map(|l| l.stats().syncs).sum();
    for log in &logs {
        log.close().await.map_err(|e| e.to_string())?;
    }
    let q = |p: f64| histogram.value_at_quantile(p) as f64;
    Ok(Stats {
        acks_per_s: acks as f64 / elapsed,
        syncs_per_s: syncs as f64 / elapsed,
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
    })
}
