//! Test support for handler tests: an in-memory `Cluster` (one node, logs as vectors of
//! batches), a blocking executor, request framing, and the response round trip through
//! kafka-protocol's client decoder.
#![allow(dead_code, unreachable_pub)] // Each test file uses a different part.

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use shoal_kafka::cluster::{
    config_source, config_type, ApiError, BrokerInfo, Cluster, ConfigChange, ConfigEntry, ConfigOp,
    ConfigSynonym, LogDirInfo, NewTopic, TopicInfo, TopicPartition,
};
use shoal_kafka::codec;
use shoal_kafka::error_map::storage_error;
use shoal_kafka::handlers::create_partitions::invalid_count;
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Appended, Guarantee, LogOffsets, ReadBatches};

pub const NODE_ID: i32 = 1;
/// The fake's clock: the real batches' timestamps (1000, 2000, ...) are far in its past.
pub const NOW_MS: i64 = 1_700_000_000_000;
pub const CLUSTER_ID: &str = "fake-cluster";
/// The topic configs the fake knows, with defaults.
pub const KNOWN: &[(&str, &str)] = &[("cleanup.policy", "delete"), ("retention.ms", "604800000")];

/// The leader epoch of every fake partition: not 0, so a handler that answers a hard-coded 0
/// instead of the partition's epoch fails its test.
pub const LEADER_EPOCH: i32 = 7;

/// One partition, kept the way the storage engine keeps it: offsets assigned per record from
/// each batch's header, a high watermark that can trail the log end (what a reader may see),
/// and the leader epoch stamped into every batch.
#[derive(Clone, Debug)]
pub struct FakeLog {
    pub log_start: i64,
    /// (base offset, next offset, max timestamp, bytes).
    pub batches: Vec<(i64, i64, i64, Bytes)>,
    /// Readers see offsets below this.
    pub high_watermark: i64,
    /// When set, appends leave the high watermark where it is (data written, not yet durable).
    pub hold_watermark: bool,
    pub leader_epoch: i32,
    /// Epoch history: (epoch, start offset), oldest first; the last is `leader_epoch`.
    pub epochs: Vec<(i32, i64)>,
}

impl Default for FakeLog {
    fn default() -> FakeLog {
        FakeLog {
            log_start: 0,
            batches: Vec::new(),
            high_watermark: 0,
            hold_watermark: false,
            leader_epoch: LEADER_EPOCH,
            epochs: vec![(LEADER_EPOCH, 0)],
        }
    }
}

impl FakeLog {
    /// Kafka's `LeaderEpochFileCache.endOffsetFor`, written from its documentation.
    pub fn epoch_end_offset(&self, requested: i32) -> (i32, i64) {
        let latest = self.epochs.last().map(|e| e.0);
        if requested == -1 {
            return (-1, -1);
        }
        if latest == Some(requested) {
            return (requested, self.end());
        }
        let higher = self.epochs.iter().find(|e| e.0 > requested);
        let floor = self.epochs.iter().rev().find(|e| e.0 <= requested);
        match (floor, higher) {
            (_, None) => (-1, -1),
            (None, Some(higher)) => (requested, higher.1),
            (Some(floor), Some(higher)) => (floor.0, higher.1),
        }
    }

    pub fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.1)
    }

    /// Appends a client batch as storage does: validated, stamped with its base offset and
    /// the leader epoch, one offset per record.
    pub fn append(&mut self, mut batch: Vec<u8>) -> Result<Appended, ApiError> {
        let header = shoal_storage::validate_batch(&batch)
            .map_err(|defect| storage_error(&shoal_storage::Error::CorruptBatch(defect)))?;
        let base = self.end();
        batch[0..8].copy_from_slice(&base.to_be_bytes());
        batch[12..16].copy_from_slice(&self.leader_epoch.to_be_bytes());
        let next = base + header.offset_count;
        self.batches
            .push((base, next, header.max_timestamp.0, Bytes::from(batch)));
        if !self.hold_watermark {
            self.high_watermark = next;
        }
        Ok(Appended {
            base_offset: Offset(base),
            last_offset: Offset(next - 1),
            guarantee: Guarantee::Synced,
            log_start: Offset(self.log_start),
        })
    }
}

