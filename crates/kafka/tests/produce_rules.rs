//! Produced batches are checked and rewritten as Kafka's LogValidator does (`records.rs`),
//! through the Produce handler: batch rules (INVALID_RECORD), per-record timestamp errors with
//! KIP-467 `record_errors`, the transactional gate, `min.insync.replicas`, LogAppendTime and
//! broker-side recompression.

mod common;

use bytes::Bytes;
use common::{run, Fake, NOW_MS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use shoal_kafka::cluster::{ProducePolicy, TimestampType, TopicCompression};
use shoal_kafka::handlers;

fn request(batches: Vec<Vec<u8>>, acks: i16) -> ProduceRequest {
    let partitions = batches
        .into_iter()
        .map(|batch| {
            PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(acks)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(common::s("t")))
            .with_partition_data(partitions)])
}

fn produce(fake: &Fake, batches: Vec<Vec<u8>>, version: i16) -> Vec<PartitionProduceResponse> {
    let response = run(handlers::produce::handle(
        fake,
        request(batches, -1),
        version,
    ))
    .expect("answers");
    response.responses[0].partition_responses.clone()
}

fn fake_with(policy: ProducePolicy) -> Fake {
    let fake = Fake::with_topic("t", 1, 0);
    fake.topics.borrow_mut().get_mut("t").expect("t").produce = policy;
    fake
}

