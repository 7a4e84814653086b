//! Sparse per-segment indexes and their on-disk form.
//!
//! The offset index maps a batch's base offset to its byte position in the segment; the time
//! index maps the largest timestamp seen so far to the batch at which it was reached. An entry
//! is added every `index_interval_bytes` of log. Both live in memory while the segment is
//! active and are written to `.index`/`.timeindex` files when the segment is sealed and at
//! checkpoints. An index file is an optimisation: recovery validates it and rebuilds it by
//! scanning when it is missing, stale or corrupt.

use shoal_model::{Offset, TimestampMs};

const MAGIC: &[u8; 4] = b"SHIX";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4;
const ENTRY_BYTES: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SparseIndex {
    /// (base offset, byte position), strictly increasing in both.
    pub(crate) offsets: Vec<(Offset, u64)>,
    /// (largest timestamp so far, base offset of the batch that reached it), non-decreasing.
    pub(crate) times: Vec<(TimestampMs, Offset)>,
    /// Position of the batch that produced the last entry.
    pub(crate) last_entry_pos: Option<u64>,
    pub(crate) max_timestamp: Option<TimestampMs>,
}

impl SparseIndex {
    /// Records a batch that starts at `pos`. Adds entries if `interval_bytes` passed since the
    /// last one (the first batch always gets one).
    pub(crate) fn observe(&mut self, base: Offset, pos: u64, max_ts: TimestampMs, interval: u64) {
        let new_max = self.max_timestamp.is_none_or(|max| max_ts > max);
        if new_max {
            self.max_timestamp = Some(max_ts);
        }
        // `pos > last`: recovery resumes its scan at the last entry's own batch, which must not
        // be recorded twice (with `index.interval.bytes` 0 every other batch is due).
        let due = self
            .last_entry_pos
            .is_none_or(|last| pos > last && pos >= last + interval);
        if !due {
            return;
        }
        if let Some(&(last_offset, last_pos)) = self.offsets.last() {
            assert!(
                base > last_offset && pos > last_pos,
                "index entries must increase"
            );
        }
        self.offsets.push((base, pos));
        self.last_entry_pos = Some(pos);
        let max = self.max_timestamp.unwrap_or(max_ts);
        if self.times.last().is_none_or(|&(ts, _)| max > ts) {
            self.times.push((max, base));
        }
    }

    /// The last entry at or before `offset`: where a scan for `offset` may start.
    pub(crate) fn lookup(&self, offset: Offset) -> Option<(Offset, u64)> {
        let at = self.offsets.partition_point(|&(o, _)| o <= offset);
        at.checked_sub(1).map(|i| self.offsets[i])
    }

    /// A batch at or before the first batch whose max timestamp is >= `target`.
    pub(crate) fn lookup_time(&self, target: TimestampMs) -> Option<Offset> {
        let at = self.times.partition_point(|&(ts, _)| ts < target);
        at.checked_sub(1).map(|i| self.times[i].1)
    }

    pub(crate) fn last_offset_entry(&self) -> Option<(Offset, u64)> {
        self.offsets.last().copied()
    }

    /// Drops entries at or past byte `pos` (the log was truncated there).
    pub(crate) fn truncate_at(&mut self, pos: u64) {
        self.offsets.retain(|&(_, p)| p < pos);
        let last_offset = self.offsets.last().map(|&(o, _)| o);
        self.times
            .retain(|&(_, o)| last_offset.is_some_and(|last| o <= last));
        self.last_entry_pos = self.offsets.last().map(|&(_, p)| p);
        self.max_timestamp = self.times.last().map(|&(ts, _)| ts);
    }
}

/// What an index file says besides its entries: how far the segment was known synced when
/// the file was written, and (for sealed segments) where the segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexCheckpoint {
    /// Every byte of the segment before this position was synced when the file was written.
    pub(crate) covered_bytes: u64,
    /// The offset after the last batch before `covered_bytes`.
    pub(crate) next_offset: Offset,
    pub(crate) max_timestamp: TimestampMs,
}

