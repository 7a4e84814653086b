//! The Kafka handlers' view of the broker, on one core: every partition call runs on the
//! partition's owner core and every metadata change on core 0, through the generic calls of
//! `mesh.rs` (`complete` for state changes, which finish even if the client goes away;
//! `answer` for reads and waits, which stop with their caller). The call site names the core.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures::future::select;
use shoal_kafka::cluster::{
    config_source, config_type, Acks, ApiError, BrokerInfo, Cluster, ConfigChange, ConfigEntry,
    ConfigSynonym, EpochEndOffset, LogDirInfo, NewTopic, Owner, TopicInfo, TopicPartition,
    Unanswered,
};
use shoal_kafka::error_map::unanswered;
use shoal_model::{Offset, Term, TimestampMs};
use shoal_storage::{Appended, LogOffsets, ReadBatches};

use crate::controller::topic_info;
use crate::mesh::CALL_TIMEOUT_MS;
use crate::shard::{owner_of, Shard};
use crate::topic_config;

/// The metadata owner.
const CONTROLLER_CORE: usize = 0;

/// A remote wait for data gets this long beyond its own timeout before the caller gives up on
/// the owner core.
const WAIT_MARGIN_MS: u64 = 1_000;

#[derive(Clone)]
pub(crate) struct ShardCluster(pub(crate) Rc<Shard>);

impl ShardCluster {
    /// Runs a state change on the partition's owner core (it completes even if the client
    /// goes away).
    async fn change_partition<T, W, F>(&self, tp: &TopicPartition, work: W) -> Result<T, ApiError>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>, TopicPartition) -> F + Send + 'static,
        F: Future<Output = Result<T, ApiError>> + 'static,
    {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        let tp = tp.clone();
        self.0
            .complete(owner, move |shard| work(shard, tp))
            .await
            .map_err(|why| unanswered(Owner::Partition, why))?
    }

    /// Runs a read on the partition's owner core (it stops if the client goes away).
    async fn read_partition<T, W, F>(&self, tp: &TopicPartition, work: W) -> Result<T, ApiError>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>, TopicPartition) -> F + Send + 'static,
        F: Future<Output = Result<T, ApiError>> + 'static,
    {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        let tp = tp.clone();
        self.0
            .answer(owner, CALL_TIMEOUT_MS, move |shard| work(shard, tp))
            .await
            .map_err(|why| unanswered(Owner::Partition, why))?
    }

    /// Runs a metadata change on core 0; every item fails with a retriable code if core 0
    /// does not answer.
    async fn change_metadata<T, W, F>(&self, count: usize, work: W) -> Vec<Result<T, ApiError>>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: Future<Output = Vec<Result<T, ApiError>>> + 'static,
    {
        match self.0.complete(CONTROLLER_CORE, work).await {
            Ok(results) => results,
            Err(why) => {
                let error = unanswered(Owner::Controller, why);
                (0..count).map(|_| Err(error.clone())).collect()
            }
        }
    }
}

impl Cluster for ShardCluster {
    fn broker(&self) -> BrokerInfo {
        let config = &self.0.config;
        BrokerInfo {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            rack: config.rack.clone(),
            cluster_id: self.0.snapshot().cluster_id.clone(),
        }
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        let snapshot = self.0.snapshot();
        if snapshot.brokers.is_empty() {
            return vec![self.broker()];
        }
        snapshot
            .brokers
            .iter()
            .filter(|b| !b.fenced)
            .map(|b| BrokerInfo {
                node_id: b.node,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                cluster_id: snapshot.cluster_id.clone(),
            })
            .collect()
    }

    /// A cluster's coordinator of a group is the leader of its partition of the offsets topic
    /// (as reported; None before the topic exists or a leader is known: clients retry on
    /// COORDINATOR_NOT_AVAILABLE).
    fn group_coordinator(&self, group_id: &str) -> Option<BrokerInfo> {
        if self.0.config.cluster.is_none() {
            return Some(self.broker());
        }
        let snapshot = self.0.snapshot();
        let partition = crate::groups::partition_of(group_id) as usize;
        let meta = snapshot.topics.get(crate::groups::OFFSETS_TOPIC)?;
        let node = *meta.nodes.get(partition)?;
        self.brokers().into_iter().find(|b| b.node_id == node)
    }

