//! One core's broker state and its side of the core mesh.
//!
//! A `Shard` runs on one glommio executor and owns: the logs of the partitions assigned to it,
//! its copy of the metadata snapshot, its buffer pool and batch cache. It is `!Send`
//! (`Rc`/`RefCell`); other cores reach its partitions only through `ShardMsg` messages. Shard 0
//! additionally owns metadata changes (`controller.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::MeteredDisk as GlommioDisk;
use std::future::Future;

use futures::channel::oneshot;
use futures::future::{select, Either};
use glommio::channels::channel_mesh::Senders;
use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{Acks, ApiError, TopicPartition, Unanswered};
use shoal_kafka::error_map::storage_error;
use shoal_model::{Offset, Term, TimestampMs};
use shoal_storage::{Appended, Durability, Log, LogContext, LogOffsets, OfflineKind, ReadBatches};

use crate::config::Config;
use crate::disk_guard::DiskGuard;
use crate::health::{Health, Offline, Shared};
use crate::mesh::{self, Call, Lane, ShardMsg, CALL_TIMEOUT_MS};
use crate::metadata::{partition_dir, Snapshot};
use crate::topic_config;
use glommio::sync::StaticPermit;

/// Longest sleep of a `flush.ms` timer.
const FLUSH_TIMER_MS_MAX: u64 = 3_600_000;

pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) cores: usize,
    pub(crate) config: Config,
    pub(crate) meta: RefCell<Arc<Snapshot>>,
    logs: RefCell<HashMap<TopicPartition, Log<GlommioDisk>>>,
    /// Offline partitions, broker-wide (this core writes only its own partitions' entries).
    pub(crate) health: Arc<Health>,
    /// The data disk's reserve; data appends are refused while it is released.
    pub(crate) disk: Arc<DiskGuard>,
    pub(crate) ctx: LogContext<GlommioDisk>,
    /// The request lane of the core mesh (see `mesh.rs`).
    pub(crate) senders: Senders<ShardMsg>,
    /// The control lane: the controller's fan-out to partition owners.
    pub(crate) control_senders: Senders<ShardMsg>,
    /// Replies to other cores' calls.
    pub(crate) reply_senders: Senders<ShardMsg>,
    /// This core's calls to other cores waiting for their `Reply`, by call id.
    calls_waiting: RefCell<HashMap<u64, oneshot::Sender<(mesh::Answer, Duration)>>>,
    next_call_id: Cell<u64>,
    /// `Answer` jobs from other cores running here, by (core, call id): how to stop each.
    jobs_running: RefCell<HashMap<(usize, u64), oneshot::Sender<()>>>,
    /// Serialises metadata changes (used on shard 0 only).
    pub(crate) metadata_changes: glommio::sync::Semaphore,
    pub(crate) stopping: Cell<bool>,
    /// Core 0 of a cluster node: what `/v1/cluster` shows (see `cluster.rs`).
    pub(crate) cluster_view: RefCell<Option<Rc<RefCell<crate::cluster::ClusterView>>>>,
    /// Core 0 of a cluster node: metadata changes go through the controller with it.
    pub(crate) cluster: RefCell<Option<Rc<crate::cluster::ClusterHandle>>>,
    /// Partitions with a running `flush.ms` timer, each with the timer's generation: a timer
    /// whose generation is no longer listed stops.
    flush_timers: RefCell<HashMap<TopicPartition, u64>>,
    flush_timer_generation: Cell<u64>,
    /// This core's share of `requests_inflight_bytes_max`: a connection takes a frame's size
    /// from it before reading the frame and gives it back once the response is written.
    pub(crate) request_bytes: Rc<glommio::sync::Semaphore>,
    /// This core's counters, read by the admin endpoint on core 0.
    pub(crate) metrics: Arc<crate::metrics::CoreMetrics>,
    /// Next producer id to hand out (core 0 only; ids up to the persisted reservation).
    pub(crate) next_producer_id: Cell<i64>,
    /// Cluster mode: the block of producer ids the controller reserved for this node (next,
    /// end), in memory only (a restart asks for a new block), and who may ask for the next.
    pub(crate) producer_id_block: Cell<(i64, i64)>,
    pub(crate) producer_id_blocks: glommio::sync::Semaphore,
    /// The Raft groups of this core's replicated partitions (see `replication.rs`), by
    /// partition and by group id.
    groups: RefCell<HashMap<TopicPartition, Rc<crate::replication::GroupHandle>>>,
    groups_by_id: RefCell<HashMap<u64, Rc<crate::replication::GroupHandle>>>,
    /// Raft messages between this core and core 0 in flight (bounded).
    pub(crate) raft_forwards: Cell<usize>,
    /// Core 0 of a cluster node: the node-to-node transport.
    pub(crate) rpc: RefCell<Option<Rc<crate::rpc_net::RpcNet>>>,
    /// The fetch sessions (KIP-227) of the connections this core serves.
    pub(crate) fetch_sessions: RefCell<shoal_kafka::fetch_session::FetchSessions>,
    /// Client quotas: the usage this core counts (the tags `counting_core` gives it), from
    /// requests served on any core (see `quotas.rs`).
    pub(crate) quota_usage: RefCell<shoal_quotas::Usage>,
}

