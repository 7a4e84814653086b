//! `ClusterState::apply`'s handlers, one per record. Each validates everything first and only
//! then mutates, so a refused record leaves the state as it was (the property tests check it).

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::NodeId;

use crate::error::{ApplyError, Invalid, Limit};
use crate::limits::{
    ADDRESS_BYTES_MAX, BROKERS_MAX, CONFIGS_PER_TOPIC_MAX, CONFIG_NAME_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, CORES_PER_BROKER_MAX, GROUP_PARTITIONS, PARTITIONS_PER_CLUSTER_MAX,
    PARTITIONS_PER_TOPIC_MAX, PRODUCER_IDS_PER_BLOCK_MAX, REPLICATION_FACTOR_MAX, TOPICS_MAX,
    TOPIC_NAME_BYTES_MAX,
};
use crate::record::{GroupAssignment, PartitionAssignment, Registration, Replica};
use crate::state::{Applied, Broker, ClusterState, Topic};

/// Whether a replica is being placed now (then its broker must be unfenced) or was placed
/// earlier (its broker may have been fenced since).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placing {
    New,
    Existing,
}

impl ClusterState {
    pub(crate) fn register_broker(
        &mut self,
        index: u64,
        registration: &Registration,
    ) -> Result<Applied, ApplyError> {
        validate_registration(registration)?;
        let node = registration.node;
        if !self.brokers.contains_key(&node) && self.brokers.len() >= BROKERS_MAX {
            return Err(ApplyError::Limit(Limit::Brokers));
        }
        let replicas_moved = self.fold_cores(node, registration.cores);
        let broker = Broker {
            registration: registration.clone(),
            broker_epoch: index,
            fenced: true,
        };
        let _previous = self.brokers.insert(node, broker);
        Ok(Applied::BrokerRegistered {
            node,
            broker_epoch: index,
            replicas_moved,
        })
    }

    /// A node that restarted with fewer cores keeps its partitions: each moves to
    /// `core % cores`, the rule the single-node metadata used.
    fn fold_cores(&mut self, node: NodeId, cores: u32) -> usize {
        assert!(cores >= 1, "validated by the caller");
        let mut moved = 0;
        let topic_replicas = self
            .topics
            .values_mut()
            .flat_map(|topic| topic.partitions.iter_mut())
            .flat_map(|partition| partition.replicas.iter_mut());
        let coordinators = self.group_coordinators.iter_mut().flatten();
        for replica in topic_replicas.chain(coordinators) {
            if replica.node == node && replica.core.0 >= cores {
                replica.core.0 %= cores;
                moved += 1;
            }
        }
        moved
    }

    pub(crate) fn fence(&mut self, node: NodeId, broker_epoch: u64) -> Result<Applied, ApplyError> {
        let broker = self.current_broker(node, broker_epoch)?;
        let changed = !broker.fenced;
        broker.fenced = true;
        Ok(Applied::BrokerFenced {
            node,
            broker_epoch,
            changed,
        })
    }

    pub(crate) fn unfence(
        &mut self,
        node: NodeId,
        broker_epoch: u64,
    ) -> Result<Applied, ApplyError> {
        let broker = self.current_broker(node, broker_epoch)?;
        let changed = broker.fenced;
        broker.fenced = false;
        if changed {
            // A new leadership period starts: batches written from now on carry a higher
            // epoch, so a consumer that read a tail the restart lost detects the truncation
            // (KIP-101/320), as KRaft bumps the epoch when it elects the leader again.
            for partition in self
                .topics
                .values_mut()
                .flat_map(|t| t.partitions.iter_mut())
            {
                // A replicated partition's epoch is its Raft group's term, reported by the
                // leader it elects: the controller does not raise it.
                let single = !partition.is_replicated();
                if single
                    && partition
                        .replicas
                        .first()
                        .is_some_and(|leader| leader.node == node)
                {
                    // Saturates rather than panics: 2^31 restarts do not happen, but a
                    // record may start a partition near the top, and apply never panics on
                    // a record that decoded.
                    partition.leader_epoch = partition.leader_epoch.saturating_add(1);
                }
            }
        }
        Ok(Applied::BrokerUnfenced {
            node,
            broker_epoch,
            changed,
        })
    }

