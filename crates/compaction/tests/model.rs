//! Compaction against a model: batches written by kafka-protocol's encoder (an independent
//! implementation of the format, every codec), cleaned pass after pass through the crate's
//! public API as storage drives it (map pass from the first dirty offset until the map is
//! full, then a clean pass from the log start), read back with kafka-protocol's decoder.
//! What must hold:
//! - every key's latest record survives, with its offset, timestamp, value and headers;
//!   nothing else with a key survives, and no record without one;
//! - offsets are kept: every batch left has the base and last offset of an original batch,
//!   in the original order; each idempotent producer's last batch is still there;
//! - tombstones survive the cleanings before their horizon and go in the first one after;
//! - a cleaning of a clean log changes nothing.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use shoal_compaction::{
    clean_batch, index_batch, next_offset, BatchHeader, CleanRules, CleanStats, Cleaned, Indexed,
    OffsetMap, SLOT_BYTES,
};
use shoal_model::Offset;

const RETENTION_MS: i64 = 10_000;

#[derive(Clone, Debug)]
struct Rec {
    key: Option<u8>,
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    header: bool,
    timestamp_step: i64,
}

#[derive(Clone, Debug)]
struct Spec {
    records: Vec<Rec>,
    codec: u8,
    producer: Option<i64>,
    log_append_time: bool,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        prop_oneof![1 => Just(None), 12 => (0u8..10).prop_map(Some)],
        prop_oneof![1 => Just(None), 4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some)],
        any::<bool>(),
        -5i64..200,
    )
        .prop_map(|(key, value, header, timestamp_step)| Rec {
            key,
            value,
            header,
            timestamp_step,
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(rec(), 1..9),
        0u8..5,
        prop_oneof![Just(None), (1i64..4).prop_map(Some)],
        prop::bool::weighted(0.15),
    )
        .prop_map(|(records, codec, producer, log_append_time)| Spec {
            records,
            codec,
            producer,
            log_append_time,
        })
}

/// What a reader sees of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

struct Writer {
    next_offset: i64,
    clock_ms: i64,
    sequences: BTreeMap<i64, i32>,
    /// Every record written, in offset order.
    written: Vec<Seen>,
}

impl Writer {
    fn encode(&mut self, spec: &Spec) -> Vec<u8> {
        let base_sequence = spec
            .producer
            .map_or(-1, |pid| *self.sequences.get(&pid).unwrap_or(&0));
        let records: Vec<Record> = spec
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.clock_ms += r.timestamp_step;
                let mut headers = IndexMap::new();
                if r.header {
                    headers.insert(
                        StrBytes::from_static_str("h"),
                        Some(Bytes::from_static(b"v")),
                    );
                }
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 3,
                    producer_id: spec.producer.unwrap_or(-1),
                    producer_epoch: if spec.producer.is_some() { 0 } else { -1 },
                    timestamp_type: if spec.log_append_time {
                        TimestampType::LogAppend
                    } else {
                        TimestampType::Creation
                    },
                    offset: self.next_offset + i as i64,
                    // kafka-protocol batches records whose offset - sequence agree; a batch without
                    // a producer gets base sequence -1 from its first record.
                    sequence: base_sequence + i as i32,
                    timestamp: self.clock_ms,
                    key: r.key.map(|k| Bytes::from(vec![b'k', k])),
                    value: r.value.clone().map(Bytes::from),
                    headers,
                }
            })
            .collect();
        let compression = match spec.codec {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            _ => Compression::Zstd,
        };
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encodes");
        if let Some(pid) = spec.producer {
            let _ = self
                .sequences
                .insert(pid, base_sequence + records.len() as i32);
        }
        self.next_offset += records.len() as i64;
        let batch = out.to_vec();
        // Read it back the way a reader will, so LogAppendTime timestamps are the batch's.
        self.written.extend(decode(&batch));
        batch
    }
}

fn decode(log_bytes: &[u8]) -> Vec<Seen> {
    let mut bytes = Bytes::copy_from_slice(log_bytes);
    let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("the cleaned log decodes");
    sets.into_iter()
        .flat_map(|set| set.records)
        .map(|r| Seen {
            offset: r.offset,
            key: r.key.map(|k| k.to_vec()),
            value: r.value.map(|v| v.to_vec()),
            timestamp: r.timestamp,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                .collect(),
        })
        .collect()
}

fn crc_ok(batch: &[u8]) -> bool {
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    crc32c::crc32c(&batch[21..]) == stored
}

