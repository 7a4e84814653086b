//! Handler behaviour the Kafka protocol and the Java client define, checked against the fake
//! cluster (whose offsets, high watermark and leader epoch behave as storage's do).

mod common;

use common::{run, Fake};
use kafka_protocol::messages::{
    fetch_request, produce_request, FetchRequest, ProduceRequest, TopicName,
};
use shoal_kafka::handlers;

fn tn(name: &str) -> TopicName {
    TopicName(common::s(name))
}

fn fetch(offset: i64, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tn("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn fetch_with_min_bytes_zero_answers_at_once() {
    let fake = Fake::with_topic("t", 1, 2);
    // Nothing at offset 4 yet: min_bytes 0 still answers without waiting (Kafka responds at
    // once when fetch.min.bytes <= 0).
    let response = run(handlers::fetch::handle(
        &fake,
        fetch(4, 0, 500),
        12,
        "test-client",
    ));
    assert_eq!(fake.waits.get(), 0, "min_bytes 0 must not long-poll");
    let partition = &response.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark), (0, 4));
    // min_bytes 1 with nothing there does wait (the fake's wait returns at once, so the
    // handler polls until max_wait_ms passes).
    let _ = run(handlers::fetch::handle(
        &fake,
        fetch(4, 1, 20),
        12,
        "test-client",
    ));
    assert!(fake.waits.get() > 0, "min_bytes 1 long-polls");
}

#[test]
fn fetch_never_serves_data_above_the_high_watermark() {
    let fake = Fake::with_topic("t", 1, 2);
    {
        let mut topics = fake.topics.borrow_mut();
        let log = &mut topics.get_mut("t").expect("t").logs[0];
        log.hold_watermark = true;
        let appended = log.append(common::real_batch(0, 9000).to_vec());
        assert!(appended.is_ok());
    }
    let response = run(handlers::fetch::handle(
        &fake,
        fetch(0, 0, 0),
        12,
        "test-client",
    ));
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 4, "log end is 6, the watermark 4");
    assert_eq!(
        partition.records.as_ref().map(|r| r.len()),
        Some(2 * common::real_batch_bytes()),
        "only the two batches below the watermark"
    );
}

#[test]
fn produce_appends_every_partition_of_every_topic_at_once() {
    let fake = Fake::with_topic("a", 2, 0);
    fake.add_topic("b", 1, 0);
    fake.add_topic("c", 1, 0);
    let topic = |name: &str, partitions: &[i32]| {
        produce_request::TopicProduceData::default()
            .with_name(tn(name))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|&p| {
                        produce_request::PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(common::real_batch(0, 1000)))
                    })
                    .collect(),
            )
    };
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![
            topic("a", &[0, 1]),
            topic("b", &[0]),
            topic("c", &[0]),
        ]);
    let response = run(handlers::produce::handle(&fake, request, 9)).expect("acks=-1 answers");
    let codes: Vec<i16> = response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes, vec![0, 0, 0, 0]);
    // A request for three topics waits for one round of appends, not three.
    assert_eq!(
        fake.appends_in_flight_max.get(),
        4,
        "all four appends overlap"
    );
}

fn metadata_partition(
    fake: &Fake,
    version: i16,
) -> kafka_protocol::messages::metadata_response::MetadataResponsePartition {
    let request = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(tn("t"))),
    ]));
    let response = run(handlers::metadata::handle(fake, request, version));
    response.topics[0].partitions[1].clone()
}

#[test]
fn metadata_reports_the_partition_epoch_and_offline_partitions_without_a_leader() {
    let fake = Fake::with_topic("t", 2, 1);
    let healthy = metadata_partition(&fake, 12);
    assert_eq!(
        (
            healthy.error_code,
            healthy.leader_id.0,
            healthy.leader_epoch
        ),
        (0, common::NODE_ID, common::LEADER_EPOCH)
    );
    fake.topics.borrow_mut().get_mut("t").expect("t").offline = vec![1];
    for version in [5, 7, 12] {
        let offline = metadata_partition(&fake, version);
        assert_eq!(
            offline.error_code,
            kafka_protocol::error::ResponseError::LeaderNotAvailable.code(),
            "v{version}"
        );
        assert_eq!(offline.leader_id.0, -1, "v{version}: no leader");
        assert_eq!(
            offline
                .offline_replicas
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>(),
            vec![common::NODE_ID],
            "v{version}"
        );
        let epoch = if version >= 7 {
            common::LEADER_EPOCH
        } else {
            -1
        };
        assert_eq!(
            offline.leader_epoch, epoch,
            "v{version}: the real epoch, not a guess"
        );
    }
}

#[test]
fn metadata_by_topic_id_is_served_from_v12_and_refused_before() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::MetadataRequest;
    let fake = Fake::with_topic("t", 1, 0);
    let id = uuid::Uuid::from_bytes(fake.topics.borrow()["t"].id);
    let unknown = uuid::Uuid::from_bytes([9; 16]);
    let by_id = |id: uuid::Uuid| {
        MetadataRequestTopic::default()
            .with_topic_id(id)
            .with_name(None)
    };
    let request = MetadataRequest::default().with_topics(Some(vec![by_id(id), by_id(unknown)]));
    let response = run(handlers::metadata::handle(&fake, request.clone(), 12));
    let got: Vec<_> = response
        .topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.name.as_ref().map(|n| n.0.to_string()),
                t.topic_id,
            )
        })
        .collect();
    let unknown_id = kafka_protocol::error::ResponseError::UnknownTopicId.code();
    assert_eq!(
        got,
        vec![(0, Some("t".to_string()), id), (unknown_id, None, unknown)]
    );
    assert_eq!(response.topics[0].partitions.len(), 1);
    // v10 and v11 carry ids in their schema, but Kafka serves them only from v12.
    for version in [10, 11] {
        let response = run(handlers::metadata::handle(&fake, request.clone(), version));
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        let invalid = kafka_protocol::error::ResponseError::InvalidRequest.code();
        assert_eq!(codes, vec![invalid, invalid], "v{version}");
    }
}

