//! The records of the metadata log and their encoding.
//!
//! An encoded record is a 2-byte little-endian envelope version followed by the record as
//! JSON. Version 1 is the only one so far. A later version may add variants or fields: it
//! gets a new envelope version, a node that does not know it refuses the record with
//! [`DecodeError::UnsupportedVersion`] (fail-stop: it must be upgraded before it can apply the
//! log), and a leader proposes the new version only once every node understands it (as
//! KRaft's `metadata.version`). Metadata records are small and rare, so JSON costs little and
//! stays readable in a debugger.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::{NodeId, ShardId};
use thiserror::Error;

use crate::ids;
use crate::limits::RECORD_BYTES_MAX;

/// The newest envelope version [`Record::encode`] writes. Version 2 added
/// [`Record::PartitionLeader`] and the leadership fields of [`PartitionAssignment`] (absent
/// in version 1 records, which read as "no leader reported"). Version 3 added
/// [`Record::AlterClientQuotas`]; only that record is written as version 3 (every other one
/// stays version 2), so a node of the version before reads every log that sets no quota.
pub const RECORD_VERSION: u16 = 3;

/// The oldest envelope version [`Record::decode`] reads.
pub const RECORD_VERSION_MIN: u16 = 1;

/// Bytes before the JSON body.
const HEADER_BYTES: usize = 2;

/// One change to the cluster metadata, as proposed by the controller leader and applied by
/// every node in log order (see [`crate::ClusterState::apply`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A node (re)joins. Its broker epoch becomes the log index of this record, it starts
    /// fenced, and its first heartbeat with that epoch unfences it (see [`crate::Liveness`]).
    RegisterBroker(Registration),
    /// The broker stops leading its partitions and gets no new ones. Ignored (an error) when
    /// `broker_epoch` is not the broker's current epoch.
    FenceBroker {
        #[serde(with = "ids::node")]
        node: NodeId,
        broker_epoch: u64,
    },
    /// The broker leads its partitions again; their leader epochs increase. Ignored (an
    /// error) when `broker_epoch` is not the broker's current epoch.
    UnfenceBroker {
        #[serde(with = "ids::node")]
        node: NodeId,
        broker_epoch: u64,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        partitions: Vec<PartitionAssignment>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        id: [u8; 16],
    },
    /// Appends `added` to the topic's partitions. `partitions_before` is the count the plan
    /// saw: two racing plans for the same topic cannot both grow it.
    CreatePartitions {
        name: String,
        id: [u8; 16],
        partitions_before: u32,
        added: Vec<PartitionAssignment>,
    },
    /// Replaces the topic's configs (the server validated the values).
    AlterTopicConfigs {
        name: String,
        id: [u8; 16],
        configs: BTreeMap<String, String>,
    },
    /// Reserves `count` producer ids for `node`; the applied result names the first.
    AllocateProducerIds {
        #[serde(with = "ids::node")]
        node: NodeId,
        count: u32,
    },
    /// Sets the coordinator of some group partitions (all of them at bootstrap, those of a
    /// fenced coordinator later); the others keep theirs.
    PlaceGroupPartitions {
        assignments: Vec<GroupAssignment>,
    },
    /// Sets and removes quotas of one client quota entity (the server checked the ops).
    AlterClientQuotas {
        entity: shoal_quotas::QuotaEntity,
        ops: QuotaOps,
    },
    /// A replicated partition's Raft group elected `leader` in term `leader_epoch`, which
    /// counts `isr` in sync (the leader first). Reported by the leader itself; applied when
    /// the epoch is newer than the recorded one, or the same epoch with the same leader (an
    /// ISR change). Ignored (an error) otherwise: a report from a deposed leader.
    PartitionLeader {
        topic: String,
        id: [u8; 16],
        partition: u32,
        #[serde(with = "ids::node")]
        leader: NodeId,
        leader_epoch: i32,
        #[serde(with = "ids::nodes")]
        isr: Vec<NodeId>,
    },
}

/// The ops of an [`Record::AlterClientQuotas`]: (quota, new value or `None` to remove).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaOps(pub Vec<shoal_quotas::QuotaOp>);

// Quota values are finite (validated before proposing; JSON cannot carry NaN), so equality
// is total.
impl Eq for QuotaOps {}