#[derive(Clone, Debug)]
pub struct FakeTopic {
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    pub logs: Vec<FakeLog>,
    /// Partitions reported offline.
    pub offline: Vec<i32>,
    /// The rules its configs set for produced batches.
    pub produce: shoal_kafka::cluster::ProducePolicy,
}

pub struct Fake {
    pub topics: RefCell<BTreeMap<String, FakeTopic>>,
    pub auto_create: bool,
    pub next_producer_id: std::cell::Cell<i64>,
    /// How often a handler long-polled (`wait_for_data`).
    pub waits: std::cell::Cell<usize>,
    /// Appends in flight now, and the most seen at once (each append yields once before it
    /// completes, as a real one waits for its sync, so concurrent appends overlap).
    pub appends_in_flight: std::cell::Cell<usize>,
    pub appends_in_flight_max: std::cell::Cell<usize>,
    /// Fetch sessions (KIP-227); `None`: every fetch is sessionless.
    pub sessions: Option<RefCell<shoal_kafka::fetch_session::FetchSessions>>,
    /// What the next fetches' bytes earn under a consumer quota (`None`: no quota), and the
    /// bytes the handler counted, by fetch.
    pub fetch_throttle: std::cell::Cell<Option<shoal_kafka::cluster::FetchThrottle>>,
    pub fetch_bytes_counted: RefCell<Vec<usize>>,
}

/// A future that is pending once (waking itself), then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            next_producer_id: std::cell::Cell::new(1000),
            waits: std::cell::Cell::new(0),
            appends_in_flight: std::cell::Cell::new(0),
            appends_in_flight_max: std::cell::Cell::new(0),
            topics: RefCell::new(BTreeMap::new()),
            auto_create: false,
            sessions: None,
            fetch_throttle: std::cell::Cell::new(None),
            fetch_bytes_counted: RefCell::new(Vec::new()),
        }
    }

    /// The same, keeping up to `slots` fetch sessions (core 0 of 1, eviction after 1 s).
    pub fn with_sessions(mut self, slots: usize) -> Fake {
        self.sessions = Some(RefCell::new(
            shoal_kafka::fetch_session::FetchSessions::new(slots, 1_000, 0, 1, 7),
        ));
        self
    }

    /// Appends a real batch (2 records) to a partition and moves its high watermark to the end.
    pub fn append_to(&self, topic: &str, partition: usize) {
        let mut topics = self.topics.borrow_mut();
        let log = &mut topics.get_mut(topic).expect("topic").logs[partition];
        let appended = log.append(real_batch(0, 5000).to_vec());
        assert!(appended.is_ok(), "a real batch appends");
        log.high_watermark = log.end();
    }

    /// A fake with topic `name` of `partitions` partitions, each holding `batches` batches
    /// of 2 records (timestamps 1000, 2000, ...).
    pub fn with_topic(name: &str, partitions: usize, batches: i64) -> Fake {
        let fake = Fake::new();
        fake.add_topic(name, partitions, batches);
        fake
    }

    pub fn add_topic(&self, name: &str, partitions: usize, batches: i64) {
        let mut log = FakeLog::default();
        for i in 0..batches {
            let appended = log.append(real_batch(0, 1000 * (i + 1)).to_vec());
            assert!(appended.is_ok(), "a real batch appends");
        }
        let _ = self.topics.borrow_mut().insert(
            name.to_string(),
            FakeTopic {
                id: [name.len() as u8; 16],
                configs: BTreeMap::new(),
                logs: vec![log; partitions],
                offline: Vec::new(),
                produce: Default::default(),
            },
        );
    }

    fn with_log<T>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut FakeLog) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut topics = self.topics.borrow_mut();
        let log = topics
            .get_mut(&tp.topic)
            .and_then(|t| t.logs.get_mut(usize::try_from(tp.partition).ok()?))
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))?;
        f(log)
    }
}

