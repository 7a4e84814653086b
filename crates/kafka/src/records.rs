//! Produced record batches on their way in: Kafka's LogValidator rules, and the rewrites a
//! topic's configs ask for. Runs in the Produce handler, on the core that received the request,
//! before the batch crosses to its partition's owner.
//!
//! In order, as Kafka checks them:
//! 0. size: a batch above the broker's hard limit (`BATCH_BYTES_MAX`) is MESSAGE_TOO_LARGE, as
//!    Kafka checks the size before the CRC (smaller batches above the topic's
//!    `max.message.bytes` are refused by the log with the same code);
//! 1. framing and CRC32C (`shoal_storage::validate_batch`): CORRUPT_MESSAGE, retriable;
//! 2. batch rules for client batches, each INVALID_RECORD: base offset 0, a positive offset
//!    range whose size equals the record count (no zero-record batches), no control batch, a
//!    non-negative base sequence for an idempotent producer;
//! 3. the records themselves. Uncompressed batches are walked record by record (the framing
//!    Kafka's record reader checks: sizes, varints, header counts, no bytes left over:
//!    INVALID_RECORD). Compressed batches are decoded only when a rule needs their records
//!    (a timestamp limit the batch header cannot clear, or recompression); otherwise their
//!    inner framing is not checked on produce (a decompression per batch on the hot path),
//!    and the consumer decodes the producer's bytes as sent;
//! 4. per-record rules, reported KIP-467 style with `record_errors` (the record's index in the
//!    batch) under INVALID_TIMESTAMP (if any timestamp is at fault) or INVALID_RECORD:
//!    `message.timestamp.before.max.ms` / `after.max.ms` on CreateTime topics, a batch
//!    that claims LogAppendTime where the rules leave it to the broker, and on a compacted
//!    topic a record without a key (every batch is decoded there, as in Kafka).
//!
//! Then the rewrites: `compression.type` other than `producer` recompresses a batch whose
//! codec differs (decode, encode with the topic's codec and level: producer id, epoch,
//! sequence and timestamps kept); `message.timestamp.type=LogAppendTime` stamps the broker's
//! time as the batch's max timestamp with the LogAppendTime attribute, as Kafka does, and the
//! response carries that time. Both recompute the CRC.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use shoal_model::constants::BATCH_BYTES_MAX;

use crate::cluster::{ProducePolicy, TimestampType, TopicCompression};

const BASE_OFFSET_AT: usize = 0;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;
const RECORDS_AT: usize = 61;

const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// Kafka's NO_TIMESTAMP.
const NO_TIMESTAMP: i64 = -1;

/// Why a batch was refused: the partition's error code, a message, and the records at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub code: ResponseError,
    pub message: String,
    /// (index of the record in the batch, why) — KIP-467.
    pub record_errors: Vec<(i32, String)>,
}

