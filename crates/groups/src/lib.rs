//! Consumer groups (Kafka's classic group protocol), free of any runtime.
//!
//! A [`Coordinator`] holds the groups of one core: membership, the rebalance state machine
//! (`Empty` → `PreparingRebalance` → `CompletingRebalance` → `Stable`), committed offsets,
//! and the [`Record`]s that persist them. Time is injected: every call takes `now_ms`, and the
//! owner calls [`Coordinator::tick`] periodically to expire sessions and finish rebalances.
//!
//! JoinGroup and SyncGroup may have to wait for other members; they return [`Pending::Wait`]
//! with a oneshot receiver that a later call (another member's join, the leader's sync, a
//! timeout in `tick`) completes.
//!
//! Persistence: every state change that must survive a restart appends [`Record`]s to an
//! internal buffer ([`Coordinator::take_records`]); the owner writes them to its internal log.
//! Replaying the log with [`Coordinator::replay`] (latest record per key wins) rebuilds the
//! state. Offset commits are split ([`Coordinator::validate_commit`],
//! [`Coordinator::commit_records`], [`Coordinator::apply_commit`]) so the owner acknowledges
//! only after the records are durable.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::channel::oneshot;
pub use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

mod state;
#[cfg(test)]
mod tests;

pub use state::Coordinator;