fn info(name: &str, topic: &FakeTopic) -> TopicInfo {
    TopicInfo {
        nodes: Vec::new(),
        replicas: Vec::new(),
        isr: Vec::new(),
        name: name.to_string(),
        id: topic.id,
        partitions: topic.logs.len() as i32,
        configs: topic.configs.clone(),
        leader_epochs: topic.logs.iter().map(|log| log.leader_epoch).collect(),
        offline: topic.offline.clone(),
        produce: topic.produce,
    }
}

fn out_of_range(requested: i64, log: &FakeLog) -> ApiError {
    storage_error(&shoal_storage::Error::OffsetOutOfRange {
        requested: Offset(requested),
        start: Offset(log.log_start),
        end: Offset(log.end()),
    })
}

impl Cluster for Fake {
    fn broker(&self) -> BrokerInfo {
        BrokerInfo {
            node_id: NODE_ID,
            host: "localhost".to_string(),
            port: 9092,
            rack: None,
            cluster_id: CLUSTER_ID.to_string(),
        }
    }

    fn topics(&self) -> Vec<TopicInfo> {
        self.topics
            .borrow()
            .iter()
            .map(|(name, t)| info(name, t))
            .collect()
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.borrow().get(name).map(|t| info(name, t))
    }

    fn auto_create_topics(&self) -> bool {
        self.auto_create
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn fetch_sessions(&self) -> Option<&RefCell<shoal_kafka::fetch_session::FetchSessions>> {
        self.sessions.as_ref()
    }

    async fn fetch_throttle(
        &self,
        client_id: &str,
        bytes: usize,
    ) -> shoal_kafka::cluster::FetchThrottle {
        assert_eq!(client_id, "test-client");
        self.fetch_bytes_counted.borrow_mut().push(bytes);
        self.fetch_throttle
            .get()
            .unwrap_or(shoal_kafka::cluster::FetchThrottle {
                ms: 0,
                send_data: true,
            })
    }

    async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        topics
            .into_iter()
            .map(|t| {
                if self.topics.borrow().contains_key(&t.name) {
                    return Err(ApiError::new(ResponseError::TopicAlreadyExists));
                }
                let topic = FakeTopic {
                    id: [t.name.len() as u8; 16],
                    configs: t.configs,
                    logs: vec![FakeLog::default(); t.partitions.max(1) as usize],
                    offline: Vec::new(),
                    produce: Default::default(),
                };
                let created = info(&t.name, &topic);
                if !validate_only {
                    let _ = self.topics.borrow_mut().insert(t.name, topic);
                }
                Ok(created)
            })
            .collect()
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), ApiError>> {
        names
            .iter()
            .map(|name| {
                self.topics
                    .borrow_mut()
                    .remove(name)
                    .map(|_| ())
                    .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))
            })
            .collect()
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Vec<u8>,
        _acks: shoal_kafka::cluster::Acks,
    ) -> Result<Appended, ApiError> {
        let now = self.appends_in_flight.get() + 1;
        self.appends_in_flight.set(now);
        self.appends_in_flight_max
            .set(self.appends_in_flight_max.get().max(now));
        YieldOnce(false).await;
        self.appends_in_flight.set(self.appends_in_flight.get() - 1);
        self.with_log(tp, |log| log.append(batch))
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        _max_bytes: usize,
    ) -> Result<ReadBatches, ApiError> {
        self.with_log(tp, |log| {
            if offset.0 < log.log_start || offset.0 > log.end() {
                return Err(out_of_range(offset.0, log));
            }
            Ok(ReadBatches {
                batches: log
                    .batches
                    .iter()
                    .filter(|b| b.1 > offset.0 && b.0 < log.high_watermark)
                    .map(|b| b.3.clone())
                    .collect(),
                high_watermark: Offset(log.high_watermark),
                log_start: Offset(log.log_start),
                leader_epoch: shoal_model::Term(log.leader_epoch),
            })
        })
    }

    async fn offsets(&self, tp: &TopicPartition) -> Result<LogOffsets, ApiError> {
        self.with_log(tp, |log| {
            Ok(LogOffsets {
                log_start: Offset(log.log_start),
                high_watermark: Offset(log.high_watermark),
                log_end: Offset(log.end()),
                leader_epoch: shoal_model::Term(log.leader_epoch),
                log_start_epoch: shoal_model::Term(log.epochs[0].0),
            })
        })
    }

    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.with_log(tp, |log| {
            Ok(log
                .batches
                .iter()
                .filter(|b| b.0 < log.high_watermark && b.1 > log.log_start)
                .find(|b| b.2 >= ts.0)
                .map(|b| (Offset(b.0.max(log.log_start)), TimestampMs(b.2))))
        })
    }

    async fn max_timestamp(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.with_log(tp, |log| {
            Ok(log
                .batches
                .iter()
                .filter(|b| b.0 < log.high_watermark && b.1 > log.log_start)
                .max_by_key(|b| b.2)
                .map(|b| (Offset(b.0.max(log.log_start)), TimestampMs(b.2))))
        })
    }

    async fn wait_for_data(&self, _watches: Vec<(TopicPartition, Offset)>, _timeout_ms: u64) {
        self.waits.set(self.waits.get() + 1);
    }

    async fn epoch_end_offset(
        &self,
        tp: &TopicPartition,
        requested: i32,
    ) -> Result<shoal_kafka::cluster::EpochEndOffset, ApiError> {
        self.with_log(tp, |log| {
            let (epoch, end_offset) = log.epoch_end_offset(requested);
            Ok(shoal_kafka::cluster::EpochEndOffset {
                current_epoch: log.leader_epoch,
                epoch,
                end_offset,
            })
        })
    }

    async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let id = self.next_producer_id.get();
        self.next_producer_id.set(id + 1);
        Ok(id)
    }

    async fn describe_producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<shoal_storage::ProducerInfo>, ApiError> {
        self.with_log(tp, |_| {
            Ok(vec![shoal_storage::ProducerInfo {
                producer_id: 42,
                epoch: 3,
                last_sequence: 9,
                last_append_ms: 1_000,
            }])
        })
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> Result<Offset, ApiError> {
        self.with_log(tp, |log| {
            let before = if before == -1 {
                log.high_watermark
            } else {
                before
            };
            if before < 0 || before > log.high_watermark {
                return Err(out_of_range(before, log));
            }
            log.log_start = log.log_start.max(before);
            let start = log.log_start;
            log.batches.retain(|b| b.1 > start);
            Ok(Offset(log.log_start))
        })
    }

    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        topics
            .into_iter()
            .map(|(name, count)| {
                let mut all = self.topics.borrow_mut();
                let topic = all
                    .get_mut(&name)
                    .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))?;
                let current = topic.logs.len() as i32;
                if count <= current {
                    return Err(invalid_count(current, count));
                }
                if !validate_only {
                    topic.logs.resize(count as usize, FakeLog::default());
                }
                Ok(())
            })
            .collect()
    }

    fn topic_configs(&self, topic: &str) -> Option<Vec<ConfigEntry>> {
        let topics = self.topics.borrow();
        let configs = &topics.get(topic)?.configs;
        Some(
            KNOWN
                .iter()
                .map(|&(name, default)| {
                    let (value, source) = match configs.get(name) {
                        Some(value) => (value.clone(), config_source::DYNAMIC_TOPIC_CONFIG),
                        None => (default.to_string(), config_source::DEFAULT_CONFIG),
                    };
                    ConfigEntry {
                        name: name.to_string(),
                        value: Some(value.clone()),
                        source,
                        read_only: false,
                        sensitive: false,
                        config_type: if name == "cleanup.policy" {
                            config_type::LIST
                        } else {
                            config_type::LONG
                        },
                        synonyms: vec![ConfigSynonym {
                            name: name.to_string(),
                            value: Some(value),
                            source,
                        }],
                        documentation: None,
                    }
                })
                .collect(),
        )
    }

    fn broker_configs(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            name: "broker.id".to_string(),
            value: Some(NODE_ID.to_string()),
            source: config_source::STATIC_BROKER_CONFIG,
            read_only: true,
            sensitive: false,
            config_type: config_type::INT,
            synonyms: Vec::new(),
            documentation: None,
        }]
    }

    async fn alter_topic_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        changes
            .into_iter()
            .map(|(name, change)| {
                let mut all = self.topics.borrow_mut();
                let topic = all
                    .get_mut(&name)
                    .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))?;
                let mut next = topic.configs.clone();
                match change {
                    ConfigChange::Replace(configs) => next = configs,
                    ConfigChange::Incremental(ops) => {
                        for (key, op) in ops {
                            match op {
                                ConfigOp::Set(value) => {
                                    let _ = next.insert(key, value);
                                }
                                ConfigOp::Delete => {
                                    let _ = next.remove(&key);
                                }
                                ConfigOp::Append(_) | ConfigOp::Subtract(_)
                                    if key != "cleanup.policy" =>
                                {
                                    return Err(ApiError::new(ResponseError::InvalidRequest));
                                }
                                ConfigOp::Append(value) | ConfigOp::Subtract(value) => {
                                    let _ = next.insert(key, value);
                                }
                            }
                        }
                    }
                }
                if let Some(key) = next.keys().find(|k| !KNOWN.iter().any(|(n, _)| n == k)) {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidConfig,
                        format!("unknown topic config {key}"),
                    ));
                }
                if !validate_only {
                    topic.configs = next;
                }
                Ok(())
            })
            .collect()
    }

    async fn log_dir(&self) -> LogDirInfo {
        LogDirInfo {
            path: "/var/lib/shoal".to_string(),
            total_bytes: Some(1 << 40),
            usable_bytes: Some(1 << 39),
        }
    }

    async fn partition_size(&self, tp: &TopicPartition) -> Result<u64, ApiError> {
        self.with_log(tp, |log| {
            Ok(log.batches.iter().map(|b| b.3.len() as u64).sum())
        })
    }
}