impl Shard {
    pub(crate) fn new(
        config: Config,
        snapshot: Arc<Snapshot>,
        (senders, control_senders, reply_senders): (
            Senders<ShardMsg>,
            Senders<ShardMsg>,
            Senders<ShardMsg>,
        ),
        ctx: LogContext<GlommioDisk>,
        metrics: Arc<crate::metrics::CoreMetrics>,
        shared: Shared,
    ) -> Shard {
        let request_bytes = config.request_bytes_per_core();
        let (id, cores) = (senders.peer_id(), senders.nr_consumers());
        let fetch_sessions = shoal_kafka::fetch_session::FetchSessions::new(
            config.fetch_sessions_max.div_ceil(cores),
            config.fetch_session_eviction_ms,
            id as u32,
            cores as u32,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ (id as u64).rotate_left(32),
        );
        Shard {
            fetch_sessions: RefCell::new(fetch_sessions),
            quota_usage: RefCell::new(shoal_quotas::Usage::new(
                shoal_quotas::QuotaWindow {
                    samples: config.quota_window_samples,
                    sample_ms: config.quota_window_sample_ms,
                },
                config.quota_sensors_per_core_max,
            )),
            next_producer_id: Cell::new(snapshot.producer_ids_reserved_until),
            producer_id_block: Cell::new((0, 0)),
            producer_id_blocks: glommio::sync::Semaphore::new(1),
            metrics,
            id,
            cores,
            config,
            meta: RefCell::new(snapshot),
            logs: RefCell::new(HashMap::new()),
            health: shared.health,
            disk: shared.disk,
            ctx,
            senders,
            control_senders,
            reply_senders,
            calls_waiting: RefCell::new(HashMap::new()),
            next_call_id: Cell::new(0),
            jobs_running: RefCell::new(HashMap::new()),
            metadata_changes: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
            cluster_view: RefCell::new(None),
            cluster: RefCell::new(None),
            request_bytes: Rc::new(glommio::sync::Semaphore::new(request_bytes)),
            flush_timers: RefCell::new(HashMap::new()),
            flush_timer_generation: Cell::new(0),
            groups: RefCell::new(HashMap::new()),
            groups_by_id: RefCell::new(HashMap::new()),
            raft_forwards: Cell::new(0),
            rpc: RefCell::new(None),
        }
    }

    pub(crate) fn group_by_id(&self, group: u64) -> Option<Rc<crate::replication::GroupHandle>> {
        self.groups_by_id.borrow().get(&group).cloned()
    }

    pub(crate) fn group(&self, tp: &TopicPartition) -> Option<Rc<crate::replication::GroupHandle>> {
        self.groups.borrow().get(tp).cloned()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.meta.borrow().clone()
    }

    /// Opens (recovering) every partition this shard owns.
    pub(crate) async fn open_owned(self: &Rc<Self>) {
        let snapshot = self.snapshot();
        for (topic, meta) in &snapshot.topics {
            let mine: Vec<i32> = (0..meta.owners.len() as i32)
                .filter(|&p| {
                    meta.owners[p as usize] == self.id && snapshot.is_local(meta, p as usize)
                })
                .collect();
            self.open_logs(topic, &mine).await;
        }
    }

