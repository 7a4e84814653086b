//! Kafka v2 record batches as the cleaner sees them: the header fields it keeps or changes,
//! and the records, each located in the (decompressed) records section so that a kept record
//! is copied byte for byte.
//!
//! Layout (big-endian, the protocol's "Record Batch"): `baseOffset i64 | batchLength i32 |
//! partitionLeaderEpoch i32 | magic i8 | crc u32 | attributes i16 | lastOffsetDelta i32 |
//! baseTimestamp i64 | maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32
//! | recordCount i32 | records`. A record: `length varint | attributes i8 | timestampDelta
//! varlong | offsetDelta varint | keyLength varint | key | valueLength varint | value |
//! headerCount varint | headers`. The CRC32C covers `attributes` to the end.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use shoal_model::Offset;

use crate::error::{Error, Result};

pub(crate) const HEADER_BYTES: usize = 61;
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const CODEC_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;
/// KIP-534: the batch's base timestamp is its delete horizon (set by a cleaning that kept
/// tombstones; they go in the first cleaning after it).
pub(crate) const DELETE_HORIZON: i16 = 0x40;
/// Shoal's internal entries of a replicated log (storage `batch.rs`): never cleaned.
const INTERNAL: i16 = i16::MIN; // bit 15

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(bytes)
}

/// The header fields of one stored batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub last_offset_delta: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header of a stored batch (framing and CRC were checked by storage when it was
    /// stored and again when it was read).
    pub fn parse(batch: &[u8]) -> Result<BatchHeader> {
        if batch.len() < HEADER_BYTES {
            return Err(Error::Malformed {
                base: Offset(-1),
                why: format!("{} bytes, shorter than a batch header", batch.len()),
            });
        }
        let header = BatchHeader {
            base_offset: Offset(be_i64(batch, 0)),
            last_offset_delta: be_i32(batch, LAST_OFFSET_DELTA_AT),
            attributes: be_i16(batch, ATTRIBUTES_AT),
            base_timestamp: be_i64(batch, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(batch, MAX_TIMESTAMP_AT),
            producer_id: be_i64(batch, PRODUCER_ID_AT),
            producer_epoch: be_i16(batch, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(batch, BASE_SEQUENCE_AT),
            record_count: be_i32(batch, RECORD_COUNT_AT),
        };
        let declared = be_i32(batch, LENGTH_AT);
        if batch[MAGIC_AT] != 2 || usize::try_from(declared).ok() != Some(batch.len() - 12) {
            return Err(header.malformed(format!(
                "magic {} and length {declared} for {} bytes",
                batch[MAGIC_AT],
                batch.len()
            )));
        }
        Ok(header)
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + i64::from(self.last_offset_delta))
    }

    /// A batch the cleaner leaves as it is: Shoal's internal entries, and transactional and
    /// control batches (Shoal refuses transactional produce, so a log holds none of its own;
    /// left whole rather than cleaned without the transaction index Kafka uses).
    pub fn is_left_alone(&self) -> bool {
        self.attributes & (INTERNAL | TRANSACTIONAL | CONTROL) != 0
    }

    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME != 0
    }

    /// Whether the batch carries an idempotent producer's id (its last batch is kept, even
    /// empty, so the producer's sequence survives the cleaning).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    fn codec(&self) -> i16 {
        self.attributes & CODEC_MASK
    }

    pub(crate) fn malformed(&self, why: String) -> Error {
        Error::Malformed {
            base: self.base_offset,
            why,
        }
    }
}

/// One record of a batch, located in the batch's records section.
#[derive(Clone, Debug)]
pub(crate) struct RecordSpan {
    pub(crate) offset: Offset,
    pub(crate) timestamp: i64,
    /// The whole record, length varint included.
    pub(crate) whole: Range<usize>,
    /// From the offset delta to the end: what a re-based record keeps as it is.
    pub(crate) after_timestamp: Range<usize>,
    /// The record's attributes byte.
    pub(crate) attributes: u8,
    pub(crate) key: Option<Range<usize>>,
    /// A null value: a tombstone.
    pub(crate) is_tombstone: bool,
}

/// A batch's records, decompressed.
pub(crate) struct Records {
    pub(crate) section: Bytes,
    pub(crate) spans: Vec<RecordSpan>,
}

impl Records {
    pub(crate) fn key(&self, span: &RecordSpan) -> Option<&[u8]> {
        span.key.clone().map(|range| &self.section[range])
    }
}

