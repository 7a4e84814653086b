//! Sparse per-segment indexes and their on-disk form.
//!
//! The offset index maps a batch's base offset to its byte position in the segment; the time
//! index maps the largest timestamp seen so far to the batch at which it was reached. An entry
//! is added every `index_interval_bytes` of log. Both live in memory while the segment is
//! active and are written to `.index`/`.timeindex` files when the segment is sealed and at
//! checkpoints. An index file is an optimisation: recovery validates it and rebuilds it by
//! scanning when it is missing, stale or corrupt.
//!
//! A replicated log's offset index also records each entry's batch ordinal within the
//! segment (its Raft index less the segment's first), so an entry maps offset, ordinal and
//! position: reads by Raft index start their scan there. Its files are format version 2
//! (offset entries of 24 bytes, and the header counts the batches the checkpoint covers);
//! a plain log keeps writing version 1, byte for byte as before. In a replicated log two
//! entries may share an offset (an internal entry takes none); ordinals and positions still
//! strictly increase.

use shoal_model::{Offset, TimestampMs};

const MAGIC: &[u8; 4] = b"SHIX";
const VERSION_PLAIN: u8 = 1;
const VERSION_REPLICATED: u8 = 2;
const HEADER_BYTES: usize = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4;
/// Version 2 adds the count of batches the checkpoint covers.
const HEADER_BYTES_REPLICATED: usize = HEADER_BYTES + 8;
const ENTRY_BYTES: usize = 16;
/// A version 2 offset entry: offset, ordinal, position.
const ENTRY_BYTES_REPLICATED: usize = 24;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SparseIndex {
    /// (base offset, byte position), strictly increasing in both.
    pub(crate) offsets: Vec<(Offset, u64)>,
    /// The batch ordinal in the segment of each `offsets` entry, strictly increasing. Only a
    /// replicated log's index has them (same length as `offsets`); a plain log's is empty.
    pub(crate) ordinals: Vec<u64>,
    /// (largest timestamp so far, base offset of the batch that reached it), non-decreasing.
    pub(crate) times: Vec<(TimestampMs, Offset)>,
    /// Position of the batch that produced the last entry.
    pub(crate) last_entry_pos: Option<u64>,
    pub(crate) max_timestamp: Option<TimestampMs>,
}

