//! Shared pieces of the crash test: how the writer names its records and reports acks, and
//! how a log directory is opened on a glommio executor.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use shoal_io::SystemClock;
use shoal_runtime::executor::{BlockingThread, ExecutorOptions};
use shoal_runtime::GlommioDisk;
use shoal_storage::{BatchCache, BufferPool, Durability, LogConfig, LogContext};

/// One acknowledged append as the writer reports it on stdout: `ack <tag> <base> <guarantee>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub tag: u64,
    pub base_offset: i64,
    pub synced: bool,
}

impl Ack {
    pub fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.split_whitespace();
        if parts.next()? != "ack" {
            return None;
        }
        let tag = parts.next()?.parse().ok()?;
        let base_offset = parts.next()?.parse().ok()?;
        let synced = match parts.next()? {
            "synced" => true,
            "written" => false,
            _ => return None,
        };
        Some(Ack {
            tag,
            base_offset,
            synced,
        })
    }
}

/// The value of record 0 of the batch with `tag` starts with this needle.
pub fn needle(tag: u64) -> String {
    format!("tag={tag};")
}

pub fn executor_options(name: &str) -> ExecutorOptions {
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    ExecutorOptions {
        name: name.to_string(),
        cpu,
        io_memory_bytes: 4 * 1024 * 1024,
        ring_depth: 128,
        preempt_timer: Duration::from_millis(100),
        spin_before_park: None,
        blocking_thread: BlockingThread::Unpinned,
    }
}

pub fn context() -> LogContext<GlommioDisk> {
    LogContext {
        disk: Rc::new(GlommioDisk::new()),
        clock: Rc::new(SystemClock),
        pool: BufferPool::new(2 * 1024 * 1024),
        cache: BatchCache::new(8 * 1024 * 1024),
    }
}

pub fn config(relaxed: bool) -> LogConfig {
    let durability = if relaxed {
        Durability::Relaxed {
            flush_messages: 50,
            flush_ms: 100,
        }
    } else {
        Durability::Fsync
    };
    LogConfig {
        segment_bytes_max: 1024 * 1024,
        durability,
        write_chunk_bytes: 64 * 1024,
        ..LogConfig::default()
    }
}

pub fn log_dir(root: &std::path::Path) -> PathBuf {
    root.join("topic-0")
}
