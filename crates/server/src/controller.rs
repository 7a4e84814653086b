//! Metadata changes, on shard 0 only: create and delete topics.
//!
//! A change is serialised by `Shard::control`, persisted (`metadata.json`), published to every
//! core (each acknowledges before the change returns), and then the owner cores open or drop
//! the partitions' logs. A client whose CreateTopics returned can therefore produce at once.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{ApiError, NewTopic, TopicInfo};

use crate::metadata::{self, Snapshot, TopicMeta};
use crate::shard::Shard;
use crate::topic_config;

/// Kafka has no hard limit; this one keeps a typo from creating a million directories.
const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

pub(crate) fn topic_info(name: &str, meta: &TopicMeta) -> TopicInfo {
    TopicInfo {
        name: name.to_string(),
        id: meta.id,
        partitions: meta.owners.len() as i32,
        configs: meta.configs.clone(),
    }
}

impl Shard {
    pub(crate) async fn controller_create_topics(
        self: &Rc<Self>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        let Ok(_permit) = self.control.acquire_permit(1).await else {
            return topics
                .iter()
                .map(|_| Err(ApiError::new(ResponseError::UnknownServerError)))
                .collect();
        };
        let mut next = (*self.snapshot()).clone();
        let mut load = next.load(self.cores);
        let mut results = Vec::with_capacity(topics.len());
        let mut created = Vec::new();
        for topic in topics {
            let outcome = self.plan_topic(&next, &mut load, topic);
            if let Ok((name, meta)) = &outcome {
                results.push(Ok(topic_info(name, meta)));
                if !validate_only {
                    let _ = next.topics.insert(name.clone(), meta.clone());
                    created.push(name.clone());
                }
            } else if let Err(error) = outcome {
                results.push(Err(error));
            }
        }
        if created.is_empty() {
            return results;
        }
        if let Err(error) = self.commit(next).await {
            return results
                .into_iter()
                .map(|r| r.and(Err(error.clone())))
                .collect();
        }
        for name in created {
            self.open_everywhere(&name).await;
        }
        results
    }

    fn plan_topic(
        &self,
        next: &Snapshot,
        load: &mut [usize],
        topic: NewTopic,
    ) -> Result<(String, TopicMeta), ApiError> {
        if next.topics.contains_key(&topic.name) {
            return Err(ApiError::with_message(
                ResponseError::TopicAlreadyExists,
                format!("topic {} already exists", topic.name),
            ));
        }
        let _ = topic_config::log_config(&topic.configs)?;
        let partitions = if topic.partitions == -1 {
            self.config.default_partitions
        } else {
            topic.partitions
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            let reason = format!("partition count must be 1..={PARTITIONS_PER_TOPIC_MAX}");
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                reason,
            ));
        }
        let owners = metadata::place(load, partitions as usize);
        let meta = TopicMeta {
            id: *uuid::Uuid::new_v4().as_bytes(),
            owners,
            configs: topic.configs,
        };
        Ok((topic.name, meta))
    }

    pub(crate) async fn controller_delete_topics(
        self: &Rc<Self>,
        names: Vec<String>,
    ) -> Vec<Result<(), ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        let Ok(_permit) = self.control.acquire_permit(1).await else {
            return names
                .iter()
                .map(|_| Err(ApiError::new(ResponseError::UnknownServerError)))
                .collect();
        };
        let mut next = (*self.snapshot()).clone();
        let mut removed: Vec<(String, TopicMeta)> = Vec::new();
        let results = names
            .iter()
            .map(|name| match next.topics.remove(name) {
                Some(meta) => {
                    removed.push((name.clone(), meta));
                    Ok(())
                }
                None => Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
            })
            .collect::<Vec<_>>();
        if removed.is_empty() {
            return results;
        }
        if let Err(error) = self.commit(next).await {
            return results
                .into_iter()
                .map(|r| r.and(Err(error.clone())))
                .collect();
        }
        for (name, meta) in removed {
            for (core, partitions) in by_owner(&meta) {
                if core == self.id {
                    self.drop_logs(&name, &partitions).await;
                } else {
                    let topic = name.clone();
                    let _ = self
                        .call(core, |reply| crate::mesh::ShardMsg::DropLogs {
                            topic,
                            partitions,
                            reply,
                        })
                        .await;
                }
            }
        }
        results
    }

    /// Persists the new version and publishes it to every core.
    async fn commit(self: &Rc<Self>, mut next: Snapshot) -> Result<(), ApiError> {
        next.version += 1;
        let data_dir = self.config.data_dir.clone();
        let to_write = next.clone();
        let persisted = glommio::executor()
            .spawn_blocking(move || metadata::persist(&data_dir, &to_write))
            .await;
        if let Err(error) = persisted {
            tracing::error!(%error, "persisting metadata failed");
            return Err(ApiError::with_message(
                ResponseError::KafkaStorageError,
                format!("persisting metadata: {error}"),
            ));
        }
        let next = Arc::new(next);
        *self.meta.borrow_mut() = next.clone();
        for core in (0..self.cores).filter(|&c| c != self.id) {
            let snapshot = next.clone();
            let _ = self
                .call(core, |reply| crate::mesh::ShardMsg::Metadata {
                    snapshot,
                    reply,
                })
                .await;
        }
        Ok(())
    }

    async fn open_everywhere(self: &Rc<Self>, name: &str) {
        let Some(meta) = self.snapshot().topics.get(name).cloned() else {
            return;
        };
        for (core, partitions) in by_owner(&meta) {
            if core == self.id {
                self.open_logs(name, &partitions).await;
            } else {
                let topic = name.to_string();
                let _ = self
                    .call(core, |reply| crate::mesh::ShardMsg::OpenLogs {
                        topic,
                        partitions,
                        reply,
                    })
                    .await;
            }
        }
    }
}

fn by_owner(meta: &TopicMeta) -> BTreeMap<usize, Vec<i32>> {
    let mut groups: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (partition, &core) in meta.owners.iter().enumerate() {
        groups.entry(core).or_default().push(partition as i32);
    }
    groups
}
