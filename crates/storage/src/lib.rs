//! Shoal's storage engine: a durable, segmented log per partition, generic over
//! [`shoal_io::Disk`] so it runs on glommio DMA files in production and on a simulated disk
//! that loses un-synced writes in tests.
//!
//! Data flow (all on the core that owns the partition):
//! `Log::append` → validate (CRC32C) → wait for a chunk from the per-core [`BufferPool`] →
//! stamp offset/term, copy into the chunk, index, insert into the per-core [`BatchCache`] →
//! the log's flusher writes chunks with O_DIRECT and fdatasyncs (group commit) → the append
//! completes with the [`Guarantee`] it reached. Reads come from the cache or from segments
//! through the sparse index. [`Log::truncate_suffix`] cuts the log back to a batch boundary
//! (replication's log-matching truncation). See `README.md` for the durability contract.
//!
//! A log opened with [`Log::open_replicated`] is the Raft log of a partition group
//! (`replicated.rs`): one entry per stored batch, [`Log::propose`] and
//! [`Log::propose_internal`] as leader, [`Log::append_entries`] as follower,
//! [`Log::entries`] and the term cache for raft-rs's `Storage`,
//! [`Log::truncate_entries_from`] for conflicts, and a high watermark the caller moves with
//! [`Log::advance_commit`].

mod batch;
mod cache;
mod compact;
mod config;
mod epochs;
mod error;
pub mod fault_switches;
mod flush;
mod index;
mod log;
mod pool;
mod producers;
mod read;
mod recovery;
mod replicated;
mod retention;
mod roll;
mod segment;
mod sync;
mod trailer;
mod truncate;
mod writer;

/// Internals for the micro benchmarks (`benches/loadgen/benches/hot_paths.rs`), compiled only
/// with the `bench-internals` feature so the storage API stays what the broker uses.
#[cfg(feature = "bench-internals")]
pub mod bench_internals {
    use shoal_model::{Offset, TimestampMs};

    /// One segment's sparse offset/time index, as the log keeps it in memory.
    #[derive(Default)]
    pub struct OffsetIndex(crate::index::SparseIndex);

    impl OffsetIndex {
        /// Records a batch at byte `pos`; adds an entry every `interval_bytes` of log.
        pub fn observe(
            &mut self,
            base: Offset,
            pos: u64,
            max_ts: TimestampMs,
            interval_bytes: u64,
        ) {
            self.0
                .observe(base, None, pos, Some(max_ts), interval_bytes);
        }

        /// Where a scan for `offset` may start: the last entry at or before it.
        pub fn lookup(&self, offset: Offset) -> Option<(Offset, u64)> {
            self.0.lookup(offset)
        }

        /// A batch at or before the first one whose max timestamp is >= `target`.
        pub fn lookup_time(&self, target: TimestampMs) -> Option<Offset> {
            self.0.lookup_time(target)
        }

        pub fn entries(&self) -> usize {
            self.0.offsets.len()
        }
    }
}

pub use batch::{
    body as batch_body, build as build_batch, build_idempotent as build_idempotent_batch,
    build_internal as build_internal_batch, build_keyed as build_keyed_batch,
    build_timed as build_timed_batch, stamp as stamp_batch, validate as validate_batch,
    BatchDefect, BatchHeader,
};
pub use cache::BatchCache;
pub use compact::{
    Compacted, CompactionConfig, CompactionReport, Dirtiness, Throttle as CompactionThrottle,
};
pub use config::{Durability, Fallocation, LogConfig};
pub use error::{EntriesRefused, Error, OfflineKind, OfflineReason, Result, TruncationRefused};
pub use log::{Appended, Guarantee, Log, LogOffsets, LogStats, ReadBatches, Wait};
pub use pool::BufferPool;
pub use producers::{ProducerInfo, BATCHES_PER_PRODUCER};
pub use recovery::LogContext;
pub use replicated::{AppendedEntries, EntryId, EntryKind, Proposed, StoredEntry};
pub use shoal_compaction::{CleanStats, OffsetMap};
pub use truncate::Truncated;
