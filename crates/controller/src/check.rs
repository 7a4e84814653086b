//! The invariants of a `ClusterState`, checked as a whole: after every apply in debug builds
//! (the records were validated before they were written, this checks the result) and on
//! every snapshot restore (bytes from disk or another node). O(size of the state).

use std::collections::BTreeMap;

use crate::apply::{validate_configs, validate_registration, validate_topic_name, Placing};
use crate::error::{InvariantError, Limit};
use crate::limits::{
    BROKERS_MAX, CLUSTER_ID_BYTES_MAX, GROUP_PARTITIONS, PARTITIONS_PER_CLUSTER_MAX,
    PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX,
};
use crate::state::{ClusterState, Topic};

impl ClusterState {
    /// Every invariant of the state, or the first one broken.
    pub fn check(&self) -> Result<(), InvariantError> {
        if self.cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return Err(InvariantError::ClusterIdBytes);
        }
        if self.next_producer_id < 0 {
            return Err(InvariantError::NegativeProducerId(self.next_producer_id));
        }
        self.check_brokers()?;
        self.check_topics()?;
        self.check_groups()
    }

    fn check_brokers(&self) -> Result<(), InvariantError> {
        if self.brokers.len() > BROKERS_MAX {
            return Err(InvariantError::Limit(Limit::Brokers));
        }
        for (&key, broker) in &self.brokers {
            let node = broker.registration.node;
            if key != node {
                return Err(InvariantError::BrokerKey { key, node });
            }
            validate_registration(&broker.registration)
                .map_err(|error| InvariantError::Broker { node, error })?;
            let (broker_epoch, applied_index) = (broker.broker_epoch, self.applied_index);
            // The epoch is the index of a record applied already: 1 at least.
            if broker_epoch == 0 || broker_epoch > applied_index {
                return Err(InvariantError::BrokerEpochAhead {
                    node,
                    broker_epoch,
                    applied_index,
                });
            }
        }
        Ok(())
    }

    fn check_topics(&self) -> Result<(), InvariantError> {
        if self.topics.len() > TOPICS_MAX {
            return Err(InvariantError::Limit(Limit::Topics));
        }
        if self.partition_count() > PARTITIONS_PER_CLUSTER_MAX {
            return Err(InvariantError::Limit(Limit::PartitionsPerCluster));
        }
        let mut names_by_id: BTreeMap<[u8; 16], &str> = BTreeMap::new();
        for (name, topic) in &self.topics {
            self.check_topic(topic)
                .map_err(|error| InvariantError::Topic {
                    name: name.clone(),
                    error,
                })?;
            validate_topic_name(name).map_err(|error| InvariantError::Topic {
                name: name.clone(),
                error,
            })?;
            if let Some(first) = names_by_id.insert(topic.id, name) {
                let (first, second) = (first.to_string(), name.clone());
                return Err(InvariantError::DuplicateTopicId { first, second });
            }
        }
        Ok(())
    }

    fn check_topic(&self, topic: &Topic) -> Result<(), crate::ApplyError> {
        use crate::error::{ApplyError, Invalid};
        if topic.id == [0; 16] {
            return Err(ApplyError::Invalid(Invalid::NilTopicId));
        }
        if topic.partitions.is_empty() {
            return Err(ApplyError::Invalid(Invalid::NoPartitions));
        }
        if topic.partitions.len() > PARTITIONS_PER_TOPIC_MAX as usize {
            return Err(ApplyError::Limit(Limit::PartitionsPerTopic));
        }
        for partition in &topic.partitions {
            self.validate_assignment(partition, Placing::Existing)?;
        }
        validate_configs(&topic.configs)
    }

    fn check_groups(&self) -> Result<(), InvariantError> {
        let expected = GROUP_PARTITIONS as usize;
        if self.group_coordinators.len() != expected {
            let found = self.group_coordinators.len();
            return Err(InvariantError::GroupPartitionCount { found, expected });
        }
        for (partition, coordinator) in (0u32..).zip(&self.group_coordinators) {
            if let Some(coordinator) = coordinator {
                self.validate_replica(coordinator, Placing::Existing)
                    .map_err(|error| InvariantError::GroupPartition { partition, error })?;
            }
        }
        Ok(())
    }
}
