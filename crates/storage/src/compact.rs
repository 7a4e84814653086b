//! Log compaction (`cleanup.policy=compact`) of a plain log: sealed segments are rewritten
//! without the records a later record of the same key supersedes, so the log keeps at least
//! the latest value of every key (Kafka's log cleaner). The record-level rules are
//! `shoal-compaction`'s; this module chooses what to clean, drives the passes over segment
//! files and swaps the cleaned files in, crash-safely.
//!
//! ## One cleaning ([`Log::compact`])
//! 1. **What is dirty.** Sealed segments at or above the cleaner checkpoint (`first_dirty`,
//!    persisted in `cleaner_checkpoint`), oldest first, stopping at the first one younger
//!    than `min.compaction.lag.ms` (by its newest timestamp). The active segment is never
//!    cleaned. The log is worth cleaning when the dirty share of its sealed bytes reaches
//!    `min.cleanable.dirty.ratio`, or when its oldest dirty data is older than
//!    `max.compaction.lag.ms`.
//! 2. **Map pass.** The dirty segments are read batch by batch into the caller's
//!    [`OffsetMap`] (key -> latest offset), whole batches only, until the map is full: the
//!    map then covers `[first_dirty, map_end)`.
//! 3. **Clean pass.** Every sealed segment that starts below `map_end`, from the log start,
//!    grouped into runs of the same leader epoch (segment names are the epoch history) of at
//!    most `segment.bytes`, is rewritten into `{first segment}.cleaned` with the batches
//!    `clean_batch` keeps (a batch emptied of records survives only as its idempotent
//!    producer's last batch, so producer state rebuilds). The file is written with DMA,
//!    truncated to its data and synced; its sparse index is built as it is written.
//! 4. **Swap**, under the placement permit (appends wait a few metadata operations; nothing
//!    is read or written for data): the group must still be in the log unchanged (a
//!    retention, DeleteRecords or cut in between abandons the cleaned file). Then
//!    - the `compacted` marker is written once (from then on recovery accepts offset gaps);
//!    - the intent `pending_compaction` {first base, end base} is written atomically: the
//!      commit point;
//!    - the group's index files and its other segments' files are removed, the cleaned file
//!      is renamed over the first segment's name, the directory synced;
//!    - memory: the group becomes one segment, the batch cache forgets the range;
//!    - the new index files are written and the intent removed (directory synced).
//! 5. The cleaner checkpoint moves to `map_end`.
//!
//! ## When it is durable, and what a crash leaves
//! Before the intent exists the log is untouched; a leftover `*.cleaned` file is removed at
//! open. Once the intent exists, [`Log::open`] completes the swap before reading segments
//! (the cleaned file was synced before the intent was written, and every step is
//! idempotent), so a crash anywhere leaves either the old segments or the cleaned one, never
//! a mix. A failure before the commit point is [`Error::CompactionFailed`] and the log stays
//! online with all its data; after it, the log goes offline (reopening completes the swap).
//!
//! ## What readers see
//! A read in flight keeps reading the old file (its descriptor stays valid after the
//! unlink). Afterwards offsets may have gaps: a read at an offset no batch holds any more
//! returns the next batch, as Kafka's fetch does.
//!
//! ## Replicated logs
//! The same cleaning, but every batch is kept (an emptied one as an empty batch with its base
//! offset, last offset delta and term): a Raft index is a batch's ordinal in the log, so
//! indexes, terms and offsets all stay where they were and no gap appears. Only segments
//! wholly at or below the high watermark's index are cleaned (committed entries are never
//! cut). The intent names the group's first index and the next segment's; the swap forgets
//! the recent entries whose positions were in the replaced files, and the new sparse index
//! records ordinals.

use std::rc::Rc;