/// A log as storage holds it, cleaned the way storage drives the crate.
struct Log {
    batches: Vec<Vec<u8>>,
    /// The first offset not yet covered by a map pass.
    first_dirty: Offset,
    map: OffsetMap,
}

impl Log {
    /// Whether `batch` is its producer's last batch in the log (kept even when emptied).
    fn is_producers_last(&self, at: usize) -> bool {
        let header = BatchHeader::parse(&self.batches[at]).expect("header");
        header.has_producer_id()
            && !self.batches[at + 1..].iter().any(|later| {
                BatchHeader::parse(later).expect("header").producer_id == header.producer_id
            })
    }

    /// One cleaning: returns whether the dirty range was mapped to its end.
    fn clean_once(&mut self, now_ms: i64) -> (bool, CleanStats) {
        self.map.clear();
        let mut end = self.first_dirty;
        let mut reached_end = true;
        for batch in &self.batches {
            if next_offset(batch).expect("offset") <= self.first_dirty {
                continue;
            }
            match index_batch(batch, &mut self.map).expect("indexes") {
                Indexed::Added { .. } => end = next_offset(batch).expect("offset"),
                Indexed::Full => {
                    reached_end = false;
                    break;
                }
            }
        }
        let rules = CleanRules {
            now_ms,
            delete_retention_ms: RETENTION_MS,
        };
        let mut stats = CleanStats::default();
        let mut cleaned = Vec::with_capacity(self.batches.len());
        for at in 0..self.batches.len() {
            let batch = &self.batches[at];
            if BatchHeader::parse(batch).expect("header").base_offset >= end {
                cleaned.push(batch.clone());
                continue;
            }
            let keep_if_empty = self.is_producers_last(at);
            let (outcome, batch_stats) =
                clean_batch(batch, &self.map, &rules, keep_if_empty).expect("cleans");
            stats.add(&batch_stats);
            match outcome {
                Cleaned::Unchanged => cleaned.push(batch.clone()),
                Cleaned::Rewritten(bytes) => {
                    assert!(crc_ok(&bytes), "a rewritten batch's CRC");
                    cleaned.push(bytes);
                }
                Cleaned::Removed => assert!(!keep_if_empty),
            }
        }
        self.batches = cleaned;
        self.first_dirty = end;
        (reached_end, stats)
    }

    fn clean_all(&mut self, now_ms: i64) {
        for _ in 0..1000 {
            if self.clean_once(now_ms).0 {
                return;
            }
        }
        panic!("cleaning never reached the end of the dirty range");
    }

    fn bytes(&self) -> Vec<u8> {
        self.batches.concat()
    }
}

/// The model: every keyed record that is its key's latest, minus tombstones if expired.
fn expected(written: &[Seen], tombstones_expired: bool) -> Vec<Seen> {
    let mut latest: BTreeMap<Vec<u8>, &Seen> = BTreeMap::new();
    for seen in written {
        if let Some(key) = &seen.key {
            let _ = latest.insert(key.clone(), seen);
        }
    }
    let mut out: Vec<Seen> = latest
        .into_values()
        .filter(|s| !(tombstones_expired && s.value.is_none()))
        .cloned()
        .collect();
    out.sort_by_key(|s| s.offset);
    out
}