    pub(crate) async fn open_logs(self: &Rc<Self>, topic: &str, partitions: &[i32]) {
        let configs = self
            .snapshot()
            .topics
            .get(topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let config = match topic_config::log_config(&configs) {
            Ok(config) => config,
            Err(error) => {
                // A config stored by another version may not validate here. The storage
                // defaults would delete by age (a week), which for a topic set to keep its
                // data (retention.ms=-1, compaction) loses it: nothing is deleted or
                // cleaned until the config is fixed.
                tracing::error!(%topic, ?error,
                    "stored topic config is invalid; nothing of the topic is deleted or cleaned until it is fixed");
                shoal_storage::LogConfig {
                    retention_ms: None,
                    retention_bytes: None,
                    compaction: None,
                    ..shoal_storage::LogConfig::default()
                }
            }
        };
        for &partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            if self.logs.borrow().contains_key(&tp) {
                continue;
            }
            let dir = partition_dir(&self.config.data_dir, topic, partition);
            let snapshot = self.snapshot();
            let topic_id = snapshot.topics.get(topic).map(|meta| meta.id);
            let replicated = snapshot
                .topics
                .get(topic)
                .is_some_and(|meta| meta.is_replicated(partition as usize));
            if replicated {
                match self.open_replicated(&tp, dir, config.clone()).await {
                    Ok(log) if !self.still_mine(&tp, topic_id) => {
                        self.stop_group(&tp).await;
                        self.discard_opened(&tp, log).await;
                    }
                    Ok(log) => {
                        self.health.set_online(&tp);
                        let _ = self.flush_timers.borrow_mut().remove(&tp);
                        self.ensure_flush_timer(&tp, &log);
                        let _ = self.logs.borrow_mut().insert(tp, log);
                    }
                    Err(reason) => {
                        tracing::error!(%tp, %reason, "replicated partition offline");
                        self.health.set_offline(
                            &tp,
                            Offline {
                                reason,
                                kind: OfflineKind::Io,
                            },
                        );
                    }
                }
                continue;
            }
            let epoch = snapshot.leader_epoch(topic, partition);
            match self.open_log(&tp, dir, config.clone(), epoch).await {
                Ok(log) if !self.still_mine(&tp, topic_id) => self.discard_opened(&tp, log).await,
                Ok(log) => {
                    let flusher = log.clone();
                    glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
                    let _ = self.flush_timers.borrow_mut().remove(&tp);
                    self.ensure_flush_timer(&tp, &log);
                    self.health.set_online(&tp);
                    let _ = self.logs.borrow_mut().insert(tp, log);
                }
                Err(error) => self.record_offline(&tp, &error),
            }
        }
    }

    /// Whether a partition whose log was just opened is still this core's, in the same topic
    /// (opening awaits recovery, which can take seconds: a DeleteTopics or a move can land
    /// meanwhile, and finds nothing to close because the log is not in the map yet).
    fn still_mine(&self, tp: &TopicPartition, topic_id: Option<[u8; 16]>) -> bool {
        let snapshot = self.snapshot();
        let same_topic = snapshot.topics.get(&tp.topic).map(|meta| meta.id) == topic_id;
        same_topic && snapshot.owner(&tp.topic, tp.partition) == Some(self.id)
    }

    /// Closes a log opened for a partition that is no longer this core's (see `still_mine`):
    /// keeping it would hold its files open, and a deleted topic's disk space with them.
    /// A deleted topic's files, which the delete removed while the log was opening (recovery
    /// may have written some again), go too.
    async fn discard_opened(&self, tp: &TopicPartition, log: Log<GlommioDisk>) {
        tracing::info!(%tp, "partition left this core while its log was opening; closing it");
        if let Err(error) = log.close().await {
            tracing::warn!(%tp, %error, "closing a log that is no longer this core's");
        }
        if self.snapshot().topics.contains_key(&tp.topic) {
            return; // a topic of the same name again: its files are its own
        }
        let dir = partition_dir(&self.config.data_dir, &tp.topic, tp.partition);
        let dirs = [raft_state_dir(&dir), dir];
        let removed = glommio::executor()
            .spawn_blocking(move || dirs.iter().try_for_each(remove_dir_if_present))
            .await;
        if let Err(error) = removed {
            tracing::warn!(%tp, %error, "removing a deleted partition's files");
        }
    }

    /// Opens (recovering) one partition's log in the partition's leader epoch: a log whose
    /// term is older starts the newer one (in a new segment).
    async fn open_log(
        &self,
        tp: &TopicPartition,
        dir: std::path::PathBuf,
        config: shoal_storage::LogConfig,
        epoch: Term,
    ) -> Result<Log<GlommioDisk>, shoal_storage::Error> {
        let log = Log::open(self.ctx.clone(), dir, config).await?;
        if log.term() < epoch {
            log.set_term(epoch).await?;
        } else if log.term() > epoch {
            tracing::warn!(%tp, log_term = %log.term(), %epoch, "log holds a newer leader epoch than the metadata; keeping it");
        }
        Ok(log)
    }

