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
    let response = run(handlers::fetch::handle(&fake, fetch(4, 0, 500), 12));
    assert_eq!(fake.waits.get(), 0, "min_bytes 0 must not long-poll");
    let partition = &response.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark), (0, 4));
    // min_bytes 1 with nothing there does wait (the fake's wait returns at once, so the
    // handler polls until max_wait_ms passes).
    let _ = run(handlers::fetch::handle(&fake, fetch(4, 1, 20), 12));
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
    let response = run(handlers::fetch::handle(&fake, fetch(0, 0, 0), 12));
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
