//! The cluster metadata every node holds: the result of applying the committed metadata log.
//!
//! Owner: core 0 of every node applies committed records to its `ClusterState` in log order
//! and publishes an immutable copy (versioned by `applied_index`) to its other cores. The
//! controller leader also plans against it. Nothing here reads a clock or does I/O, so the
//! same log gives the same state on every node and in the simulator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::{NodeId, PartitionId};

use crate::error::ApplyError;
use crate::limits::{CLUSTER_ID_BYTES_MAX, GROUP_PARTITIONS};
use crate::record::{PartitionAssignment, Record, Registration, Replica};

/// The cluster metadata at one version (`applied_index`).
///
/// Invariants (checked by [`ClusterState::check`], after every apply in debug builds and on
/// every snapshot restore): every replica and group coordinator names a registered broker and
/// a core below its `cores`; a partition's replicas are on distinct nodes; topic ids are
/// unique; every collection is within its limit in [`crate::limits`]; no broker epoch is
/// beyond `applied_index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    pub(crate) applied_index: u64,
    pub(crate) cluster_id: String,
    pub(crate) brokers: BTreeMap<NodeId, Broker>,
    pub(crate) topics: BTreeMap<String, Topic>,
    /// Producer ids below this were handed out in earlier blocks.
    pub(crate) next_producer_id: i64,
    /// The coordinator of each group partition, by partition (`GROUP_PARTITIONS` long).
    pub(crate) group_coordinators: Vec<Option<Replica>>,
    /// Client quotas (AlterClientQuotas).
    pub(crate) client_quotas: shoal_quotas::QuotaConfigs,
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub registration: Registration,
    /// The log index of the broker's latest `RegisterBroker` record (KRaft's broker epoch).
    /// Fence, unfence and heartbeats name it, so a message about an older incarnation of
    /// the broker is ignored.
    pub broker_epoch: u64,
    /// A fenced broker leads nothing and gets no new partitions.
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub id: [u8; 16],
    /// By partition index.
    pub partitions: Vec<PartitionAssignment>,
    pub configs: BTreeMap<String, String>,
}

/// What an applied record changed, for the node to act on (open or drop logs, answer the
/// proposer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// `replicas_moved` replicas and group coordinators were on cores the node no longer
    /// has; they moved to `core % cores` (as the single-node metadata folds them).
    BrokerRegistered {
        node: NodeId,
        broker_epoch: u64,
        replicas_moved: usize,
    },
    /// `changed` is false when the broker was fenced already.
    BrokerFenced {
        node: NodeId,
        broker_epoch: u64,
        changed: bool,
    },
    /// `changed` is false when the broker was unfenced already; otherwise the leader epoch of
    /// every partition it leads went up by one.
    BrokerUnfenced {
        node: NodeId,
        broker_epoch: u64,
        changed: bool,
    },
    TopicCreated {
        name: String,
        partitions: u32,
    },
    /// The removed topic, so that its replicas' owners can drop their logs.
    TopicDeleted {
        name: String,
        topic: Topic,
    },
    /// Partitions `first..first + count` were added.
    PartitionsCreated {
        name: String,
        first: u32,
        count: u32,
    },
    TopicConfigsAltered {
        name: String,
    },
    /// Ids `first..first + count` are reserved for `node`.
    ProducerIds {
        node: NodeId,
        first: i64,
        count: u32,
    },
    GroupPartitionsPlaced {
        partitions: Vec<u32>,
    },
    ClientQuotasAltered,
    /// A replicated partition's reported leader, epoch or ISR changed.
    PartitionLeader {
        topic: String,
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
    },
}

impl ClusterState {
    /// The empty state of a new cluster, before the first log entry.
    pub fn new(cluster_id: String) -> ClusterState {
        assert!(
            cluster_id.len() <= CLUSTER_ID_BYTES_MAX,
            "cluster id too long"
        );
        let state = ClusterState {
            applied_index: 0,
            cluster_id,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            group_coordinators: vec![None; GROUP_PARTITIONS as usize],
            client_quotas: shoal_quotas::QuotaConfigs::default(),
        };
        debug_assert_eq!(state.check(), Ok(()));
        state
    }