    fn current_broker(
        &mut self,
        node: NodeId,
        broker_epoch: u64,
    ) -> Result<&mut Broker, ApplyError> {
        let broker = self
            .brokers
            .get_mut(&node)
            .ok_or(ApplyError::UnknownBroker { node })?;
        if broker.broker_epoch != broker_epoch {
            let current = broker.broker_epoch;
            return Err(ApplyError::StaleBrokerEpoch {
                node,
                broker_epoch,
                current,
            });
        }
        Ok(broker)
    }

    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        id: [u8; 16],
        partitions: &[PartitionAssignment],
        configs: &BTreeMap<String, String>,
    ) -> Result<Applied, ApplyError> {
        validate_topic_name(name)?;
        if id == [0; 16] {
            return Err(ApplyError::Invalid(Invalid::NilTopicId));
        }
        if self.topics.contains_key(name) {
            return Err(ApplyError::TopicExists {
                name: name.to_string(),
            });
        }
        if let Some(by) = self.topic_with_id(id) {
            return Err(ApplyError::TopicIdInUse { by: by.to_string() });
        }
        if self.topics.len() >= TOPICS_MAX {
            return Err(ApplyError::Limit(Limit::Topics));
        }
        self.validate_new_partitions(0, partitions)?;
        validate_configs(configs)?;
        let topic = Topic {
            id,
            partitions: partitions.to_vec(),
            configs: configs.clone(),
        };
        let _absent = self.topics.insert(name.to_string(), topic);
        let count = u32::try_from(partitions.len()).expect("bounded by PARTITIONS_PER_TOPIC_MAX");
        Ok(Applied::TopicCreated {
            name: name.to_string(),
            partitions: count,
        })
    }

    pub(crate) fn delete_topic(&mut self, name: &str, id: [u8; 16]) -> Result<Applied, ApplyError> {
        let _ = self.topic_named(name, id)?;
        let topic = self.topics.remove(name).expect("looked up above");
        Ok(Applied::TopicDeleted {
            name: name.to_string(),
            topic,
        })
    }

    pub(crate) fn create_partitions(
        &mut self,
        name: &str,
        id: [u8; 16],
        partitions_before: u32,
        added: &[PartitionAssignment],
    ) -> Result<Applied, ApplyError> {
        let current = self.topic_named(name, id)?.partitions.len();
        let current = u32::try_from(current).expect("bounded by PARTITIONS_PER_TOPIC_MAX");
        if current != partitions_before {
            let name = name.to_string();
            return Err(ApplyError::PartitionCountChanged {
                name,
                expected: partitions_before,
                current,
            });
        }
        self.validate_new_partitions(current as usize, added)?;
        let topic = self.topics.get_mut(name).expect("looked up above");
        topic.partitions.extend_from_slice(added);
        let count = u32::try_from(added.len()).expect("bounded by PARTITIONS_PER_TOPIC_MAX");
        Ok(Applied::PartitionsCreated {
            name: name.to_string(),
            first: current,
            count,
        })
    }

    pub(crate) fn alter_configs(
        &mut self,
        name: &str,
        id: [u8; 16],
        configs: &BTreeMap<String, String>,
    ) -> Result<Applied, ApplyError> {
        let _ = self.topic_named(name, id)?;
        validate_configs(configs)?;
        let topic = self.topics.get_mut(name).expect("looked up above");
        topic.configs = configs.clone();
        Ok(Applied::TopicConfigsAltered {
            name: name.to_string(),
        })
    }

    pub(crate) fn allocate_producer_ids(
        &mut self,
        node: NodeId,
        count: u32,
    ) -> Result<Applied, ApplyError> {
        if !self.brokers.contains_key(&node) {
            return Err(ApplyError::UnknownBroker { node });
        }
        if count == 0 {
            return Err(ApplyError::Invalid(Invalid::NoProducerIds));
        }
        if count > PRODUCER_IDS_PER_BLOCK_MAX {
            return Err(ApplyError::Limit(Limit::ProducerIdsPerBlock));
        }
        let first = self.next_producer_id;
        let next = first
            .checked_add(i64::from(count))
            .ok_or(ApplyError::ProducerIdsExhausted)?;
        assert!(next > first, "producer ids only move forward");
        self.next_producer_id = next;
        Ok(Applied::ProducerIds { node, first, count })
    }

    /// A replicated partition's leader reports itself (see [`crate::Record::PartitionLeader`]).
    pub(crate) fn partition_leader(
        &mut self,
        name: &str,
        id: [u8; 16],
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
        isr: &[NodeId],
    ) -> Result<Applied, ApplyError> {
        self.check_partition_leader(name, id, partition, leader, leader_epoch, isr)?;
        let assignment = self
            .topics
            .get_mut(name)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .expect("checked");
        assignment.leader = Some(leader);
        assignment.leader_epoch = leader_epoch;
        assignment.isr = isr.to_vec();
        Ok(Applied::PartitionLeader {
            topic: name.into(),
            partition,
            leader,
            leader_epoch,
        })
    }

    /// Whether [`Self::partition_leader`] would take the report.
    pub(crate) fn check_partition_leader(
        &self,
        name: &str,
        id: [u8; 16],
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
        isr: &[NodeId],
    ) -> Result<(), ApplyError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| ApplyError::UnknownTopic { name: name.into() })?;
        if topic.id != id {
            return Err(ApplyError::TopicIdMismatch { name: name.into() });
        }
        let assignment = usize::try_from(partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .ok_or(ApplyError::Invalid(Invalid::UnknownPartition(partition)))?;
        if !assignment.is_replicated() {
            return Err(ApplyError::Invalid(Invalid::NotReplicated(partition)));
        }
        let is_replica = |node: &NodeId| assignment.replicas.iter().any(|r| r.node == *node);
        if !is_replica(&leader) {
            return Err(ApplyError::Invalid(Invalid::NotAReplica(leader)));
        }
        if isr.first() != Some(&leader) {
            return Err(ApplyError::Invalid(Invalid::IsrWithoutLeader(leader)));
        }
        let mut seen = BTreeSet::new();
        for node in isr {
            if !is_replica(node) {
                return Err(ApplyError::Invalid(Invalid::NotAReplica(*node)));
            }
            if !seen.insert(*node) {
                return Err(ApplyError::Invalid(Invalid::DuplicateReplicaNode(*node)));
            }
        }
        if leader_epoch < 0 {
            return Err(ApplyError::Invalid(Invalid::NegativeLeaderEpoch(
                leader_epoch,
            )));
        }
        // A newer term, or the same term and leader (an ISR change). Raft elects at most one
        // leader per term, so the same term with another leader is a corrupt report.
        let current = assignment.leader_epoch;
        let newer = leader_epoch > current;
        let same = leader_epoch == current && assignment.leader.is_none_or(|l| l == leader);
        if !(newer || same) {
            return Err(ApplyError::StaleLeaderEpoch {
                name: name.into(),
                partition,
                leader_epoch,
                current,
            });
        }
        Ok(())
    }

    pub(crate) fn place_groups(
        &mut self,
        assignments: &[GroupAssignment],
    ) -> Result<Applied, ApplyError> {
        if assignments.is_empty() {
            return Err(ApplyError::Invalid(Invalid::NoGroupAssignments));
        }
        let mut seen = BTreeSet::new();
        for assignment in assignments {
            let partition = assignment.partition;
            if partition >= GROUP_PARTITIONS {
                return Err(ApplyError::Invalid(Invalid::GroupPartitionOutOfRange(
                    partition,
                )));
            }
            if !seen.insert(partition) {
                return Err(ApplyError::Invalid(Invalid::DuplicateGroupPartition(
                    partition,
                )));
            }
            self.validate_replica(&assignment.coordinator, Placing::New)?;
        }
        for assignment in assignments {
            self.group_coordinators[assignment.partition as usize] = Some(assignment.coordinator);
        }
        Ok(Applied::GroupPartitionsPlaced {
            partitions: seen.into_iter().collect(),
        })
    }

    /// The topic `name`, if it still has the id the record names.
    fn topic_named(&self, name: &str, id: [u8; 16]) -> Result<&Topic, ApplyError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| ApplyError::UnknownTopic {
                name: name.to_string(),
            })?;
        if topic.id != id {
            return Err(ApplyError::TopicIdMismatch {
                name: name.to_string(),
            });
        }
        Ok(topic)
    }

    /// The topic whose id is `id`, or shares its Raft group prefix (the first
    /// [`crate::GROUP_ID_PREFIX_BYTES`] bytes, which name the partitions' groups).
    pub(crate) fn topic_with_id(&self, id: [u8; 16]) -> Option<&str> {
        let prefix = crate::group_prefix(&id);
        self.topics
            .iter()
            .find(|(_, topic)| topic.id == id || crate::group_prefix(&topic.id) == prefix)
            .map(|(name, _)| name.as_str())
    }

    /// `added` may follow `current` partitions of a topic.
    fn validate_new_partitions(
        &self,
        current: usize,
        added: &[PartitionAssignment],
    ) -> Result<(), ApplyError> {
        if added.is_empty() {
            return Err(ApplyError::Invalid(Invalid::NoPartitions));
        }
        if current + added.len() > PARTITIONS_PER_TOPIC_MAX as usize {
            return Err(ApplyError::Limit(Limit::PartitionsPerTopic));
        }
        if self.partition_count() + added.len() > PARTITIONS_PER_CLUSTER_MAX {
            return Err(ApplyError::Limit(Limit::PartitionsPerCluster));
        }
        added
            .iter()
            .try_for_each(|partition| self.validate_assignment(partition, Placing::New))
    }

    pub(crate) fn validate_assignment(
        &self,
        partition: &PartitionAssignment,
        placing: Placing,
    ) -> Result<(), ApplyError> {
        if partition.replicas.is_empty() {
            return Err(ApplyError::Invalid(Invalid::NoReplicas));
        }
        if partition.replicas.len() > REPLICATION_FACTOR_MAX {
            return Err(ApplyError::Limit(Limit::ReplicationFactor));
        }
        if partition.leader_epoch < 0 {
            return Err(ApplyError::Invalid(Invalid::NegativeLeaderEpoch(
                partition.leader_epoch,
            )));
        }
        if placing == Placing::New && (partition.leader.is_some() || !partition.isr.is_empty()) {
            // Leadership is reported by the partition's group once it runs, never placed.
            return Err(ApplyError::Invalid(Invalid::LeaderPlaced));
        }
        let mut nodes = BTreeSet::new();
        for replica in &partition.replicas {
            if !nodes.insert(replica.node) {
                return Err(ApplyError::Invalid(Invalid::DuplicateReplicaNode(
                    replica.node,
                )));
            }
            self.validate_replica(replica, placing)?;
        }
        Ok(())
    }

    /// The replica names a registered broker (unfenced, for a new one) and one of its cores.
    pub(crate) fn validate_replica(
        &self,
        replica: &Replica,
        placing: Placing,
    ) -> Result<(), ApplyError> {
        let node = replica.node;
        let broker = self
            .brokers
            .get(&node)
            .ok_or(ApplyError::UnknownBroker { node })?;
        if placing == Placing::New && broker.fenced {
            return Err(ApplyError::BrokerFenced { node });
        }
        let cores = broker.registration.cores;
        if replica.core.0 >= cores {
            return Err(ApplyError::CoreOutOfRange {
                node,
                core: replica.core,
                cores,
            });
        }
        Ok(())
    }
}

