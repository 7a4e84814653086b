//! The real `shoal` binary on loopback, driven with raw Kafka frames: bad input is answered
//! with the right error code or closes only the offending connection, responses on one
//! connection keep request order under pipelining, and nothing acknowledged is lost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    closed, connect, frame, free_port, produce_request, read_response, shoal, start, Broker,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn api_versions_ok(broker: &Broker) {
    let mut stream = connect(broker);
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .expect("write");
    let (correlation, response) =
        read_response(&mut stream, ApiKey::ApiVersions, 3).expect("answer");
    assert_eq!(correlation, 1);
    let ResponseKind::ApiVersions(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(body.error_code, 0);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("oversized request", (64i32 << 20).to_be_bytes().to_vec()),
        (
            "unknown api key",
            frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default())
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 5 { 0x7f } else { b })
                .collect(),
        ),
        (
            "unsupported produce version",
            frame(ApiKey::Produce, 3, 8, &ProduceRequest::default())
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 7 { 99 } else { b })
                .collect(),
        ),
        ("garbage body", {
            let mut f = frame(ApiKey::Metadata, 9, 9, &MetadataRequest::default());
            let len = f.len();
            f[len - 3..].copy_from_slice(&[0xff, 0xff, 0xff]);
            f
        }),
    ];
    for (name, bytes) in cases {
        let mut stream = connect(&broker);
        stream.write_all(&bytes).expect("write");
        assert!(closed(&mut stream), "{name}: connection should be closed");
        api_versions_ok(&broker);
    }
    // A truncated frame followed by a hang-up leaves the broker serving others.
    let mut stream = connect(&broker);
    stream.write_all(&100i32.to_be_bytes()).expect("write");
    stream.write_all(&[0u8; 10]).expect("write");
    drop(stream);
    api_versions_ok(&broker);
}

#[test]
fn api_versions_of_an_unknown_version_gets_the_v0_fallback() {
    let broker = start();
    let mut stream = connect(&broker);
    let mut request = frame(ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default());
    request[6..8].copy_from_slice(&99i16.to_be_bytes()); // api_version = 99
    stream.write_all(&request).expect("write");
    let (correlation, response) =
        read_response(&mut stream, ApiKey::ApiVersions, 0).expect("answer");
    assert_eq!(correlation, 42);
    let ResponseKind::ApiVersions(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(
        !body.api_keys.is_empty(),
        "the table comes with the error so the client can retry"
    );
}

#[test]
fn corrupt_batches_and_bad_topic_names_get_kafka_errors_and_lose_nothing() {
    let broker = start();
    let mut stream = connect(&broker);
    let good = shoal_storage::build_batch(&[b"kept"], 1_000);
    stream
        .write_all(&frame(
            ApiKey::Produce,
            7,
            1,
            &produce_request("orders", Bytes::from(good)),
        ))
        .expect("write");
    let (_, response) = read_response(&mut stream, ApiKey::Produce, 7).expect("answer");
    let ResponseKind::Produce(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(body.responses[0].partition_responses[0].error_code, 0);

    let mut bad = shoal_storage::build_batch(&[b"damaged"], 1_000);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    stream
        .write_all(&frame(
            ApiKey::Produce,
            7,
            2,
            &produce_request("orders", Bytes::from(bad)),
        ))
        .expect("write");
    let (_, response) = read_response(&mut stream, ApiKey::Produce, 7).expect("answer");
    let ResponseKind::Produce(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(
        body.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );

    let topic = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("bad/name"))));
    let request = MetadataRequest::default()
        .with_topics(Some(vec![topic]))
        .with_allow_auto_topic_creation(true);
    stream
        .write_all(&frame(ApiKey::Metadata, 9, 3, &request))
        .expect("write");
    let (_, response) = read_response(&mut stream, ApiKey::Metadata, 9).expect("answer");
    let ResponseKind::Metadata(body) = response else {
        panic!("wrong response")
    };
    assert_eq!(body.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");

    // The good batch is still there, alone, at offset 0.
    let partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("orders")))
        .with_partitions(vec![partition]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic]);
    stream
        .write_all(&frame(ApiKey::Fetch, 11, 4, &fetch))
        .expect("write");
    let (_, response) = read_response(&mut stream, ApiKey::Fetch, 11).expect("answer");
    let ResponseKind::Fetch(body) = response else {
        panic!("wrong response")
    };
    let data = &body.responses[0].partitions[0];
    assert_eq!((data.error_code, data.high_watermark), (0, 1));
    let records = data.records.clone().expect("records");
    assert!(records.windows(4).any(|w| w == b"kept"));
    assert!(!records.windows(7).any(|w| w == b"damaged"));
}

#[test]
fn pipelined_responses_keep_request_order() {
    let broker = start();
    let mut stream = connect(&broker);
    // Request 1 long-polls an empty partition for 300 ms; requests 2-4 finish at once. The
    // answers must still come back 1, 2, 3, 4.
    let create = shoal_storage::build_batch(&[b"x"], 0);
    stream
        .write_all(&frame(
            ApiKey::Produce,
            7,
            100,
            &produce_request("slow", Bytes::from(create)),
        ))
        .expect("write");
    let _ = read_response(&mut stream, ApiKey::Produce, 7).expect("create topic by producing");
    let partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(1)
        .with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("slow")))
        .with_partitions(vec![partition]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(300)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic]);
    let mut burst = frame(ApiKey::Fetch, 11, 1, &fetch);
    for correlation in 2..=4 {
        burst.extend(frame(
            ApiKey::ApiVersions,
            3,
            correlation,
            &ApiVersionsRequest::default(),
        ));
    }
    let started = Instant::now();
    stream.write_all(&burst).expect("write");
    let (first, _) = read_response(&mut stream, ApiKey::Fetch, 11).expect("fetch answer");
    assert_eq!(first, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the fetch waited for data"
    );
    for expected in 2..=4 {
        let (correlation, _) = read_response(&mut stream, ApiKey::ApiVersions, 3).expect("answer");
        assert_eq!(correlation, expected);
    }
}