/// What a broker says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(with = "ids::node")]
    pub node: NodeId,
    /// Differs at every process start (KRaft's incarnation id): a registration with another
    /// incarnation while the old one still heartbeats is a duplicate node id.
    pub incarnation: u64,
    /// The advertised Kafka listener, as clients see it in Metadata.
    pub kafka_host: String,
    pub kafka_port: u16,
    /// The advertised node-to-node address (`host:port`).
    pub rpc_addr: String,
    pub rack: Option<String>,
    /// Cores (glommio executors) of the node; replicas name one of them.
    pub cores: u32,
}

/// Where one replica of a partition lives: a node, and the core on it that owns the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Replica {
    #[serde(with = "ids::node")]
    pub node: NodeId,
    #[serde(with = "ids::shard")]
    pub core: ShardId,
}

/// The replicas of one partition. The first replica is the preferred leader; with one replica
/// it is the leader whenever its broker is unfenced. With more, the partition is a Raft group
/// and its leader is the one the group elected ([`Record::PartitionLeader`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub replicas: Vec<Replica>,
    /// Kafka's leader epoch: bumped by the controller for one replica, the Raft term of the
    /// reported leader for more.
    pub leader_epoch: i32,
    /// A replicated partition's leader as last reported (`None` before the first report).
    #[serde(default, with = "ids::opt_node")]
    pub leader: Option<NodeId>,
    /// A replicated partition's in-sync replicas as its leader last reported them.
    #[serde(default, with = "ids::nodes")]
    pub isr: Vec<NodeId>,
}

impl PartitionAssignment {
    /// A new partition on `replicas`, epoch 0, no leader reported yet.
    pub fn new(replicas: Vec<Replica>) -> PartitionAssignment {
        PartitionAssignment {
            replicas,
            leader_epoch: 0,
            leader: None,
            isr: Vec::new(),
        }
    }

    /// Whether the partition is a Raft group (more than one replica).
    pub fn is_replicated(&self) -> bool {
        self.replicas.len() > 1
    }
}

