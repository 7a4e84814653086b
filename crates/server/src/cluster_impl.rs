//! The Kafka handlers' view of the broker, on one core: every partition call goes to the
//! partition's owner (`Shard::local_*` when it is this core, a mesh message otherwise), and
//! metadata changes go to shard 0. The call site shows the target core.

use std::rc::Rc;

use futures::future::select;
use shoal_kafka::cluster::{
    config_source, config_type, ApiError, BrokerInfo, Cluster, ConfigChange, ConfigEntry,
    ConfigSynonym, LogDirInfo, NewTopic, TopicInfo, TopicPartition,
};
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Appended, LogOffsets, ReadBatches, Wait};

use crate::controller::topic_info;
use crate::mesh::ShardMsg;
use crate::shard::{owner_of, Shard};
use crate::topic_config;

/// The metadata owner.
const CONTROLLER_CORE: usize = 0;

#[derive(Clone)]
pub(crate) struct ShardCluster(pub(crate) Rc<Shard>);

impl Cluster for ShardCluster {
    fn broker(&self) -> BrokerInfo {
        let config = &self.0.config;
        BrokerInfo {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            rack: None,
            cluster_id: self.0.snapshot().cluster_id.clone(),
        }
    }

    fn topics(&self) -> Vec<TopicInfo> {
        self.0
            .snapshot()
            .topics
            .iter()
            .map(|(name, meta)| topic_info(name, meta))
            .collect()
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.0
            .snapshot()
            .topics
            .get(name)
            .map(|meta| topic_info(name, meta))
    }

    fn auto_create_topics(&self) -> bool {
        self.0.config.auto_create_topics
    }

    async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        let count = topics.len();
        if self.0.id == CONTROLLER_CORE {
            return self.0.controller_create_topics(topics, validate_only).await;
        }
        let answer = self
            .0
            .call(CONTROLLER_CORE, |reply| ShardMsg::CreateTopics {
                topics,
                validate_only,
                reply,
            })
            .await;
        answer.unwrap_or_else(|error| vec![Err(error); count])
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), ApiError>> {
        let count = names.len();
        if self.0.id == CONTROLLER_CORE {
            return self.0.controller_delete_topics(names).await;
        }
        let answer = self
            .0
            .call(CONTROLLER_CORE, |reply| ShardMsg::DeleteTopics {
                names,
                reply,
            })
            .await;
        answer.unwrap_or_else(|error| vec![Err(error); count])
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Vec<u8>,
        wait: Wait,
    ) -> Result<Appended, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_append(tp, batch, wait).await;
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::Append {
                tp,
                batch,
                wait,
                reply,
            })
            .await?
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadBatches, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_read(tp, offset, max_bytes).await;
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::Read {
                tp,
                offset,
                max_bytes,
                reply,
            })
            .await?
    }

    async fn offsets(&self, tp: &TopicPartition) -> Result<LogOffsets, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_offsets(tp);
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::Offsets { tp, reply })
            .await?
    }

    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_offset_for_timestamp(tp, ts).await;
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::OffsetForTimestamp {
                tp,
                ts,
                reply,
            })
            .await?
    }

    async fn max_timestamp(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_max_timestamp(tp).await;
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::MaxTimestamp { tp, reply })
            .await?
    }

    async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        if self.0.id == CONTROLLER_CORE {
            return self.0.controller_allocate_producer_id().await;
        }
        self.0
            .call(CONTROLLER_CORE, |reply| ShardMsg::AllocateProducerId {
                reply,
            })
            .await?
    }

    async fn describe_producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<shoal_storage::ProducerInfo>, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return Ok(self.0.log(tp)?.producers());
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::DescribeProducers { tp, reply })
            .await?
    }

    async fn wait_for_data(&self, watches: Vec<(TopicPartition, Offset)>, timeout_ms: u64) {
        let snapshot = self.0.snapshot();
        let waits = watches.into_iter().filter_map(|(tp, offset)| {
            let owner = owner_of(&snapshot, &tp).ok()?;
            let shard = self.0.clone();
            Some(Box::pin(async move {
                if owner == shard.id {
                    shard.local_wait_for_data(&tp, offset, timeout_ms).await;
                } else {
                    let _ = shard
                        .call(owner, |reply| ShardMsg::WaitForData {
                            tp,
                            offset,
                            timeout_ms,
                            reply,
                        })
                        .await;
                }
            }))
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            glommio::timer::sleep(std::time::Duration::from_millis(timeout_ms)).await;
            return;
        }
        // The first partition that grows (or times out) ends the wait.
        let _ = select(
            futures::future::select_all(waits),
            Box::pin(glommio::timer::sleep(std::time::Duration::from_millis(
                timeout_ms,
            ))),
        )
        .await;
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> Result<Offset, ApiError> {
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_delete_records(tp, before).await;
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::DeleteRecords { tp, before, reply })
            .await?
    }

    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let count = topics.len();
        if self.0.id == CONTROLLER_CORE {
            return self
                .0
                .controller_create_partitions(topics, validate_only)
                .await;
        }
        let answer = self
            .0
            .call(CONTROLLER_CORE, |reply| ShardMsg::CreatePartitions {
                topics,
                validate_only,
                reply,
            })
            .await;
        answer.unwrap_or_else(|error| vec![Err(error); count])
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
        let settings: [(&str, String, i8); 10] = [
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
        let count = changes.len();
        if self.0.id == CONTROLLER_CORE {
            return self
                .0
                .controller_alter_topic_configs(changes, validate_only)
                .await;
        }
        let answer = self
            .0
            .call(CONTROLLER_CORE, |reply| ShardMsg::AlterTopicConfigs {
                changes,
                validate_only,
                reply,
            })
            .await;
        answer.unwrap_or_else(|error| vec![Err(error); count])
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
        let owner = owner_of(&self.0.snapshot(), tp)?;
        if owner == self.0.id {
            return self.0.local_partition_size(tp);
        }
        let tp = tp.clone();
        self.0
            .call(owner, |reply| ShardMsg::PartitionSize { tp, reply })
            .await?
    }

    async fn group(&self, group_id: &str, op: shoal_groups::GroupOp) -> shoal_groups::GroupReply {
        let core = crate::groups::core_of(group_id, self.0.cores);
        if core == self.0.id {
            return crate::groups::serve(op).await;
        }
        let unreachable = shoal_groups::GroupReply::failed(
            &op,
            kafka_protocol::error::ResponseError::CoordinatorNotAvailable,
        );
        self.0
            .call(core, |reply| ShardMsg::Group { op, reply })
            .await
            .unwrap_or(unreachable)
    }

    async fn list_groups(&self) -> Vec<shoal_groups::GroupListing> {
        let calls = (0..self.0.cores).map(|core| {
            let shard = self.0.clone();
            async move {
                if core == shard.id {
                    return crate::groups::list_local();
                }
                shard
                    .call(core, |reply| ShardMsg::ListGroups { reply })
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
