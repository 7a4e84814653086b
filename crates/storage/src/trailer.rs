//! The sync trailer: how recovery knows which bytes of the active segment were synced, up to
//! the last write, without a checkpoint.
//!
//! Every chunk the flusher writes ends, right after its last batch, with a 64-byte trailer in
//! the block padding that O_DIRECT writes anyway. It records where the write's new bytes start
//! and end, and `synced_before`: how many bytes of the segment were already synced when the
//! write was issued. The claim is true whenever the trailer is on disk: the flusher issues a
//! write only after the previous ones completed, and `synced_before` counts only completed
//! syncs (in Fsync mode every previous write was itself O_DSYNC; in Relaxed mode it is the last
//! fdatasync's end). So the newest trailer found after a crash is a durable marker of the
//! synced extent, carried by the very write that follows the sync.
//!
//! The next write rewrites the tail block and overwrites the trailer with batches (or with its
//! own trailer), so a trailer only exists after the logical end of the data. Recovery stops at
//! the first invalid batch; a trailer there (the normal case: a clean end) or anywhere after
//! it says how far the data was synced. An invalid batch below that extent is corruption of
//! synced data and takes the log offline; at or above it, it is a torn or lost unsynced write,
//! which is truncated. The data of the very last write is confirmed by the next trailer: when
//! a partition goes quiet, [`crate::Log::confirm_synced`] (the broker calls it every second)
//! rewrites the tail block with a trailer that covers it.
//!
//! The trailer can never be read as a batch: its bytes 8..12, where a batch has its length,
//! are zero, which no batch has. A trailer belongs to one segment (base offset and term) and
//! must sit at the position it names, so trailers of a recycled file's previous segment and
//! bytes inside batches are not taken for one. Residual risk, documented: a producer could
//! embed a forged trailer in an uncompressed record that lands exactly at the end of a later
//! torn write; the worst it can do is make recovery report corruption (the partition goes
//! offline with the reason), never lose or serve data.
//!
//! A replicated log's segments are named by base offset, term *and* first Raft index, and two
//! of them may share the first two (internal entries take no offset, so a segment holding only
//! those ends where it starts). Their trailers fold the segment's first index into the CRC
//! (no room is left for it in the 64 bytes, and the layout stays that of a plain log's), so a
//! trailer of one such segment never passes for another's. A plain log's trailer is unchanged.

use shoal_model::{Offset, RaftIndex, Term};

/// Bytes a trailer takes after the data of a write (in the block padding).
pub(crate) const TRAILER_BYTES: usize = 64;
const MAGIC: &[u8; 8] = b"SHOALSYN";
const CRC_AT: usize = 56;

/// What one write's trailer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub(crate) segment_base: Offset,
    pub(crate) segment_term: Term,
    /// The segment's first Raft index (a replicated log's): not stored, folded into the CRC.
    pub(crate) segment_index: Option<RaftIndex>,
    /// Where the write's new bytes start (the previous logical end).
    pub(crate) data_start: u64,
    /// Where they end: the trailer's own position.
    pub(crate) end_bytes: u64,
    /// Bytes of the segment synced before the write was issued.
    pub(crate) synced_before: u64,
    /// The offset after the last batch of the write.
    pub(crate) next_offset: Offset,
}

impl Trailer {
    pub(crate) fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= TRAILER_BYTES);
        assert!(self.synced_before <= self.data_start && self.data_start <= self.end_bytes);
        out[..TRAILER_BYTES].fill(0);
        out[0..8].copy_from_slice(MAGIC);
        // 8..12 stays zero: a batch length of 0 is never valid.
        out[12..20].copy_from_slice(&self.segment_base.0.to_be_bytes());
        out[20..24].copy_from_slice(&self.segment_term.0.to_be_bytes());
        out[24..32].copy_from_slice(&self.data_start.to_be_bytes());
        out[32..40].copy_from_slice(&self.end_bytes.to_be_bytes());
        out[40..48].copy_from_slice(&self.synced_before.to_be_bytes());
        out[48..56].copy_from_slice(&self.next_offset.0.to_be_bytes());
        let crc = crc_of(&out[..CRC_AT], self.segment_index);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(
            decode(&out[..TRAILER_BYTES], self.segment_index),
            Some(*self)
        );
    }
}