impl SparseIndex {
    /// Records a batch that starts at `pos`. Adds entries if `interval_bytes` passed since the
    /// last one (the first batch always gets one).
    /// `ordinal` is the batch's ordinal in the segment, for a replicated log (None in a plain
    /// log: its index has no ordinals). `max_ts` is None for an internal entry, which has no
    /// timestamp and so no part in the time index.
    pub(crate) fn observe(
        &mut self,
        base: Offset,
        ordinal: Option<u64>,
        pos: u64,
        max_ts: Option<TimestampMs>,
        interval: u64,
    ) {
        if let Some(max_ts) = max_ts {
            if self.max_timestamp.is_none_or(|max| max_ts > max) {
                self.max_timestamp = Some(max_ts);
            }
        }
        // `pos > last`: recovery resumes its scan at the last entry's own batch, which must not
        // be recorded twice (with `index.interval.bytes` 0 every other batch is due).
        let due = self
            .last_entry_pos
            .is_none_or(|last| pos > last && pos >= last + interval);
        if !due {
            return;
        }
        match ordinal {
            Some(_) => assert_eq!(self.ordinals.len(), self.offsets.len(), "ordinals for all"),
            None => assert!(
                self.ordinals.is_empty(),
                "a plain log's index has no ordinals"
            ),
        }
        if let Some(&(last_offset, last_pos)) = self.offsets.last() {
            // Internal entries of a replicated log share their offset with the next batch.
            let offset_grows = if ordinal.is_some() {
                base >= last_offset
            } else {
                base > last_offset
            };
            assert!(
                offset_grows && pos > last_pos,
                "index entries must increase"
            );
        }
        if let Some(ordinal) = ordinal {
            assert!(
                self.ordinals.last().is_none_or(|&last| ordinal > last),
                "ordinals increase"
            );
            self.ordinals.push(ordinal);
        }
        self.offsets.push((base, pos));
        self.last_entry_pos = Some(pos);
        let Some(max_ts) = max_ts else {
            return;
        };
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

    /// The last entry's (offset, ordinal, position), in a replicated log's index.
    pub(crate) fn last_ordinal_entry(&self) -> Option<(Offset, u64, u64)> {
        let at = self.offsets.len().checked_sub(1)?;
        Some((
            self.offsets[at].0,
            *self.ordinals.get(at)?,
            self.offsets[at].1,
        ))
    }

    /// The last entry at or before batch `ordinal`, as (offset, ordinal, position): where a
    /// scan for that batch may start. Replicated logs only.
    pub(crate) fn lookup_ordinal(&self, ordinal: u64) -> Option<(Offset, u64, u64)> {
        assert_eq!(
            self.ordinals.len(),
            self.offsets.len(),
            "a replicated log's index"
        );
        let at = self.ordinals.partition_point(|&o| o <= ordinal);
        at.checked_sub(1)
            .map(|i| (self.offsets[i].0, self.ordinals[i], self.offsets[i].1))
    }

    /// Drops entries at or past byte `pos` (the log was truncated there).
    pub(crate) fn truncate_at(&mut self, pos: u64) {
        if !self.ordinals.is_empty() {
            let kept = self.offsets.partition_point(|&(_, p)| p < pos);
            self.ordinals.truncate(kept);
        }
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
    /// Batches before `covered_bytes` (replicated logs, format version 2; 0 in version 1).
    pub(crate) batches: u64,
}

/// Encodes an index file: version 2 (with ordinals and the batch count) for a replicated
/// log, version 1 otherwise.
pub(crate) fn encode(
    index: &SparseIndex,
    checkpoint: IndexCheckpoint,
    replicated: bool,
) -> Vec<u8> {
    let (header_bytes, entry_bytes, version) = if replicated {
        assert_eq!(
            index.ordinals.len(),
            index.offsets.len(),
            "ordinals for all"
        );
        (
            HEADER_BYTES_REPLICATED,
            ENTRY_BYTES_REPLICATED,
            VERSION_REPLICATED,
        )
    } else {
        assert!(
            index.ordinals.is_empty() && checkpoint.batches == 0,
            "a plain index"
        );
        (HEADER_BYTES, ENTRY_BYTES, VERSION_PLAIN)
    };
    let bytes = header_bytes + index.offsets.len() * entry_bytes + index.times.len() * ENTRY_BYTES;
    let mut out = Vec::with_capacity(bytes + 4);
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&checkpoint.covered_bytes.to_be_bytes());
    out.extend_from_slice(&checkpoint.next_offset.0.to_be_bytes());
    out.extend_from_slice(&checkpoint.max_timestamp.0.to_be_bytes());
    if replicated {
        out.extend_from_slice(&checkpoint.batches.to_be_bytes());
    }
    out.extend_from_slice(&(index.offsets.len() as u32).to_be_bytes());
    for (i, &(offset, pos)) in index.offsets.iter().enumerate() {
        out.extend_from_slice(&offset.0.to_be_bytes());
        if replicated {
            out.extend_from_slice(&index.ordinals[i].to_be_bytes());
        }
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

/// Decodes an index file of the log's kind (version 2 for a replicated log, version 1 for a
/// plain one). Any inconsistency (bad magic, version, CRC, counts, non-increasing entries)
/// yields `None`: the caller rebuilds the index from the segment.
pub(crate) fn decode(bytes: &[u8], replicated: bool) -> Option<(SparseIndex, IndexCheckpoint)> {
    let (header_bytes, entry_bytes, version) = if replicated {
        (
            HEADER_BYTES_REPLICATED,
            ENTRY_BYTES_REPLICATED,
            VERSION_REPLICATED,
        )
    } else {
        (HEADER_BYTES, ENTRY_BYTES, VERSION_PLAIN)
    };
    if bytes.len() < header_bytes + 4 || &bytes[0..4] != MAGIC || bytes[4] != version {
        return None;
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let count_at = header_bytes - 4;
    let offsets_count = u32::from_be_bytes(bytes[count_at..count_at + 4].try_into().ok()?) as usize;
    let checkpoint = IndexCheckpoint {
        covered_bytes: u64_at(8),
        next_offset: Offset(u64_at(16) as i64),
        max_timestamp: TimestampMs(u64_at(24) as i64),
        batches: if replicated { u64_at(32) } else { 0 },
    };
    let times_from = header_bytes.checked_add(offsets_count.checked_mul(entry_bytes)?)?;
    let times_bytes = bytes.len().checked_sub(times_from + 4)?;
    // The file is padded to the DMA alignment; the CRC sits right after the last entry.
    let times_count = (0..=times_bytes / ENTRY_BYTES).rev().find(|&n| {
        let end = times_from + n * ENTRY_BYTES;
        u32::from_be_bytes(bytes[end..end + 4].try_into().unwrap_or([0; 4]))
            == crc32c::crc32c(&bytes[..end])
    })?;
    let mut index = SparseIndex::default();
    for n in 0..offsets_count {
        let at = header_bytes + n * entry_bytes;
        index
            .offsets
            .push((Offset(u64_at(at) as i64), u64_at(at + entry_bytes - 8)));
        if replicated {
            index.ordinals.push(u64_at(at + 8));
        }
    }
    for n in 0..times_count {
        let at = times_from + n * ENTRY_BYTES;
        let (a, b) = (u64_at(at) as i64, u64_at(at + 8));
        index.times.push((TimestampMs(a), Offset(b as i64)));
    }
    let increasing = index.offsets.windows(2).all(|w| {
        let offset_grows = if replicated {
            w[0].0 <= w[1].0
        } else {
            w[0].0 < w[1].0
        };
        offset_grows && w[0].1 < w[1].1
    }) && index.ordinals.windows(2).all(|w| w[0] < w[1]);
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
            let ts = Some(TimestampMs(i as i64));
            index.observe(Offset(i as i64 * 10), None, i * 1000, ts, 4096);
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
            batches: 0,
        };
        let mut bytes = encode(&index, checkpoint, false);
        bytes.resize(bytes.len().next_multiple_of(4096), 0);
        assert_eq!(decode(&bytes, false), Some((index.clone(), checkpoint)));
        assert_eq!(
            decode(&bytes, true),
            None,
            "a plain index is not a replicated one"
        );
        bytes[40] ^= 1;
        assert_eq!(decode(&bytes, false), None, "a flipped bit is detected");
    }

    #[test]
    fn a_replicated_index_maps_offsets_ordinals_and_positions() {
        let mut index = SparseIndex::default();
        // Every batch indexed: ordinal 2 is an internal entry sharing offset 20 with 3.
        let batches = [
            (0, 0, Some(5)),
            (10, 1, Some(6)),
            (20, 2, None),
            (20, 3, Some(9)),
        ];
        for (i, &(offset, ordinal, ts)) in batches.iter().enumerate() {
            let ts = ts.map(TimestampMs);
            index.observe(Offset(offset), Some(ordinal), i as u64 * 100, ts, 0);
        }
        assert_eq!(index.lookup(Offset(20)), Some((Offset(20), 300)));
        assert_eq!(index.lookup_ordinal(2), Some((Offset(20), 2, 200)));
        assert_eq!(index.last_ordinal_entry(), Some((Offset(20), 3, 300)));
        assert_eq!(index.lookup_time(TimestampMs(8)), Some(Offset(10)));
        let checkpoint = IndexCheckpoint {
            covered_bytes: 400,
            next_offset: Offset(25),
            max_timestamp: TimestampMs(9),
            batches: 4,
        };
        let mut bytes = encode(&index, checkpoint, true);
        bytes.resize(4096, 0);
        assert_eq!(bytes[4], VERSION_REPLICATED);
        assert_eq!(decode(&bytes, true), Some((index.clone(), checkpoint)));
        assert_eq!(
            decode(&bytes, false),
            None,
            "a replicated index is not a plain one"
        );
        index.truncate_at(250);
        assert_eq!(index.ordinals, vec![0, 1, 2]);
        assert_eq!(index.lookup_ordinal(9), Some((Offset(20), 2, 200)));
    }

    #[test]
    fn truncation_drops_entries_past_the_cut() {
        let mut index = SparseIndex::default();
        for i in 0..10u64 {
            index.observe(
                Offset(i as i64),
                None,
                i * 5000,
                Some(TimestampMs(i as i64)),
                4096,
            );
        }
        index.truncate_at(20_000);
        assert_eq!(index.last_offset_entry(), Some((Offset(3), 15_000)));
        assert_eq!(index.times.last(), Some(&(TimestampMs(3), Offset(3))));
    }
}
