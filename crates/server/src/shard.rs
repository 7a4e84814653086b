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

pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) cores: usize,
    pub(crate) config: Config,
    pub(crate) meta: RefCell<Arc<Snapshot>>,
    logs: RefCell<HashMap<TopicPartition, Log<GlommioDisk>>>,
    /// Partitions that failed to open or went offline, with the reason.
    offline: RefCell<HashMap<TopicPartition, String>>,
    ctx: LogContext<GlommioDisk>,
    pub(crate) senders: Senders<ShardMsg>,
    /// Serialises metadata changes (used on shard 0 only).
    pub(crate) control: glommio::sync::Semaphore,
    pub(crate) stopping: Cell<bool>,
    /// This core's counters, read by the admin endpoint on core 0.
    pub(crate) metrics: Arc<crate::metrics::CoreMetrics>,
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
                    if let Durability::Relaxed { flush_ms, .. } = config.durability {
                        spawn_flush_timer(log.clone(), flush_ms);
                    }
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
            let log = self.logs.borrow_mut().remove(&tp);
            if let Some(log) = log {
                if let Err(error) = log.close().await {
                    tracing::warn!(%tp, %error, "closing a deleted partition");
                }
            }
        }
        let dir = self
            .config
            .data_dir
            .join(crate::metadata::TOPICS_DIR)
            .join(topic);
        let removed = glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await;
        if let Err(error) = removed {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%topic, %error, "removing a deleted topic's files");
            }
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
            ShardMsg::Metadata { snapshot, reply } => {
                *self.meta.borrow_mut() = snapshot;
                let _ = reply.send(());
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

/// Relaxed-durability topics: sync every `flush_ms` (Kafka `flush.ms`).
fn spawn_flush_timer(log: Log<GlommioDisk>, flush_ms: u64) {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(flush_ms.max(1))).await;
            if log.sync().await.is_err() {
                return; // Closed or offline: nothing more to sync.
            }
        }
    })
    .detach();
}

/// Resolves an owner for a partition or says why there is none.
pub(crate) fn owner_of(snapshot: &Snapshot, tp: &TopicPartition) -> Result<usize, ApiError> {
    snapshot
        .owner(&tp.topic, tp.partition)
        .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))
}