/// A batch whose header field at `at` is rewritten (CRC made valid again).
fn patched(mut batch: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn stored(fake: &Fake) -> Vec<Bytes> {
    fake.topics.borrow()["t"].logs[0]
        .batches
        .iter()
        .map(|b| b.3.clone())
        .collect()
}

#[test]
fn batches_that_break_kafkas_batch_rules_are_invalid_records() {
    let fake = Fake::with_topic("t", 1, 0);
    let good = shoal_storage::build_batch(&[b"a", b"b"], NOW_MS);
    let mut control = good.clone();
    control[22] |= 0x20;
    let mut idempotent = shoal_storage::build_idempotent_batch(&[b"a"], 7, 0, 0);
    idempotent = patched(idempotent, 53, &(-1i32).to_be_bytes());
    let cases = vec![
        (
            "base offset not 0",
            patched(good.clone(), 0, &5i64.to_be_bytes()),
        ),
        (
            "count above the offset range",
            patched(good.clone(), 57, &3i32.to_be_bytes()),
        ),
        (
            "count below the offset range",
            patched(good.clone(), 57, &1i32.to_be_bytes()),
        ),
        (
            "zero records",
            patched(
                patched(good.clone(), 57, &0i32.to_be_bytes()),
                23,
                &0i32.to_be_bytes(),
            ),
        ),
        ("control batch", patched(control, 0, &0i64.to_be_bytes())),
        ("negative base sequence", idempotent),
        // Record framing: the first record's size varint claims one byte more.
        ("record framing", {
            let mut bytes = good.clone();
            bytes[61] += 2;
            patched(bytes, 0, &0i64.to_be_bytes())
        }),
    ];
    for (what, batch) in cases {
        let response = produce(&fake, vec![batch], 9);
        assert_eq!(
            response[0].error_code,
            ResponseError::InvalidRecord.code(),
            "{what}: {:?}",
            response[0].error_message
        );
        assert_eq!(response[0].base_offset, -1, "{what}");
    }
    assert!(stored(&fake).is_empty(), "nothing refused was written");
    let response = produce(&fake, vec![good], 9);
    assert_eq!(response[0].error_code, 0, "a good batch still goes in");
}

#[test]
fn a_transactional_batch_fails_the_request_without_transactions() {
    let fake = Fake::with_topic("t", 1, 0);
    let mut transactional = shoal_storage::build_idempotent_batch(&[b"a"], 7, 0, 0);
    transactional[22] |= 0x10;
    let transactional = patched(transactional, 0, &0i64.to_be_bytes());
    let plain = shoal_storage::build_batch(&[b"b"], NOW_MS);
    let response = produce(&fake, vec![plain, transactional], 9);
    let denied = ResponseError::TransactionalIdAuthorizationFailed.code();
    assert_eq!(
        response.iter().map(|p| p.error_code).collect::<Vec<_>>(),
        vec![denied, denied],
        "the whole request, as Kafka's gate does"
    );
    assert!(stored(&fake).is_empty());
}

#[test]
fn records_out_of_the_timestamp_limits_are_named_in_record_errors() {
    let fake = fake_with(ProducePolicy {
        timestamp_before_max_ms: 60_000,
        ..ProducePolicy::default()
    });
    let two_hours = 2 * 3_600_000;
    let batch = shoal_storage::build_timed_batch(&[
        (b"now", NOW_MS),
        (b"future", NOW_MS + two_hours),
        (b"past", NOW_MS - two_hours),
        (b"now", NOW_MS),
    ]);
    for version in common::advertised(kafka_protocol::messages::ApiKey::Produce) {
        let whole = run(handlers::produce::handle(
            &fake,
            request(vec![batch.clone()], -1),
            version,
        ))
        .expect("answers");
        common::assert_round_trip(
            kafka_protocol::messages::ApiKey::Produce,
            version,
            &kafka_protocol::messages::ResponseKind::Produce(whole.clone()),
        );
        let response = whole.responses[0].partition_responses.clone();
        assert_eq!(
            response[0].error_code,
            ResponseError::InvalidTimestamp.code()
        );
        let indexes: Vec<i32> = response[0]
            .record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect();
        if version >= 8 {
            assert_eq!(indexes, vec![1, 2], "v{version}: the two records at fault");
            assert!(response[0].error_message.is_some());
        } else {
            assert!(indexes.is_empty(), "v{version} has no record_errors");
        }
    }
    assert!(stored(&fake).is_empty());
}

#[test]
fn log_append_time_topics_stamp_the_broker_time() {
    let fake = fake_with(ProducePolicy {
        timestamp_type: TimestampType::LogAppendTime,
        ..ProducePolicy::default()
    });
    // A client timestamp far in the past is not checked on a LogAppendTime topic.
    let batch = shoal_storage::build_batch(&[b"x"], 1000);
    let response = produce(&fake, vec![batch], 9);
    assert_eq!(response[0].error_code, 0);
    assert_eq!(response[0].log_append_time_ms, NOW_MS);
    let stored = stored(&fake);
    let header = shoal_storage::validate_batch(&stored[0]).expect("valid after the rewrite");
    assert_eq!(header.max_timestamp.0, NOW_MS);
    assert_ne!(stored[0][22] & 0x08, 0, "LogAppendTime attribute set");
    // On a CreateTime topic the response says -1.
    let fake = Fake::with_topic("t", 1, 0);
    let response = produce(&fake, vec![shoal_storage::build_batch(&[b"x"], NOW_MS)], 9);
    assert_eq!(response[0].log_append_time_ms, -1);
}

#[test]
fn compression_type_recompresses_with_the_topics_codec() {
    for (topic, codec) in [
        (TopicCompression::Zstd(7), Compression::Zstd),
        (TopicCompression::Lz4(12), Compression::Lz4),
        (TopicCompression::Gzip(1), Compression::Gzip),
        (TopicCompression::Snappy, Compression::Snappy),
    ] {
        let fake = fake_with(ProducePolicy {
            compression: topic,
            ..ProducePolicy::default()
        });
        let values: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("value {i} ").repeat(20).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = shoal_storage::build_idempotent_batch(&refs, 42, 3, 100);
        let response = produce(&fake, vec![batch.clone()], 9);
        assert_eq!(
            response[0].error_code, 0,
            "{topic:?}: {:?}",
            response[0].error_message
        );
        let mut stored = stored(&fake)[0].clone();
        assert!(stored.len() < batch.len(), "{topic:?}: compressed");
        let set = RecordBatchDecoder::decode(&mut stored).expect("decodes");
        assert_eq!(set.compression, codec);
        let got: Vec<Vec<u8>> = set
            .records
            .iter()
            .map(|r| r.value.clone().expect("value").to_vec())
            .collect();
        assert_eq!(got, values, "{topic:?}: same records");
        let first = &set.records[0];
        assert_eq!(
            (first.producer_id, first.producer_epoch, first.sequence),
            (42, 3, 100)
        );
    }
}

#[test]
fn min_insync_replicas_above_the_isr_refuses_acks_all_only() {
    let fake = fake_with(ProducePolicy {
        min_insync_replicas: 2,
        ..ProducePolicy::default()
    });
    let batch = shoal_storage::build_batch(&[b"x"], NOW_MS);
    let response = produce(&fake, vec![batch.clone()], 9);
    assert_eq!(
        response[0].error_code,
        ResponseError::NotEnoughReplicas.code()
    );
    let acks_one =
        run(handlers::produce::handle(&fake, request(vec![batch], 1), 9)).expect("answers");
    assert_eq!(acks_one.responses[0].partition_responses[0].error_code, 0);
}

#[test]
fn a_batch_above_the_brokers_hard_limit_is_message_too_large_not_corrupt() {
    // Kafka checks the size before the CRC: a complete, valid batch that is too large is
    // MESSAGE_TOO_LARGE (the Java client fails it with RecordTooLargeException, or splits it),
    // never CORRUPT_MESSAGE, which clients retry until their delivery timeout.
    let fake = Fake::with_topic("t", 1, 0);
    let limit = shoal_model::constants::BATCH_BYTES_MAX;
    let value = vec![7u8; limit - 61 - 16];
    let fits = shoal_storage::build_batch(&[&value], NOW_MS);
    assert!(fits.len() <= limit);
    assert_eq!(produce(&fake, vec![fits], 9)[0].error_code, 0);
    let too_large = shoal_storage::build_batch(&[&vec![7u8; limit - 61]], NOW_MS);
    assert!(too_large.len() > limit);
    let response = produce(&fake, vec![too_large], 9);
    assert_eq!(
        response[0].error_code,
        ResponseError::MessageTooLarge.code(),
        "{:?}",
        response[0].error_message
    );
    assert_eq!(response[0].base_offset, -1);
    assert_eq!(stored(&fake).len(), 1, "only the batch that fits is stored");
}
