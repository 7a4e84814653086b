//! Consumer group coordination on this core.
//!
//! Groups are spread over `GROUP_PARTITIONS` internal partitions (`hash(group id) %
//! GROUP_PARTITIONS`, Kafka's rule); partition `p` lives on core `p % cores`, so every core
//! owns a fixed set of groups and requests for a group are routed to its core
//! (`ShardMsg::Group`). Each partition is a durable internal log
//! (`<data_dir>/__consumer_offsets/<p>`, fsync mode) of `shoal_groups::Record`s, each under its
//! Kafka key (an offset commit's: group, topic, partition; a group's: group; a tombstone has a
//! null value); at startup the core replays its partitions (latest record per key wins) into
//! its `Coordinator`. Offset commits are acknowledged only after their records are synced.
//! The logs are compacted on those keys by the core's log cleaner, as Kafka compacts
//! `__consumer_offsets`, so they stay about a segment (`SHOAL_GROUP_LOG_SEGMENT_BYTES`, 16 MiB)
//! above their live state. A log written before records had keys is rewritten at startup
//! (live state appended with keys, everything before it deleted) before the cleaner may see
//! it, since a cleaning drops keyless records.
//!
//! In a cluster the group partitions are replicated instead: partition `p` is partition `p`
//! of the internal topic [`OFFSETS_TOPIC`], which the controller leader creates (replication
//! factor [`OFFSETS_TOPIC_REPLICATION_FACTOR`], capped by the seeds) once that many brokers
//! are live, placed and replicated as any topic's partitions (Raft groups, one per
//! partition). The replica that leads partition `p` coordinates its groups, on the core that
//! owns that replica: when it starts leading it waits until everything in its log is
//! committed (its term's first entry is), replays the log into its `Coordinator` and only then
//! serves (COORDINATOR_LOAD_IN_PROGRESS meanwhile); when it stops leading it drops those groups
//! (NOT_COORDINATOR). Records are proposed as acks=all batches, so an offset commit is
//! acknowledged once a majority has it synced, and a new coordinator on another node starts
//! from every acknowledged commit. The topic is hidden from clients (they name groups, not
//! its partitions).
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
use shoal_kafka::cluster::{Acks, TopicPartition};
use shoal_model::Offset;
use shoal_storage::{Log, LogConfig, Wait};

use crate::metrics::MeteredDisk as GlommioDisk;
use crate::shard::Shard;

