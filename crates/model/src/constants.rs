//! Named limits. Every bound the storage engine relies on is declared here, and relations
//! between them are checked at compile time.

/// The unit of O_DIRECT I/O: every DMA write starts and ends on this boundary, and so do the
/// buffers it writes from.
pub const DMA_ALIGNMENT_BYTES: u64 = 4096;

/// The unit a disk writes atomically. A torn write leaves each sector either all old or all
/// new; the simulated disk tears at this granularity.
pub const SECTOR_BYTES: u64 = 512;

/// The largest record batch the log accepts (Kafka's `message.max.bytes` default is ~1 MiB;
/// we accept up to 16 MiB so large-batch producers work, and bound buffer pool demand).
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Smallest valid Kafka v2 record batch: the 61-byte header with zero records.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Default segment size before a roll (Kafka `segment.bytes` default is 1 GiB; Redpanda uses
/// 128 MiB; we follow Redpanda because recovery scans at most one segment's tail).
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// Bytes of log between two sparse index entries (Kafka `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;

/// Default per-core DMA buffer pool budget.
pub const BUFFER_POOL_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Default per-core batch cache budget (recent batches served to tailing consumers).
pub const BATCH_CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Size of the write chunk a partition fills before it must flush.
pub const WRITE_CHUNK_BYTES_DEFAULT: usize = 1024 * 1024;

/// Entries of a replicated log whose Kafka offsets the log keeps in memory once they are at
/// or below the high watermark (those above it are always kept: Raft bounds how many entries
/// are in flight above the commit). An older commit index is translated through the sparse
/// index on disk instead.
pub const RAFT_RECENT_ENTRIES_MAX: usize = 1024;

const _: () = assert!(DMA_ALIGNMENT_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!((WRITE_CHUNK_BYTES_DEFAULT as u64).is_multiple_of(DMA_ALIGNMENT_BYTES));
const _: () =
    assert!(BATCH_BYTES_MAX + 2 * (DMA_ALIGNMENT_BYTES as usize) < BUFFER_POOL_BYTES_DEFAULT);

/// Jobs from other cores one core runs at once on the request lane of the core mesh; beyond
/// this it stops reading its channels, so senders wait (backpressure, see `server/mesh.rs`).
pub const MESH_JOBS_INFLIGHT_MAX: u64 = 1024;