    /// Opens a replicated partition's log and its Raft group member (state in
    /// `<partition dir>.raft`), and starts the group's task.
    async fn open_replicated(
        self: &Rc<Self>,
        tp: &TopicPartition,
        dir: std::path::PathBuf,
        config: shoal_storage::LogConfig,
    ) -> Result<Log<GlommioDisk>, String> {
        let snapshot = self.snapshot();
        let meta = snapshot
            .topics
            .get(&tp.topic)
            .ok_or_else(|| format!("{tp}: topic not in the metadata"))?;
        let index = tp.partition as usize;
        let replicas = meta.replicas.get(index).cloned().unwrap_or_default();
        let partition = u32::try_from(tp.partition).map_err(|_| format!("{tp}: bad index"))?;
        let group = shoal_controller::partition_group(&meta.id, partition);
        let peers: std::collections::BTreeMap<u64, crate::replication::Peer> = replicas
            .iter()
            .map(|&(node, core)| {
                let node = shoal_model::NodeId(node);
                let peer = crate::replication::Peer {
                    node,
                    core: shoal_model::ShardId(core),
                };
                (crate::replication::raft_id(node), peer)
            })
            .collect();
        let me = crate::replication::raft_id(shoal_model::NodeId(self.config.node_id));
        let voters: Vec<u64> = peers.keys().copied().collect();
        let log = Log::open_replicated(self.ctx.clone(), dir.clone(), config)
            .await
            .map_err(|e| format!("{tp}: opening the log: {e}"))?;
        let flusher = log.clone();
        glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
        let state_dir = raft_state_dir(&dir);
        let preferred = replicas.first().map(|&(node, _)| node) == Some(self.config.node_id);
        let replica = shoal_consensus::PartitionReplica::open(
            self.ctx.disk.clone(),
            log.clone(),
            &state_dir,
            me,
            voters,
        )
        .await
        .map_err(|e| format!("{tp}: opening the raft state: {e}"))?;
        let handle = crate::replication::start(
            self.clone(),
            tp.clone(),
            meta.id,
            group,
            replica,
            peers,
            preferred,
        );
        let _ = self.groups_by_id.borrow_mut().insert(group, handle.clone());
        let _ = self.groups.borrow_mut().insert(tp.clone(), handle);
        Ok(log)
    }

    /// Stops the group of a replicated partition of this core, if it has one.
    async fn stop_group(&self, tp: &TopicPartition) {
        let handle = self.groups.borrow_mut().remove(tp);
        if let Some(handle) = handle {
            let _ = self.groups_by_id.borrow_mut().remove(&handle.group);
            handle.stop().await;
        }
    }

    /// Records why a partition of this core is offline (Metadata reports it leaderless).
    fn record_offline(&self, tp: &TopicPartition, error: &shoal_storage::Error) {
        tracing::error!(%tp, %error, "partition offline");
        let kind = match error {
            shoal_storage::Error::Offline(reason) => reason.kind,
            _ => OfflineKind::Io,
        };
        let offline = Offline {
            reason: error.to_string(),
            kind,
        };
        self.health.set_offline(tp, offline);
    }