use shoal_compaction::{
    clean_batch, index_batch, CleanRules, CleanStats, Cleaned, Indexed, OffsetMap,
};
use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::batch;
use crate::error::{Error, OfflineReason, Result};
use crate::index::{IndexCheckpoint, SparseIndex};
use crate::log::Log;
use crate::segment::{
    align_up, decode_offset_file, encode_offset_file, path_of, read_small_file, write_small_file,
    Segment, SegmentKey, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Present once a cleaning swapped a segment: the log may have offset gaps (recovery then
/// accepts a batch that starts past the previous one's end, never one that starts before).
pub(crate) const COMPACTED_MARKER_FILE: &str = "compacted";
/// The intent of a swap in progress (see the module documentation).
pub(crate) const COMPACTION_INTENT_FILE: &str = "pending_compaction";
/// The cleaner checkpoint: the offset below which the log is clean.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner_checkpoint";
/// A cleaned segment being written.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

const MARKER_MAGIC: &[u8; 4] = b"SHCM";
const INTENT_MAGIC: &[u8; 4] = b"SHCI";
const REPLICATED_INTENT_MAGIC: &[u8; 4] = b"SHCR";
const CHECKPOINT_MAGIC: &[u8; 4] = b"SHCC";
/// Bytes read from a segment per I/O during both passes.
const READ_BYTES: usize = 1024 * 1024;
/// Bytes a cleaned segment is written in per I/O.
const WRITE_BYTES: usize = 1024 * 1024;
/// Replaced segment files are shrunk by this much per step before they are closed.
const RELEASE_STEP_BYTES: u64 = 4 * 1024 * 1024;
/// A cleaned segment is synced every this many bytes as it is written.
const SYNC_EVERY_BYTES: u64 = 8 * 1024 * 1024;

/// The topic's compaction settings (Kafka's names); `LogConfig::compaction` is `None` for
/// `cleanup.policy=delete`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long a tombstone outlives the cleaning that first kept it.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: data younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: data older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> CompactionConfig {
        CompactionConfig {
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// How dirty a compacted log is, for choosing which log a core cleans next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dirtiness {
    /// Bytes of cleanable sealed segments at or above the cleaner checkpoint.
    pub dirty_bytes: u64,
    /// Bytes of sealed segments below it.
    pub clean_bytes: u64,
    /// The oldest dirty data is older than `max.compaction.lag.ms`.
    pub overdue: bool,
    /// Worth a cleaning now (ratio reached, or overdue).
    pub due: bool,
}

impl Dirtiness {
    pub fn ratio(&self) -> f64 {
        let total = self.dirty_bytes + self.clean_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// What [`Log::compact`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Compacted {
    /// Nothing was due (or the log is not compacted).
    NothingDue,
    /// Segments were rewritten.
    Cleaned(CompactionReport),
    /// The first dirty batch alone holds more keys than the map: the log cannot be cleaned
    /// with this map (Kafka's "dedupe buffer too small"). Nothing changed.
    MapTooSmall { at: Offset, map_capacity: usize },
    /// The log changed under the cleaning (retention, DeleteRecords, a cut, a close):
    /// nothing was swapped for the group that changed; the next cleaning starts again.
    Abandoned,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionReport {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The cleaner checkpoint after this cleaning (everything below it is clean).
    pub clean_up_to: Offset,
    pub records: CleanStats,
}

/// Paces a cleaning: called with the bytes each read or write moved before the next one, and
/// with 0 after each batch processed (the broker sleeps to hold its cleaner bandwidth and
/// yields to its request tasks; `()` does neither).
#[allow(async_fn_in_trait)]
pub trait Throttle {
    async fn spent(&self, bytes: u64);
}

impl Throttle for () {
    async fn spent(&self, _bytes: u64) {}
}

/// A sealed segment as the cleaning saw it when it started.
#[derive(Clone)]
struct SealedView<F> {
    key: SegmentKey,
    base: Offset,
    term: Term,
    stem: String,
    file: Rc<F>,
    size_bytes: u64,
    next_offset: Offset,
    max_timestamp: Option<TimestampMs>,
    /// Replicated logs: the Raft index of the first batch, and the batches stored.
    first_index: Option<RaftIndex>,
    batches: u64,
}

/// The swap intent: every segment named with a base in `[first, end)` (in a replicated log:
/// with a first index in `[first_index, end_index)`, as segments of internal entries only
/// share their base offset with the next one) is replaced by the cleaned file of the one at
/// `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingCompaction {
    pub(crate) first: Offset,
    pub(crate) term: Term,
    pub(crate) end: Offset,
    /// Replicated logs: the first index of the group's first segment and of the segment
    /// after the group.
    pub(crate) indexes: Option<(RaftIndex, RaftIndex)>,
}

impl PendingCompaction {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let magic = match self.indexes {
            None => INTENT_MAGIC,
            Some(_) => REPLICATED_INTENT_MAGIC,
        };
        let mut out = magic.to_vec();
        out.extend_from_slice(&self.first.0.to_be_bytes());
        out.extend_from_slice(&self.term.0.to_be_bytes());
        out.extend_from_slice(&self.end.0.to_be_bytes());
        if let Some((first_index, end_index)) = self.indexes {
            out.extend_from_slice(&first_index.0.to_be_bytes());
            out.extend_from_slice(&end_index.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<PendingCompaction> {
        let replicated = match bytes.get(..4)? {
            magic if magic == INTENT_MAGIC => false,
            magic if magic == REPLICATED_INTENT_MAGIC => true,
            _ => return None,
        };
        let len: usize = 4 + 8 + 4 + 8 + if replicated { 16 } else { 0 };
        if bytes.len() < len + 4 {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[len..len + 4].try_into().ok()?);
        if crc != crc32c::crc32c(&bytes[..len]) {
            return None;
        }
        let u64_at = |at: usize| bytes[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        let indexes = if replicated {
            Some((RaftIndex(u64_at(24)?), RaftIndex(u64_at(32)?)))
        } else {
            None
        };
        Some(PendingCompaction {
            first: Offset(i64::from_be_bytes(bytes[4..12].try_into().ok()?)),
            term: Term(i32::from_be_bytes(bytes[12..16].try_into().ok()?)),
            end: Offset(i64::from_be_bytes(bytes[16..24].try_into().ok()?)),
            indexes,
        })
    }
}

pub(crate) fn encode_checkpoint(offset: Offset) -> Vec<u8> {
    encode_offset_file(CHECKPOINT_MAGIC, offset)
}

/// A damaged checkpoint only costs a cleaning of already clean data: `None` then.
pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Option<Offset> {
    decode_offset_file(CHECKPOINT_MAGIC, bytes)
}

pub(crate) fn marker_bytes() -> Vec<u8> {
    let mut out = MARKER_MAGIC.to_vec();
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads one sealed segment's batches in order, `READ_BYTES` at a time.
struct BatchReader<'a, F: DmaFile> {
    file: &'a F,
    end_bytes: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    at: usize,
}

impl<'a, F: DmaFile> BatchReader<'a, F> {
    fn new(file: &'a F, end_bytes: u64) -> BatchReader<'a, F> {
        BatchReader {
            file,
            end_bytes,
            buf: Vec::new(),
            buf_pos: 0,
            at: 0,
        }
    }

    /// The next batch (validated) and its position, `None` at the segment's end.
    async fn next(
        &mut self,
        throttle: &impl Throttle,
    ) -> std::result::Result<Option<(u64, Vec<u8>)>, ReadFailure> {
        let pos = self.buf_pos + self.at as u64;
        if pos >= self.end_bytes {
            return Ok(None);
        }
        let size = match batch::peek_size_bytes(&self.buf[self.at..]) {
            Some(size) if self.at + size <= self.buf.len() => size,
            _ => {
                // Refill from this batch's start, large enough for the batch.
                let rest = (self.end_bytes - pos) as usize;
                let head = self.file.read_at(pos, rest.min(READ_BYTES)).await;
                let head = head.map_err(ReadFailure::Io)?;
                throttle.spent(head.len() as u64).await;
                let size = batch::peek_size_bytes(&head)
                    .ok_or(ReadFailure::Corrupt(pos, "no valid batch length"))?;
                if size > rest {
                    return Err(ReadFailure::Corrupt(pos, "batch runs past the segment"));
                }
                self.buf = if size > head.len() {
                    let whole = self.file.read_at(pos, size).await;
                    let whole = whole.map_err(ReadFailure::Io)?;
                    throttle.spent(whole.len() as u64).await;
                    whole
                } else {
                    head
                };
                self.buf_pos = pos;
                self.at = 0;
                if self.buf.len() < size {
                    return Err(ReadFailure::Corrupt(pos, "short read"));
                }
                size
            }
        };
        let bytes = self.buf[self.at..self.at + size].to_vec();
        batch::validate(&bytes).map_err(|defect| ReadFailure::Corrupt(pos, defect.describe()))?;
        self.at += size;
        // A step with no I/O: the caller's scheduler may run other work between two batches
        // (a cleaning is CPU work between its reads).
        throttle.spent(0).await;
        Ok(Some((pos, bytes)))
    }
}

enum ReadFailure {
    Io(std::io::Error),
    Corrupt(u64, &'static str),
}

/// Writes a cleaned segment in aligned DMA chunks.
struct CleanedWriter<F: DmaFile> {
    file: F,
    buf: Option<F::Buf>,
    filled: usize,
    buf_pos: u64,
    size_bytes: u64,
}

impl<F: DmaFile> CleanedWriter<F> {
    fn new(file: F) -> CleanedWriter<F> {
        CleanedWriter {
            file,
            buf: None,
            filled: 0,
            buf_pos: 0,
            size_bytes: 0,
        }
    }

    async fn push(&mut self, mut bytes: &[u8], throttle: &impl Throttle) -> std::io::Result<()> {
        self.size_bytes += bytes.len() as u64;
        while !bytes.is_empty() {
            let buf = self
                .buf
                .get_or_insert_with(|| self.file.alloc_buf(WRITE_BYTES));
            let room = WRITE_BYTES - self.filled;
            let n = room.min(bytes.len());
            buf.as_bytes_mut()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == WRITE_BYTES {
                self.flush(throttle).await?;
                // Synced as it goes, so the last sync is small: one long fdatasync would
                // hold up the producers' syncs on the same file system journal.
                if self.buf_pos.is_multiple_of(SYNC_EVERY_BYTES) {
                    self.file.fdatasync().await?;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self, throttle: &impl Throttle) -> std::io::Result<()> {
        let Some(mut buf) = self.buf.take() else {
            return Ok(());
        };
        if self.filled == 0 {
            return Ok(());
        }
        assert_eq!(
            self.buf_pos % DMA_ALIGNMENT_BYTES,
            0,
            "only the last write of a cleaned segment is partial"
        );
        let padded = align_up(self.filled as u64) as usize;
        buf.as_bytes_mut()[self.filled..padded].fill(0);
        buf.trim_to_size(padded);
        let written = self.file.write_at(Rc::new(buf), self.buf_pos).await?;
        if written < self.filled {
            return Err(std::io::Error::other("short write of a cleaned segment"));
        }
        throttle.spent(padded as u64).await;
        self.buf_pos += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Writes the rest, cuts the padding off and syncs: the file is its data, durable.
    async fn finish(mut self, throttle: &impl Throttle) -> std::io::Result<(F, u64)> {
        self.flush(throttle).await?;
        self.file.truncate(self.size_bytes).await?;
        self.file.fdatasync().await?;
        Ok((self.file, self.size_bytes))
    }
}

/// One group's cleaned file, ready to swap in.
struct CleanedGroup<F> {
    file: F,
    size_bytes: u64,
    index: SparseIndex,
    max_timestamp: Option<TimestampMs>,
    /// Replicated logs: the batches written, every batch of the group (one Raft entry each);
    /// 0 in a plain log, which counts no batches (as `Segment::batches`).
    batches: u64,
}

impl<D: Disk> Log<D> {
    /// How dirty this log is (`None` for a log that is not compacted or has no sealed data).
    pub fn dirtiness(&self) -> Option<Dirtiness> {
        let config = self.inner.config.borrow();
        let compaction = config.compaction?;
        let now_ms = self.inner.clock.now_ms();
        let state = self.inner.state.borrow();
        if state.offline.is_some() || state.closed {
            return None;
        }
        let sealed = sealed_views(&state);
        if sealed.is_empty() {
            return None;
        }
        let (clean, dirty) = dirty_split(&sealed, state.compaction.first_dirty, state.log_start);
        let dirty = cleanable_prefix(dirty, now_ms, compaction.min_compaction_lag_ms);
        let dirty_bytes = dirty.iter().map(|s| s.size_bytes).sum();
        let clean_bytes = clean.iter().map(|s| s.size_bytes).sum();
        let overdue = dirty.first().is_some_and(|s| {
            s.max_timestamp
                .is_some_and(|ts| now_ms.saturating_sub(ts.0) > compaction.max_compaction_lag_ms)
        });
        let mut out = Dirtiness {
            dirty_bytes,
            clean_bytes,
            overdue,
            due: false,
        };
        out.due =
            dirty_bytes > 0 && (overdue || out.ratio() >= compaction.min_cleanable_dirty_ratio);
        Some(out)
    }

    /// Rolls the active segment of a compacted log whose oldest record is older than
    /// `max.compaction.lag.ms`, as Kafka does: the active segment is never cleaned, so on a
    /// quiet partition its records would otherwise wait for `segment.ms`. Returns whether it
    /// rolled.
    pub async fn roll_if_compaction_overdue(&self) -> Result<bool> {
        let Some(compaction) = self.inner.config.borrow().compaction else {
            return Ok(false);
        };
        if self.inner.replicated || compaction.max_compaction_lag_ms == i64::MAX {
            return Ok(false);
        }
        let _permit = self.inner.placement.acquire(1).await;
        let due = {
            let state = self.inner.state.borrow();
            let active = state.active();
            // The first batch's timestamp, as `segment.ms` measures a segment's age.
            let oldest_ms = active
                .first_max_timestamp
                .filter(|ts| ts.0 >= 0)
                .map_or(active.created_ms, |ts| ts.0);
            let age_ms = self.inner.clock.now_ms().saturating_sub(oldest_ms);
            state.offline.is_none()
                && !state.closed
                && !active.is_empty()
                && age_ms > compaction.max_compaction_lag_ms
        };
        if due {
            self.roll().await?;
        }
        Ok(due)
    }

    /// Cleans the log once if it is due (see the module documentation), with `map` (cleared
    /// first) as the key -> offset map. One cleaning at a time per log: the caller (the core's
    /// cleaner task) runs one at a time per core.
    pub async fn compact(
        &self,
        map: &mut OffsetMap,
        throttle: &impl Throttle,
    ) -> Result<Compacted> {
        let Some(dirtiness) = self.dirtiness() else {
            return Ok(Compacted::NothingDue);
        };
        if !dirtiness.due {
            return Ok(Compacted::NothingDue);
        }
        let compaction = self
            .inner
            .config
            .borrow()
            .compaction
            .expect("dirtiness says compacted");
        let (sealed, first_dirty, log_start) = {
            let state = self.inner.state.borrow();
            (
                sealed_views(&state),
                state.compaction.first_dirty,
                state.log_start,
            )
        };
        let now_ms = self.inner.clock.now_ms();
        let (_, dirty) = dirty_split(&sealed, first_dirty, log_start);
        let dirty = cleanable_prefix(dirty, now_ms, compaction.min_compaction_lag_ms);

        // Map pass.
        map.clear();
        let mut map_end = None;
        'segments: for segment in dirty {
            let mut reader = BatchReader::new(&*segment.file, segment.size_bytes);
            while let Some((pos, bytes)) = self.read_batch(&mut reader, segment, throttle).await? {
                let header = batch::validate(&bytes).expect("the reader validated it");
                if header.next_offset() <= first_dirty.max(log_start) {
                    continue;
                }
                match index_batch(&bytes, map)
                    .map_err(|e| self.cleaning_corrupt(segment, pos, &e))?
                {
                    Indexed::Added { .. } => map_end = Some(header.next_offset()),
                    Indexed::Full => {
                        if map_end.is_none() {
                            return Ok(Compacted::MapTooSmall {
                                at: header.base_offset,
                                map_capacity: map.capacity(),
                            });
                        }
                        map_end = Some(header.base_offset);
                        break 'segments;
                    }
                }
            }
            map_end = Some(segment.next_offset);
        }
        let Some(map_end) = map_end else {
            return Ok(Compacted::NothingDue);
        };

        // Clean pass, group by group.
        let config = self.inner.config.borrow().clone();
        let rules = CleanRules {
            now_ms,
            delete_retention_ms: compaction.delete_retention_ms,
        };
        let to_clean: Vec<&SealedView<D::File>> =
            sealed.iter().filter(|s| s.base < map_end).collect();
        let mut report = CompactionReport {
            clean_up_to: map_end,
            ..CompactionReport::default()
        };
        let (mut replaced, mut abandoned) = (Vec::new(), false);
        for group in groups(&to_clean, config.segment_bytes_max) {
            let cleaned = match self
                .clean_group(&group, map, &rules, &mut report.records, throttle, &config)
                .await
            {
                Ok(cleaned) => cleaned,
                Err(error) => {
                    // The old segments stand; the partial copy goes (or at the next open).
                    self.drop_cleaned(&group[0].stem).await;
                    return Err(error);
                }
            };
            report.segments_before += group.len();
            report.bytes_before += group.iter().map(|s| s.size_bytes).sum::<u64>();
            report.bytes_after += cleaned.size_bytes;
            match self.swap_in(&group, cleaned).await? {
                Some(files) => replaced.extend(files),
                None => {
                    abandoned = true;
                    break;
                }
            }
            report.segments_after += 1;
        }
        // The cleaning's own handles of the old files go first, so that the release finds
        // the only ones left.
        drop(to_clean);
        drop(sealed);
        self.release_replaced(replaced, throttle).await;
        if abandoned {
            return Ok(Compacted::Abandoned);
        }
        self.set_first_dirty(map_end).await?;
        Ok(Compacted::Cleaned(report))
    }

    /// Frees the blocks of replaced segment files (unlinked by the swap) a few MiB at a time
    /// before closing them. Closing a large unlinked file frees all its blocks in one journal
    /// transaction, which held up the producers' fdatasyncs on the same file system for
    /// ~200 ms in `benches/storage-bench` (`--bin compaction`). A file a reader still holds is
    /// left to that reader (its last handle frees it).
    async fn release_replaced(&self, files: Vec<(Rc<D::File>, u64)>, throttle: &impl Throttle) {
        // The sizes are the segments' (a sealed segment's file is its data): asking the file
        // may ask by path, which now names the cleaned file or nothing.
        for (file, mut size) in files {
            let Ok(file) = Rc::try_unwrap(file) else {
                continue;
            };
            while size > 0 {
                size = size.saturating_sub(RELEASE_STEP_BYTES);
                if file.truncate(size).await.is_err() {
                    break; // closing frees the rest at once
                }
                throttle.spent(0).await;
            }
            if let Err(error) = file.close().await {
                tracing::debug!(%error, "closing a replaced segment file");
            }
        }
    }

    async fn read_batch(
        &self,
        reader: &mut BatchReader<'_, D::File>,
        segment: &SealedView<D::File>,
        throttle: &impl Throttle,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        match reader.next(throttle).await {
            Ok(found) => Ok(found),
            Err(ReadFailure::Io(error)) => Err(self.offline_io(
                "read segment to clean",
                path_of(&self.inner.dir, &segment.stem, LOG_SUFFIX),
                &error,
            )),
            Err(ReadFailure::Corrupt(pos, what)) => Err(self.cleaning_corrupt(segment, pos, &what)),
        }
    }

    /// A sealed segment's batch that does not decode is damage to synced data: offline, as a
    /// read finding it would.
    fn cleaning_corrupt(
        &self,
        segment: &SealedView<D::File>,
        pos: u64,
        what: &dyn std::fmt::Display,
    ) -> Error {
        let path = path_of(&self.inner.dir, &segment.stem, LOG_SUFFIX);
        self.go_offline(OfflineReason::corruption(
            path,
            format!("at byte {pos}, found by the cleaner: {what}"),
        ));
        Error::Offline(self.offline_reason().expect("just set"))
    }

    /// Writes the cleaned file of one group, synced.
    async fn clean_group(
        &self,
        group: &[&SealedView<D::File>],
        map: &OffsetMap,
        rules: &CleanRules,
        stats: &mut CleanStats,
        throttle: &impl Throttle,
        config: &crate::config::LogConfig,
    ) -> Result<CleanedGroup<D::File>> {
        let first = group[0];
        let path = path_of(&self.inner.dir, &first.stem, CLEANED_SUFFIX);
        let failed = |op: &str, error: std::io::Error| Error::CompactionFailed {
            op: op.to_string(),
            path: path.clone(),
            detail: error.to_string(),
        };
        let file = self
            .inner
            .disk
            .open(&path, OpenMode::CreateTruncate)
            .await
            .map_err(|e| failed("create cleaned segment", e))?;
        let mut writer = CleanedWriter::new(file);
        let mut index = SparseIndex::default();
        let mut max_timestamp: Option<TimestampMs> = None;
        let mut batches = 0u64;
        let replicated = self.inner.replicated;
        for segment in group {
            let mut reader = BatchReader::new(&*segment.file, segment.size_bytes);
            while let Some((pos, bytes)) = self.read_batch(&mut reader, segment, throttle).await? {
                let header = batch::validate(&bytes).expect("the reader validated it");
                // In a replicated log every batch is a Raft entry whose index is its ordinal
                // in the log: an emptied batch stays, empty, so that every index (and term)
                // stays where Raft and the segment names put it.
                let keep_if_empty = replicated
                    || header.producer_id >= 0
                        && self
                            .inner
                            .state
                            .borrow()
                            .producers
                            .last_offset_of(header.producer_id)
                            == Some(header.last_offset());
                let (cleaned, batch_stats) = clean_batch(&bytes, map, rules, keep_if_empty)
                    .map_err(|e| self.cleaning_corrupt(segment, pos, &e))?;
                stats.add(&batch_stats);
                let out: &[u8] = match &cleaned {
                    Cleaned::Unchanged => &bytes,
                    Cleaned::Rewritten(rewritten) => rewritten,
                    Cleaned::Removed => {
                        assert!(!replicated, "a replicated log keeps every batch");
                        continue;
                    }
                };
                let kept = batch::validate(out).expect("the cleaner writes valid batches");
                assert_eq!(
                    (kept.base_offset, kept.next_offset(), kept.term),
                    (header.base_offset, header.next_offset(), header.term),
                    "a cleaned batch keeps its offsets and epoch"
                );
                index.observe(
                    kept.base_offset,
                    replicated.then_some(batches),
                    writer.size_bytes,
                    Some(kept.max_timestamp),
                    config.index_interval_bytes,
                );
                batches += 1;
                max_timestamp = max_timestamp.max(Some(kept.max_timestamp));
                writer
                    .push(out, throttle)
                    .await
                    .map_err(|e| failed("write cleaned segment", e))?;
            }
        }
        let (file, size_bytes) = writer
            .finish(throttle)
            .await
            .map_err(|e| failed("sync cleaned segment", e))?;
        if replicated {
            let stored: u64 = group.iter().map(|s| s.batches).sum();
            assert_eq!(batches, stored, "a replicated group keeps every batch");
        }
        Ok(CleanedGroup {
            file,
            size_bytes,
            index,
            max_timestamp,
            batches: if replicated { batches } else { 0 },
        })
    }

    /// Swaps a cleaned group in (see the module documentation) and returns the replaced
    /// segments' files. `None`: the group changed since the cleaning started, and the cleaned
    /// file was dropped.
    async fn swap_in(
        &self,
        group: &[&SealedView<D::File>],
        cleaned: CleanedGroup<D::File>,
    ) -> Result<Option<Vec<(Rc<D::File>, u64)>>> {
        let _permit = self.inner.placement.acquire(1).await;
        let first = group[0];
        let cleaned_path = path_of(&self.inner.dir, &first.stem, CLEANED_SUFFIX);
        let end = {
            let state = self.inner.state.borrow();
            let unchanged = state.offline.is_none()
                && !state.closed
                && group.iter().all(|view| {
                    state.segments.get(&view.key).is_some_and(|s| {
                        s.size_bytes == view.size_bytes && Rc::ptr_eq(&s.file, &view.file)
                    })
                })
                && state.active().key() != group[group.len() - 1].key;
            let after = state
                .segments
                .range(group[group.len() - 1].key..)
                .nth(1)
                .map(|(key, _)| *key);
            match (unchanged, after) {
                (true, Some(end)) => Some(end),
                _ => None,
            }
        };
        let Some(end_key) = end else {
            let _ = cleaned.file.close().await;
            self.drop_cleaned(&first.stem).await;
            return Ok(None);
        };
        if !self.inner.state.borrow().compaction.marker_written {
            let written = write_small_file(
                &*self.inner.disk,
                &self.inner.dir,
                COMPACTED_MARKER_FILE,
                &marker_bytes(),
            )
            .await
            .map_err(|e| Error::CompactionFailed {
                op: "write the compacted marker".to_string(),
                path: self.inner.dir.join(COMPACTED_MARKER_FILE),
                detail: e.to_string(),
            });
            if let Err(error) = written {
                self.drop_cleaned(&first.stem).await;
                return Err(error);
            }
            self.inner.state.borrow_mut().compaction.marker_written = true;
        }
        let end = end_key.base;
        let indexes = first.first_index.map(|first_index| {
            let end_index = RaftIndex(end_key.index);
            let last = group[group.len() - 1];
            assert_eq!(
                last.first_index.map(|i| i.plus(last.batches)),
                Some(end_index),
                "the segment after the group starts at the index after it"
            );
            (first_index, end_index)
        });
        let intent = PendingCompaction {
            first: first.base,
            term: first.term,
            end,
            indexes,
        };
        if let Err(error) = write_small_file(
            &*self.inner.disk,
            &self.inner.dir,
            COMPACTION_INTENT_FILE,
            &intent.encode(),
        )
        .await
        {
            // The intent is absent or complete: with it, reopening completes the swap; without
            // it, the old segments stand. Either is a consistent log, but which one is not
            // known here, so the log stops serving until it is reopened.
            return Err(self.offline_io(
                "write compaction intent",
                self.inner.dir.join(COMPACTION_INTENT_FILE),
                &error,
            ));
        }
        // Commit point passed: from here a failure takes the log offline and reopening
        // completes the swap.
        let stems: Vec<String> = group.iter().map(|view| view.stem.clone()).collect();
        if let Err(error) = complete_swap(&*self.inner.disk, &self.inner.dir, &stems).await {
            return Err(self.offline_io("swap in cleaned segment", cleaned_path, &error));
        }
        let replaced = {
            let mut state = self.inner.state.borrow_mut();
            let replaced: Vec<(Rc<D::File>, u64)> = group
                .iter()
                .filter_map(|view| state.segments.remove(&view.key))
                .map(|segment| (segment.file, segment.size_bytes))
                .collect();
            let last = group[group.len() - 1];
            let segment = Segment {
                base: first.base,
                term: first.term,
                first_index: first.first_index,
                batches: cleaned.batches,
                file: Rc::new(cleaned.file),
                index: cleaned.index.clone(),
                size_bytes: cleaned.size_bytes,
                next_offset: last.next_offset,
                max_timestamp: cleaned.max_timestamp,
                first_max_timestamp: None,
                created_ms: self.inner.clock.now_ms(),
            };
            let previous = state.segments.insert(first.key, segment);
            assert!(previous.is_none(), "the group's segments were removed");
            state.stats.segments_deleted += group.len() as u64 - 1;
            if let (Some(raft), Some((_, end_index))) = (state.raft.as_mut(), indexes) {
                // Their positions were in the replaced files: reads of them go through the
                // new sparse index instead.
                raft.forget_recent_below(end_index.0);
            }
            replaced
        };
        self.inner
            .cache
            .remove_range(self.inner.uid, first.base, end);
        let checkpoint = IndexCheckpoint {
            covered_bytes: cleaned.size_bytes,
            next_offset: group[group.len() - 1].next_offset,
            max_timestamp: cleaned.max_timestamp.unwrap_or(TimestampMs(-1)),
            batches: cleaned.batches,
        };
        if cleaned.size_bytes > 0 {
            self.write_index_files(&first.stem, &cleaned.index, checkpoint)
                .await?;
        }
        let removed = async {
            self.inner
                .disk
                .remove(&self.inner.dir.join(COMPACTION_INTENT_FILE))
                .await?;
            self.inner.disk.sync_dir(&self.inner.dir).await
        };
        if let Err(error) = removed.await {
            return Err(self.offline_io(
                "remove compaction intent",
                self.inner.dir.join(COMPACTION_INTENT_FILE),
                &error,
            ));
        }
        Ok(Some(replaced))
    }

    /// Removes a cleaned file that will not be swapped in. A failure only leaves it for the
    /// next open, which removes every cleaned file no intent names.
    async fn drop_cleaned(&self, stem_name: &str) {
        let path = path_of(&self.inner.dir, stem_name, CLEANED_SUFFIX);
        match self.inner.disk.remove(&path).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), %error, "removing an unused cleaned segment");
            }
            _ => {}
        }
    }

    async fn set_first_dirty(&self, offset: Offset) -> Result<()> {
        let bytes = encode_checkpoint(offset);
        // Only an optimisation: a checkpoint that was not written costs a cleaning of clean
        // data, never data. Still reported: the disk refused a write.
        write_small_file(
            &*self.inner.disk,
            &self.inner.dir,
            CLEANER_CHECKPOINT_FILE,
            &bytes,
        )
        .await
        .map_err(|e| Error::CompactionFailed {
            op: "write cleaner checkpoint".to_string(),
            path: self.inner.dir.join(CLEANER_CHECKPOINT_FILE),
            detail: e.to_string(),
        })?;
        self.inner.state.borrow_mut().compaction.first_dirty = offset;
        Ok(())
    }
}

/// The cleaning's per-log state, kept in `State`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CompactionState {
    /// Below this offset the log is clean (the cleaner checkpoint).
    pub(crate) first_dirty: Offset,
    /// The `compacted` marker is on disk: offsets may have gaps.
    pub(crate) marker_written: bool,
}

/// The swap's file steps, idempotent (recovery repeats them after a crash): remove every
/// group segment's index files and every group segment but the first, rename the cleaned file
/// (if still there) over the first, sync the directory.
pub(crate) async fn complete_swap<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
    stems: &[String],
) -> std::io::Result<()> {
    let ignore_missing = |result: std::io::Result<()>| match result {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    };
    for (i, stem_name) in stems.iter().enumerate() {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            ignore_missing(disk.remove(&path_of(dir, stem_name, suffix)).await)?;
        }
        if i > 0 {
            ignore_missing(disk.remove(&path_of(dir, stem_name, LOG_SUFFIX)).await)?;
        }
    }
    let first = &stems[0];
    ignore_missing(
        disk.rename(
            &path_of(dir, first, CLEANED_SUFFIX),
            &path_of(dir, first, LOG_SUFFIX),
        )
        .await,
    )?;
    disk.sync_dir(dir).await
}

/// Reads the compaction files of a directory at open.
pub(crate) async fn read_compaction_state<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
) -> std::io::Result<CompactionState> {
    let marker = read_small_file(disk, &dir.join(COMPACTED_MARKER_FILE)).await?;
    let checkpoint = read_small_file(disk, &dir.join(CLEANER_CHECKPOINT_FILE)).await?;
    Ok(CompactionState {
        first_dirty: checkpoint
            .as_deref()
            .and_then(decode_checkpoint)
            .unwrap_or(Offset(0)),
        marker_written: marker.is_some(),
    })
}

/// The sealed segments a cleaning may read, oldest first. In a replicated log only those
/// wholly at or below the high watermark's index: committed entries never change again (a
/// suffix cut stops above the commit index), so cleaning them cannot race Raft.
fn sealed_views<F: DmaFile>(state: &crate::log::State<F>) -> Vec<SealedView<F>> {
    let active = state.active().key();
    let committed_next_index = state.raft.as_ref().map(|raft| raft.hw_index + 1);
    state
        .segments
        .iter()
        .filter(|(key, _)| **key != active)
        .take_while(|(_, s)| match (committed_next_index, s.next_index()) {
            (Some(committed_next), Some(next)) => next.0 <= committed_next,
            _ => true,
        })
        .map(|(key, s)| SealedView {
            key: *key,
            base: s.base,
            term: s.term,
            stem: s.stem(),
            file: s.file.clone(),
            size_bytes: s.size_bytes,
            next_offset: s.next_offset,
            max_timestamp: s.max_timestamp,
            first_index: s.first_index,
            batches: s.batches,
        })
        .collect()
}

/// Sealed segments below the cleaner checkpoint (clean) and from it on (dirty). A checkpoint
/// below the log start counts from the log start.
fn dirty_split<F>(
    sealed: &[SealedView<F>],
    first_dirty: Offset,
    log_start: Offset,
) -> (&[SealedView<F>], &[SealedView<F>]) {
    let from = first_dirty.max(log_start);
    let at = sealed
        .iter()
        .position(|s| s.next_offset > from)
        .unwrap_or(sealed.len());
    sealed.split_at(at)
}

/// The dirty segments old enough to clean: up to the first whose newest record is younger
/// than `min.compaction.lag.ms`.
fn cleanable_prefix<F>(dirty: &[SealedView<F>], now_ms: i64, lag_ms: i64) -> &[SealedView<F>] {
    if lag_ms <= 0 {
        return dirty; // timestamps ahead of the clock do not hold a cleaning back
    }
    let at = dirty
        .iter()
        .position(|s| {
            s.max_timestamp
                .is_some_and(|ts| now_ms.saturating_sub(ts.0) < lag_ms)
        })
        .unwrap_or(dirty.len());
    &dirty[..at]
}

/// Consecutive segments of one leader epoch, at most `segment_bytes_max` together (before
/// cleaning, so the cleaned file never exceeds it).
fn groups<'a, F>(
    segments: &[&'a SealedView<F>],
    segment_bytes_max: u64,
) -> Vec<Vec<&'a SealedView<F>>> {
    let mut out: Vec<Vec<&'a SealedView<F>>> = Vec::new();
    for &segment in segments {
        let fits = out.last().is_some_and(|group| {
            group[0].term == segment.term
                && group.iter().map(|s| s.size_bytes).sum::<u64>() + segment.size_bytes
                    <= segment_bytes_max
        });
        match out.last_mut() {
            Some(group) if fits => group.push(segment),
            _ => out.push(vec![segment]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_and_checkpoint_round_trip_and_refuse_damage() {
        for indexes in [None, Some((RaftIndex(12), RaftIndex(40)))] {
            let intent = PendingCompaction {
                first: Offset(7),
                term: Term(3),
                end: Offset(90),
                indexes,
            };
            let mut bytes = intent.encode();
            bytes.resize(4096, 0); // as a small file reads back: padded
            assert_eq!(PendingCompaction::decode(&bytes), Some(intent));
            // A flip in the offsets, or in the indexes of a replicated intent.
            bytes[if indexes.is_some() { 30 } else { 5 }] ^= 1;
            assert_eq!(PendingCompaction::decode(&bytes), None, "{indexes:?}");
        }
        let mut checkpoint = encode_checkpoint(Offset(1234));
        assert_eq!(decode_checkpoint(&checkpoint), Some(Offset(1234)));
        checkpoint[6] ^= 1;
        assert_eq!(decode_checkpoint(&checkpoint), None);
    }
}
