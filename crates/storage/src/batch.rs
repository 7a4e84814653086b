//! Kafka v2 record batch headers: parsing, validation and the broker's stamping of offsets.
//!
//! Layout of the 61-byte header (big-endian), from the Kafka protocol's "Record Batch" spec:
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 | producerId i64
//! | producerEpoch i16 | baseSequence i32 | recordCount i32`. The CRC32C covers everything from
//! `attributes` to the end, so the broker may rewrite `baseOffset` and `partitionLeaderEpoch`
//! without recomputing it.
//!
//! **Internal entries.** A replicated log (`replicated.rs`) also stores Raft entries that are
//! no Kafka data (a new leader's empty entry, a configuration change) as batches: attribute
//! bit 15 set (Kafka uses bits 0-6), `recordCount` 0, `lastOffsetDelta` -1, timestamps and
//! producer fields -1, and the entry's bytes as the body, CRC-covered like any batch. Such a
//! batch takes no offset: its `baseOffset` is the next offset, which the following data batch
//! carries too. Clients may not send that bit ([`validate_client`]).

use shoal_model::constants::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use shoal_model::{Offset, Term, TimestampMs};

/// Bytes up to and including the batch length field.
pub(crate) const LENGTH_FIELD_END: usize = 12;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_COVERED_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;
/// Attribute bit 15: the batch is an internal entry of a replicated log, not Kafka data.
const INTERNAL_ATTRIBUTE: u16 = 0x8000;

/// Why bytes are not a valid batch. `Corrupt` means the bytes were damaged (CRC or framing);
/// `Invalid` means they are well-formed but not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchDefect {
    Truncated,
    LengthOutOfRange,
    CrcMismatch,
    UnsupportedMagic,
    InconsistentCounts,
    /// A client batch with attribute bit 15, which marks the broker's internal entries.
    InternalAttribute,
}

impl BatchDefect {
    pub fn is_corruption(self) -> bool {
        matches!(
            self,
            BatchDefect::Truncated | BatchDefect::LengthOutOfRange | BatchDefect::CrcMismatch
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            BatchDefect::Truncated => "batch shorter than its header or its length field",
            BatchDefect::LengthOutOfRange => "batch length field out of range",
            BatchDefect::CrcMismatch => "batch CRC32C does not match its contents",
            BatchDefect::UnsupportedMagic => "record batch magic is not 2",
            BatchDefect::InconsistentCounts => "record count disagrees with lastOffsetDelta",
            BatchDefect::InternalAttribute => {
                "attribute bit 15 is reserved for the broker's internal entries"
            }
        }
    }
}

/// The header fields the log needs, read from a validated batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    /// Total bytes of the batch including the offset and length fields.
    pub size_bytes: usize,
    pub term: Term,
    /// Number of offsets the batch occupies (`lastOffsetDelta + 1`).
    pub offset_count: i64,
    pub max_timestamp: TimestampMs,
    /// Idempotent producer fields: id (-1 when not idempotent), epoch, first sequence.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// An internal entry of a replicated log (attribute bit 15): no Kafka data, no offset
    /// (`offset_count` 0). Never served to Kafka readers.
    pub internal: bool,
}

impl BatchHeader {
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(self.offset_count - 1)
    }

    pub fn next_offset(&self) -> Offset {
        self.base_offset.plus(self.offset_count)
    }
}

fn be_i32(bytes: &[u8], at: usize) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(raw)
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// Reads the total size of the batch starting at `bytes[0]` from its length field, without
/// validating anything else. `None` if fewer than 12 bytes are present or the length is out of
/// range (a zero length is how pre-allocated, never-written space reads back).
pub(crate) fn peek_size_bytes(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < LENGTH_FIELD_END {
        return None;
    }
    let length = be_i32(bytes, 8);
    let size = usize::try_from(length).ok()? + LENGTH_FIELD_END;
    (BATCH_HEADER_BYTES..=BATCH_BYTES_MAX)
        .contains(&size)
        .then_some(size)
}