pub(crate) fn validate_registration(registration: &Registration) -> Result<(), ApplyError> {
    if registration.node.0 < 0 {
        return Err(ApplyError::Invalid(Invalid::NegativeNodeId(
            registration.node,
        )));
    }
    if registration.cores == 0 {
        return Err(ApplyError::Invalid(Invalid::NoCores));
    }
    if registration.cores > CORES_PER_BROKER_MAX {
        return Err(ApplyError::Limit(Limit::CoresPerBroker));
    }
    let rack = registration.rack.as_deref().unwrap_or("");
    let longest = [
        registration.kafka_host.len(),
        registration.rpc_addr.len(),
        rack.len(),
    ];
    if longest.into_iter().any(|bytes| bytes > ADDRESS_BYTES_MAX) {
        return Err(ApplyError::Limit(Limit::AddressBytes));
    }
    Ok(())
}

pub(crate) fn validate_topic_name(name: &str) -> Result<(), ApplyError> {
    if name.is_empty() {
        return Err(ApplyError::Invalid(Invalid::EmptyTopicName));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(ApplyError::Limit(Limit::TopicNameBytes));
    }
    Ok(())
}

/// Only the bounds: the values are validated by the server (`topic_config.rs`).
pub(crate) fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), ApplyError> {
    if configs.len() > CONFIGS_PER_TOPIC_MAX {
        return Err(ApplyError::Limit(Limit::ConfigsPerTopic));
    }
    for (name, value) in configs {
        if name.len() > CONFIG_NAME_BYTES_MAX {
            return Err(ApplyError::Limit(Limit::ConfigNameBytes));
        }
        if value.len() > CONFIG_VALUE_BYTES_MAX {
            return Err(ApplyError::Limit(Limit::ConfigValueBytes));
        }
    }
    Ok(())
}