impl Rejected {
    fn invalid(message: impl Into<String>) -> Rejected {
        Rejected {
            code: ResponseError::InvalidRecord,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
}

/// A batch ready to append, and the broker time it was stamped with (LogAppendTime), or -1.
#[derive(Debug)]
pub struct Prepared {
    pub batch: Vec<u8>,
    pub log_append_time_ms: i64,
}

/// Whether the batch carries the transactional attribute (checked per request, not here).
pub fn is_transactional(batch: &[u8]) -> bool {
    batch.len() > ATTRIBUTES_AT + 1 && attributes(batch) & TRANSACTIONAL_BIT != 0
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}
fn attributes(batch: &[u8]) -> i16 {
    be_i16(batch, ATTRIBUTES_AT)
}

/// Checks a client batch against the rules and applies the topic's rewrites.
pub fn prepare(batch: Vec<u8>, policy: &ProducePolicy, now_ms: i64) -> Result<Prepared, Rejected> {
    // Kafka checks a batch's size against the size limit before its CRC. A batch above the
    // broker's hard limit fails the length check of `validate_batch`, which would make it
    // CORRUPT_MESSAGE: retriable, so a client resends it until its delivery timeout. It is
    // MESSAGE_TOO_LARGE, as for a batch above the topic's max.message.bytes (refused by the log).
    if batch.len() > BATCH_BYTES_MAX {
        return Err(Rejected {
            code: ResponseError::MessageTooLarge,
            message: format!(
                "the record batch of {} bytes is larger than the broker's limit of {BATCH_BYTES_MAX} bytes",
                batch.len()
            ),
            record_errors: Vec::new(),
        });
    }
    let header = shoal_storage::validate_batch(&batch).map_err(|defect| Rejected {
        code: if defect.is_corruption() {
            ResponseError::CorruptMessage
        } else {
            ResponseError::InvalidRecord
        },
        message: defect.describe().to_string(),
        record_errors: Vec::new(),
    })?;
    if header.size_bytes != batch.len() {
        return Err(Rejected::invalid(
            "a produce request carries exactly one record batch per partition",
        ));
    }
    check_batch_rules(&batch)?;
    let codec = attributes(&batch) & COMPRESSION_MASK;
    let target = target_codec(policy.compression, codec);
    let needs_records = target.is_some() || !header_clears_timestamps(&batch, policy, now_ms);
    let timestamps = if codec == 0 {
        Some(walk_uncompressed(&batch)?)
    } else if needs_records {
        Some(decode(&batch)?.iter().map(|r| r.timestamp).collect())
    } else {
        None
    };
    if let Some(timestamps) = &timestamps {
        check_timestamps(&batch, timestamps, policy, now_ms)?;
    }
    if policy.compacted {
        check_keys(&batch)?;
    }
    let mut batch = match target {
        Some(compression) => recompress(&batch, compression)?,
        None => batch,
    };
    let log_append_time_ms = if policy.timestamp_type == TimestampType::LogAppendTime {
        stamp_log_append_time(&mut batch, now_ms);
        now_ms
    } else {
        -1
    };
    Ok(Prepared {
        batch,
        log_append_time_ms,
    })
}

/// Kafka's `LogValidator.validateBatch` and `analyzeAndValidateRecords` for client batches.
fn check_batch_rules(batch: &[u8]) -> Result<(), Rejected> {
    let base_offset = be_i64(batch, BASE_OFFSET_AT);
    if base_offset != 0 {
        return Err(Rejected::invalid(format!(
            "the base offset of a produced batch must be 0, not {base_offset}"
        )));
    }
    let last_offset_delta = be_i32(batch, LAST_OFFSET_DELTA_AT);
    let count = be_i32(batch, RECORD_COUNT_AT);
    if last_offset_delta < 0 {
        return Err(Rejected::invalid(format!(
            "batch has an invalid offset range: last offset delta {last_offset_delta}"
        )));
    }
    if count <= 0 {
        return Err(Rejected::invalid(format!(
            "invalid reported count for record batch: {count}"
        )));
    }
    if i64::from(last_offset_delta) + 1 != i64::from(count) {
        return Err(Rejected::invalid(format!(
            "inconsistent batch offset range [0, {last_offset_delta}] and count of records {count}"
        )));
    }
    if attributes(batch) & CONTROL_BIT != 0 {
        return Err(Rejected::invalid(
            "clients are not allowed to write control records",
        ));
    }
    let producer_id = be_i64(batch, PRODUCER_ID_AT);
    let base_sequence = be_i32(batch, BASE_SEQUENCE_AT);
    if producer_id >= 0 && base_sequence < 0 {
        return Err(Rejected::invalid(format!(
            "invalid sequence number {base_sequence} in a batch of producer {producer_id}"
        )));
    }
    Ok(())
}

/// The codec to rewrite the batch into, if the topic asks for one the batch does not use.
fn target_codec(topic: TopicCompression, batch_codec: i16) -> Option<TopicCompression> {
    let topic_codec = match topic {
        TopicCompression::Producer => return None,
        TopicCompression::Uncompressed => 0,
        TopicCompression::Gzip(_) => 1,
        TopicCompression::Snappy => 2,
        TopicCompression::Lz4(_) => 3,
        TopicCompression::Zstd(_) => 4,
    };
    (topic_codec != batch_codec).then_some(topic)
}

/// Whether the header alone shows every record within the timestamp limits (so a compressed
/// batch need not be decoded). The max timestamp bounds every record from above; the base
/// (first) timestamp is not a lower bound, so a past limit always needs the records.
fn header_clears_timestamps(batch: &[u8], policy: &ProducePolicy, now_ms: i64) -> bool {
    if policy.timestamp_type == TimestampType::LogAppendTime {
        return attributes(batch) & LOG_APPEND_TIME_BIT == 0;
    }
    let max = be_i64(batch, MAX_TIMESTAMP_AT);
    let future_ok = max.saturating_sub(now_ms) <= policy.timestamp_after_max_ms;
    future_ok && policy.timestamp_before_max_ms == i64::MAX
}

/// Kafka's `LogValidator.validateTimestamp` for every record: (index, why) of each at fault.
fn check_timestamps(
    batch: &[u8],
    timestamps: &[i64],
    policy: &ProducePolicy,
    now_ms: i64,
) -> Result<(), Rejected> {
    let claims_log_append = attributes(batch) & LOG_APPEND_TIME_BIT != 0;
    let mut errors = Vec::new();
    for (index, &ts) in timestamps.iter().enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        if policy.timestamp_type == TimestampType::CreateTime && ts != NO_TIMESTAMP {
            let too_old = now_ms.saturating_sub(ts) > policy.timestamp_before_max_ms;
            let too_new = ts.saturating_sub(now_ms) > policy.timestamp_after_max_ms;
            if too_old || too_new {
                let low = now_ms.saturating_sub(policy.timestamp_before_max_ms);
                let high = now_ms.saturating_add(policy.timestamp_after_max_ms);
                errors.push((
                    index,
                    format!(
                        "timestamp {ts} of the record at index {index} is out of range: \
                         it must be within [{low}, {high}]"
                    ),
                ));
            }
        } else if claims_log_append {
            errors.push((
                index,
                "producers must not set the timestamp type to LogAppendTime".to_string(),
            ));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(Rejected {
        code: ResponseError::InvalidTimestamp,
        message: format!(
            "{} record(s) rejected for an invalid timestamp (first: {})",
            errors.len(),
            errors[0].1
        ),
        record_errors: errors,
    })
}

/// Reads a zigzag varint (Kafka's record fields) at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| "record runs past the end of the batch".to_string())?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
        if shift >= 63 {
            break;
        }
    }
    Err("record holds a malformed varint".to_string())
}

/// Skips a length-prefixed field (`-1`: null) of a record ending at `end`.
fn skip_bytes(bytes: &[u8], at: &mut usize, end: usize, what: &str) -> Result<(), String> {
    let len = varint(bytes, at)?;
    if len < -1 {
        return Err(format!("record has a negative {what} length {len}"));
    }
    let len = usize::try_from(len.max(0)).map_err(|_| format!("{what} too long"))?;
    if *at + len > end {
        return Err(format!("record {what} runs past the record's size"));
    }
    *at += len;
    Ok(())
}

/// Walks an uncompressed batch's records (Kafka's `DefaultRecord.readFrom` checks) and
/// returns their timestamps.
fn walk_uncompressed(batch: &[u8]) -> Result<Vec<i64>, Rejected> {
    let count = usize::try_from(be_i32(batch, RECORD_COUNT_AT)).unwrap_or(0);
    let base_timestamp = be_i64(batch, BASE_TIMESTAMP_AT);
    let mut timestamps = Vec::with_capacity(count.min(batch.len()));
    let mut at = RECORDS_AT;
    for index in 0..count {
        let framing = |why: String| Rejected::invalid(format!("record {index}: {why}"));
        let size = varint(batch, &mut at).map_err(framing)?;
        let size = usize::try_from(size).map_err(|_| framing(format!("negative size {size}")))?;
        let start = at;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= batch.len())
            .ok_or_else(|| framing(format!("size {size} runs past the batch")))?;
        at += 1; // Record attributes.
        let delta = varint(batch, &mut at).map_err(framing)?;
        let _offset_delta = varint(batch, &mut at).map_err(framing)?;
        skip_bytes(batch, &mut at, end, "key").map_err(framing)?;
        skip_bytes(batch, &mut at, end, "value").map_err(framing)?;
        let headers = varint(batch, &mut at).map_err(framing)?;
        if headers < 0 {
            return Err(framing(format!("invalid number of headers {headers}")));
        }
        for _ in 0..headers {
            let key_len = varint(batch, &mut at).map_err(framing)?;
            if key_len < 0 {
                return Err(framing(format!("negative header key size {key_len}")));
            }
            at -= varint_len(key_len);
            skip_bytes(batch, &mut at, end, "header key").map_err(framing)?;
            skip_bytes(batch, &mut at, end, "header value").map_err(framing)?;
        }
        if at != end {
            return Err(framing(format!(
                "expected to read {size} bytes of record, read {}",
                at - start
            )));
        }
        timestamps.push(base_timestamp.saturating_add(delta));
    }
    if at != batch.len() {
        return Err(Rejected::invalid(
            "incorrect declared batch size: records remain after the last one counted",
        ));
    }
    Ok(timestamps)
}