/// The max timestamp field of the batch header at `bytes[0]`, unvalidated (the caller read a
/// batch it validated before).
pub(crate) fn header_max_timestamp(bytes: &[u8]) -> Option<TimestampMs> {
    (bytes.len() >= BATCH_HEADER_BYTES).then(|| TimestampMs(be_i64(bytes, MAX_TIMESTAMP_AT)))
}

/// Validates the single batch that starts at `bytes[0]` (framing, magic, CRC32C, counts) and
/// returns its header. Bytes past the batch are ignored.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchDefect> {
    if bytes.len() < LENGTH_FIELD_END {
        return Err(BatchDefect::Truncated);
    }
    let size_bytes = peek_size_bytes(bytes).ok_or(BatchDefect::LengthOutOfRange)?;
    if bytes.len() < size_bytes {
        return Err(BatchDefect::Truncated);
    }
    let batch = &bytes[..size_bytes];
    if batch[MAGIC_AT] != 2 {
        return Err(BatchDefect::UnsupportedMagic);
    }
    crc_matches(batch)?;
    let last_offset_delta = be_i32(batch, LAST_OFFSET_DELTA_AT);
    let record_count = be_i32(batch, RECORD_COUNT_AT);
    let attributes = u16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    let internal = attributes & INTERNAL_ATTRIBUTE != 0;
    // Producers write one offset per record, so the two counts must agree. Compacted batches
    // (later) may hold fewer records than offsets, never more. An internal entry holds no
    // record and takes no offset.
    let counts_agree = if internal {
        last_offset_delta == -1 && record_count == 0
    } else {
        last_offset_delta >= 0 && record_count >= 0 && record_count <= last_offset_delta + 1
    };
    if !counts_agree {
        return Err(BatchDefect::InconsistentCounts);
    }
    Ok(BatchHeader {
        base_offset: Offset(be_i64(batch, 0)),
        size_bytes,
        term: Term(be_i32(batch, EPOCH_AT)),
        offset_count: i64::from(last_offset_delta) + 1,
        max_timestamp: TimestampMs(be_i64(batch, MAX_TIMESTAMP_AT)),
        producer_id: be_i64(batch, PRODUCER_ID_AT),
        producer_epoch: i16::from_be_bytes([
            batch[PRODUCER_EPOCH_AT],
            batch[PRODUCER_EPOCH_AT + 1],
        ]),
        base_sequence: be_i32(batch, BASE_SEQUENCE_AT),
        internal,
    })
}

/// Validates a batch a client sent: as [`validate`], and attribute bit 15 (internal entries)
/// is refused, so no client can make the log store a batch that readers would skip or that
/// Raft would take for one of its own entries.
pub(crate) fn validate_client(bytes: &[u8]) -> Result<BatchHeader, BatchDefect> {
    if bytes.len() >= BATCH_HEADER_BYTES && bytes[MAGIC_AT] == 2 {
        // Checked before the counts, which an internal batch's flag changes the rules of.
        let attributes = u16::from_be_bytes([bytes[ATTRIBUTES_AT], bytes[ATTRIBUTES_AT + 1]]);
        if attributes & INTERNAL_ATTRIBUTE != 0 && validate_crc(bytes).is_ok() {
            return Err(BatchDefect::InternalAttribute);
        }
    }
    let header = validate(bytes)?;
    assert!(!header.internal, "the flag was checked above");
    Ok(header)
}

/// The stored CRC32C of a batch (`batch` exactly one batch long) against its bytes.
fn crc_matches(batch: &[u8]) -> Result<(), BatchDefect> {
    let crc_stored = u32::from_be_bytes([
        batch[CRC_AT],
        batch[CRC_AT + 1],
        batch[CRC_AT + 2],
        batch[CRC_AT + 3],
    ]);
    if crc32c::crc32c(&batch[CRC_COVERED_FROM..]) != crc_stored {
        return Err(BatchDefect::CrcMismatch);
    }
    Ok(())
}

/// The CRC check alone, on a batch whose framing was not validated yet.
fn validate_crc(bytes: &[u8]) -> Result<(), BatchDefect> {
    let size_bytes = peek_size_bytes(bytes).ok_or(BatchDefect::LengthOutOfRange)?;
    let batch = bytes.get(..size_bytes).ok_or(BatchDefect::Truncated)?;
    crc_matches(batch)
}