    /// Closes and deletes the partitions' logs.
    /// Starts the metadata's leader epoch on each of these open logs whose term is older (a
    /// new leadership period the controller began, e.g. when the node came back).
    pub(crate) async fn raise_epochs(&self, topic: &str, partitions: &[i32]) {
        for &partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            if self.groups.borrow().contains_key(&tp) {
                continue; // a Raft group's term is its own
            }
            let log = self.logs.borrow().get(&tp).cloned();
            let epoch = self.snapshot().leader_epoch(topic, partition);
            if let Some(log) = log.filter(|log| log.term() < epoch) {
                if let Err(error) = log.set_term(epoch).await {
                    self.record_offline(&tp, &error);
                }
            }
        }
    }

    pub(crate) async fn drop_logs(&self, topic: &str, partitions: &[i32]) {
        for &partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            self.health.set_online(&tp);
            let _ = self.flush_timers.borrow_mut().remove(&tp);
            self.stop_group(&tp).await;
            let log = self.logs.borrow_mut().remove(&tp);
            if let Some(log) = log {
                if let Err(error) = log.close().await {
                    tracing::warn!(%tp, %error, "closing a deleted partition");
                }
            }
        }
        // Only this core's partitions: other cores may still be closing theirs, so the topic
        // directory itself is removed by the controller once every core is done.
        let dirs: Vec<_> = partitions
            .iter()
            .map(|&p| partition_dir(&self.config.data_dir, topic, p))
            .flat_map(|dir| [raft_state_dir(&dir), dir])
            .collect();
        let removed = glommio::executor()
            .spawn_blocking(move || dirs.iter().try_for_each(remove_dir_if_present))
            .await;
        if let Err(error) = removed {
            tracing::warn!(%topic, %error, "removing a deleted topic's files");
        }
    }

    /// The log of a partition of this core, for a client: a replicated partition's only
    /// where this replica leads (clients read from and write to the leader).
    pub(crate) fn log(&self, tp: &TopicPartition) -> Result<Log<GlommioDisk>, ApiError> {
        if let Some(group) = self.groups.borrow().get(tp) {
            if !group.status.leader.get() {
                return Err(group.not_leader());
            }
        }
        self.any_log(tp)
    }

    /// The log of a partition of this core, leader or not.
    pub(crate) fn any_log(&self, tp: &TopicPartition) -> Result<Log<GlommioDisk>, ApiError> {
        if let Some(log) = self.logs.borrow().get(tp) {
            return Ok(log.clone());
        }
        if let Some(offline) = self.health.get(tp) {
            return Err(ApiError::with_message(
                ResponseError::KafkaStorageError,
                offline.reason,
            ));
        }
        // Metadata moved ahead of the log (being created or deleted): clients retry.
        Err(ApiError::with_message(
            ResponseError::NotLeaderOrFollower,
            format!("{tp} is not open on core {}", self.id),
        ))
    }

    pub(crate) async fn local_append(
        &self,
        tp: &TopicPartition,
        batch: Vec<u8>,
        acks: Acks,
    ) -> Result<Appended, ApiError> {
        if self.disk.is_full() {
            return Err(ApiError::with_message(
                ResponseError::KafkaStorageError,
                "the data disk is full: produce is refused until space is freed \
                 (delete topics or records)",
            ));
        }
        if let Some(group) = self.group(tp) {
            // The leader's own ISR decides (the one it reports; the metadata copy may lag).
            if acks == Acks::All && group.status.leader.get() {
                let snapshot = self.snapshot();
                let min = snapshot.topics.get(&tp.topic).map_or(1, |meta| {
                    topic_config::produce_policy(&meta.configs).min_insync_replicas
                });
                let in_sync = i32::try_from(group.status.in_sync.borrow().len()).unwrap_or(0);
                if in_sync < min {
                    return Err(ApiError::with_message(
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "the {in_sync} in-sync replica(s) cannot satisfy \
                             min.insync.replicas={min}"
                        ),
                    ));
                }
            }
            return group.propose(batch, acks).await;
        }
        let appended = self.log(tp)?.append(batch, acks.wait()).await;
        if let Err(shoal_storage::Error::Offline(reason)) = &appended {
            if reason.kind == OfflineKind::DiskFull {
                // Hand the reserve to metadata and offsets at once, not at the next poll.
                self.disk.disk_full().await;
            }
        }
        appended.map_err(|e| storage_error(&e))
    }

    pub(crate) async fn local_read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadBatches, ApiError> {
        self.log(tp)?
            .read(offset, max_bytes)
            .await
            .map_err(|e| storage_error(&e))
    }

    pub(crate) fn local_offsets(&self, tp: &TopicPartition) -> Result<LogOffsets, ApiError> {
        Ok(self.log(tp)?.offsets())
    }

    pub(crate) async fn local_offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.log(tp)?
            .offset_for_timestamp(ts)
            .await
            .map_err(|e| storage_error(&e))
    }

    pub(crate) async fn local_max_timestamp(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError> {
        self.log(tp)?
            .max_timestamp()
            .await
            .map_err(|e| storage_error(&e))
    }

    /// DeleteRecords on the owner; `before` -1 is the high watermark.
    pub(crate) async fn local_delete_records(
        &self,
        tp: &TopicPartition,
        before: i64,
    ) -> Result<Offset, ApiError> {
        let log = self.log(tp)?;
        let before = if before == -1 {
            log.offsets().high_watermark
        } else {
            Offset(before)
        };
        log.delete_records(before)
            .await
            .map_err(|e| storage_error(&e))
    }

    pub(crate) fn local_partition_size(&self, tp: &TopicPartition) -> Result<u64, ApiError> {
        Ok(self.any_log(tp)?.size_bytes())
    }

    /// Applies the topic's configs from this core's snapshot to the logs it owns, and starts
    /// a `flush.ms` timer where a log became relaxed.
    pub(crate) async fn apply_topic_config(self: &Rc<Self>, topic: &str) {
        let Some(configs) = self.snapshot().topics.get(topic).map(|t| t.configs.clone()) else {
            return;
        };
        let config = match topic_config::log_config(&configs) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(%topic, ?error, "altered topic config is invalid; not applied");
                return;
            }
        };
        let logs: Vec<_> = self
            .logs
            .borrow()
            .iter()
            .filter(|(tp, _)| tp.topic == topic)
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect();
        for (tp, log) in logs {
            if let Err(error) = log.reconfigure(config.clone()).await {
                tracing::warn!(%tp, %error, "applying an altered topic config");
                continue;
            }
            self.ensure_flush_timer(&tp, &log);
        }
    }

    /// Starts the `flush.ms` timer of a relaxed log unless one runs. The timer syncs every
    /// `flush.ms` (re-read each round, so changes apply) and stops when the log is closed or
    /// offline, leaves relaxed durability, or is replaced (its generation is gone).
    fn ensure_flush_timer(self: &Rc<Self>, tp: &TopicPartition, log: &Log<GlommioDisk>) {
        if !matches!(log.config().durability, Durability::Relaxed { .. }) {
            return;
        }
        let generation = self.flush_timer_generation.get() + 1;
        {
            let mut timers = self.flush_timers.borrow_mut();
            if timers.contains_key(tp) {
                return;
            }
            self.flush_timer_generation.set(generation);
            let _ = timers.insert(tp.clone(), generation);
        }
        let (shard, tp, log) = (self.clone(), tp.clone(), log.clone());
        glommio::spawn_local(async move {
            let current = || shard.flush_timers.borrow().get(&tp) == Some(&generation);
            while let Durability::Relaxed { flush_ms, .. } = log.config().durability {
                // Capped: Kafka's "never" (Long.MAX_VALUE ms) would overflow the timer's
                // deadline; a sync an hour changes nothing for a topic that asked for none.
                let sleep_ms = flush_ms.clamp(1, FLUSH_TIMER_MS_MAX);
                glommio::timer::sleep(Duration::from_millis(sleep_ms)).await;
                if !current() || log.config().durability == Durability::Fsync {
                    break;
                }
                if log.sync().await.is_err() {
                    break; // Closed or offline: nothing more to sync.
                }
            }
            if current() {
                let _ = shard.flush_timers.borrow_mut().remove(&tp);
            }
        })
        .detach();
    }

    /// Waits until the partition's high watermark passes `offset`, at most `timeout_ms`.
    pub(crate) async fn local_wait_for_data(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        timeout_ms: u64,
    ) {
        let Ok(log) = self.log(tp) else { return };
        let grown = Box::pin(log.wait_for_high_watermark_above(offset));
        let timeout = Box::pin(glommio::timer::sleep(Duration::from_millis(timeout_ms)));
        let _ = select(grown, timeout).await;
    }

    /// Runs `work` on `core` as a state change: to completion, whatever happens to the
    /// caller (see `mesh.rs`), on the request lane, within the default call timeout.
    pub(crate) async fn complete<T, W, F>(
        self: &Rc<Self>,
        core: usize,
        work: W,
    ) -> Result<T, Unanswered>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: Future<Output = T> + 'static,
    {
        self.call_on(core, Call::Complete, Lane::Requests, CALL_TIMEOUT_MS, work)
            .await
    }

    /// Runs `work` on `core` for an answer: a read or a wait, dropped with the caller.
    pub(crate) async fn answer<T, W, F>(
        self: &Rc<Self>,
        core: usize,
        timeout_ms: u64,
        work: W,
    ) -> Result<T, Unanswered>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: Future<Output = T> + 'static,
    {
        self.call_on(core, Call::Answer, Lane::Requests, timeout_ms, work)
            .await
    }

    /// The controller's fan-out to a partition owner: a state change on the control lane.
    pub(crate) async fn control<T, W, F>(
        self: &Rc<Self>,
        core: usize,
        work: W,
    ) -> Result<T, Unanswered>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: Future<Output = T> + 'static,
    {
        self.call_on(core, Call::Complete, Lane::Control, CALL_TIMEOUT_MS, work)
            .await
    }

    /// Runs `work` on `core`. Here: a read inline, a state change as its own detached task (so
    /// dropping the caller cannot interrupt it). Elsewhere: a job message over `lane`, answered
    /// by a `Reply` message that this core's receive loop hands to the waiting call (see
    /// `mesh.rs`: no waker crosses cores), awaited at most `timeout_ms`.
    async fn call_on<T, W, F>(
        self: &Rc<Self>,
        core: usize,
        call: Call,
        lane: Lane,
        timeout_ms: u64,
        work: W,
    ) -> Result<T, Unanswered>
    where
        T: Send + 'static,
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: Future<Output = T> + 'static,
    {
        if core == self.id {
            return match call {
                Call::Answer => Ok(work(self.clone()).await),
                Call::Complete => {
                    let (done, answer) = oneshot::channel();
                    let shard = self.clone();
                    let timed = self.quotas_set();
                    glommio::spawn_local(async move {
                        let outcome = crate::quotas::timed_if(timed, work(shard)).await;
                        let _ = done.send(outcome);
                    })
                    .detach();
                    let (answer, busy) = answer.await.map_err(|_| Unanswered::Dropped)?;
                    crate::quotas::charge(busy);
                    Ok(answer)
                }
            };
        }
        let id = self.next_call_id.get();
        self.next_call_id.set(id + 1);
        let (reply, answer) = oneshot::channel::<(mesh::Answer, Duration)>();
        let _ = self.calls_waiting.borrow_mut().insert(id, reply);
        // However this call ends, its entry goes; an `Answer` call still running elsewhere
        // is told to stop.
        let _waiting = Waiting {
            shard: self.clone(),
            core,
            id,
            lane,
            cancel: call == Call::Answer,
        };
        let message = ShardMsg::Job {
            from: self.id,
            id,
            call,
            job: mesh::job(work),
        };
        let exchange = async {
            self.lane(lane)
                .send_to(core, message)
                .await
                .map_err(|_| Unanswered::Unreachable)?;
            answer.await.map_err(|_| Unanswered::Dropped)
        };
        // Sending waits while the owner's channel is full (backpressure); that wait counts
        // against the timeout too.
        let timer = Box::pin(glommio::timer::sleep(Duration::from_millis(timeout_ms)));
        let (answer, busy) = match select(Box::pin(exchange), timer).await {
            Either::Left((answer, _)) => answer?,
            Either::Right(((), _)) => return Err(Unanswered::TimedOut),
        };
        crate::quotas::charge(busy);
        answer.downcast::<T>().map(|answer| *answer).map_err(|_| {
            tracing::error!(core, "a reply of another type than the call's");
            Unanswered::Dropped
        })
    }

    fn lane(&self, lane: Lane) -> &Senders<ShardMsg> {
        match lane {
            Lane::Requests => &self.senders,
            Lane::Control => &self.control_senders,
        }
    }

    /// Serves a message from another core (its receive loop calls this; jobs are spawned).
    pub(crate) fn receive(self: &Rc<Self>, message: ShardMsg, permit: Option<StaticPermit>) {
        match message {
            ShardMsg::Job {
                from,
                id,
                call,
                job,
            } => {
                glommio::spawn_local(self.clone().run_job(from, id, call, job, permit)).detach();
            }
            ShardMsg::Reply { id, answer, busy } => {
                let waiting = self.calls_waiting.borrow_mut().remove(&id);
                if let Some(reply) = waiting {
                    let _ = reply.send((answer, busy));
                }
            }
            ShardMsg::Cancel { from, id } => {
                let running = self.jobs_running.borrow_mut().remove(&(from, id));
                if let Some(stop) = running {
                    let _ = stop.send(());
                }
            }
        }
    }

    /// Runs a job from core `from` and sends its answer back, unless it was cancelled.
    async fn run_job(
        self: Rc<Self>,
        from: usize,
        id: u64,
        call: Call,
        job: mesh::Job,
        permit: Option<StaticPermit>,
    ) {
        let timed = self.quotas_set();
        let answer = match call {
            Call::Complete => Some(crate::quotas::timed_if(timed, job(self.clone())).await),
            Call::Answer => {
                let (stop, stopped) = oneshot::channel::<()>();
                let _ = self.jobs_running.borrow_mut().insert((from, id), stop);
                let running = Box::pin(crate::quotas::timed_if(timed, job(self.clone())));
                let outcome = select(running, stopped).await;
                let _ = self.jobs_running.borrow_mut().remove(&(from, id));
                match outcome {
                    Either::Left((answer, _)) => Some(answer),
                    Either::Right(_) => None,
                }
            }
        };
        if let Some((answer, busy)) = answer {
            let reply = ShardMsg::Reply { id, answer, busy };
            if self.reply_senders.send_to(from, reply).await.is_err() {
                tracing::debug!(core = from, "a core went away before its answer");
            }
        }
        drop(permit);
    }

    /// This core's open logs now (the map is not borrowed past the call).
    pub(crate) fn logs_now(&self) -> Vec<(TopicPartition, Log<GlommioDisk>)> {
        self.logs
            .borrow()
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect()
    }

    /// Periodic work: sync trailers confirmed every second, index checkpoints every minute,
    /// retention every five.
    pub(crate) async fn housekeeping(self: Rc<Self>) {
        let mut tick: u64 = 0;
        while !self.stopping.get() {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            tick += 1;
            self.take_failed_logs_offline().await;
            if self.id == 0 && self.disk.is_full() {
                let _ = self.disk.try_rearm().await;
            }
            self.reopen_after_disk_full().await;
            let logs: Vec<_> = self.logs.borrow().values().cloned().collect();
            // A quiet partition's last write is covered by a sync trailer within a second, so
            // recovery can tell damage to it from a torn tail (storage `trailer.rs`).
            for log in &logs {
                if let Err(error) = log.confirm_synced().await {
                    tracing::debug!(%error, "confirming the synced extent");
                }
            }
            if !tick.is_multiple_of(60) && !tick.is_multiple_of(300) {
                continue;
            }
            for log in logs {
                if tick.is_multiple_of(300) {
                    if let Err(error) = log.enforce_retention().await {
                        tracing::warn!(%error, "retention");
                    }
                }
                if let Err(error) = log.checkpoint().await {
                    tracing::warn!(%error, "index checkpoint");
                }
            }
        }
    }

    /// Logs that went offline while serving (a failed write or sync, a full disk, corruption
    /// found by a read) leave the set of open logs: requests get KAFKA_STORAGE_ERROR with the
    /// reason and Metadata shows the partition without a leader.
    async fn take_failed_logs_offline(&self) {
        let failed: Vec<_> = self
            .logs
            .borrow()
            .iter()
            .filter_map(|(tp, log)| Some((tp.clone(), log.offline_reason()?)))
            .collect();
        for (tp, reason) in failed {
            let _ = self.logs.borrow_mut().remove(&tp);
            let _ = self.flush_timers.borrow_mut().remove(&tp);
            tracing::error!(%tp, %reason, "partition offline");
            let offline = Offline {
                reason: format!("partition is offline: {reason}"),
                kind: reason.kind,
            };
            self.health.set_offline(&tp, offline);
            if reason.kind == OfflineKind::DiskFull {
                self.disk.disk_full().await;
            }
        }
    }

    /// Partitions of this core that went offline because the disk was full are opened again
    /// (recovery runs in the space the released reserve left): readable at once, writable
    /// once the disk has room again. No restart needed.
    async fn reopen_after_disk_full(self: &Rc<Self>) {
        let snapshot = self.snapshot();
        let mine = |tp: &TopicPartition| snapshot.owner(&tp.topic, tp.partition) == Some(self.id);
        for (tp, offline) in self.health.offline_where(mine) {
            if offline.kind != OfflineKind::DiskFull {
                continue;
            }
            tracing::info!(%tp, "reopening a partition that went offline on a full disk");
            self.open_logs(&tp.topic, &[tp.partition]).await;
        }
    }

    /// Leaders of this core hand their partitions away (all at once, a few seconds at most),
    /// so clients move to a follower that is already up to date instead of waiting for
    /// an election timeout. Run by a clean shutdown before the transport stops.
    pub(crate) async fn hand_off_all(&self) {
        let handles: Vec<_> = self.groups.borrow().values().cloned().collect();
        futures::future::join_all(handles.iter().map(|h| h.hand_off())).await;
    }

    /// Stops every partition group, then syncs and closes every log (clean shutdown).
    pub(crate) async fn close_all(&self) {
        let groups: Vec<_> = self.groups.borrow().keys().cloned().collect();
        for tp in groups {
            self.stop_group(&tp).await;
        }
        let logs: Vec<_> = self.logs.borrow_mut().drain().collect();
        for (tp, log) in logs {
            if let Err(error) = log.close().await {
                tracing::warn!(%tp, %error, "closing partition at shutdown");
            }
        }
    }
}

