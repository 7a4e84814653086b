//! Work that changes state runs to completion whatever happens to the connection that asked
//! for it: a client that resets its connection while the broker is in the middle of its request
//! must not leave a metadata change half-applied.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{connect, frame, produce_request, read_response, start_with, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_topics(name: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
}

fn create(broker: &Broker, name: &str, partitions: i32) {
    let mut stream = connect(broker);
    stream
        .write_all(&frame(
            ApiKey::CreateTopics,
            5,
            1,
            &create_topics(name, partitions),
        ))
        .expect("send");
    let (_, response) = read_response(&mut stream, ApiKey::CreateTopics, 5).expect("answer");
    let ResponseKind::CreateTopics(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(body.topics[0].error_code, 0, "{name} created");
}

/// Produces one batch to `partition`; the error code.
fn produce_code(broker: &Broker, topic: &str, partition: i32) -> i16 {
    let mut stream = connect(broker);
    let records = Bytes::from(shoal_storage::build_batch(&[b"x"], 0));
    let mut request = produce_request(topic, records);
    request.topic_data[0].partition_data[0].index = partition;
    stream
        .write_all(&frame(ApiKey::Produce, 9, 1, &request))
        .expect("send");
    let (_, response) = read_response(&mut stream, ApiKey::Produce, 9).expect("answer");
    let ResponseKind::Produce(body) = response else {
        panic!("wrong response")
    };
    body.responses[0].partition_responses[0].error_code
}

use bytes::Bytes;

#[test]
fn a_create_topics_whose_client_resets_still_opens_every_partition() {
    // One core: the connection lands on the controller core, where the metadata change ran
    // inside the request's task and was cancelled with it.
    let broker = start_with("1", &[]);
    create(&broker, "quiet", 1);
    let partitions = 300;
    let stream = connect(&broker);
    // A long-polling fetch first: its response is written after the client is gone, that
    // write fails, and the connection's queued requests are dropped, CreateTopics among them,
    // while it is still opening its partitions.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(300)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("quiet"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let mut request = frame(ApiKey::Fetch, 12, 1, &fetch);
    request.extend(frame(
        ApiKey::CreateTopics,
        5,
        2,
        &create_topics("big", partitions),
    ));
    (&stream).write_all(&request).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    let socket = socket2::Socket::from(stream);
    socket
        .set_linger(Some(Duration::ZERO))
        .expect("linger 0: close with RST");
    drop(socket);
    // However the connection ended, the topic is either absent or whole: every partition the
    // metadata lists takes a produce (NOT_LEADER_OR_FOLLOWER forever means a log never opened).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unopened = Vec::new();
    for partition in 0..partitions {
        loop {
            let code = produce_code(&broker, "big", partition);
            if code == 0 {
                break;
            }
            if Instant::now() > deadline {
                unopened.push((partition, code));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(unopened.is_empty(), "partitions never opened: {unopened:?}");
}
