//! Metadata changes, on shard 0 only: create and delete topics, add partitions, alter topic
//! configs.
//!
//! A change is serialised by `Shard::control`, persisted (`metadata.json`), published to every
//! core (each acknowledges before the change returns), and then the owner cores open or drop
//! the partitions' logs. A client whose CreateTopics returned can therefore produce at once.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{ApiError, ConfigChange, NewTopic, Owner, TopicInfo, Unanswered};
use shoal_kafka::error_map::unanswered;
use shoal_kafka::handlers::create_partitions::invalid_count;

use crate::health::Health;
use crate::metadata::{self, Snapshot, TopicMeta};
use crate::shard::Shard;
use crate::topic_config;

/// Kafka has no hard limit; this one keeps a typo from creating a million directories.
const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Producer ids reserved per metadata write.
pub(crate) const PRODUCER_IDS_PER_BLOCK: i64 = 1000;

pub(crate) fn topic_info(
    snapshot: &Snapshot,
    name: &str,
    meta: &TopicMeta,
    health: &Health,
) -> TopicInfo {
    let leader_epochs = (0..meta.owners.len())
        .map(|p| meta.leader_epochs.get(p).copied().unwrap_or(0))
        .collect();
    // Offline: broken here, or on a node the controller has fenced.
    let mut offline = health.offline_partitions(name);
    for index in 0..meta.owners.len() {
        let node = meta.node_of(index, snapshot.node);
        if node != snapshot.node && !snapshot.live_broker(node) {
            offline.push(index as i32);
        }
    }
    offline.sort_unstable();
    offline.dedup();
    let replicas = meta
        .replicas
        .iter()
        .map(|r| {
            if r.len() > 1 {
                r.iter().map(|&(node, _)| node).collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    TopicInfo {
        nodes: meta.nodes.clone(),
        replicas,
        isr: meta.isr.clone(),
        name: name.to_string(),
        id: meta.id,
        partitions: meta.owners.len() as i32,
        configs: meta.configs.clone(),
        leader_epochs,
        offline,
        produce: topic_config::produce_policy(&meta.configs),
    }
}

impl Shard {
    /// One metadata change at a time. The permit only fails once the broker is stopping.
    pub(crate) async fn metadata_permit(&self) -> Result<glommio::sync::Permit<'_>, ApiError> {
        self.metadata_changes
            .acquire_permit(1)
            .await
            .map_err(|_| unanswered(Owner::Controller, Unanswered::Dropped))
    }

    pub(crate) async fn controller_create_topics(
        self: &Rc<Self>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self
                .cluster_create_topics(&cluster, topics, validate_only)
                .await;
        }
        let _permit = match self.metadata_permit().await {
            Ok(permit) => permit,
            Err(error) => return fail_all(topics.len(), &error),
        };
        let mut next = (*self.snapshot()).clone();
        let mut load = next.load(self.cores);
        let mut results = Vec::with_capacity(topics.len());
        let mut created = Vec::new();
        for topic in topics {
            let outcome = self.plan_topic(&next, &mut load, topic);
            if let Ok((name, meta)) = &outcome {
                results.push(Ok(topic_info(&next, name, meta, &self.health)));
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
            return fail_succeeded(results, &error);
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
            leader_epochs: vec![0; partitions as usize],
            nodes: Vec::new(),
            replicas: Vec::new(),
            isr: Vec::new(),
        };
        Ok((topic.name, meta))
    }

    pub(crate) async fn controller_delete_topics(
        self: &Rc<Self>,
        names: Vec<String>,
    ) -> Vec<Result<(), ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self.cluster_delete_topics(&cluster, names).await;
        }
        let _permit = match self.metadata_permit().await {
            Ok(permit) => permit,
            Err(error) => return fail_all(names.len(), &error),
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
            return fail_succeeded(results, &error);
        }
        let was = self.snapshot();
        for (name, meta) in removed {
            self.drop_everywhere(&name, &meta, &was).await;
        }
        results
    }

    /// Grows topics: new partitions are placed on the least loaded cores, persisted,
    /// published, then opened on their owners.
    pub(crate) async fn controller_create_partitions(
        self: &Rc<Self>,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self
                .cluster_create_partitions(&cluster, topics, validate_only)
                .await;
        }
        let _permit = match self.metadata_permit().await {
            Ok(permit) => permit,
            Err(error) => return fail_all(topics.len(), &error),
        };
        let mut next = (*self.snapshot()).clone();
        let mut load = next.load(self.cores);
        let mut grown = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for (name, count) in topics {
            let Some(meta) = next.topics.get_mut(&name) else {
                results.push(Err(ApiError::with_message(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )));
                continue;
            };
            let current = meta.owners.len() as i32;
            if count <= current {
                results.push(Err(invalid_count(current, count)));
                continue;
            }
            if count > PARTITIONS_PER_TOPIC_MAX {
                results.push(Err(ApiError::with_message(
                    ResponseError::InvalidPartitions,
                    format!("partition count must be 1..={PARTITIONS_PER_TOPIC_MAX}"),
                )));
                continue;
            }
            if !validate_only {
                let added = metadata::place(&mut load, (count - current) as usize);
                meta.owners.extend(added);
                meta.leader_epochs.resize(meta.owners.len(), 0);
                grown.push(name);
            }
            results.push(Ok(()));
        }
        if grown.is_empty() {
            return results;
        }
        if let Err(error) = self.commit(next).await {
            return fail_succeeded(results, &error);
        }
        for name in grown {
            self.open_everywhere(&name).await;
        }
        results
    }

    /// Changes topic configs: each change is applied to the current set and validated; the
    /// new sets are persisted and published, then every owner applies them to its logs.
    pub(crate) async fn controller_alter_topic_configs(
        self: &Rc<Self>,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self
                .cluster_alter_topic_configs(&cluster, changes, validate_only)
                .await;
        }
        let _permit = match self.metadata_permit().await {
            Ok(permit) => permit,
            Err(error) => return fail_all(changes.len(), &error),
        };
        let mut next = (*self.snapshot()).clone();
        let mut altered = Vec::new();
        let mut results = Vec::with_capacity(changes.len());
        for (name, change) in changes {
            let Some(meta) = next.topics.get_mut(&name) else {
                results.push(Err(ApiError::with_message(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )));
                continue;
            };
            match topic_config::apply_change(&meta.configs, change) {
                Ok(configs) => {
                    if !validate_only && configs != meta.configs {
                        meta.configs = configs;
                        altered.push(name);
                    }
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if altered.is_empty() {
            return results;
        }
        if let Err(error) = self.commit(next).await {
            return fail_succeeded(results, &error);
        }
        for name in altered {
            self.apply_config_everywhere(&name).await;
        }
        results
    }

    async fn apply_config_everywhere(self: &Rc<Self>, name: &str) {
        self.on_owner_cores(name, OwnerWork::ApplyConfig).await;
    }

    /// A producer id never handed out before. One node: ids come from blocks reserved in the
    /// persisted metadata, so a restart continues above every id it may have given out. A
    /// cluster node: from blocks the controller reserved for it (`AllocateProducerIds`), so
    /// no two nodes, and no node before and after losing its data dir, share an id.
    pub(crate) async fn controller_allocate_producer_id(self: &Rc<Self>) -> Result<i64, ApiError> {
        assert_eq!(self.id, 0, "producer ids are allocated on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self.cluster_allocate_producer_id(&cluster).await;
        }
        let _permit = self.metadata_permit().await?;
        let next = self.next_producer_id.get();
        let reserved = self.snapshot().producer_ids_reserved_until;
        if next >= reserved {
            let mut snapshot = (*self.snapshot()).clone();
            snapshot.producer_ids_reserved_until = next.max(reserved) + PRODUCER_IDS_PER_BLOCK;
            self.commit(snapshot).await?;
        }
        self.next_producer_id.set(next + 1);
        Ok(next)
    }

    /// Persists the new version and publishes it to every core.
    pub(crate) async fn commit(self: &Rc<Self>, mut next: Snapshot) -> Result<(), ApiError> {
        next.version += 1;
        let mut persisted = self.persist(&next).await;
        if persisted.as_ref().is_err_and(is_disk_full) {
            // The data disk filled up: the reserve is there for exactly this. The write is an
            // atomic replacement of a fresh temporary file, so doing it again is safe.
            self.disk.disk_full().await;
            persisted = self.persist(&next).await;
        }
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
            let published = self
                .control(core, move |shard| async move {
                    *shard.meta.borrow_mut() = snapshot;
                })
                .await;
            if let Err(why) = published {
                tracing::error!(core, ?why, "a core did not take the new metadata version");
            }
        }
        Ok(())
    }

    async fn open_everywhere(self: &Rc<Self>, name: &str) {
        self.on_owner_cores(name, OwnerWork::Open).await;
    }

    /// Runs `work` on every core of this node that owns partitions of `name` (as the current
    /// metadata has it), one core after the other. A core that does not answer is logged: the
    /// change is committed, and the core catches up when it next opens its partitions.
    async fn on_owner_cores(self: &Rc<Self>, name: &str, work: OwnerWork) {
        let snapshot = self.snapshot();
        let Some(meta) = snapshot.topics.get(name) else {
            return;
        };
        self.on_cores_of(name, meta, &snapshot, work).await;
    }

    /// `on_owner_cores` for a topic as `snapshot` has it (a deleted topic is no longer in the
    /// current metadata).
    async fn on_cores_of(
        self: &Rc<Self>,
        name: &str,
        meta: &TopicMeta,
        snapshot: &Snapshot,
        work: OwnerWork,
    ) {
        for (core, partitions) in by_owner(snapshot, meta) {
            let topic = name.to_string();
            let done = self
                .control(core, move |shard| async move {
                    match work {
                        OwnerWork::Open => shard.open_logs(&topic, &partitions).await,
                        OwnerWork::Drop => shard.drop_logs(&topic, &partitions).await,
                        OwnerWork::ApplyConfig => shard.apply_topic_config(&topic).await,
                        OwnerWork::RaiseEpochs => shard.raise_epochs(&topic, &partitions).await,
                    }
                })
                .await;
            if let Err(why) = done {
                tracing::error!(topic = %name, core, ?why, "a core did not {}", work.what());
            }
        }
    }
}