/// Resolves an owner for a partition or says why there is none.
pub(crate) fn owner_of(snapshot: &Snapshot, tp: &TopicPartition) -> Result<usize, ApiError> {
    if crate::cluster_impl::is_hidden(&tp.topic) {
        return Err(ApiError::new(ResponseError::UnknownTopicOrPartition));
    }
    match snapshot.locate(&tp.topic, tp.partition) {
        crate::metadata::Location::Local(core) => Ok(core),
        // Clients refresh their metadata on this code and go to the partition's node.
        crate::metadata::Location::Remote(node) => Err(ApiError::with_message(
            ResponseError::NotLeaderOrFollower,
            format!("{tp} is served by node {node}"),
        )),
        crate::metadata::Location::Unknown => {
            Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
        }
    }
}

/// Where a replicated partition keeps its Raft hard state: beside its log directory.
pub(crate) fn raft_state_dir(partition_dir: &std::path::Path) -> std::path::PathBuf {
    let mut name = partition_dir.as_os_str().to_owned();
    name.push(".raft");
    std::path::PathBuf::from(name)
}

/// `remove_dir_all`, treating an already missing directory as done.
pub(crate) fn remove_dir_if_present(dir: &std::path::PathBuf) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A call to another core in progress: when it ends (answered, timed out, or dropped with its
/// caller) its entry is removed, and an `Answer` call that got no reply is cancelled there.
struct Waiting {
    shard: Rc<Shard>,
    core: usize,
    id: u64,
    lane: Lane,
    cancel: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let unanswered = self
            .shard
            .calls_waiting
            .borrow_mut()
            .remove(&self.id)
            .is_some();
        if unanswered && self.cancel {
            let (shard, core, lane) = (self.shard.clone(), self.core, self.lane);
            let cancel = ShardMsg::Cancel {
                from: shard.id,
                id: self.id,
            };
            glommio::spawn_local(async move {
                let _ = shard.lane(lane).send_to(core, cancel).await;
            })
            .detach();
        }
    }
}
