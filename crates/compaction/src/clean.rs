//! One batch at a time: indexing (the map pass) and cleaning (the rewrite pass).
//!
//! The rules are Kafka's `LogCleaner` / `MemoryRecords.filterTo`, with KIP-534's delete
//! horizon:
//! - a record without a key is dropped (compacted topics refuse them at produce; one found in
//!   the log cannot be compacted);
//! - a record is dropped when the map holds a later offset for its key;
//! - a tombstone (null value) is kept until its batch's delete horizon has passed. The first
//!   cleaning that keeps a tombstone writes the horizon (`now + delete.retention.ms`) into its
//!   batch, so consumers that read the log within `delete.retention.ms` of that cleaning still
//!   see the delete; the first cleaning after the horizon drops it;
//! - a batch whose records all stay (and needs no horizon) is kept byte for byte; a batch left
//!   with some records is rebuilt with the same base offset, last offset delta, leader epoch,
//!   producer id, epoch and base sequence, so offsets and sequences stay what they were (the
//!   log has gaps); a batch left with none is removed, unless it is its producer's last batch
//!   (`keep_if_empty`), which stays as an empty batch so the producer's sequence survives;
//! - internal, transactional and control batches are left as they are.

use shoal_model::Offset;

use crate::batch::{self, BatchHeader, RecordSpan};
use crate::error::Result;
use crate::offset_map::OffsetMap;

/// When the cleaning runs, and how long tombstones stay after their first cleaning.
#[derive(Clone, Copy, Debug)]
pub struct CleanRules {
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// What the map pass did with one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexed {
    /// Its keyed records are in the map (`keys` of them; 0 for a batch left alone).
    Added { keys: usize },
    /// The map has no room for its keys: nothing was added, the pass ends before this batch.
    Full,
}

/// Puts every keyed record of `batch` into `map`, or nothing if they might not fit (the map
/// counts each record as a new key, so a pass always ends at a batch boundary).
pub fn index_batch(batch: &[u8], map: &mut OffsetMap) -> Result<Indexed> {
    let header = BatchHeader::parse(batch)?;
    if header.is_left_alone() || header.record_count == 0 {
        return Ok(Indexed::Added { keys: 0 });
    }
    let count = usize::try_from(header.record_count).unwrap_or(usize::MAX);
    if !map.has_room_for(count) {
        return Ok(Indexed::Full);
    }
    let records = batch::records(batch, &header)?;
    let mut keys = 0;
    for span in &records.spans {
        if let Some(key) = records.key(span) {
            let put = map.put(key, span.offset);
            assert!(
                put,
                "has_room_for promised room for every record of the batch"
            );
            keys += 1;
        }
    }
    Ok(Indexed::Added { keys })
}

/// What the cleaning made of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleaned {
    /// Kept byte for byte.
    Unchanged,
    /// Replaced by these bytes (same base offset and last offset).
    Rewritten(Vec<u8>),
    /// Gone: no record of it stays and it need not be kept empty.
    Removed,
}

/// Counts of one cleaning, for metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub batches_read: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub superseded_dropped: u64,
    pub tombstones_dropped: u64,
    pub keyless_dropped: u64,
    pub bytes_read: u64,
    pub bytes_kept: u64,
}

impl CleanStats {
    pub fn add(&mut self, other: &CleanStats) {
        self.batches_read += other.batches_read;
        self.records_read += other.records_read;
        self.records_kept += other.records_kept;
        self.superseded_dropped += other.superseded_dropped;
        self.tombstones_dropped += other.tombstones_dropped;
        self.keyless_dropped += other.keyless_dropped;
        self.bytes_read += other.bytes_read;
        self.bytes_kept += other.bytes_kept;
    }
}

/// Cleans one batch against `map` (the latest offset of every key of the dirty range).
/// `keep_if_empty`: the batch is its idempotent producer's last, kept even with no record.
pub fn clean_batch(
    batch: &[u8],
    map: &OffsetMap,
    rules: &CleanRules,
    keep_if_empty: bool,
) -> Result<(Cleaned, CleanStats)> {
    let header = BatchHeader::parse(batch)?;
    let mut stats = CleanStats {
        batches_read: 1,
        bytes_read: batch.len() as u64,
        ..CleanStats::default()
    };
    if header.is_left_alone() || header.record_count == 0 {
        stats.bytes_kept = stats.bytes_read;
        return Ok((Cleaned::Unchanged, stats));
    }
    let records = batch::records(batch, &header)?;
    let horizon = header.delete_horizon_ms();
    let mut kept: Vec<&RecordSpan> = Vec::with_capacity(records.spans.len());
    let mut tombstones_kept = false;
    for span in &records.spans {
        stats.records_read += 1;
        let Some(key) = records.key(span) else {
            stats.keyless_dropped += 1;
            continue;
        };
        if map.get(key).is_some_and(|latest| span.offset < latest) {
            stats.superseded_dropped += 1;
            continue;
        }
        if span.is_tombstone {
            if horizon.is_some_and(|horizon| rules.now_ms >= horizon) {
                stats.tombstones_dropped += 1;
                continue;
            }
            tombstones_kept = true;
        }
        kept.push(span);
    }
    stats.records_kept = kept.len() as u64;
    let needs_horizon = tombstones_kept && horizon.is_none();
    let cleaned = if kept.len() == records.spans.len() && !needs_horizon {
        Cleaned::Unchanged
    } else if kept.is_empty() && !keep_if_empty {
        Cleaned::Removed
    } else {
        let new_horizon =
            needs_horizon.then(|| rules.now_ms.saturating_add(rules.delete_retention_ms));
        let rebuilt = batch::rebuild(batch, &header, &records, &kept, new_horizon)?;
        let check = BatchHeader::parse(&rebuilt)?;
        assert_eq!(
            (check.base_offset, check.last_offset()),
            (header.base_offset, header.last_offset()),
            "a rebuilt batch keeps its offsets"
        );
        Cleaned::Rewritten(rebuilt)
    };
    stats.bytes_kept = match &cleaned {
        Cleaned::Unchanged => batch.len() as u64,
        Cleaned::Rewritten(bytes) => bytes.len() as u64,
        Cleaned::Removed => 0,
    };
    Ok((cleaned, stats))
}

/// The offset after `batch` (its last offset + 1), for callers walking a log.
pub fn next_offset(batch: &[u8]) -> Result<Offset> {
    Ok(Offset(BatchHeader::parse(batch)?.last_offset().0 + 1))
}