/// Kafka `group.min.session.timeout.ms` / `group.max.session.timeout.ms` and friends.
#[derive(Clone, Debug)]
pub struct Config {
    pub session_timeout_min_ms: i64,
    pub session_timeout_max_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms: offsets of a group that stayed empty this long (or,
    /// for groups without members ever, committed this long ago) expire.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

pub type GroupResult<T> = Result<T, ResponseError>;

/// A response now, or one that a later event completes.
#[derive(Debug)]
pub enum Pending<T> {
    Ready(T),
    Wait(oneshot::Receiver<T>),
}

/// What [`Coordinator::handle`] returns.
#[derive(Debug)]
pub enum Handled {
    Ready(GroupReply),
    Wait(GroupWait),
}

/// A JoinGroup or SyncGroup response that another member's request or a timeout completes.
#[derive(Debug)]
pub enum GroupWait {
    Join(oneshot::Receiver<JoinResponse>),
    Sync(oneshot::Receiver<SyncResponse>),
}

impl GroupWait {
    pub async fn wait(self) -> GroupReply {
        match self {
            GroupWait::Join(rx) => GroupReply::Join(
                rx.await
                    .unwrap_or_else(|_| JoinResponse::error(ResponseError::UnknownMemberId, "")),
            ),
            GroupWait::Sync(rx) => GroupReply::Sync(
                rx.await
                    .unwrap_or_else(|_| SyncResponse::error(ResponseError::UnknownMemberId)),
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
    /// Explicit expiry (OffsetCommit v2-v4 `retention_time_ms`); `None`: the group rules.
    pub expire_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without member id gets MEMBER_ID_REQUIRED.
    pub require_known_member: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader.
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResponse::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LeaveMember {
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 with an empty member id: a commit outside group management.
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// v2-v4 `retention_time_ms`; -1: the broker default.
    pub retention_ms: i64,
    pub offsets: Vec<(Tp, i64, i32, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A request to the coordinator of one group (or, for `List`, to every coordinator).
#[derive(Clone, Debug)]
pub enum GroupOp {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave {
        group_id: String,
        members: Vec<LeaveMember>,
    },
    Commit(CommitRequest),
    /// `partitions: None`: every committed partition of the group.
    FetchOffsets {
        group_id: String,
        partitions: Option<Vec<Tp>>,
    },
    Describe {
        group_id: String,
    },
    Delete {
        group_id: String,
    },
    OffsetDelete {
        group_id: String,
        partitions: Vec<Tp>,
    },
    List,
}

#[derive(Clone, Debug)]
pub enum GroupReply {
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(GroupResult<()>),
    /// Group-level result, then one per leaving member.
    Leave(GroupResult<Vec<GroupResult<()>>>),
    /// One result for the whole commit (Kafka reports it on every partition), then one per
    /// partition.
    Commit(GroupResult<Vec<(Tp, GroupResult<()>)>>),
    FetchOffsets(GroupResult<Vec<(Tp, Option<CommittedOffset>)>>),
    Describe(GroupDescription),
    Delete(GroupResult<()>),
    OffsetDelete(GroupResult<Vec<(Tp, GroupResult<()>)>>),
    List(Vec<GroupListing>),
}

impl GroupReply {
    /// The reply to `op` when its coordinator cannot be reached.
    pub fn failed(op: &GroupOp, error: ResponseError) -> GroupReply {
        match op {
            GroupOp::Join(req) => GroupReply::Join(JoinResponse::error(error, &req.member_id)),
            GroupOp::Sync(_) => GroupReply::Sync(SyncResponse::error(error)),
            GroupOp::Heartbeat(_) => GroupReply::Heartbeat(Err(error)),
            GroupOp::Leave { .. } => GroupReply::Leave(Err(error)),
            GroupOp::Commit(_) => GroupReply::Commit(Err(error)),
            GroupOp::FetchOffsets { .. } => GroupReply::FetchOffsets(Err(error)),
            GroupOp::Describe { group_id } => GroupReply::Describe(GroupDescription {
                group_id: group_id.clone(),
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            GroupOp::Delete { .. } => GroupReply::Delete(Err(error)),
            GroupOp::OffsetDelete { .. } => GroupReply::OffsetDelete(Err(error)),
            GroupOp::List => GroupReply::List(Vec::new()),
        }
    }
}

/// What the internal log stores. Keys: (group, topic, partition) for offsets, the group for
/// group metadata; the latest record of a key wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Offset {
        group: String,
        tp: Tp,
        offset: CommittedOffset,
    },
    OffsetTombstone {
        group: String,
        tp: Tp,
    },
    Group(GroupSnapshot),
    GroupTombstone {
        group: String,
    },
}

impl Record {
    pub fn group(&self) -> &str {
        match self {
            Record::Offset { group, .. }
            | Record::OffsetTombstone { group, .. }
            | Record::GroupTombstone { group } => group,
            Record::Group(snapshot) => &snapshot.group,
        }
    }

    /// The record as a value alone: the format of logs written before records had keys
    /// (still read at replay, see [`Record::from_key_value`]).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }

    /// A record of the keyless format.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes).ok()
    }

    /// The Kafka record key it is stored under, in Kafka's `__consumer_offsets` key format:
    /// an offset commit's (version 1: group, topic, partition) or a group's (version 2:
    /// group). The log is compacted on it: the latest record of a key is the one replay
    /// keeps, so compaction keeps what replay needs.
    pub fn key(&self) -> Vec<u8> {
        match self {
            Record::Offset { group, tp, .. } | Record::OffsetTombstone { group, tp } => {
                let mut out = OFFSET_KEY_VERSION.to_be_bytes().to_vec();
                put_key_string(&mut out, group);
                put_key_string(&mut out, &tp.topic);
                out.extend_from_slice(&tp.partition.to_be_bytes());
                out
            }
            Record::Group(GroupSnapshot { group, .. }) | Record::GroupTombstone { group } => {
                let mut out = GROUP_KEY_VERSION.to_be_bytes().to_vec();
                put_key_string(&mut out, group);
                out
            }
        }
    }

    /// The record's value under [`Record::key`]: the record itself, or `None` (a Kafka
    /// tombstone, which compaction drops after `delete.retention.ms`) for a tombstone.
    pub fn value(&self) -> Option<Vec<u8>> {
        match self {
            Record::OffsetTombstone { .. } | Record::GroupTombstone { .. } => None,
            Record::Offset { .. } | Record::Group(_) => Some(self.encode()),
        }
    }

    /// The record stored under `key` with `value` (`None`: a tombstone). `None` when the
    /// key does not decode or the value is not the key's record.
    pub fn from_key_value(key: &[u8], value: Option<&[u8]>) -> Option<Record> {
        let version = i16::from_be_bytes(key.get(..2)?.try_into().ok()?);
        let mut rest = &key[2..];
        let group = take_key_string(&mut rest)?;
        let record = match (version, value) {
            (OFFSET_KEY_VERSION, _) => {
                let topic = take_key_string(&mut rest)?;
                let partition = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
                rest = &rest[4..];
                let tp = Tp { topic, partition };
                match value {
                    None => Record::OffsetTombstone { group, tp },
                    Some(bytes) => Record::decode(bytes)?,
                }
            }
            (GROUP_KEY_VERSION, None) => Record::GroupTombstone { group },
            (GROUP_KEY_VERSION, Some(bytes)) => Record::decode(bytes)?,
            _ => return None,
        };
        // The value must be the key's own record (a tombstone's value is its key).
        (rest.is_empty() && record.key() == key).then_some(record)
    }
}

/// Kafka's key versions in `__consumer_offsets`: 0 and 1 are offset commits, 2 group metadata.
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;

/// A Kafka STRING (int16 length). A longer one (a flexible request's compact string may
/// carry up to 2^31 bytes) cannot be a Kafka key: it is written as length -1 and a u32
/// length, which only this decoder reads.
fn put_key_string(out: &mut Vec<u8>, s: &str) {
    match i16::try_from(s.len()) {
        Ok(len) => out.extend_from_slice(&len.to_be_bytes()),
        Err(_) => {
            out.extend_from_slice(&(-1i16).to_be_bytes());
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

fn take_key_string(rest: &mut &[u8]) -> Option<String> {
    let short = i16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let (len, at): (usize, usize) = match short {
        -1 => (
            usize::try_from(u32::from_be_bytes(rest.get(2..6)?.try_into().ok()?)).ok()?,
            6,
        ),
        len => (usize::try_from(len).ok()?, 2),
    };
    let s = std::str::from_utf8(rest.get(at..at.checked_add(len)?)?)
        .ok()?
        .to_string();
    *rest = &rest[at + len..];
    Some(s)
}

/// A group's membership as of its last stable generation (or of becoming empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub group: String,
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (for retention of empty groups).
    pub state_ms: i64,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

/// Topics a `consumer` protocol member subscribes to, from its JoinGroup metadata.
pub fn subscribed_topics(metadata: &[u8]) -> BTreeSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.len() < 2 {
        return BTreeSet::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions than we know keep the older fields first (Kafka's own rule).
    let version = version.clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// Group partition of a group id (Java `String.hashCode`, as Kafka's `partitionFor`).
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: maps i32::MIN to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive as u32 % partitions
}

pub(crate) type Offsets = BTreeMap<Tp, CommittedOffset>;
