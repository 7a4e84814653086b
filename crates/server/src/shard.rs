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
use futures::channel::oneshot;
use futures::future::select;
use glommio::channels::channel_mesh::Senders;
use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{ApiError, TopicPartition};
use shoal_kafka::error_map::storage_error;
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Appended, Durability, Log, LogContext, LogOffsets, ReadBatches, Wait};

use crate::config::Config;
use crate::mesh::{Reply, ShardMsg};
use crate::metadata::{partition_dir, Snapshot};
use crate::topic_config;

/// Longest sleep of a `flush.ms` timer.
const FLUSH_TIMER_MS_MAX: u64 = 3_600_000;

pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) cores: usize,
    pub(crate) config: Config,
    pub(crate) meta: RefCell<Arc<Snapshot>>,
    logs: RefCell<HashMap<TopicPartition, Log<GlommioDisk>>>,
    /// Partitions that failed to open or went offline, with the reason.
    offline: RefCell<HashMap<TopicPartition, String>>,
    pub(crate) ctx: LogContext<GlommioDisk>,
    pub(crate) senders: Senders<ShardMsg>,
    /// Serialises metadata changes (used on shard 0 only).
    pub(crate) control: glommio::sync::Semaphore,
    pub(crate) stopping: Cell<bool>,
    /// Partitions with a running `flush.ms` timer, each with the timer's generation: a timer
    /// whose generation is no longer listed stops.
    flush_timers: RefCell<HashMap<TopicPartition, u64>>,
    flush_timer_generation: Cell<u64>,
    /// This core's counters, read by the admin endpoint on core 0.
    pub(crate) metrics: Arc<crate::metrics::CoreMetrics>,
    /// Next producer id to hand out (core 0 only; ids up to the persisted reservation).
    pub(crate) next_producer_id: Cell<i64>,
}

impl Shard {
    pub(crate) fn new(
        config: Config,
        snapshot: Arc<Snapshot>,
        senders: Senders<ShardMsg>,
        ctx: LogContext<GlommioDisk>,
        metrics: Arc<crate::metrics::CoreMetrics>,
    ) -> Shard {
        Shard {
            next_producer_id: Cell::new(snapshot.producer_ids_reserved_until),
            metrics,
            id: senders.peer_id(),
            cores: senders.nr_consumers(),
            config,
            meta: RefCell::new(snapshot),
            logs: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashMap::new()),
            ctx,
            senders,
            control: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
            flush_timers: RefCell::new(HashMap::new()),
            flush_timer_generation: Cell::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.meta.borrow().clone()
    }

    /// Opens (recovering) every partition this shard owns.
    pub(crate) async fn open_owned(self: &Rc<Self>) {
        let snapshot = self.snapshot();
        for (topic, meta) in &snapshot.topics {
            let mine: Vec<i32> = (0..meta.owners.len() as i32)
                .filter(|&p| meta.owners[p as usize] == self.id)
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
                tracing::error!(%topic, ?error, "stored topic config is invalid; using defaults");
                shoal_storage::LogConfig::default()
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
            match Log::open(self.ctx.clone(), dir, config.clone()).await {
                Ok(log) => {
                    let flusher = log.clone();
                    glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
                    let _ = self.flush_timers.borrow_mut().remove(&tp);
                    self.ensure_flush_timer(&tp, &log);
                    let _ = self.logs.borrow_mut().insert(tp, log);
                }
                Err(error) => {
                    tracing::error!(%tp, %error, "partition offline");
                    let _ = self.offline.borrow_mut().insert(tp, error.to_string());
                }
            }
        }
    }

    /// Closes and deletes the partitions' logs.
    pub(crate) async fn drop_logs(&self, topic: &str, partitions: &[i32]) {
        for &partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            let _ = self.offline.borrow_mut().remove(&tp);
            let _ = self.flush_timers.borrow_mut().remove(&tp);
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
            .collect();
        let removed = glommio::executor()
            .spawn_blocking(move || dirs.iter().try_for_each(remove_dir_if_present))
            .await;
        if let Err(error) = removed {
            tracing::warn!(%topic, %error, "removing a deleted topic's files");
        }
    }