    fn topics(&self) -> Vec<TopicInfo> {
        let snapshot = self.0.snapshot();
        snapshot
            .topics
            .iter()
            .filter(|(name, _)| !is_hidden(name))
            .map(|(name, meta)| topic_info(&snapshot, name, meta, &self.0.health))
            .collect()
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        if is_hidden(name) {
            return None;
        }
        let snapshot = self.0.snapshot();
        snapshot
            .topics
            .get(name)
            .map(|meta| topic_info(&snapshot, name, meta, &self.0.health))
    }

    fn auto_create_topics(&self) -> bool {
        self.0.config.auto_create_topics
    }

    fn now_ms(&self) -> i64 {
        shoal_io::Clock::now_ms(&shoal_io::SystemClock)
    }

    fn fetch_sessions(
        &self,
    ) -> Option<&std::cell::RefCell<shoal_kafka::fetch_session::FetchSessions>> {
        Some(&self.0.fetch_sessions)
    }

    fn fetch_quota_bytes_max(&self, client_id: &str) -> Option<usize> {
        let bound = self
            .0
            .quota_bound(shoal_quotas::QuotaKind::FetchBytes, client_id)?;
        // At least one byte: a fetch always moves (KIP-74 returns a first batch whole).
        Some((self.0.quota_fetch_bytes_max(bound) as usize).max(1))
    }

    async fn fetch_throttle(
        &self,
        client_id: &str,
        bytes: usize,
    ) -> shoal_kafka::cluster::FetchThrottle {
        if !self.0.quotas_set() {
            return shoal_kafka::cluster::FetchThrottle {
                ms: 0,
                send_data: true,
            };
        }
        let throttle = self
            .0
            .quota_record(
                shoal_quotas::QuotaKind::FetchBytes,
                client_id,
                bytes as f64,
                crate::quotas::Recording::UnlessThrottled,
            )
            .await;
        shoal_kafka::cluster::FetchThrottle {
            ms: i32::try_from(throttle.ms).unwrap_or(i32::MAX),
            send_data: throttle.counted,
        }
    }

    fn client_quotas(
        &self,
        filter: &shoal_quotas::Filter,
    ) -> Vec<(
        shoal_quotas::QuotaEntity,
        Vec<(shoal_quotas::QuotaKind, f64)>,
    )> {
        let snapshot = self.0.snapshot();
        snapshot
            .client_quotas
            .iter()
            .filter(|(entity, _)| filter.matches(entity))
            .map(|(entity, values)| {
                let values = values.iter().map(|(&kind, &value)| (kind, value)).collect();
                (entity.clone(), values)
            })
            .collect()
    }

    async fn alter_client_quotas(
        &self,
        entries: Vec<(shoal_quotas::QuotaEntity, Vec<shoal_quotas::QuotaOp>)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        self.change_metadata(entries.len(), move |shard| async move {
            shard
                .controller_alter_client_quotas(entries, validate_only)
                .await
        })
        .await
    }