/// The records of `batch`, decompressed and located.
pub(crate) fn records(batch: &[u8], header: &BatchHeader) -> Result<Records> {
    let section = decompress(header, &batch[HEADER_BYTES..])?;
    let count = usize::try_from(header.record_count)
        .map_err(|_| header.malformed(format!("record count {}", header.record_count)))?;
    let mut spans = Vec::with_capacity(count.min(section.len()));
    let mut at = 0;
    for index in 0..count {
        let framing = |why: String| header.malformed(format!("record {index}: {why}"));
        let start = at;
        let size = varint(&section, &mut at).map_err(framing)?;
        let size = usize::try_from(size).map_err(|_| framing(format!("size {size}")))?;
        let end = at
            .checked_add(size)
            .filter(|&end| end <= section.len())
            .ok_or_else(|| framing(format!("size {size} runs past the records")))?;
        let attributes = *section
            .get(at)
            .ok_or_else(|| framing("no attributes".into()))?;
        at += 1;
        let timestamp_delta = varint(&section, &mut at).map_err(framing)?;
        let after_timestamp_from = at;
        let offset_delta = varint(&section, &mut at).map_err(framing)?;
        let key = field(&section, &mut at, end).map_err(framing)?;
        let value = field(&section, &mut at, end).map_err(framing)?;
        let headers = varint(&section, &mut at).map_err(framing)?;
        if headers < 0 {
            return Err(framing(format!("{headers} headers")));
        }
        for _ in 0..headers {
            if field(&section, &mut at, end).map_err(framing)?.is_none() {
                return Err(framing("a header without a key".into()));
            }
            let _ = field(&section, &mut at, end).map_err(framing)?;
        }
        if at != end {
            return Err(framing(format!("{} bytes left in the record", end - at)));
        }
        spans.push(RecordSpan {
            offset: Offset(header.base_offset.0.saturating_add(offset_delta)),
            timestamp: header.base_timestamp.saturating_add(timestamp_delta),
            whole: start..end,
            after_timestamp: after_timestamp_from..end,
            attributes,
            key,
            is_tombstone: value.is_none(),
        });
    }
    if at != section.len() {
        return Err(header.malformed(format!(
            "{} bytes after the last of {count} records",
            section.len() - at
        )));
    }
    Ok(Records { section, spans })
}

/// A batch with the same header as `original` but only `kept` of its records: base offset,
/// last offset delta, epoch, producer id, epoch and base sequence unchanged (offsets and
/// sequences stay valid), compressed with the original's codec. With `horizon_ms`, the batch
/// gets KIP-534's delete horizon: the attribute, and the horizon as its base timestamp (every
/// record's timestamp delta re-encoded against it).
pub(crate) fn rebuild(
    original: &[u8],
    header: &BatchHeader,
    records: &Records,
    kept: &[&RecordSpan],
    horizon_ms: Option<i64>,
) -> Result<Vec<u8>> {
    let base_timestamp = horizon_ms.unwrap_or(header.base_timestamp);
    let mut section = Vec::with_capacity(records.section.len());
    for span in kept {
        if base_timestamp == header.base_timestamp {
            section.extend_from_slice(&records.section[span.whole.clone()]);
            continue;
        }
        let mut body = Vec::with_capacity(span.whole.len() + 10);
        body.push(span.attributes);
        put_varint(&mut body, span.timestamp.wrapping_sub(base_timestamp));
        body.extend_from_slice(&records.section[span.after_timestamp.clone()]);
        put_varint(&mut section, body.len() as i64);
        section.extend_from_slice(&body);
    }
    let compressed = compress(header, section)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + compressed.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    out.extend_from_slice(&compressed);
    let length = i32::try_from(out.len() - 12)
        .map_err(|_| header.malformed("rebuilt batch too large".into()))?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let mut attributes = header.attributes;
    if horizon_ms.is_some() {
        attributes |= DELETE_HORIZON;
    }
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    // LogAppendTime: the broker's time stays the batch's. CreateTime: the latest kept record's
    // (an empty batch keeps its original, as Kafka's empty header does).
    let max_timestamp = match kept.iter().map(|span| span.timestamp).max() {
        Some(max) if !header.is_log_append_time() => max,
        _ => header.max_timestamp,
    };
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let count = i32::try_from(kept.len()).map_err(|_| header.malformed("count".into()))?;
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "none",
    }
}

fn decompress(header: &BatchHeader, section: &[u8]) -> Result<Bytes> {
    let mut input = Bytes::copy_from_slice(section);
    let take = |out: &mut Bytes| Ok(out.split_off(0));
    let result = match header.codec() {
        0 => return Ok(input),
        1 => Gzip::decompress(&mut input, take),
        2 => Snappy::decompress(&mut input, take),
        3 => Lz4::decompress(&mut input, take),
        4 => Zstd::decompress(&mut input, take),
        codec => {
            return Err(Error::UnknownCodec {
                base: header.base_offset,
                codec,
            })
        }
    };
    result.map_err(|error| Error::Codec {
        base: header.base_offset,
        codec: codec_name(header.codec()),
        what: "decompression",
        why: error.to_string(),
    })
}

fn compress(header: &BatchHeader, section: Vec<u8>) -> Result<Vec<u8>> {
    if header.codec() == 0 {
        return Ok(section);
    }
    let mut out = BytesMut::with_capacity(section.len() / 2 + 64);
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(&section);
        Ok(())
    };
    let result = match header.codec() {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        codec => {
            return Err(Error::UnknownCodec {
                base: header.base_offset,
                codec,
            })
        }
    };
    result.map_err(|error| Error::Codec {
        base: header.base_offset,
        codec: codec_name(header.codec()),
        what: "compression",
        why: error.to_string(),
    })?;
    Ok(out.to_vec())
}

/// A zigzag varint (the record fields) at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> std::result::Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("a varint runs past the end")?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("a malformed varint".to_string())
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// A length-prefixed field (`-1`: null) of a record ending at `end`.
fn field(
    bytes: &[u8],
    at: &mut usize,
    end: usize,
) -> std::result::Result<Option<Range<usize>>, String> {
    let len = varint(bytes, at)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("a field of length {len}"))?;
    let from = *at;
    let to = from
        .checked_add(len)
        .filter(|&to| to <= end)
        .ok_or("a field runs past its record")?;
    *at = to;
    Ok(Some(from..to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut at = 0;
            assert_eq!(varint(&out, &mut at), Ok(value));
            assert_eq!(at, out.len());
        }
    }
}