/// Builds an internal entry (see the module documentation) carrying `payload`. Its base
/// offset and leader epoch are stamped when it is placed, as a data batch's are.
pub fn build_internal(payload: &[u8]) -> Vec<u8> {
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    let length =
        i32::try_from(BATCH_HEADER_BYTES - LENGTH_FIELD_END + payload.len()).unwrap_or(i32::MAX);
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // Leader epoch, stamped at placement.
    batch.push(2); // Magic.
    batch.extend_from_slice(&0u32.to_be_bytes()); // CRC placeholder.
    batch.extend_from_slice(&INTERNAL_ATTRIBUTE.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // lastOffsetDelta: no offset taken.
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // baseTimestamp: none.
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // maxTimestamp: none.
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producerId: none.
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch.
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence.
    batch.extend_from_slice(&0i32.to_be_bytes()); // recordCount.
    batch.extend_from_slice(payload);
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The body of a batch: the bytes after its 61-byte header (an internal entry's payload).
pub fn body(batch: &[u8]) -> &[u8] {
    &batch[BATCH_HEADER_BYTES.min(batch.len())..]
}

/// Writes the broker-assigned base offset and leader epoch into a batch. The CRC does not cover
/// these fields, so the batch stays valid; the caller re-validates after the copy.
pub fn stamp(batch: &mut [u8], base_offset: Offset, term: Term) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[0..8].copy_from_slice(&base_offset.0.to_be_bytes());
    batch[EPOCH_AT..EPOCH_AT + 4].copy_from_slice(&term.0.to_be_bytes());
}

/// Builds a valid v2 batch of uncompressed records with the given values, all stamped
/// `base_timestamp_ms`. Used by tests, benchmarks and the crash-test writer; the broker
/// builds batches only for its internal logs ([`build_keyed`]).
pub fn build(values: &[&[u8]], base_timestamp_ms: i64) -> Vec<u8> {
    let timed: Vec<(&[u8], i64)> = values.iter().map(|v| (*v, base_timestamp_ms)).collect();
    build_timed(&timed)
}

/// Builds a valid v2 batch whose records carry their own timestamps.
pub fn build_timed(records_in: &[(&[u8], i64)]) -> Vec<u8> {
    build_full(records_in, -1, -1, -1)
}

/// Builds a batch of an idempotent producer: `producer_id`, `epoch`, first `sequence`.
pub fn build_idempotent(values: &[&[u8]], producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let timed: Vec<(&[u8], i64)> = values.iter().map(|v| (*v, 0)).collect();
    build_full(&timed, producer_id, epoch, sequence)
}

fn build_full(records_in: &[(&[u8], i64)], producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let keyed: Vec<KeyedRecord<'_>> = records_in
        .iter()
        .map(|(value, ts)| (None, Some(*value), *ts))
        .collect();
    build_records(&keyed, producer_id, epoch, sequence)
}

/// A record to build: key, value (`None`: null, a tombstone) and timestamp.
type KeyedRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// Builds a valid v2 batch of keyed records (`None` value: a tombstone), all stamped
/// `timestamp_ms`: the internal group logs, which are compacted on their keys.
pub fn build_keyed(records_in: &[(&[u8], Option<&[u8]>)], timestamp_ms: i64) -> Vec<u8> {
    let keyed: Vec<KeyedRecord<'_>> = records_in
        .iter()
        .map(|(key, value)| (Some(*key), *value, timestamp_ms))
        .collect();
    build_records(&keyed, -1, -1, -1)
}

fn build_records(
    records_in: &[KeyedRecord<'_>],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
) -> Vec<u8> {
    assert!(!records_in.is_empty());
    let base_ts = records_in.iter().map(|r| r.2).min().unwrap_or(0);
    let max_ts = records_in.iter().map(|r| r.2).max().unwrap_or(0);
    let mut records = Vec::new();
    for (index, (key, value, ts)) in records_in.iter().enumerate() {
        let mut record = Vec::new();
        record.push(0u8); // Record attributes.
        put_varint(&mut record, ts - base_ts);
        put_varint(&mut record, index as i64); // Offset delta.
        match key {
            Some(key) => {
                put_varint(&mut record, key.len() as i64);
                record.extend_from_slice(key);
            }
            None => put_varint(&mut record, -1),
        }
        match value {
            Some(value) => {
                put_varint(&mut record, value.len() as i64);
                record.extend_from_slice(value);
            }
            None => put_varint(&mut record, -1),
        }
        put_varint(&mut record, 0); // No headers.
        put_varint(&mut records, record.len() as i64);
        records.extend_from_slice(&record);
    }
    let count = i32::try_from(records_in.len()).expect("test batches are small");
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    let length = i32::try_from(BATCH_HEADER_BYTES - LENGTH_FIELD_END + records.len())
        .expect("batch fits in i32");
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // Leader epoch, stamped by the broker.
    batch.push(2); // Magic.
    batch.extend_from_slice(&0u32.to_be_bytes()); // CRC placeholder.
    batch.extend_from_slice(&0i16.to_be_bytes()); // Attributes: no compression, create time.
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&base_ts.to_be_bytes());
    batch.extend_from_slice(&max_ts.to_be_bytes());
    batch.extend_from_slice(&producer_id.to_be_bytes());
    batch.extend_from_slice(&epoch.to_be_bytes());
    batch.extend_from_slice(&sequence.to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_validates_and_stamping_keeps_crc() {
        let mut batch = build(&[b"a", b"bc", b"def"], 1_000);
        let header = validate(&batch).expect("valid");
        assert_eq!(header.offset_count, 3);
        assert_eq!(header.size_bytes, batch.len());
        stamp(&mut batch, Offset(42), Term(7));
        let header = validate(&batch).expect("still valid after stamping");
        assert_eq!(header.base_offset, Offset(42));
        assert_eq!(header.term, Term(7));
        assert_eq!(header.last_offset(), Offset(44));
        assert_eq!(header.max_timestamp, TimestampMs(1_000));
    }

    #[test]
    fn every_single_bit_flip_in_covered_bytes_is_caught() {
        let batch = build(&[b"hello world"], 5);
        for at in CRC_COVERED_FROM..batch.len() {
            let mut damaged = batch.clone();
            damaged[at] ^= 0x10;
            assert!(validate(&damaged).is_err(), "flip at {at} not caught");
        }
    }

    #[test]
    fn an_internal_entry_takes_no_offset_and_clients_may_not_send_one() {
        let mut entry = build_internal(b"conf change");
        stamp(&mut entry, Offset(9), Term(2));
        let header = validate(&entry).expect("valid");
        assert!(header.internal);
        assert_eq!(
            (header.base_offset, header.next_offset()),
            (Offset(9), Offset(9))
        );
        assert_eq!(header.producer_id, -1);
        assert_eq!(body(&entry), b"conf change");
        assert_eq!(validate_client(&entry), Err(BatchDefect::InternalAttribute));
        // A data batch with the bit set is refused for the bit, not for its counts.
        let mut data = build(&[b"x"], 0);
        data[ATTRIBUTES_AT] |= 0x80;
        let crc = crc32c::crc32c(&data[CRC_COVERED_FROM..]);
        data[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate(&data), Err(BatchDefect::InconsistentCounts));
        assert_eq!(validate_client(&data), Err(BatchDefect::InternalAttribute));
        // A damaged one is corruption first.
        data[CRC_AT] ^= 1;
        assert_eq!(validate_client(&data), Err(BatchDefect::CrcMismatch));
        assert!(validate_client(&build(&[b"y"], 0)).is_ok());
    }

    #[test]
    fn framing_defects_are_reported() {
        let batch = build(&[b"x"], 0);
        assert_eq!(
            validate(&batch[..batch.len() - 1]),
            Err(BatchDefect::Truncated)
        );
        assert_eq!(validate(&[0u8; 70]), Err(BatchDefect::LengthOutOfRange));
        let mut bad_magic = batch.clone();
        bad_magic[MAGIC_AT] = 1;
        assert_eq!(validate(&bad_magic), Err(BatchDefect::UnsupportedMagic));
    }
}