/// Internal partitions groups are hashed onto (fixed: changing it moves groups).
pub(crate) const GROUP_PARTITIONS: u32 = 16;
// The controller's state keeps one entry per group partition, and a cluster's offsets topic
// has this many partitions.
const _: () = assert!(GROUP_PARTITIONS == shoal_controller::limits::GROUP_PARTITIONS);
pub(crate) const GROUPS_DIR: &str = "__consumer_offsets";
/// A cluster's replicated group partitions: partition `p` of this internal topic holds the
/// records of group partition `p` (Kafka's name and layout).
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.replication.factor` default; a cluster of fewer seeds (controller
/// voters) gets one replica per seed.
pub(crate) const OFFSETS_TOPIC_REPLICATION_FACTOR: usize = 3;
/// How often a replicated group partition that started leading checks whether its whole log
/// is committed yet (it loads its groups then).
const LOAD_POLL_MS: u64 = 20;
/// Session and rebalance timers.
const TICK_MS: u64 = 100;
/// Offset retention checks (Kafka `offsets.retention.check.interval.ms` is 10 minutes).
const EXPIRE_EVERY_TICKS: u64 = 600;
/// Bytes read per step while replaying an internal log.
const REPLAY_READ_BYTES: usize = 1 << 20;

struct Groups {
    shard: Rc<Shard>,
    coordinator: RefCell<Coordinator>,
    /// A one-node broker's group partitions of this core (empty in a cluster).
    logs: RefCell<BTreeMap<u32, Log<GlommioDisk>>>,
    /// A cluster node: the replicated group partitions of this core whose groups are in
    /// `coordinator` (or being loaded into it), with the term they were loaded in.
    loaded: RefCell<BTreeMap<u32, Loaded>>,
    /// The data disk's reserve: a group log that finds the disk full releases it.
    disk: std::sync::Arc<crate::disk_guard::DiskGuard>,
    /// How the group logs are configured (to reopen one).
    config: LogConfig,
    /// Offset commits appended but not yet applied to `coordinator` (a rewrite waits for 0).
    commits_in_flight: std::cell::Cell<usize>,
    /// A one-node broker's group partitions that still hold keyless records (their rewrite
    /// failed at startup): the log cleaner leaves them alone, as it would drop those records.
    not_cleanable: RefCell<std::collections::BTreeSet<u32>>,
}

/// A one-node broker's group partition logs of this core that its log cleaner may compact.
pub(crate) fn cleanable_logs() -> Vec<(TopicPartition, Log<GlommioDisk>)> {
    let Some(groups) = groups() else {
        return Vec::new();
    };
    let skip = groups.not_cleanable.borrow().clone();
    let logs = groups.logs.borrow();
    logs.iter()
        .filter(|(partition, _)| !skip.contains(partition))
        .map(|(partition, log)| (offsets_tp(*partition), log.clone()))
        .collect()
}

/// A replicated group partition this core leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loaded {
    /// Waiting for its log to be committed, or replaying it.
    Loading { term: u64 },
    /// Its groups are in the coordinator: it serves them.
    Ready { term: u64 },
}

/// How often group logs that went offline on a full disk are reopened (in timer ticks).
const REOPEN_EVERY_TICKS: u64 = 5;
/// The segment size of the internal group logs: they are compacted on their records' keys
/// by the core's log cleaner (as any `cleanup.policy=compact` topic), which rewrites sealed
/// segments only, so a log holds about this much besides its live state
/// (`SHOAL_GROUP_LOG_SEGMENT_BYTES` overrides, for tests; Kafka's
/// `offsets.topic.segment.bytes` is 100 MiB).
const SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;

pub(crate) fn group_log_segment_bytes() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var("SHOAL_GROUP_LOG_SEGMENT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SEGMENT_BYTES_DEFAULT)
            .max(16 << 10)
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

/// A cluster node: the core holding this node's replica of `group_id`'s partition of the
/// offsets topic (None: no replica here, or no offsets topic yet).
pub(crate) fn replica_core(snapshot: &crate::metadata::Snapshot, group_id: &str) -> Option<usize> {
    let partition = partition_of(group_id) as usize;
    let meta = snapshot.topics.get(OFFSETS_TOPIC)?;
    snapshot
        .is_local(meta, partition)
        .then(|| meta.owners.get(partition).copied())
        .flatten()
}

fn offsets_tp(partition: u32) -> TopicPartition {
    TopicPartition {
        topic: OFFSETS_TOPIC.to_string(),
        partition: i32::try_from(partition).expect("group partitions fit an i32"),
    }
}

/// The term in which this core's replica of group partition `partition` leads (None: it does
/// not lead, or is not here). A partition of one replica leads in its leader epoch while open.
fn leading_term(shard: &Shard, partition: u32) -> Option<u64> {
    let tp = offsets_tp(partition);
    if let Some(group) = shard.group(&tp) {
        let status = &group.status;
        return (status.leader.get() && !status.stopped.get()).then(|| status.term.get());
    }
    let snapshot = shard.snapshot();
    let here = snapshot.owner(&tp.topic, tp.partition) == Some(shard.id);
    (here && shard.any_log(&tp).is_ok())
        .then(|| u64::try_from(snapshot.leader_epoch(&tp.topic, tp.partition).0).unwrap_or(0))
}

/// Opens and replays this core's group partitions, then starts the timers.
pub(crate) async fn start(shard: Rc<Shard>) {
    let mut coordinator = Coordinator::new(shoal_groups::Config::default());
    let mut logs = BTreeMap::new();
    let replicated = shard.config.cluster.is_some();
    let config = LogConfig {
        // Offsets expire by the group rules, never by segment age.
        retention_ms: None,
        segment_bytes_max: group_log_segment_bytes(),
        // Kafka's `__consumer_offsets` is `cleanup.policy=compact`: the latest record of
        // each key (an offset commit's, a group's) is what replay keeps.
        compaction: (!write_keyless_records()).then(shoal_storage::CompactionConfig::default),
        ..LogConfig::default()
    };
    // A cluster node's group partitions are replicas of the offsets topic, opened with the
    // other partitions and loaded when they lead (`follow_leadership`).
    let plain = (0..GROUP_PARTITIONS).filter(|_| !replicated);
    let mut keyless = Vec::new();
    for partition in plain.filter(|p| *p as usize % shard.cores == shard.id) {
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
            records = replayed.records,
            "group partition loaded"
        );
        if replayed.keyless && !write_keyless_records() {
            keyless.push(partition);
        }
        let _ = logs.insert(partition, log);
    }
    let groups = Rc::new(Groups {
        shard: shard.clone(),
        coordinator: RefCell::new(coordinator),
        logs: RefCell::new(logs),
        loaded: RefCell::new(BTreeMap::new()),
        disk: shard.disk.clone(),
        config: config.clone(),
        commits_in_flight: std::cell::Cell::new(0),
        not_cleanable: RefCell::new(Default::default()),
    });
    // Before anything can clean them: logs written before records had keys are rewritten
    // with keys, else the cleaner would drop their keyless records.
    for partition in keyless {
        if !rewrite_with_keys(&groups, partition).await {
            let _ = groups.not_cleanable.borrow_mut().insert(partition);
        }
    }
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

/// What a replay found.
struct Replayed {
    records: usize,
    /// Records without a key (written before the group logs were keyed and compacted).
    keyless: bool,
}

async fn replay(log: &Log<GlommioDisk>, coordinator: &mut Coordinator) -> Replayed {
    let now = now_ms();
    let mut offset = log.offsets().log_start;
    let mut count = 0;
    let mut keyless = false;
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
                let decoded = match record.key.as_deref() {
                    Some(key) => Record::from_key_value(key, record.value.as_deref()),
                    None => {
                        keyless = true;
                        record.value.as_deref().and_then(Record::decode)
                    }
                };
                match decoded {
                    Some(record) => {
                        coordinator.replay(record, now);
                        count += 1;
                    }
                    None => {
                        tracing::warn!(offset = record.offset, "undecodable group record skipped")
                    }
                }
            }
        }
        if offset >= read.high_watermark {
            break;
        }
    }
    Replayed {
        records: count,
        keyless,
    }
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
        if shard.config.cluster.is_some() {
            follow_leadership(&groups);
        }
        if tick.is_multiple_of(REOPEN_EVERY_TICKS) {
            reopen_after_disk_full(&shard, &groups).await;
        }
    }
}

/// A cluster node: starts loading the replicated group partitions this core began to lead
/// (in a new term), and drops the groups of those it no longer leads.
fn follow_leadership(groups: &Rc<Groups>) {
    let shard = &groups.shard;
    for partition in 0..GROUP_PARTITIONS {
        let term = leading_term(shard, partition);
        let current = groups.loaded.borrow().get(&partition).copied();
        let current_term = match current {
            Some(Loaded::Loading { term } | Loaded::Ready { term }) => Some(term),
            None => None,
        };
        if current_term == term {
            continue;
        }
        if current.is_some() {
            unload(groups, partition);
        }
        if let Some(term) = term {
            let _ = groups
                .loaded
                .borrow_mut()
                .insert(partition, Loaded::Loading { term });
            glommio::spawn_local(load(groups.clone(), partition, term)).detach();
        }
    }
}

fn unload(groups: &Groups, partition: u32) {
    let _ = groups.loaded.borrow_mut().remove(&partition);
    let dropped = groups
        .coordinator
        .borrow_mut()
        .unload(|group| partition_of(group) != partition);
    tracing::info!(
        partition,
        groups = dropped,
        "no longer coordinating a group partition"
    );
}

/// Loads a group partition this core leads in `term`: once every entry of its log is
/// committed (the term's first entry commits only after every earlier one, so what it then
/// holds is everything any coordinator acknowledged), replays it. Gives up if leadership
/// moves meanwhile (`follow_leadership` then starts over).
async fn load(groups: Rc<Groups>, partition: u32, term: u64) {
    let tp = offsets_tp(partition);
    let still = |groups: &Groups| {
        groups.loaded.borrow().get(&partition) == Some(&Loaded::Loading { term })
            && leading_term(&groups.shard, partition) == Some(term)
    };
    let log = loop {
        if !still(&groups) {
            return;
        }
        if let Ok(log) = groups.shard.any_log(&tp) {
            let offsets = log.offsets();
            if offsets.high_watermark >= offsets.log_end {
                break log;
            }
        }
        glommio::timer::sleep(Duration::from_millis(LOAD_POLL_MS)).await;
    };
    let mut replayed = Coordinator::new(groups.coordinator.borrow().config().clone());
    let records = replay(&log, &mut replayed).await.records;
    if !still(&groups) {
        return;
    }
    // Replayed aside and moved in without an await: no request of this partition ran
    // meanwhile (they wait for Ready), and the other partitions' groups are untouched. A
    // commit that was in flight when this core last stopped leading may have left a stale
    // group of this partition behind: the log replaces it.
    let mut coordinator = groups.coordinator.borrow_mut();
    let _ = coordinator.unload(|group| partition_of(group) != partition);
    coordinator.absorb(replayed);
    drop(coordinator);
    let _ = groups
        .loaded
        .borrow_mut()
        .insert(partition, Loaded::Ready { term });
    tracing::info!(partition, term, records, "coordinating a group partition");
}

/// A cluster node: whether this core serves `group_id` now (Err: the code to answer).
fn ready_for(groups: &Groups, group_id: &str) -> Result<(), ResponseError> {
    if groups.shard.config.cluster.is_none() {
        return Ok(());
    }
    let partition = partition_of(group_id);
    let term = leading_term(&groups.shard, partition);
    match (groups.loaded.borrow().get(&partition), term) {
        (Some(Loaded::Ready { term: loaded }), Some(term)) if *loaded == term => Ok(()),
        // Loading, or leading but not seen by the timer yet (loading starts within a tick).
        (_, Some(_)) => Err(ResponseError::CoordinatorLoadInProgress),
        (_, None) => Err(ResponseError::NotCoordinator),
    }
}

/// Rewrites a one-node broker's group partition whose log holds keyless records (written
/// before the logs were keyed): the partition's live state is appended as keyed records and
/// everything before it is deleted, so the log cleaner (which drops keyless records) loses
/// nothing. The state is taken and appended without an await in between; runs at startup,
/// before any request. Returns whether the log is keyed now.
async fn rewrite_with_keys(groups: &Groups, partition: u32) -> bool {
    let Some(log) = groups.logs.borrow().get(&partition).cloned() else {
        return false;
    };
    assert_eq!(groups.commits_in_flight.get(), 0, "runs before any request");
    let records: Vec<Record> = groups
        .coordinator
        .borrow()
        .snapshot_records()
        .into_iter()
        .filter(|record| partition_of(record.group()) == partition)
        .collect();
    let start = if records.is_empty() {
        log.offsets().log_end
    } else {
        match log
            .append(keyed_batch(&records, now_ms()), Wait::Durable)
            .await
        {
            Ok(appended) => appended.base_offset,
            Err(error) => {
                tracing::warn!(partition, %error, "rewriting a group partition with keys");
                return false;
            }
        }
    };
    match log.delete_records(start).await {
        Ok(_) => {
            tracing::info!(
                partition,
                records = records.len(),
                "group partition rewritten with keyed records"
            );
            true
        }
        Err(error) => {
            tracing::warn!(partition, %error, "rewriting a group partition with keys");
            false
        }
    }
}

/// Test-only switch: `SHOAL_TEST_WRITE_KEYLESS_GROUP_RECORDS=1` writes the group logs as the
/// broker did before they were keyed (each record a keyless value; the logs not compacted),
/// so a test can make the data directory an upgrade starts from.
fn write_keyless_records() -> bool {
    static KEYLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEYLESS.get_or_init(|| {
        let on = std::env::var("SHOAL_TEST_WRITE_KEYLESS_GROUP_RECORDS").is_ok_and(|v| v == "1");
        if on {
            tracing::warn!("test switch: group records are written without keys");
        }
        on
    })
}

/// One batch of records under their Kafka keys (a tombstone's value is null).
fn keyed_batch(records: &[Record], now_ms: i64) -> Vec<u8> {
    if write_keyless_records() {
        let values: Vec<Vec<u8>> = records.iter().map(Record::encode).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        return shoal_storage::build_batch(&refs, now_ms);
    }
    let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        records.iter().map(|r| (r.key(), r.value())).collect();
    let refs: Vec<(&[u8], Option<&[u8]>)> = encoded
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_deref()))
        .collect();
    shoal_storage::build_keyed_batch(&refs, now_ms)
}

/// Appends records to their group partitions and waits until they are durable.
async fn persist(groups: &Groups, records: Vec<Record>) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for record in records {
        by_partition
            .entry(partition_of(record.group()))
            .or_default()
            .push(record);
    }
    let now = now_ms();
    if groups.shard.config.cluster.is_some() {
        let appends = by_partition
            .into_iter()
            .map(|(partition, records)| async move {
                let batch = keyed_batch(&records, now);
                let tp = offsets_tp(partition);
                // acks=all: acknowledged once a majority of the partition's replicas synced it.
                let appended = groups.shard.local_append(&tp, batch, Acks::All).await;
                appended.map_err(|error| {
                    tracing::warn!(
                        partition,
                        ?error,
                        "replicated group partition append failed"
                    );
                    match error.code {
                        ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                        _ => ResponseError::CoordinatorNotAvailable,
                    }
                })
            });
        for result in futures::future::join_all(appends).await {
            let _ = result?;
        }
        return Ok(());
    }
    let appends: Vec<_> = by_partition
        .into_iter()
        .map(|(partition, records)| {
            let log = groups.logs.borrow().get(&partition).cloned();
            async move {
                let log = log.ok_or(ResponseError::CoordinatorNotAvailable)?;
                let batch = keyed_batch(&records, now);
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
pub(crate) async fn serve(group_id: String, op: GroupOp) -> GroupReply {
    let Some(groups) = groups() else {
        return GroupReply::failed(&op, ResponseError::CoordinatorLoadInProgress);
    };
    if let Err(error) = ready_for(&groups, &group_id) {
        return GroupReply::failed(&op, error);
    }
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
        let mut persisted = persist(&groups, records).await;
        if persisted.is_ok() {
            // Leadership may have moved while the records replicated: they are committed
            // (the new coordinator has them), but this core must not keep the group.
            persisted =
                ready_for(&groups, &req.group_id).map_err(|_| ResponseError::NotCoordinator);
        }
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
