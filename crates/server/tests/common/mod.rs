//! Test support for the real `shoal` binary on loopback: start one (its own data dir and
//! ports), raw Kafka frames in and responses out.
#![allow(dead_code, unreachable_pub)] // Each test file uses a different part.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, RequestHeader, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub child: Child,
    pub addr: String,
    pub admin: String,
    pub _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `shoal start` on the given cores, addresses and data directory.
pub fn shoal(cores: &str, kafka: &str, admin: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args([
            "start",
            "--cores",
            cores,
            "--kafka-addr",
            kafka,
            "--admin-addr",
            admin,
        ])
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// A broker on 2 cores with 1 MiB request frames at most (the protocol tests' broker).
pub fn start() -> Broker {
    start_with("2", &[("SHOAL_REQUEST_BYTES_MAX", "1048576")])
}

/// A broker on `cores` cores with extra `SHOAL_*` settings, once it listens.
pub fn start_with(cores: &str, env: &[(&str, &str)]) -> Broker {
    let dir = tempfile::tempdir_in("/var/tmp").expect("data dir");
    start_in(dir, cores, env)
}

/// A broker on an existing data directory (a restart).
pub fn start_in(dir: tempfile::TempDir, cores: &str, env: &[(&str, &str)]) -> Broker {
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut command = shoal(cores, &addr, &admin, dir.path());
    for (key, value) in env {
        let _ = command.env(key, value);
    }
    let child = command.stderr(Stdio::null()).spawn().expect("start shoal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        addr,
        admin,
        _dir: dir,
    }
}

impl Broker {
    /// Stops the broker with SIGKILL and hands back its data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::TempDir::new_in("/var/tmp").expect("placeholder");
        std::mem::replace(&mut self._dir, dir)
    }
}

pub fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(&broker.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

pub fn frame<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("protocol-test")));
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame; `None` if the broker closed the connection.
pub fn read_response(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
) -> Option<(i32, ResponseKind)> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    let mut bytes = Bytes::from(body);
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut bytes, header_version).expect("response header");
    let response = ResponseKind::decode(api_key, &mut bytes, version).expect("response body");
    Some((header.correlation_id, response))
}

pub fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

pub fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![partition]);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![topic])
}
