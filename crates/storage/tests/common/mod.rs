//! Test harness: a single-threaded executor, the simulated disk, a controllable clock.
#![allow(dead_code, unreachable_pub)]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use shoal_io::Clock;
use shoal_model::Offset;
use shoal_sim_disk::SimDisk;
use shoal_storage::{
    build_batch, validate_batch, BatchCache, BufferPool, Log, LogConfig, LogContext, Result,
};

#[derive(Default)]
pub struct TestClock(pub Cell<i64>);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

pub struct Harness {
    pub exec: LocalPool,
    pub disk: SimDisk,
    pub clock: Rc<TestClock>,
    pub pool: BufferPool,
    pub cache: BatchCache,
}

pub fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_budgets(8 * 1024 * 1024, 1024 * 1024)
    }

    pub fn with_budgets(pool_bytes: usize, cache_bytes: usize) -> Harness {
        let clock = Rc::new(TestClock(Cell::new(1_700_000_000_000)));
        Harness {
            exec: LocalPool::new(),
            disk: SimDisk::new(),
            clock,
            pool: BufferPool::new(pool_bytes),
            cache: BatchCache::new(cache_bytes),
        }
    }

    pub fn ctx(&self) -> LogContext<SimDisk> {
        LogContext {
            disk: Rc::new(self.disk.clone()),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            cache: self.cache.clone(),
        }
    }

    /// Opens the log and spawns its flusher.
    pub fn open(&mut self, config: LogConfig) -> Result<Log<SimDisk>> {
        let ctx = self.ctx();
        let log = self.exec.run_until(Log::open(ctx, dir(), config))?;
        let flusher = log.clone();
        self.exec
            .spawner()
            .spawn_local(async move { flusher.run_flusher().await })
            .expect("spawn");
        Ok(log)
    }

    /// Opens the log in replicated mode and spawns its flusher.
    pub fn open_replicated(&mut self, config: LogConfig) -> Result<Log<SimDisk>> {
        let ctx = self.ctx();
        let log = self
            .exec
            .run_until(Log::open_replicated(ctx, dir(), config))?;
        let flusher = log.clone();
        self.exec
            .spawner()
            .spawn_local(async move { flusher.run_flusher().await })
            .expect("spawn");
        Ok(log)
    }

    pub fn run<F: std::future::Future>(&mut self, future: F) -> F::Output {
        self.exec.run_until(future)
    }

    /// Drops every task (flushers included): what a crash does to the process.
    pub fn kill_tasks(&mut self) {
        self.exec = LocalPool::new();
        self.cache = BatchCache::new(1024 * 1024);
    }
}

/// A batch of `count` records whose values encode `tag` and the record index as
/// `#{tag}:{i}:` (the leading `#` keeps tag 1's marker from matching inside tag 11's).
pub fn batch(tag: u64, count: usize, value_bytes: usize, ts_ms: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut v = marker(tag, i).into_bytes();
            v.resize(value_bytes.max(v.len()), b'x');
            v
        })
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build_batch(&refs, ts_ms)
}

/// The marker `batch` puts at the start of record `i` of batch `tag`.
pub fn marker(tag: u64, i: usize) -> String {
    format!("#{tag}:{i}:")
}

/// Whether `bytes` (a stored batch) holds the first record of batch `tag`.
pub fn holds(bytes: &[u8], tag: u64) -> bool {
    first_record_tags(bytes).contains(&tag)
}

/// The tags of every `#{tag}:0:` marker in `bytes`, in one pass.
pub fn first_record_tags(bytes: &[u8]) -> Vec<u64> {
    let mut tags = Vec::new();
    for (at, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'#') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let rest = &bytes[at + 1 + digits..];
        if digits > 0 && rest.starts_with(b":0:") {
            let text = std::str::from_utf8(&bytes[at + 1..at + 1 + digits]).unwrap_or("");
            tags.extend(text.parse::<u64>().ok());
        }
    }
    tags
}

/// Reads every visible batch from `from`, checking offsets are dense and batches valid.
pub fn read_all(h: &mut Harness, log: &Log<SimDisk>, from: Offset) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let page = h.run(log.read(next, 64 * 1024)).expect("read");
        if page.batches.is_empty() {
            assert_eq!(
                next,
                page.high_watermark.max(next),
                "stopped before the high watermark"
            );
            return out;
        }
        for bytes in page.batches {
            let header = validate_batch(&bytes).expect("valid batch");
            assert!(
                header.base_offset <= next && header.next_offset() > next,
                "dense offsets"
            );
            next = header.next_offset();
            out.push((header.base_offset, bytes.to_vec()));
        }
    }
}

pub fn segment_files(disk: &SimDisk, dir: &Path) -> Vec<String> {
    let mut exec = LocalPool::new();
    let names = exec
        .run_until(shoal_io::Disk::list(disk, dir))
        .unwrap_or_default();
    names.into_iter().filter(|n| n.ends_with(".log")).collect()
}