fn list_offsets(fake: &Fake, lookups: &[(i64, i32)]) -> Vec<(i16, i64, i64, i32)> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let partitions = lookups
        .iter()
        .map(|&(timestamp, current)| {
            ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)
                .with_current_leader_epoch(current)
        })
        .collect();
    let request = kafka_protocol::messages::ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(tn("t"))
            .with_partitions(partitions),
    ]);
    let response = run(handlers::list_offsets::handle(fake, request, 7));
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset, p.timestamp, p.leader_epoch))
        .collect()
}

#[test]
fn list_offsets_reports_kafkas_epochs_and_fences_stale_clients() {
    // Batches of two records: offsets 0-1 at 500/1000, 2-3 at 1500/2000, 4-5 at 2500/3000.
    let fake = Fake::with_topic("t", 1, 3);
    fake.topics.borrow_mut().get_mut("t").expect("t").logs[0].epochs = vec![(2, 0), (7, 4)];
    let epoch = common::LEADER_EPOCH;
    let fenced = kafka_protocol::error::ResponseError::FencedLeaderEpoch.code();
    let unknown = kafka_protocol::error::ResponseError::UnknownLeaderEpoch.code();
    assert_eq!(
        list_offsets(
            &fake,
            &[
                (-1, -1),
                (-2, epoch),
                (1500, epoch),
                (9999, -1),
                (-1, epoch - 1),
                (-1, epoch + 1)
            ]
        ),
        vec![
            (0, 6, -1, epoch),   // latest: the current epoch
            (0, 0, -1, 2),       // earliest: the oldest epoch
            (0, 2, 1500, epoch), // a record: its batch's epoch
            (0, -1, -1, -1),     // no record at or after: all -1
            (fenced, -1, -1, -1),
            (unknown, -1, -1, -1),
        ]
    );
}

#[test]
fn list_offsets_by_timestamp_never_answers_below_the_log_start() {
    let fake = Fake::with_topic("t", 1, 3);
    // DeleteRecords inside the first batch: offset 0 is gone, offset 1 (ts 1000) is not.
    let start = run(shoal_kafka::cluster::Cluster::delete_records(
        &fake,
        &shoal_kafka::cluster::TopicPartition {
            topic: "t".to_string(),
            partition: 0,
        },
        1,
    ));
    assert_eq!(start.map(|o| o.0), Ok(1));
    let epoch = common::LEADER_EPOCH;
    assert_eq!(
        list_offsets(&fake, &[(0, -1), (500, -1), (1000, -1), (-2, -1)]),
        vec![
            (0, 1, 1000, epoch),
            (0, 1, 1000, epoch),
            (0, 1, 1000, epoch),
            (0, 1, -1, epoch)
        ]
    );
}

#[test]
fn fetch_fences_a_stale_or_future_leader_epoch() {
    let fake = Fake::with_topic("t", 1, 1);
    let epoch = common::LEADER_EPOCH;
    let code = |current: i32| {
        let mut request = fetch(0, 0, 0);
        request.topics[0].partitions[0].current_leader_epoch = current;
        let response = run(handlers::fetch::handle(&fake, request, 12, "test-client"));
        let partition = &response.responses[0].partitions[0];
        (partition.error_code, partition.high_watermark)
    };
    assert_eq!(code(-1), (0, 2), "not given: no check");
    assert_eq!(code(epoch), (0, 2));
    let fenced = kafka_protocol::error::ResponseError::FencedLeaderEpoch.code();
    let unknown = kafka_protocol::error::ResponseError::UnknownLeaderEpoch.code();
    assert_eq!(code(epoch - 1), (fenced, -1));
    assert_eq!(code(epoch + 1), (unknown, -1));
}

#[test]
fn a_transaction_coordinator_lookup_fails_at_once_rather_than_being_retried() {
    // Transactions are not served: a retriable COORDINATOR_NOT_AVAILABLE made the Java
    // producer's initTransactions() wait for max.block.ms and kgo retry forever.
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    let fake = Fake::with_topic("t", 1, 0);
    for version in 1..=4 {
        let ask = |key_type: i8| {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("tx-1"))
                .with_key_type(key_type)
                .with_coordinator_keys(vec![StrBytes::from_static_str("tx-1")]);
            let response = run(handlers::groups::find_coordinator(&fake, request, version));
            if version >= 4 {
                assert_eq!(response.coordinators.len(), 1);
                let c = &response.coordinators[0];
                (c.error_code, c.node_id.0)
            } else {
                (response.error_code, response.node_id.0)
            }
        };
        assert_eq!(
            ask(0),
            (0, common::NODE_ID),
            "a group's coordinator is this node (v{version})"
        );
        assert_eq!(
            ask(1),
            (ResponseError::UnsupportedVersion.code(), -1),
            "transaction coordinator (v{version})"
        );
    }
}