/// What a metadata change asks of the cores owning a topic's partitions.
#[derive(Clone, Copy, Debug)]
enum OwnerWork {
    Open,
    Drop,
    ApplyConfig,
    RaiseEpochs,
}

impl OwnerWork {
    /// For the log line of a core that did not answer.
    fn what(self) -> &'static str {
        match self {
            OwnerWork::Open => "open a topic's logs",
            OwnerWork::Drop => "drop a deleted topic's logs",
            OwnerWork::ApplyConfig => "apply altered configs",
            OwnerWork::RaiseEpochs => "start new leader epochs",
        }
    }
}

fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == 28 || code == 122) // ENOSPC, EDQUOT
}

impl Shard {
    /// Writes `metadata.json` (atomically; blocking, off the reactor).
    async fn persist(&self, next: &Snapshot) -> std::io::Result<()> {
        let data_dir = self.config.data_dir.clone();
        let to_write = next.clone();
        glommio::executor()
            .spawn_blocking(move || metadata::persist(&data_dir, &to_write))
            .await
    }
}

/// This node's partitions of a topic, by owner core.
fn by_owner(snapshot: &Snapshot, meta: &TopicMeta) -> BTreeMap<usize, Vec<i32>> {
    let mut groups: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (partition, &core) in meta.owners.iter().enumerate() {
        if snapshot.is_local(meta, partition) {
            groups.entry(core).or_default().push(partition as i32);
        }
    }
    groups
}