#[test]
fn a_request_declaring_a_huge_array_does_not_take_the_broker_down() {
    // Found by the fuzzer (fuzz/known-crashes): a CreateTopics frame whose array length claims
    // ~2^31 elements. The codec sizes a Vec from it; the broker must survive.
    let broker = start();
    let body = include_bytes!("../../../fuzz/known-crashes/huge-array-length-create-topics");
    let mut stream = connect(&broker);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("write");
    assert!(closed(&mut stream), "the bad request closes its connection");
    api_versions_ok(&broker);
}

/// Waits (at most 20 s) for a broker to exit on its own, as a second broker does when the first
/// holds its address or data directory; returns what it printed.
/// One ApiVersions v3 request on a new connection is answered.
fn assert_answers_api_versions(broker: &common::Broker) {
    let mut stream = connect(broker);
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .expect("send");
    assert!(read_response(&mut stream, ApiKey::ApiVersions, 3).is_some());
}

fn expect_refusal(mut command: Command) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start second shoal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second broker kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    assert!(
        !output.status.success(),
        "the second broker must refuse to start"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_second_broker_on_the_same_address_or_data_dir_refuses_to_start() {
    let first = start();
    // Same Kafka address (every core binds it with SO_REUSEPORT, which alone would let the
    // second process share the port), different data dir and admin address.
    let other_dir = tempfile::tempdir_in("/var/tmp").expect("data dir");
    let admin = format!("127.0.0.1:{}", free_port());
    let log = expect_refusal(shoal("1", &first.addr, &admin, other_dir.path()));
    assert!(log.contains("in use"), "unclear refusal: {log}");
    // Same data dir, different addresses.
    let kafka = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let log = expect_refusal(shoal("1", &kafka, &admin, first._dir.path()));
    assert!(
        log.contains("in use by another broker"),
        "unclear refusal: {log}"
    );
    // The first broker still answers.
    assert_answers_api_versions(&first);
}

#[test]
fn a_broker_restarted_on_the_same_addresses_starts_at_once() {
    // The admin endpoint closes its connections first, which leaves TIME_WAIT sockets on the
    // admin port after the broker is gone, and a SIGKILLed broker's listeners linger until
    // io_uring's teardown ends; a restart must take neither for a live broker.
    let dir = tempfile::tempdir_in("/var/tmp").expect("data dir");
    let kafka = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    for round in 0..2 {
        let mut child = shoal("1", &kafka, &admin, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            if let Ok(mut http) = TcpStream::connect(&admin) {
                let _ = http.write_all(b"GET /v1/status/ready HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = http.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    break true;
                }
            }
            if child.try_wait().expect("wait").is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(ready, "round {round}: broker did not become ready");
    }
}

/// A broker process that is killed when the test ends, also when an assertion fails first.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_broker_whose_log_cannot_be_written_keeps_serving() {
    // stderr on /dev/full: every log line fails with ENOSPC, as on a full disk under a
    // redirected log. Logging must drop lines, never take the broker down.
    let dir = tempfile::tempdir_in("/var/tmp").expect("data dir");
    let kafka = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut child = KilledOnDrop(
        shoal("2", &kafka, &admin, dir.path())
            .stdout(Stdio::null())
            .stderr(full)
            .spawn()
            .expect("start shoal"),
    );
    let broker_addr = kafka.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&broker_addr).is_err() {
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "the broker exited while starting"
        );
        assert!(Instant::now() < deadline, "broker did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A bad frame logs a warning; so does closing its connection.
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&broker_addr).expect("connect");
        let _ = stream.write_all(&(-5i32).to_be_bytes());
        let _ = stream.read(&mut [0u8; 1]);
    }
    let mut stream = TcpStream::connect(&broker_addr).expect("connect");
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .expect("send");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    assert!(
        read_response(&mut stream, ApiKey::ApiVersions, 3).is_some(),
        "still serving"
    );
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "the broker died logging"
    );
    // The admin listener may come up after the Kafka one (a loaded 2-core CI host showed it).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut http = loop {
        match TcpStream::connect(&admin) {
            Ok(http) => break http,
            Err(error) => {
                assert!(Instant::now() < deadline, "admin did not listen: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut body = String::new();
    let _ = http.read_to_string(&mut body);
    let dropped = body
        .lines()
        .find_map(|l| l.strip_prefix("shoal_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(
        dropped.is_some_and(|n| n > 0),
        "dropped lines are counted: {dropped:?}"
    );
    drop(child);
}

#[test]
fn a_single_node_data_dir_is_not_taken_into_a_cluster() {
    // Turning a one-node broker's data into a cluster member needs a migration (its topics
    // are not in the controller's log); until that exists the node refuses, and says why,
    // instead of serving a mix of the two.
    let single = start();
    let dir = single.kill();
    let kafka = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let rpc = format!("127.0.0.1:{}", free_port());
    let mut command = shoal("1", &kafka, &admin, dir.path());
    let _ = command
        .env("SHOAL_SEEDS", format!("0@{rpc}"))
        .env("SHOAL_RPC_ADDR", &rpc);
    let log = expect_refusal(command);
    assert!(
        log.contains("belongs to cluster") && log.contains("migration"),
        "unclear refusal: {log}"
    );
    // The data dir is untouched: the one-node broker starts on it again.
    let again = common::start_in(dir, "2", &[]);
    assert_answers_api_versions(&again);
}
