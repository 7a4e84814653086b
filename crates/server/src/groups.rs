//! Consumer group coordination on this core.
//!
//! Groups are spread over `GROUP_PARTITIONS` internal partitions (`hash(group id) %
//! GROUP_PARTITIONS`, Kafka's rule); partition `p` lives on core `p % cores`, so every core
//! owns a fixed set of groups and requests for a group are routed to its core
//! (`ShardMsg::Group`). Each partition is a durable internal log
//! (`<data_dir>/__consumer_offsets/<p>`, fsync mode) of `shoal_groups::Record`s; at startup the
//! core replays its partitions (latest record per key wins) into its `Coordinator`. Offset
//! commits are acknowledged only after their records are synced.
//!
//! The state lives in a thread-local (one per core's executor thread), next to the `Shard`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use shoal_groups::{Coordinator, GroupOp, GroupReply, Handled, Record};
use shoal_io::{Clock, SystemClock};
use shoal_model::Offset;
use shoal_storage::{Log, LogConfig, Wait};

use crate::metrics::MeteredDisk as GlommioDisk;
use crate::shard::Shard;

/// Internal partitions groups are hashed onto (fixed: changing it moves groups).
pub(crate) const GROUP_PARTITIONS: u32 = 16;
// The controller places a coordinator for each of these.
const _: () = assert!(GROUP_PARTITIONS == shoal_controller::limits::GROUP_PARTITIONS);
pub(crate) const GROUPS_DIR: &str = "__consumer_offsets";
/// Session and rebalance timers.
const TICK_MS: u64 = 100;
/// Offset retention checks (Kafka `offsets.retention.check.interval.ms` is 10 minutes).
const EXPIRE_EVERY_TICKS: u64 = 600;
/// Bytes read per step while replaying an internal log.
const REPLAY_READ_BYTES: usize = 1 << 20;

struct Groups {
    coordinator: RefCell<Coordinator>,
    logs: RefCell<BTreeMap<u32, Log<GlommioDisk>>>,
    /// The data disk's reserve: a group log that finds the disk full releases it.
    disk: std::sync::Arc<crate::disk_guard::DiskGuard>,
    /// How the group logs are configured (to reopen one).
    config: LogConfig,
    /// Offset commits appended but not yet applied to `coordinator` (compaction waits for 0).
    commits_in_flight: std::cell::Cell<usize>,
}

/// How often group logs that went offline on a full disk are reopened (in timer ticks).
const REOPEN_EVERY_TICKS: u64 = 5;
/// How often the internal logs are checked for compaction (in timer ticks).
const COMPACT_EVERY_TICKS: u64 = 50;
/// An internal partition log larger than this is compacted: the live state is appended as
/// one batch and everything before it is deleted (`SHOAL_GROUP_LOG_COMPACT_BYTES` overrides).
const COMPACT_BYTES_DEFAULT: u64 = 64 << 20;

fn compact_bytes() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var("SHOAL_GROUP_LOG_COMPACT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(COMPACT_BYTES_DEFAULT)
    })
}

thread_local! {
    static GROUPS: RefCell<Option<Rc<Groups>>> = const { RefCell::new(None) };
}

fn groups() -> Option<Rc<Groups>> {
    GROUPS.with(|g| g.borrow().clone())
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

pub(crate) fn partition_of(group_id: &str) -> u32 {
    shoal_groups::partition_for(group_id, GROUP_PARTITIONS)
}

/// The core coordinating `group_id`.
pub(crate) fn core_of(group_id: &str, cores: usize) -> usize {
    partition_of(group_id) as usize % cores
}

/// Opens and replays this core's group partitions, then starts the timers.
pub(crate) async fn start(shard: Rc<Shard>) {
    let mut coordinator = Coordinator::new(shoal_groups::Config::default());
    let mut logs = BTreeMap::new();
    let config = LogConfig {
        // Offsets expire by the group rules, never by segment age.
        retention_ms: None,
        // Small segments, so compaction can delete what the live state superseded.
        segment_bytes_max: (compact_bytes() / 4).max(64 << 10),
        ..LogConfig::default()
    };
    for partition in (0..GROUP_PARTITIONS).filter(|p| *p as usize % shard.cores == shard.id) {
        let dir = partition_dir(&shard, partition);
        let log = match Log::open(shard.ctx.clone(), dir, config.clone()).await {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(partition, %error, "consumer group partition offline");
                continue;
            }
        };
        let flusher = log.clone();
        glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
        let replayed = replay(&log, &mut coordinator).await;
        tracing::info!(
            core = shard.id,
            partition,
            records = replayed,
            "group partition loaded"
        );
        let _ = logs.insert(partition, log);
    }
    let groups = Rc::new(Groups {
        coordinator: RefCell::new(coordinator),
        logs: RefCell::new(logs),
        disk: shard.disk.clone(),
        config: config.clone(),
        commits_in_flight: std::cell::Cell::new(0),
    });
    GROUPS.with(|g| *g.borrow_mut() = Some(groups.clone()));
    glommio::spawn_local(timers(shard, groups)).detach();
}