/// Every item of a change fails with `error` (the change could not start).
pub(crate) fn fail_all<T>(count: usize, error: &ApiError) -> Vec<Result<T, ApiError>> {
    (0..count).map(|_| Err(error.clone())).collect()
}

/// The outcomes of a change whose commit failed: what would have succeeded fails with the
/// commit's error; items refused earlier keep their own error.
pub(crate) fn fail_succeeded<T>(
    outcomes: Vec<Result<T, ApiError>>,
    error: &ApiError,
) -> Vec<Result<T, ApiError>> {
    outcomes
        .into_iter()
        .map(|outcome| outcome.and(Err(error.clone())))
        .collect()
}

impl Shard {
    /// A cluster node, on core 0: takes the metadata the controller committed (`next`,
    /// built from its `ClusterState`) as this node's, as a metadata change here would: the
    /// cache `metadata.json` is written and every core gets the new version, then this
    /// node's partitions of new topics (or of new partitions) are opened, those of deleted
    /// topics dropped, altered configs applied, raised leader epochs started.
    pub(crate) async fn adopt_cluster_metadata(self: &Rc<Self>, mut next: Snapshot) {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        let Ok(_permit) = self.metadata_permit().await else {
            return;
        };
        let current = self.snapshot();
        next.version = current.version;
        next.producer_ids_reserved_until = current.producer_ids_reserved_until;
        if next.topics == current.topics
            && next.brokers == current.brokers
            && next.client_quotas == current.client_quotas
        {
            return;
        }
        let mut removed = Vec::new();
        let mut opened = Vec::new();
        let mut altered = Vec::new();
        let mut raised = Vec::new();
        for (name, meta) in &current.topics {
            match next.topics.get(name) {
                Some(new) if new.id == meta.id => {
                    if new.owners.len() > meta.owners.len() {
                        opened.push(name.clone());
                    }
                    if new.configs != meta.configs {
                        altered.push(name.clone());
                    }
                    if new.leader_epochs != meta.leader_epochs {
                        raised.push(name.clone());
                    }
                }
                _ => removed.push((name.clone(), meta.clone())),
            }
        }
        for (name, meta) in &next.topics {
            if current.topics.get(name).is_none_or(|old| old.id != meta.id) {
                opened.push(name.clone());
            }
        }
        if let Err(error) = self.commit(next).await {
            // The controller's log has the change; the cache did not take it. The next
            // change (or a restart, which replays the controller log) brings it.
            tracing::error!(?error, "a committed metadata change was not cached");
            return;
        }
        for (name, meta) in removed {
            self.drop_everywhere(&name, &meta, &current).await;
        }
        for name in opened {
            self.open_everywhere(&name).await;
        }
        for name in altered {
            self.apply_config_everywhere(&name).await;
        }
        for name in raised {
            self.raise_epochs_everywhere(&name).await;
        }
    }

    /// Closes and removes this node's logs of a deleted topic (`was`: the metadata that still
    /// had it), then its directory.
    async fn drop_everywhere(self: &Rc<Self>, name: &str, meta: &TopicMeta, was: &Snapshot) {
        self.on_cores_of(name, meta, was, OwnerWork::Drop).await;
        // Every owner has closed and removed its partitions; now the topic directory.
        let dir = self.config.data_dir.join(metadata::TOPICS_DIR).join(name);
        let removed = glommio::executor()
            .spawn_blocking(move || crate::shard::remove_dir_if_present(&dir))
            .await;
        if let Err(error) = removed {
            tracing::warn!(topic = %name, %error, "removing a deleted topic's directory");
        }
    }

    async fn raise_epochs_everywhere(self: &Rc<Self>, name: &str) {
        self.on_owner_cores(name, OwnerWork::RaiseEpochs).await;
    }
}