    /// Applies the record committed at log `index`. Deterministic: every node gets the same
    /// state and the same result. A record that is no longer valid (a topic created twice by
    /// racing proposals, an unknown topic, a stale broker epoch) changes nothing but the
    /// version and returns why; the proposer turns that into the Kafka error.
    pub fn apply(&mut self, index: u64, record: &Record) -> Result<Applied, ApplyError> {
        assert!(
            index > self.applied_index,
            "log index {index} applied after {}",
            self.applied_index
        );
        let outcome = match record {
            Record::RegisterBroker(registration) => self.register_broker(index, registration),
            Record::FenceBroker { node, broker_epoch } => self.fence(*node, *broker_epoch),
            Record::UnfenceBroker { node, broker_epoch } => self.unfence(*node, *broker_epoch),
            Record::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => self.create_topic(name, *id, partitions, configs),
            Record::DeleteTopic { name, id } => self.delete_topic(name, *id),
            Record::CreatePartitions {
                name,
                id,
                partitions_before,
                added,
            } => self.create_partitions(name, *id, *partitions_before, added),
            Record::AlterTopicConfigs { name, id, configs } => {
                self.alter_configs(name, *id, configs)
            }
            Record::AllocateProducerIds { node, count } => {
                self.allocate_producer_ids(*node, *count)
            }
            Record::PlaceGroupPartitions { assignments } => self.place_groups(assignments),
            Record::AlterClientQuotas { entity, ops } => self
                .client_quotas
                .apply(entity, &ops.0)
                .map(|()| Applied::ClientQuotasAltered)
                .map_err(ApplyError::Quota),
            Record::PartitionLeader {
                topic,
                id,
                partition,
                leader,
                leader_epoch,
                isr,
            } => self.partition_leader(topic, *id, *partition, *leader, *leader_epoch, isr),
        };
        self.applied_index = index;
        debug_assert_eq!(self.check(), Ok(()));
        outcome
    }

    /// Moves the version past a log entry that carries no record (a new leader's empty entry,
    /// a membership change), so `applied_index` stays the Raft applied index.
    pub fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "log index {index} applied after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// The metadata version: the log index of the last applied entry (0 before the first).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn brokers(&self) -> &BTreeMap<NodeId, Broker> {
        &self.brokers
    }

    pub fn broker(&self, node: NodeId) -> Option<&Broker> {
        self.brokers.get(&node)
    }

    /// Unfenced brokers, by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &Broker> + '_ {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    pub fn client_quotas(&self) -> &shoal_quotas::QuotaConfigs {
        &self.client_quotas
    }

    pub fn topics(&self) -> &BTreeMap<String, Topic> {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn partition(&self, topic: &str, partition: PartitionId) -> Option<&PartitionAssignment> {
        let index = usize::try_from(partition.0).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    /// The partition's leader: its first replica (the reported one, for a replicated
    /// partition), unless that broker is fenced (then the partition has no leader, and
    /// clients get LEADER_NOT_AVAILABLE).
    pub fn leader(&self, topic: &str, partition: PartitionId) -> Option<NodeId> {
        let assignment = self.partition(topic, partition)?;
        let leader = if assignment.is_replicated() {
            assignment.leader?
        } else {
            assignment.replicas.first()?.node
        };
        self.is_live(leader).then_some(leader)
    }

    /// The first producer id the next `AllocateProducerIds` record hands out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Where each group partition is placed (fenced coordinators included), by partition.
    pub fn group_coordinators(&self) -> &[Option<Replica>] {
        &self.group_coordinators
    }

    /// The node and core coordinating groups of `group_partition`: None if it is not placed
    /// or its broker is fenced (clients get COORDINATOR_NOT_AVAILABLE and retry).
    pub fn group_coordinator(&self, group_partition: u32) -> Option<Replica> {
        let index = usize::try_from(group_partition).ok()?;
        let coordinator = (*self.group_coordinators.get(index)?)?;
        self.is_live(coordinator.node).then_some(coordinator)
    }

    pub(crate) fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|broker| !broker.fenced)
    }

    /// Partitions of all topics.
    pub(crate) fn partition_count(&self) -> usize {
        self.topics
            .values()
            .map(|topic| topic.partitions.len())
            .sum()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