fn partition_dir(shard: &Shard, partition: u32) -> std::path::PathBuf {
    shard
        .config
        .data_dir
        .join(GROUPS_DIR)
        .join(partition.to_string())
}

/// Group partitions whose log went offline because the disk was full are opened again (their
/// state is in memory: nothing to replay), so offset commits work again at once.
async fn reopen_after_disk_full(shard: &Shard, groups: &Groups) {
    let failed: Vec<u32> = groups
        .logs
        .borrow()
        .iter()
        .filter(|(_, log)| {
            log.offline_reason()
                .is_some_and(|reason| reason.kind == shoal_storage::OfflineKind::DiskFull)
        })
        .map(|(partition, _)| *partition)
        .collect();
    for partition in failed {
        groups.disk.disk_full().await;
        let dir = partition_dir(shard, partition);
        match Log::open(shard.ctx.clone(), dir, groups.config.clone()).await {
            Ok(log) => {
                let flusher = log.clone();
                glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
                let _ = groups.logs.borrow_mut().insert(partition, log);
                tracing::info!(partition, "group partition reopened after a full disk");
            }
            Err(error) => tracing::warn!(partition, %error, "reopening a group partition"),
        }
    }
}

async fn replay(log: &Log<GlommioDisk>, coordinator: &mut Coordinator) -> usize {
    let now = now_ms();
    let mut offset = log.offsets().log_start;
    let mut count = 0;
    loop {
        let read = match log.read(offset, REPLAY_READ_BYTES).await {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(%error, "reading a group partition");
                break;
            }
        };
        if read.batches.is_empty() {
            break;
        }
        for batch in read.batches {
            let Ok(header) = shoal_storage::validate_batch(&batch) else {
                break;
            };
            offset = Offset(offset.0.max(header.next_offset().0));
            let mut bytes: Bytes = batch.clone();
            let Ok(records) = RecordBatchDecoder::decode(&mut bytes) else {
                tracing::warn!("undecodable group batch skipped");
                continue;
            };
            for record in records.records {
                if let Some(record) = record.value.as_deref().and_then(Record::decode) {
                    coordinator.replay(record, now);
                    count += 1;
                }
            }
        }
        if offset >= read.high_watermark {
            break;
        }
    }
    count
}

async fn timers(shard: Rc<Shard>, groups: Rc<Groups>) {
    let mut tick: u64 = 0;
    while !shard.stopping.get() {
        glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
        tick += 1;
        let now = now_ms();
        let records = {
            let mut coordinator = groups.coordinator.borrow_mut();
            coordinator.tick(now);
            if tick.is_multiple_of(EXPIRE_EVERY_TICKS) {
                coordinator.expire(now);
            }
            coordinator.take_records()
        };
        if let Err(error) = persist(&groups, records).await {
            tracing::warn!(?error, "persisting group state");
        }
        if tick.is_multiple_of(COMPACT_EVERY_TICKS) {
            compact(&groups).await;
        }
        if tick.is_multiple_of(REOPEN_EVERY_TICKS) {
            reopen_after_disk_full(&shard, &groups).await;
        }
    }
}