/// Bytes a zigzag varint of `value` takes.
fn varint_len(value: i64) -> usize {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while raw >= 0x80 {
        raw >>= 7;
        len += 1;
    }
    len
}

/// Kafka's rule for compacted topics: a record without a key could never be cleaned, so it
/// is refused (INVALID_RECORD, with the records at fault).
fn check_keys(batch: &[u8]) -> Result<(), Rejected> {
    let keyless: Vec<(i32, String)> = decode(batch)?
        .iter()
        .enumerate()
        .filter(|(_, record)| record.key.is_none())
        .map(|(index, _)| {
            let why = "Compacted topic cannot accept message without key.".to_string();
            (i32::try_from(index).unwrap_or(i32::MAX), why)
        })
        .collect();
    if keyless.is_empty() {
        return Ok(());
    }
    Err(Rejected {
        code: ResponseError::InvalidRecord,
        message: format!(
            "Compacted topic cannot accept message without key: {} of the batch's records have none",
            keyless.len()
        ),
        record_errors: keyless,
    })
}

fn decode(batch: &[u8]) -> Result<Vec<kafka_protocol::records::Record>, Rejected> {
    let mut bytes = Bytes::copy_from_slice(batch);
    RecordBatchDecoder::decode(&mut bytes)
        .map(|set| set.records)
        .map_err(|error| Rejected::invalid(format!("records do not decode: {error}")))
}