    pub(crate) fn log(&self, tp: &TopicPartition) -> Result<Log<GlommioDisk>, ApiError> {
        if let Some(log) = self.logs.borrow().get(tp) {
            return Ok(log.clone());
        }
        if let Some(reason) = self.offline.borrow().get(tp) {
            return Err(ApiError::with_message(
                ResponseError::KafkaStorageError,
                reason.clone(),
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
        wait: Wait,
    ) -> Result<Appended, ApiError> {
        self.log(tp)?
            .append(batch, wait)
            .await
            .map_err(|e| storage_error(&e))
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
        Ok(self.log(tp)?.size_bytes())
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

    /// Sends a message to another core and waits for its answer.
    pub(crate) async fn call<T>(
        &self,
        core: usize,
        make: impl FnOnce(Reply<T>) -> ShardMsg,
    ) -> Result<T, ApiError> {
        assert_ne!(core, self.id, "local calls do not go through the mesh");
        let (reply, answer) = oneshot::channel();
        if self.senders.send_to(core, make(reply)).await.is_err() {
            return Err(ApiError::with_message(
                ResponseError::UnknownServerError,
                format!("core {core} is not reachable"),
            ));
        }
        answer.await.map_err(|_| {
            ApiError::with_message(
                ResponseError::UnknownServerError,
                format!("core {core} dropped the request"),
            )
        })
    }

    /// Serves one message from another core.
    pub(crate) async fn serve_message(self: Rc<Self>, message: ShardMsg) {
        match message {
            ShardMsg::Append {
                tp,
                batch,
                wait,
                reply,
            } => {
                let _ = reply.send(self.local_append(&tp, batch, wait).await);
            }
            ShardMsg::Read {
                tp,
                offset,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.local_read(&tp, offset, max_bytes).await);
            }
            ShardMsg::Offsets { tp, reply } => {
                let _ = reply.send(self.local_offsets(&tp));
            }
            ShardMsg::OffsetForTimestamp { tp, ts, reply } => {
                let _ = reply.send(self.local_offset_for_timestamp(&tp, ts).await);
            }
            ShardMsg::MaxTimestamp { tp, reply } => {
                let _ = reply.send(self.local_max_timestamp(&tp).await);
            }
            ShardMsg::WaitForData {
                tp,
                offset,
                timeout_ms,
                reply,
            } => {
                self.local_wait_for_data(&tp, offset, timeout_ms).await;
                let _ = reply.send(());
            }
            ShardMsg::CreateTopics {
                topics,
                validate_only,
                reply,
            } => {
                let _ = reply.send(self.controller_create_topics(topics, validate_only).await);
            }
            ShardMsg::DeleteTopics { names, reply } => {
                let _ = reply.send(self.controller_delete_topics(names).await);
            }
            ShardMsg::DeleteRecords { tp, before, reply } => {
                let _ = reply.send(self.local_delete_records(&tp, before).await);
            }
            ShardMsg::PartitionSize { tp, reply } => {
                let _ = reply.send(self.local_partition_size(&tp));
            }
            ShardMsg::CreatePartitions {
                topics,
                validate_only,
                reply,
            } => {
                let _ = reply.send(
                    self.controller_create_partitions(topics, validate_only)
                        .await,
                );
            }
            ShardMsg::AlterTopicConfigs {
                changes,
                validate_only,
                reply,
            } => {
                let _ = reply.send(
                    self.controller_alter_topic_configs(changes, validate_only)
                        .await,
                );
            }
            ShardMsg::ApplyTopicConfig { topic, reply } => {
                self.apply_topic_config(&topic).await;
                let _ = reply.send(());
            }
            ShardMsg::OpenLogs {
                topic,
                partitions,
                reply,
            } => {
                self.open_logs(&topic, &partitions).await;
                let _ = reply.send(());
            }
            ShardMsg::DropLogs {
                topic,
                partitions,
                reply,
            } => {
                self.drop_logs(&topic, &partitions).await;
                let _ = reply.send(());
            }
            ShardMsg::AllocateProducerId { reply } => {
                let _ = reply.send(self.controller_allocate_producer_id().await);
            }
            ShardMsg::DescribeProducers { tp, reply } => {
                let _ = reply.send(self.log(&tp).map(|log| log.producers()));
            }
            ShardMsg::Metadata { snapshot, reply } => {
                *self.meta.borrow_mut() = snapshot;
                let _ = reply.send(());
            }
            ShardMsg::Group { op, reply } => {
                let _ = reply.send(crate::groups::serve(op).await);
            }
            ShardMsg::ListGroups { reply } => {
                let _ = reply.send(crate::groups::list_local());
            }
        }
    }

    /// Periodic work: index checkpoints every minute, retention every five.
    pub(crate) async fn housekeeping(self: Rc<Self>) {
        let mut tick: u64 = 0;
        while !self.stopping.get() {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            tick += 1;
            if !tick.is_multiple_of(60) && !tick.is_multiple_of(300) {
                continue;
            }
            let logs: Vec<_> = self.logs.borrow().values().cloned().collect();
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

    /// Syncs and closes every log (clean shutdown).
    pub(crate) async fn close_all(&self) {
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
    snapshot
        .owner(&tp.topic, tp.partition)
        .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))
}

/// `remove_dir_all`, treating an already missing directory as done.
pub(crate) fn remove_dir_if_present(dir: &std::path::PathBuf) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