    async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        self.change_metadata(topics.len(), move |shard| async move {
            shard.controller_create_topics(topics, validate_only).await
        })
        .await
    }

    /// 1 for a partition of one replica. A replicated partition's leader checks
    /// `min.insync.replicas` against its own ISR on the owner core (`Shard::local_append`),
    /// not here against the metadata's copy, which may lag in either direction.
    fn in_sync_replicas(&self, tp: &TopicPartition) -> i32 {
        let snapshot = self.0.snapshot();
        let replicated = snapshot
            .topics
            .get(&tp.topic)
            .is_some_and(|meta| meta.is_replicated(tp.partition as usize));
        if replicated {
            i32::MAX
        } else {
            1
        }
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), ApiError>> {
        self.change_metadata(names.len(), move |shard| async move {
            shard.controller_delete_topics(names).await
        })
        .await
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Vec<u8>,
        acks: Acks,
    ) -> Result<Appended, ApiError> {
        self.change_partition(tp, move |shard, tp| async move {
            shard.local_append(&tp, batch, acks).await
        })
        .await
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadBatches, ApiError> {
        self.read_partition(tp, move |shard, tp| async move {
            shard.local_read(&tp, offset, max_bytes).await
        })
        .await
    }

    async fn offsets(&self, tp: &TopicPartition) -> Result<LogOffsets, ApiError> {
        self.read_partition(tp, |shard, tp| async move { shard.local_offsets(&tp) })
            .await
    }

    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.read_partition(tp, move |shard, tp| async move {
            shard.local_offset_for_timestamp(&tp, ts).await
        })
        .await
    }

    async fn max_timestamp(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.read_partition(tp, |shard, tp| async move {
            shard.local_max_timestamp(&tp).await
        })
        .await
    }

    async fn epoch_end_offset(
        &self,
        tp: &TopicPartition,
        requested: i32,
    ) -> Result<EpochEndOffset, ApiError> {
        self.read_partition(tp, move |shard, tp| async move {
            let log = shard.log(&tp)?;
            let (epoch, end_offset) = log.epoch_end_offset(Term(requested));
            Ok(EpochEndOffset {
                current_epoch: log.term().0,
                epoch: epoch.0,
                end_offset: end_offset.0,
            })
        })
        .await
    }

    async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        self.0
            .complete(CONTROLLER_CORE, |shard| async move {
                shard.controller_allocate_producer_id().await
            })
            .await
            .map_err(|why| unanswered(Owner::Controller, why))?
    }

    async fn describe_producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<shoal_storage::ProducerInfo>, ApiError> {
        self.read_partition(tp, |shard, tp| async move {
            shard.log(&tp).map(|log| log.producers())
        })
        .await
    }

    async fn wait_for_data(&self, watches: Vec<(TopicPartition, Offset)>, timeout_ms: u64) {
        let snapshot = self.0.snapshot();
        // Each wait runs on its partition's owner; the first that returns (data arrived, or
        // its timeout passed) ends the fetch's wait and drops the others, on every core.
        let waits: Vec<_> = watches
            .into_iter()
            .filter_map(|(tp, offset)| {
                let owner = owner_of(&snapshot, &tp).ok()?;
                let shard = self.0.clone();
                Some(Box::pin(async move {
                    let _: Result<(), Unanswered> = shard
                        .answer(
                            owner,
                            timeout_ms + WAIT_MARGIN_MS,
                            move |shard| async move {
                                shard.local_wait_for_data(&tp, offset, timeout_ms).await
                            },
                        )
                        .await;
                }))
            })
            .collect();
        let timer = Box::pin(glommio::timer::sleep(Duration::from_millis(timeout_ms)));
        if waits.is_empty() {
            timer.await;
            return;
        }
        let _ = select(futures::future::select_all(waits), timer).await;
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> Result<Offset, ApiError> {
        self.change_partition(tp, move |shard, tp| async move {
            shard.local_delete_records(&tp, before).await
        })
        .await
    }

    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        self.change_metadata(topics.len(), move |shard| async move {
            shard
                .controller_create_partitions(topics, validate_only)
                .await
        })
        .await
    }

    fn topic_configs(&self, topic: &str) -> Option<Vec<ConfigEntry>> {
        let snapshot = self.0.snapshot();
        Some(topic_config::describe(&snapshot.topics.get(topic)?.configs))
    }

    fn broker_configs(&self) -> Vec<ConfigEntry> {
        let config = &self.0.config;
        let data_dir = std::path::absolute(&config.data_dir)
            .unwrap_or_else(|_| config.data_dir.clone())
            .display()
            .to_string();
        let advertised = format!(
            "PLAINTEXT://{}:{}",
            config.advertised_host, config.advertised_port
        );
        let settings: [(&str, String, i8); 11] = [
            ("broker.id", config.node_id.to_string(), config_type::INT),
            (
                "listeners",
                format!("PLAINTEXT://{}", config.kafka_addr),
                config_type::LIST,
            ),
            ("advertised.listeners", advertised, config_type::LIST),
            ("log.dirs", data_dir, config_type::STRING),
            (
                "num.partitions",
                config.default_partitions.to_string(),
                config_type::INT,
            ),
            (
                "default.replication.factor",
                config.default_replication_factor.to_string(),
                config_type::INT,
            ),
            (
                "auto.create.topics.enable",
                config.auto_create_topics.to_string(),
                config_type::BOOLEAN,
            ),
            (
                "socket.request.max.bytes",
                config.request_bytes_max.to_string(),
                config_type::INT,
            ),
            // Shoal's own settings, under their config-file names.
            ("shoal.cores", config.cores.to_string(), config_type::INT),
            (
                "shoal.memory",
                config.memory_bytes.to_string(),
                config_type::LONG,
            ),
            (
                "shoal.requests_inflight_per_connection_max",
                config.requests_inflight_per_connection_max.to_string(),
                config_type::INT,
            ),
        ];
        let fixed = [
            // Facts of a single node rather than settings.
            (
                "default.replication.factor",
                "1".to_string(),
                config_type::INT,
            ),
            ("min.insync.replicas", "1".to_string(), config_type::INT),
        ];
        let entry = |name: &str, value: String, kind: i8, source: i8| ConfigEntry {
            name: name.to_string(),
            value: Some(value.clone()),
            source,
            read_only: true,
            sensitive: false,
            config_type: kind,
            synonyms: vec![ConfigSynonym {
                name: name.to_string(),
                value: Some(value),
                source,
            }],
            documentation: None,
        };
        settings
            .into_iter()
            .map(|(name, value, kind)| {
                entry(name, value, kind, config_source::STATIC_BROKER_CONFIG)
            })
            .chain(
                fixed.into_iter().map(|(name, value, kind)| {
                    entry(name, value, kind, config_source::DEFAULT_CONFIG)
                }),
            )
            .collect()
    }

    async fn alter_topic_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        self.change_metadata(changes.len(), move |shard| async move {
            shard
                .controller_alter_topic_configs(changes, validate_only)
                .await
        })
        .await
    }

    async fn log_dir(&self) -> LogDirInfo {
        let dir = std::path::absolute(&self.0.config.data_dir)
            .unwrap_or_else(|_| self.0.config.data_dir.clone());
        let path = dir.display().to_string();
        let space = shoal_runtime::file_system_space(&dir).ok();
        LogDirInfo {
            path,
            total_bytes: space.map(|(total, _)| total),
            usable_bytes: space.map(|(_, usable)| usable),
        }
    }

    async fn partition_size(&self, tp: &TopicPartition) -> Result<u64, ApiError> {
        self.read_partition(
            tp,
            |shard, tp| async move { shard.local_partition_size(&tp) },
        )
        .await
    }

    async fn group(&self, group_id: &str, op: shoal_groups::GroupOp) -> shoal_groups::GroupReply {
        let core = if self.0.config.cluster.is_some() {
            // The core of this node's replica decides by its own leadership (fresher than
            // the reported leader); no replica here: the client asks FindCoordinator again.
            match crate::groups::replica_core(&self.0.snapshot(), group_id) {
                Some(core) => core,
                None => {
                    return shoal_groups::GroupReply::failed(
                        &op,
                        kafka_protocol::error::ResponseError::NotCoordinator,
                    )
                }
            }
        } else {
            crate::groups::core_of(group_id, self.0.cores)
        };
        let group_id = group_id.to_string();
        // Group operations change coordinator state (a commit, a join): they complete even if
        // the member's connection drops, as Kafka's coordinator applies them regardless.
        let failed_as = op.clone();
        self.0
            .complete(core, move |_| crate::groups::serve(group_id, op))
            .await
            .unwrap_or_else(|why| {
                let error = unanswered(Owner::Coordinator, why);
                shoal_groups::GroupReply::failed(&failed_as, error.code)
            })
    }

    async fn list_groups(&self) -> Vec<shoal_groups::GroupListing> {
        let calls = (0..self.0.cores).map(|core| {
            let shard = self.0.clone();
            async move {
                shard
                    .answer(core, CALL_TIMEOUT_MS, |_| async move {
                        crate::groups::list_local()
                    })
                    .await
                    .unwrap_or_default()
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Internal topics clients never see or touch (Kafka lists `__consumer_offsets` as internal;
/// Shoal's clients name groups, never its partitions).
pub(crate) fn is_hidden(topic: &str) -> bool {
    topic == crate::groups::OFFSETS_TOPIC
}