/// Decodes the batch and encodes it again with `target` at its level. kafka-protocol writes
/// the batch uncompressed (its own codecs have fixed levels); the records section is then
/// compressed here and the header's length, codec bits and CRC set to match. Snappy has no
/// level and needs Kafka's xerial framing, which kafka-protocol writes itself.
fn recompress(batch: &[u8], target: TopicCompression) -> Result<Vec<u8>, Rejected> {
    let records = decode(batch)?;
    let failed = |error: String| Rejected {
        code: ResponseError::UnknownServerError,
        message: format!("recompressing the batch failed: {error}"),
        record_errors: Vec::new(),
    };
    let compression = if target == TopicCompression::Snappy {
        Compression::Snappy
    } else {
        Compression::None
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    let mut encoded = BytesMut::with_capacity(batch.len());
    RecordBatchEncoder::encode(&mut encoded, &records, &options)
        .map_err(|error| failed(error.to_string()))?;
    let (codec, compressed) = match target {
        TopicCompression::Producer | TopicCompression::Uncompressed | TopicCompression::Snappy => {
            return Ok(encoded.to_vec())
        }
        TopicCompression::Gzip(level) => (1, gzip(&encoded[RECORDS_AT..], level)),
        TopicCompression::Lz4(level) => (3, lz4(&encoded[RECORDS_AT..], level)),
        TopicCompression::Zstd(level) => {
            (4, zstd::stream::encode_all(&encoded[RECORDS_AT..], level))
        }
    };
    let compressed = compressed.map_err(|error| failed(error.to_string()))?;
    let mut out = encoded[..RECORDS_AT].to_vec();
    out.extend_from_slice(&compressed);
    let length = i32::try_from(out.len() - 12).map_err(|_| failed("batch too large".into()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (attributes(&out) & !COMPRESSION_MASK) | codec;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert!(shoal_storage::validate_batch(&out).is_ok());
    Ok(out)
}

/// gzip at `compression.gzip.level` (-1: the codec's default), as Kafka's GZIP stream.
fn gzip(input: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let level =
        u32::try_from(level).map_or(flate2::Compression::default(), flate2::Compression::new);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder.write_all(input)?;
    encoder.finish()
}

/// LZ4 frames with independent blocks (Kafka's framing) at `compression.lz4.level`.
fn lz4(input: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = lz4::EncoderBuilder::new()
        .level(level)
        .block_mode(lz4::BlockMode::Independent)
        .build(Vec::new())?;
    encoder.write_all(input)?;
    let (compressed, result) = encoder.finish();
    result.map(|()| compressed)
}

/// LogAppendTime: the broker's time as the batch's max timestamp, with the attribute set;
/// the CRC covers both, so it is computed again.
fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = attributes(batch) | LOG_APPEND_TIME_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert!(shoal_storage::validate_batch(batch).is_ok());
}