fn check_structure(log: &Log, originals: &[(i64, i64, i64)]) {
    // Every batch left spans an original batch's offsets, in order.
    let mut last = -1;
    for batch in &log.batches {
        let h = BatchHeader::parse(batch).expect("header");
        let span = (h.base_offset.0, h.last_offset().0);
        let original = originals.iter().find(|o| (o.0, o.1) == span);
        let original = original.unwrap_or_else(|| panic!("batch {span:?} is no original"));
        assert!(span.0 > last, "batches in order");
        last = span.1;
        assert_eq!(original.2, h.producer_id, "producer id kept");
    }
    // Each producer's last original batch is still there.
    let mut last_of: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &(base, last, pid) in originals {
        if pid >= 0 {
            let _ = last_of.insert(pid, (base, last));
        }
    }
    for (pid, span) in last_of {
        assert!(
            log.batches.iter().any(|b| {
                let h = BatchHeader::parse(b).expect("header");
                (h.base_offset.0, h.last_offset().0) == span
            }),
            "producer {pid}'s last batch {span:?} was removed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compaction_keeps_the_latest_of_every_key(
        first in proptest::collection::vec(spec(), 1..25),
        second in proptest::collection::vec(spec(), 0..15),
        budget_slots in 16usize..200,
    ) {
        let mut writer = Writer { next_offset: 0, clock_ms: 1_000_000, sequences: BTreeMap::new(), written: Vec::new() };
        let mut originals = Vec::new();
        let mut log = Log {
            batches: Vec::new(),
            first_dirty: Offset(0),
            map: OffsetMap::with_budget(budget_slots * SLOT_BYTES),
        };
        for spec in &first {
            let batch = writer.encode(spec);
            let h = BatchHeader::parse(&batch).expect("header");
            originals.push((h.base_offset.0, h.last_offset().0, h.producer_id));
            log.batches.push(batch);
        }
        let now = writer.clock_ms;
        log.clean_all(now);
        check_structure(&log, &originals);
        prop_assert_eq!(decode(&log.bytes()), expected(&writer.written, false));

        // More writes, another cleaning, still before any tombstone's horizon.
        for spec in &second {
            let batch = writer.encode(spec);
            let h = BatchHeader::parse(&batch).expect("header");
            originals.push((h.base_offset.0, h.last_offset().0, h.producer_id));
            log.batches.push(batch);
        }
        log.clean_all(now + RETENTION_MS - 1);
        check_structure(&log, &originals);
        prop_assert_eq!(decode(&log.bytes()), expected(&writer.written, false));

        // Cleaning a clean log changes nothing.
        let before = log.batches.clone();
        log.clean_all(now + RETENTION_MS - 1);
        prop_assert_eq!(&before, &log.batches);

        // Past every horizon set so far: the tombstones go, everything else stays. (Tombstones
        // first cleaned by the second cleaning got a later horizon, hence the margin.)
        log.clean_all(now + 3 * RETENTION_MS);
        check_structure(&log, &originals);
        prop_assert_eq!(decode(&log.bytes()), expected(&writer.written, true));
    }
}

#[test]
fn a_tombstone_first_cleaned_gets_its_horizon_and_goes_after_it() {
    let mut writer = Writer {
        next_offset: 0,
        clock_ms: 5_000,
        sequences: BTreeMap::new(),
        written: Vec::new(),
    };
    let put = |key: u8, value: Option<&[u8]>| Rec {
        key: Some(key),
        value: value.map(<[u8]>::to_vec),
        header: false,
        timestamp_step: 1,
    };
    let batch = writer.encode(&Spec {
        records: vec![put(1, Some(b"a")), put(2, Some(b"b")), put(1, None)],
        codec: 1,
        producer: None,
        log_append_time: false,
    });
    let mut map = OffsetMap::with_budget(1 << 12);
    assert_eq!(
        index_batch(&batch, &mut map).expect("indexes"),
        Indexed::Added { keys: 3 }
    );
    let rules = CleanRules {
        now_ms: 100_000,
        delete_retention_ms: RETENTION_MS,
    };
    let (cleaned, stats) = clean_batch(&batch, &map, &rules, false).expect("cleans");
    let Cleaned::Rewritten(first) = cleaned else {
        panic!("expected a rewrite, got {cleaned:?}")
    };
    assert_eq!(
        (
            stats.records_read,
            stats.records_kept,
            stats.superseded_dropped
        ),
        (3, 2, 1)
    );
    let header = BatchHeader::parse(&first).expect("header");
    assert_eq!(header.delete_horizon_ms(), Some(100_000 + RETENTION_MS));
    assert_eq!(header.record_count, 2);
    assert_eq!(
        header.last_offset(),
        Offset(2),
        "the last offset delta is kept"
    );
    // The records still read with their own timestamps, against the new base.
    let seen = decode(&first);
    assert_eq!(
        seen.iter()
            .map(|s| (s.offset, s.timestamp))
            .collect::<Vec<_>>(),
        vec![(1, 5_002), (2, 5_003)]
    );

    // Before the horizon: nothing to do. After it: the tombstone goes, the value stays.
    let before = CleanRules {
        now_ms: 100_000 + RETENTION_MS - 1,
        ..rules
    };
    assert_eq!(
        clean_batch(&first, &map, &before, false).expect("cleans").0,
        Cleaned::Unchanged
    );
    let after = CleanRules {
        now_ms: 100_000 + RETENTION_MS,
        ..rules
    };
    let (cleaned, stats) = clean_batch(&first, &map, &after, false).expect("cleans");
    let Cleaned::Rewritten(second) = cleaned else {
        panic!("expected a rewrite, got {cleaned:?}")
    };
    assert_eq!(stats.tombstones_dropped, 1);
    let seen = decode(&second);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].offset, seen[0].value.as_deref()),
        (1, Some(&b"b"[..]))
    );
}