/// The coordinator of one group partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAssignment {
    /// `0..GROUP_PARTITIONS`.
    pub partition: u32,
    pub coordinator: Replica,
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("record of {bytes} bytes is larger than the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
}

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("record of {bytes} bytes is larger than the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("record of {bytes} bytes is shorter than its header")]
    Truncated { bytes: usize },
    #[error("record envelope version {found} is not supported (this node knows 1..={known})")]
    UnsupportedVersion { found: u16, known: u16 },
    #[error("malformed record: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl Record {
    /// The envelope version this record is written in: the oldest that has it, so that a
    /// node one version behind still reads every record it knows (all but the quota ones).
    pub fn envelope_version(&self) -> u16 {
        match self {
            Record::AlterClientQuotas { .. } => 3,
            _ => 2,
        }
    }

    /// The record as log entry bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut bytes = self.envelope_version().to_le_bytes().to_vec();
        // Writing JSON into a Vec fails only for maps with non-string keys; ours have none.
        serde_json::to_writer(&mut bytes, self).expect("records serialize to JSON");
        if bytes.len() > RECORD_BYTES_MAX {
            return Err(EncodeError::TooLarge {
                bytes: bytes.len(),
                max: RECORD_BYTES_MAX,
            });
        }
        debug_assert!(Record::decode(&bytes).is_ok_and(|back| back == *self));
        Ok(bytes)
    }

    /// A record from log entry bytes. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        if bytes.len() > RECORD_BYTES_MAX {
            return Err(DecodeError::TooLarge {
                bytes: bytes.len(),
                max: RECORD_BYTES_MAX,
            });
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err(DecodeError::Truncated { bytes: bytes.len() });
        };
        let version = u16::from_le_bytes(*header);
        if !(RECORD_VERSION_MIN..=RECORD_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                known: RECORD_VERSION,
            });
        }
        Ok(serde_json::from_slice(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{
        CONFIGS_PER_TOPIC_MAX, CONFIG_NAME_BYTES_MAX, CONFIG_VALUE_BYTES_MAX,
        PARTITIONS_PER_TOPIC_MAX, REPLICATION_FACTOR_MAX,
    };

    fn widest_assignment() -> PartitionAssignment {
        let replica = Replica {
            node: NodeId(i32::MIN),
            core: ShardId(u32::MAX),
        };
        PartitionAssignment {
            replicas: vec![replica; REPLICATION_FACTOR_MAX],
            leader_epoch: i32::MIN,
            leader: Some(NodeId(i32::MIN)),
            isr: vec![NodeId(i32::MIN); REPLICATION_FACTOR_MAX],
        }
    }

    #[test]
    fn assignment_bound_holds_for_the_widest_assignment() {
        let one = serde_json::to_vec(&widest_assignment()).expect("serializes");
        assert!(
            one.len() < crate::limits::ASSIGNMENT_BYTES_MAX,
            "{}",
            one.len()
        );
    }

    #[test]
    fn the_largest_create_topic_fits_a_record() {
        // Control characters are escaped as six bytes each: the worst case for the configs.
        let configs = (0..CONFIGS_PER_TOPIC_MAX)
            .map(|i| {
                let mut name = format!("{i:03}");
                name.push_str(&"\u{1}".repeat(CONFIG_NAME_BYTES_MAX - name.len()));
                (name, "\u{1}".repeat(CONFIG_VALUE_BYTES_MAX))
            })
            .collect();
        let record = Record::CreateTopic {
            name: "t".repeat(crate::limits::TOPIC_NAME_BYTES_MAX),
            id: [0xff; 16],
            partitions: vec![widest_assignment(); PARTITIONS_PER_TOPIC_MAX as usize],
            configs,
        };
        let bytes = record.encode().expect("within the limit");
        assert_eq!(Record::decode(&bytes).expect("decodes"), record);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let record = Record::RegisterBroker(Registration {
            node: NodeId(3),
            incarnation: 77,
            kafka_host: "b3.example".into(),
            kafka_port: 9092,
            rpc_addr: "10.0.0.3:9400".into(),
            rack: Some("r1".into()),
            cores: 8,
        });
        let bytes = record.encode().expect("encodes");
        assert_eq!(&bytes[..2], &record.envelope_version().to_le_bytes());
        assert_eq!(Record::decode(&bytes).expect("decodes"), record);
    }

    #[test]
    fn ids_encode_as_bare_integers() {
        let record = Record::FenceBroker {
            node: NodeId(4),
            broker_epoch: 9,
        };
        let bytes = record.encode().expect("encodes");
        let body = std::str::from_utf8(&bytes[2..]).expect("utf-8");
        assert_eq!(body, r#"{"FenceBroker":{"node":4,"broker_epoch":9}}"#);
    }

    #[test]
    fn bad_envelopes_are_typed_errors() {
        assert!(matches!(
            Record::decode(&[]),
            Err(DecodeError::Truncated { bytes: 0 })
        ));
        assert!(matches!(
            Record::decode(&[1]),
            Err(DecodeError::Truncated { bytes: 1 })
        ));
        let mut future = Record::FenceBroker {
            node: NodeId(1),
            broker_epoch: 1,
        }
        .encode()
        .expect("encodes");
        future[..2].copy_from_slice(&(RECORD_VERSION + 1).to_le_bytes());
        assert!(matches!(
            Record::decode(&future),
            Err(DecodeError::UnsupportedVersion { found, known })
                if found == RECORD_VERSION + 1 && known == RECORD_VERSION
        ));
        // A version 1 record (no leadership fields) still reads, as "no leader reported".
        let mut old = 1u16.to_le_bytes().to_vec();
        old.extend_from_slice(
            br#"{"CreatePartitions":{"name":"t","id":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"partitions_before":1,"added":[{"replicas":[{"node":1,"core":0}],"leader_epoch":0}]}}"#,
        );
        match Record::decode(&old) {
            Ok(Record::CreatePartitions { added, .. }) => {
                assert_eq!(added[0].leader, None);
                assert!(added[0].isr.is_empty());
            }
            other => panic!("a version 1 record reads: {other:?}"),
        }
        let huge = vec![b' '; RECORD_BYTES_MAX + 1];
        assert!(matches!(
            Record::decode(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut unknown = RECORD_VERSION.to_le_bytes().to_vec();
        unknown.extend_from_slice(br#"{"RemoveBroker":{"node":1}}"#);
        assert!(matches!(
            Record::decode(&unknown),
            Err(DecodeError::Malformed(_))
        ));
        let mut trailing = Record::FenceBroker {
            node: NodeId(1),
            broker_epoch: 1,
        }
        .encode()
        .expect("encodes");
        trailing.extend_from_slice(b"{}");
        assert!(matches!(
            Record::decode(&trailing),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn too_large_records_are_refused_at_encode() {
        let record = Record::AlterTopicConfigs {
            name: "t".into(),
            id: [1; 16],
            configs: BTreeMap::from([("k".into(), "v".repeat(RECORD_BYTES_MAX))]),
        };
        assert!(matches!(record.encode(), Err(EncodeError::TooLarge { .. })));
    }
}
