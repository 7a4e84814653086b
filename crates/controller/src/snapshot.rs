//! Snapshots of the state, so the metadata log can be truncated: a 2-byte little-endian
//! format version, then the state as JSON. A restored snapshot is checked against every
//! invariant before it is used, so a corrupt or foreign one is refused, never half-applied.
//!
//! Durability is the caller's: these are bytes; the consensus layer stores them with the
//! Raft snapshot metadata (index = `applied_index`, term, configuration).

use serde::{Deserialize, Serialize};

use crate::error::SnapshotError;
use crate::limits::SNAPSHOT_BYTES_MAX;
use crate::record::Replica;
use crate::state::{Broker, ClusterState, Topic};
use std::collections::BTreeMap;

/// The snapshot format [`ClusterState::to_snapshot_bytes`] writes.
pub const SNAPSHOT_VERSION: u16 = 1;

const HEADER_BYTES: usize = 2;

/// The stored form: brokers as a list, since JSON map keys are strings.
#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    applied_index: u64,
    cluster_id: String,
    brokers: Vec<Broker>,
    topics: BTreeMap<String, Topic>,
    next_producer_id: i64,
    group_coordinators: Vec<Option<Replica>>,
    /// Absent in snapshots written before quotas existed.
    #[serde(default)]
    client_quotas: shoal_quotas::QuotaConfigs,
}

impl ClusterState {
    /// The state as snapshot bytes (a pure function of the state).
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let stored = SnapshotV1 {
            applied_index: self.applied_index,
            cluster_id: self.cluster_id.clone(),
            brokers: self.brokers.values().cloned().collect(),
            topics: self.topics.clone(),
            next_producer_id: self.next_producer_id,
            group_coordinators: self.group_coordinators.clone(),
            client_quotas: self.client_quotas.clone(),
        };
        let mut bytes = SNAPSHOT_VERSION.to_le_bytes().to_vec();
        // Writing JSON into a Vec fails only for maps with non-string keys; ours have none.
        serde_json::to_writer(&mut bytes, &stored).expect("the state serializes to JSON");
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                bytes: bytes.len(),
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    /// A state from snapshot bytes, checked against every invariant. Never panics, whatever
    /// the bytes.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<ClusterState, SnapshotError> {
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                bytes: bytes.len(),
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err(SnapshotError::Truncated { bytes: bytes.len() });
        };
        let version = u16::from_le_bytes(*header);
        if version != SNAPSHOT_VERSION {
            let known = SNAPSHOT_VERSION;
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                known,
            });
        }
        let stored: SnapshotV1 = serde_json::from_slice(body)?;
        let mut brokers = BTreeMap::new();
        for broker in stored.brokers {
            let node = broker.registration.node;
            if brokers.insert(node, broker).is_some() {
                return Err(SnapshotError::DuplicateBroker(node));
            }
        }
        let state = ClusterState {
            applied_index: stored.applied_index,
            cluster_id: stored.cluster_id,
            brokers,
            topics: stored.topics,
            next_producer_id: stored.next_producer_id,
            group_coordinators: stored.group_coordinators,
            client_quotas: stored.client_quotas,
        };
        state.check()?;
        Ok(state)
    }
}