pub(crate) fn encode(index: &SparseIndex, checkpoint: IndexCheckpoint) -> Vec<u8> {
    let count = index.offsets.len() + index.times.len();
    let mut out = Vec::with_capacity(HEADER_BYTES + count * ENTRY_BYTES + 4);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&checkpoint.covered_bytes.to_be_bytes());
    out.extend_from_slice(&checkpoint.next_offset.0.to_be_bytes());
    out.extend_from_slice(&checkpoint.max_timestamp.0.to_be_bytes());
    out.extend_from_slice(&(index.offsets.len() as u32).to_be_bytes());
    for &(offset, pos) in &index.offsets {
        out.extend_from_slice(&offset.0.to_be_bytes());
        out.extend_from_slice(&pos.to_be_bytes());
    }
    for &(ts, offset) in &index.times {
        out.extend_from_slice(&ts.0.to_be_bytes());
        out.extend_from_slice(&offset.0.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes an index file. Any inconsistency (bad magic, CRC, counts, non-increasing entries)
/// yields `None`: the caller rebuilds the index from the segment.
pub(crate) fn decode(bytes: &[u8]) -> Option<(SparseIndex, IndexCheckpoint)> {
    if bytes.len() < HEADER_BYTES + 4 || &bytes[0..4] != MAGIC || bytes[4] != VERSION {
        return None;
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let offsets_count = u32::from_be_bytes(bytes[32..36].try_into().ok()?) as usize;
    let checkpoint = IndexCheckpoint {
        covered_bytes: u64_at(8),
        next_offset: Offset(u64_at(16) as i64),
        max_timestamp: TimestampMs(u64_at(24) as i64),
    };
    let entries_bytes = bytes.len().checked_sub(HEADER_BYTES + 4)?;
    // The file is padded to the DMA alignment; the CRC sits right after the last entry.
    let total_entries = (0..=entries_bytes / ENTRY_BYTES).rev().find(|&n| {
        let end = HEADER_BYTES + n * ENTRY_BYTES;
        n >= offsets_count
            && u32::from_be_bytes(bytes[end..end + 4].try_into().unwrap_or([0; 4]))
                == crc32c::crc32c(&bytes[..end])
    })?;
    let mut index = SparseIndex::default();
    for n in 0..total_entries {
        let at = HEADER_BYTES + n * ENTRY_BYTES;
        let (a, b) = (u64_at(at) as i64, u64_at(at + 8));
        if n < offsets_count {
            index.offsets.push((Offset(a), b));
        } else {
            index.times.push((TimestampMs(a), Offset(b as i64)));
        }
    }
    let increasing = index
        .offsets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
    let ordered = index
        .times
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1);
    if !increasing || !ordered {
        return None;
    }
    index.last_entry_pos = index.offsets.last().map(|&(_, p)| p);
    let checkpoint_max = (checkpoint.max_timestamp.0 >= 0).then_some(checkpoint.max_timestamp);
    index.max_timestamp = index.times.last().map(|&(ts, _)| ts).max(checkpoint_max);
    Some((index, checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_follow_the_interval_and_round_trip() {
        let mut index = SparseIndex::default();
        for i in 0..100u64 {
            index.observe(Offset(i as i64 * 10), i * 1000, TimestampMs(i as i64), 4096);
        }
        assert_eq!(
            index.offsets.len(),
            20,
            "one entry per 4 KiB of 1000-byte batches"
        );
        assert_eq!(index.lookup(Offset(55)), Some((Offset(50), 5000)));
        assert_eq!(index.lookup_time(TimestampMs(42)), Some(Offset(400)));
        let checkpoint = IndexCheckpoint {
            covered_bytes: 100_000,
            next_offset: Offset(1000),
            max_timestamp: TimestampMs(99),
        };
        let mut bytes = encode(&index, checkpoint);
        bytes.resize(bytes.len().next_multiple_of(4096), 0);
        assert_eq!(decode(&bytes), Some((index.clone(), checkpoint)));
        bytes[40] ^= 1;
        assert_eq!(decode(&bytes), None, "a flipped bit is detected");
    }

    #[test]
    fn truncation_drops_entries_past_the_cut() {
        let mut index = SparseIndex::default();
        for i in 0..10u64 {
            index.observe(Offset(i as i64), i * 5000, TimestampMs(i as i64), 4096);
        }
        index.truncate_at(20_000);
        assert_eq!(index.last_offset_entry(), Some((Offset(3), 15_000)));
        assert_eq!(index.times.last(), Some(&(TimestampMs(3), Offset(3))));
    }
}