fn crc_of(fields: &[u8], segment_index: Option<RaftIndex>) -> u32 {
    let crc = crc32c::crc32c(fields);
    match segment_index {
        None => crc,
        Some(index) => crc32c::crc32c_append(crc, &index.0.to_be_bytes()),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(raw)
}

/// Decodes the trailer at `bytes[0]`, if one of a segment whose first index is
/// `segment_index` is there (magic, CRC and field order check).
pub(crate) fn decode(bytes: &[u8], segment_index: Option<RaftIndex>) -> Option<Trailer> {
    if bytes.len() < TRAILER_BYTES || &bytes[0..8] != MAGIC || bytes[8..12] != [0; 4] {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[CRC_AT..CRC_AT + 4].try_into().ok()?);
    if crc != crc_of(&bytes[..CRC_AT], segment_index) {
        return None;
    }
    let trailer = Trailer {
        segment_base: Offset(u64_at(bytes, 12) as i64),
        segment_term: Term(i32::from_be_bytes(bytes[20..24].try_into().ok()?)),
        segment_index,
        data_start: u64_at(bytes, 24),
        end_bytes: u64_at(bytes, 32),
        synced_before: u64_at(bytes, 40),
        next_offset: Offset(u64_at(bytes, 48) as i64),
    };
    let ordered =
        trailer.synced_before <= trailer.data_start && trailer.data_start <= trailer.end_bytes;
    ordered.then_some(trailer)
}

/// The largest synced extent claimed by a trailer of segment (`base`, `term`, `index`) found
/// in `bytes`, which start at file position `pos`. A trailer counts only where it sits at the
/// position it names.
pub(crate) fn synced_extent_in(
    bytes: &[u8],
    pos: u64,
    base: Offset,
    term: Term,
    index: Option<RaftIndex>,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut at = 0usize;
    while at + TRAILER_BYTES <= bytes.len() {
        let Some(found) = bytes[at..].windows(MAGIC.len()).position(|w| w == MAGIC) else {
            break;
        };
        let start = at + found;
        if let Some(trailer) = decode(&bytes[start..], index) {
            let placed = trailer.end_bytes == pos + start as u64;
            if placed && trailer.segment_base == base && trailer.segment_term == term {
                best = best.max(Some(trailer.synced_before));
            }
        }
        at = start + 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write of 300 bytes ending at `end_bytes`, issued when 200 bytes less were synced.
    fn sample(end_bytes: u64) -> Trailer {
        Trailer {
            segment_base: Offset(100),
            segment_term: Term(3),
            segment_index: None,
            data_start: end_bytes - 300,
            end_bytes,
            synced_before: end_bytes - 500,
            next_offset: Offset(160),
        }
    }

    #[test]
    fn a_trailer_round_trips_and_is_never_a_batch() {
        let mut out = [0u8; TRAILER_BYTES];
        sample(5000).encode(&mut out);
        assert_eq!(decode(&out, None), Some(sample(5000)));
        assert_eq!(
            crate::batch::peek_size_bytes(&out),
            None,
            "not a batch length"
        );
        for at in 0..CRC_AT {
            let mut damaged = out;
            damaged[at] ^= 0x04;
            assert_eq!(decode(&damaged, None), None, "flip at {at} not caught");
        }
    }

    #[test]
    fn only_trailers_of_this_segment_at_their_own_position_count() {
        let mut file = vec![0u8; 8192];
        sample(1000).encode(&mut file[1000..]);
        // One that names another position (a copy inside batch data) and one of another
        // segment (a recycled file's old contents).
        sample(7777).encode(&mut file[3000..]);
        Trailer {
            segment_base: Offset(7),
            ..sample(5000)
        }
        .encode(&mut file[5000..]);
        assert_eq!(
            synced_extent_in(&file, 0, Offset(100), Term(3), None),
            Some(500)
        );
        assert_eq!(
            synced_extent_in(&file[1001..], 1001, Offset(100), Term(3), None),
            None
        );
    }

    #[test]
    fn a_replicated_segments_trailer_names_its_first_index() {
        let mut file = vec![0u8; 4096];
        let replicated = Trailer {
            segment_index: Some(RaftIndex(40)),
            ..sample(1000)
        };
        replicated.encode(&mut file[1000..]);
        assert_eq!(decode(&file[1000..], Some(RaftIndex(40))), Some(replicated));
        // Same base and term, another first index (or a plain segment): not its trailer.
        assert_eq!(decode(&file[1000..], Some(RaftIndex(41))), None);
        assert_eq!(decode(&file[1000..], None), None);
        let found = |index| synced_extent_in(&file, 0, Offset(100), Term(3), index);
        assert_eq!(found(Some(RaftIndex(40))), Some(500));
        assert_eq!(found(Some(RaftIndex(39))), None);
    }
}