#[test]
fn an_emptied_batch_goes_unless_it_is_its_producers_last() {
    let mut writer = Writer {
        next_offset: 0,
        clock_ms: 5_000,
        sequences: BTreeMap::new(),
        written: Vec::new(),
    };
    let put = |value: &[u8]| Rec {
        key: Some(7),
        value: Some(value.to_vec()),
        header: false,
        timestamp_step: 1,
    };
    let spec = |value: &[u8]| Spec {
        records: vec![put(value)],
        codec: 4,
        producer: Some(9),
        log_append_time: false,
    };
    let old = writer.encode(&spec(b"old"));
    let new = writer.encode(&spec(b"new"));
    let mut map = OffsetMap::with_budget(1 << 12);
    for batch in [&old, &new] {
        let _ = index_batch(batch, &mut map).expect("indexes");
    }
    let rules = CleanRules {
        now_ms: 0,
        delete_retention_ms: RETENTION_MS,
    };
    assert_eq!(
        clean_batch(&old, &map, &rules, false).expect("cleans").0,
        Cleaned::Removed
    );
    let Cleaned::Rewritten(empty) = clean_batch(&old, &map, &rules, true).expect("cleans").0 else {
        panic!("kept empty")
    };
    let header = BatchHeader::parse(&empty).expect("header");
    let original = BatchHeader::parse(&old).expect("header");
    assert_eq!(header.record_count, 0);
    assert_eq!(
        (
            header.base_offset,
            header.last_offset_delta,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (
            original.base_offset,
            original.last_offset_delta,
            original.producer_id,
            original.producer_epoch,
            original.base_sequence
        )
    );
    assert!(crc_ok(&empty));
    assert_eq!(
        clean_batch(&new, &map, &rules, true).expect("cleans").0,
        Cleaned::Unchanged
    );
}

#[test]
fn a_full_map_ends_the_pass_at_a_batch_boundary() {
    let mut writer = Writer {
        next_offset: 0,
        clock_ms: 5_000,
        sequences: BTreeMap::new(),
        written: Vec::new(),
    };
    let recs = |n: u8| {
        (0..n)
            .map(|k| Rec {
                key: Some(k),
                value: Some(vec![k]),
                header: false,
                timestamp_step: 1,
            })
            .collect()
    };
    let mut map = OffsetMap::with_budget(16 * SLOT_BYTES); // 14 keys
    let first = writer.encode(&Spec {
        records: recs(8),
        codec: 0,
        producer: None,
        log_append_time: false,
    });
    let second = writer.encode(&Spec {
        records: recs(8),
        codec: 0,
        producer: None,
        log_append_time: false,
    });
    assert_eq!(
        index_batch(&first, &mut map).expect("indexes"),
        Indexed::Added { keys: 8 }
    );
    assert_eq!(
        index_batch(&second, &mut map).expect("indexes"),
        Indexed::Full
    );
    assert_eq!(map.len(), 8, "nothing of the batch that did not fit");
}

#[test]
fn damaged_records_are_an_error_not_a_panic() {
    let mut writer = Writer {
        next_offset: 0,
        clock_ms: 5_000,
        sequences: BTreeMap::new(),
        written: Vec::new(),
    };
    let batch = writer.encode(&Spec {
        records: vec![Rec {
            key: Some(1),
            value: Some(b"value".to_vec()),
            header: true,
            timestamp_step: 1,
        }],
        codec: 0,
        producer: None,
        log_append_time: false,
    });
    let map = OffsetMap::with_budget(1 << 12);
    let rules = CleanRules {
        now_ms: 0,
        delete_retention_ms: 0,
    };
    for cut in 61..batch.len() {
        let mut damaged = batch[..cut].to_vec();
        let length = (cut - 12) as i32;
        damaged[8..12].copy_from_slice(&length.to_be_bytes());
        let mut m = OffsetMap::with_budget(1 << 12);
        assert!(index_batch(&damaged, &mut m).is_err(), "cut at {cut}");
        assert!(
            clean_batch(&damaged, &map, &rules, false).is_err(),
            "cut at {cut}"
        );
    }
    let mut compressed_garbage = batch.clone();
    compressed_garbage[22] |= 3; // lz4, over bytes that are none
    assert!(clean_batch(&compressed_garbage, &map, &rules, false).is_err());
    assert!(BatchHeader::parse(&batch[..30]).is_err());
}