/// Keeps the internal logs bounded (latest record per key wins on replay, so the live state
/// supersedes everything before it). The snapshot is taken and appended without an await in
/// between, so every change made after it lands after it in the log; commits that are appended
/// but not yet applied to the state would be missing from the snapshot, so compaction waits
/// until there are none.
async fn compact(groups: &Groups) {
    let logs: Vec<(u32, Log<GlommioDisk>)> = groups
        .logs
        .borrow()
        .iter()
        .map(|(p, l)| (*p, l.clone()))
        .collect();
    for (partition, log) in logs {
        if log.size_bytes() < compact_bytes() || groups.commits_in_flight.get() > 0 {
            continue;
        }
        let values: Vec<Vec<u8>> = groups
            .coordinator
            .borrow()
            .snapshot_records()
            .into_iter()
            .filter(|record| partition_of(record.group()) == partition)
            .map(|record| record.encode())
            .collect();
        let start = if values.is_empty() {
            log.offsets().log_end
        } else {
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            match log
                .append(shoal_storage::build_batch(&refs, now_ms()), Wait::Durable)
                .await
            {
                Ok(appended) => appended.base_offset,
                Err(error) => {
                    tracing::warn!(partition, %error, "compacting a group partition");
                    continue;
                }
            }
        };
        match log.delete_records(start).await {
            Ok(_) => tracing::info!(
                partition,
                records = values.len(),
                bytes = log.size_bytes(),
                "group partition compacted"
            ),
            Err(error) => tracing::warn!(partition, %error, "compacting a group partition"),
        }
    }
}

/// Appends records to their group partitions and waits until they are durable.
async fn persist(groups: &Groups, records: Vec<Record>) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut by_partition: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    for record in &records {
        by_partition
            .entry(partition_of(record.group()))
            .or_default()
            .push(record.encode());
    }
    let now = now_ms();
    let appends: Vec<_> = by_partition
        .into_iter()
        .map(|(partition, values)| {
            let log = groups.logs.borrow().get(&partition).cloned();
            async move {
                let log = log.ok_or(ResponseError::CoordinatorNotAvailable)?;
                let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                let batch = shoal_storage::build_batch(&values, now);
                let appended = log.append(batch, Wait::Durable).await;
                if let Err(shoal_storage::Error::Offline(reason)) = &appended {
                    if reason.kind == shoal_storage::OfflineKind::DiskFull {
                        groups.disk.disk_full().await;
                    }
                }
                appended.map_err(|error| {
                    tracing::warn!(partition, %error, "group partition append failed");
                    ResponseError::CoordinatorNotAvailable
                })
            }
        })
        .collect();
    for result in futures::future::join_all(appends).await {
        let _ = result?;
    }
    Ok(())
}

/// Runs a group operation on this core (the group's coordinator).
pub(crate) async fn serve(op: GroupOp) -> GroupReply {
    let Some(groups) = groups() else {
        return GroupReply::failed(&op, ResponseError::CoordinatorLoadInProgress);
    };
    let now = now_ms();
    if let GroupOp::Commit(req) = op {
        let validated = groups.coordinator.borrow_mut().validate_commit(&req, now);
        let per_partition = match validated {
            Ok(per_partition) => per_partition,
            Err(error) => return GroupReply::Commit(Err(error)),
        };
        let records = {
            let mut coordinator = groups.coordinator.borrow_mut();
            let mut records = coordinator.take_records();
            records.extend(coordinator.commit_records(&req, &per_partition, now));
            records
        };
        groups
            .commits_in_flight
            .set(groups.commits_in_flight.get() + 1);
        let persisted = persist(&groups, records).await;
        if persisted.is_ok() {
            groups
                .coordinator
                .borrow_mut()
                .apply_commit(&req, &per_partition, now, false);
        }
        groups
            .commits_in_flight
            .set(groups.commits_in_flight.get() - 1);
        if let Err(error) = persisted {
            return GroupReply::Commit(Err(error));
        }
        return GroupReply::Commit(Ok(per_partition));
    }
    let (handled, records) = {
        let mut coordinator = groups.coordinator.borrow_mut();
        let handled = coordinator.handle(op, now);
        (handled, coordinator.take_records())
    };
    if let Err(error) = persist(&groups, records).await {
        tracing::warn!(?error, "persisting group state");
    }
    match handled {
        Handled::Ready(reply) => reply,
        Handled::Wait(wait) => wait.wait().await,
    }
}

/// This core's groups, for ListGroups.
pub(crate) fn list_local() -> Vec<shoal_groups::GroupListing> {
    groups()
        .map(|g| g.coordinator.borrow().list())
        .unwrap_or_default()
}

/// Syncs and closes the group partitions (clean shutdown).
pub(crate) async fn close() {
    let Some(groups) = groups() else { return };
    let logs: Vec<_> = std::mem::take(&mut *groups.logs.borrow_mut())
        .into_values()
        .collect();
    for log in logs {
        if let Err(error) = log.close().await {
            tracing::warn!(%error, "closing a group partition");
        }
    }
}