pub fn run<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

pub fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

pub fn code(error: ResponseError) -> i16 {
    error.code()
}

/// A request frame (without the size prefix), as a client sends it.
pub fn request_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut out = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(s("test-client")));
    header
        .encode(&mut out, api_key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut out, version).expect("request encodes");
    out.freeze()
}

/// Encodes `body` as the broker does and decodes it with the client's decoder; the result
/// must equal what the handler built, so no field is set that the version cannot carry.
pub fn assert_round_trip(api_key: ApiKey, version: i16, body: &ResponseKind) {
    let frame = codec::encode_response(api_key, version, 42, body)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version} does not encode: {e}"));
    let mut bytes = frame.freeze();
    let size = codec::frame_size(&bytes).expect("size prefix");
    assert_eq!(size as usize, bytes.len() - codec::FRAME_PREFIX_BYTES);
    let _ = bytes.split_to(codec::FRAME_PREFIX_BYTES);
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut bytes, header_version).expect("header decodes");
    assert_eq!(header.correlation_id, 42);
    let decoded = ResponseKind::decode(api_key, &mut bytes, version)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version} does not decode: {e}"));
    assert!(bytes.is_empty(), "{api_key:?} v{version}: bytes left over");
    assert_eq!(
        &decoded, body,
        "{api_key:?} v{version}: the client reads something else than the handler built"
    );
}

/// Every version this broker advertises for `api_key`.
pub fn advertised(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = shoal_kafka::versions::range(api_key).expect("advertised");
    min..=max
}

/// Bytes of one stored batch: two records at `base` and `base + 1`, stamped `ts - 500` and
/// `ts` (the batch's max), so timestamp lookups can be checked per record.
pub fn real_batch(base: i64, ts: i64) -> Bytes {
    let mut bytes = shoal_storage::build_timed_batch(&[(b"first", ts - 500), (b"second", ts)]);
    bytes[0..8].copy_from_slice(&base.to_be_bytes());
    Bytes::from(bytes)
}

/// Size of every fake batch.
pub fn real_batch_bytes() -> usize {
    real_batch(0, 1000).len()
}
