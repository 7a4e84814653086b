//! What the controller leader proposes: pure functions from the current state and a request
//! to the record to propose, or the reason (a typed error) to refuse the request.
//!
//! Plans are made against the leader's applied state, so the leader plans only once it has
//! applied every entry before its term's first one; a plan that a racing record made stale is
//! refused again by `apply` (the two checks pair up). Config values are validated by the
//! server before it plans (`topic_config.rs`); this checks only their bounds.

use std::collections::BTreeMap;

use shoal_model::NodeId;

use crate::apply::{validate_configs, validate_topic_name};
use crate::error::{ApplyError, Invalid, Limit, PlacementError, PlanError};
use crate::limits::{
    GROUP_PARTITIONS, PARTITIONS_PER_CLUSTER_MAX, PARTITIONS_PER_TOPIC_MAX,
    PRODUCER_IDS_PER_BLOCK_MAX, TOPICS_MAX,
};
use crate::place::{least_loaded_core, place};
use crate::record::{GroupAssignment, Record, Replica};
use crate::state::ClusterState;

/// Replication factor Kafka clients send for "the broker default".
const REPLICATION_FACTOR_DEFAULT_REQUEST: i16 = -1;

/// CreateTopics for one topic. `partitions` is resolved by the caller (-1 becomes the server's
/// `default_partitions` first); `replication_factor` -1 means 1 (the server resolves its own
/// default first); more replicas than unfenced brokers is refused by placement. `new_id` is a
/// random UUID drawn by the caller (the state machine draws nothing); one that shares its
/// Raft group prefix with another topic's id is refused as unusable (the caller draws again).
pub fn plan_create_topic(
    state: &ClusterState,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    new_id: [u8; 16],
) -> Result<Record, PlanError> {
    validate_topic_name(name).map_err(|_| PlanError::TopicNameBytes)?;
    if state.topic(name).is_some() {
        return Err(PlanError::TopicExists {
            name: name.to_string(),
        });
    }
    let replication_factor = match replication_factor {
        REPLICATION_FACTOR_DEFAULT_REQUEST => 1,
        factor if factor >= 1 => usize::try_from(factor).expect("positive"),
        factor => return Err(PlanError::InvalidReplicationFactor(factor)),
    };
    let count = partition_count(partitions)?;
    if crate::group_prefix(&new_id) == 0 || state.topic_with_id(new_id).is_some() {
        return Err(PlanError::TopicIdUnusable);
    }
    if state.topics().len() >= TOPICS_MAX {
        return Err(PlanError::Limit(Limit::Topics));
    }
    check_cluster_partitions(state, count)?;
    validate_configs(&configs).map_err(plan_error)?;
    let assignments = place(state, count, replication_factor)?;
    Ok(Record::CreateTopic {
        name: name.to_string(),
        id: new_id,
        partitions: assignments,
        configs,
    })
}

/// A replicated partition's leader reports itself: `None` when the applied state already says
/// so (nothing to propose), an error when the report is stale or names no replica.
pub fn plan_partition_leader(
    state: &ClusterState,
    topic: &str,
    partition: u32,
    leader: NodeId,
    leader_epoch: i32,
    isr: Vec<NodeId>,
) -> Result<Option<Record>, PlanError> {
    let found = state
        .topic(topic)
        .ok_or_else(|| PlanError::UnknownTopic { name: topic.into() })?;
    let assignment = found
        .partitions
        .get(partition as usize)
        .ok_or_else(|| PlanError::UnknownTopic { name: topic.into() })?;
    if assignment.leader == Some(leader)
        && assignment.leader_epoch == leader_epoch
        && assignment.isr == isr
    {
        return Ok(None);
    }
    // Checked here, so a stale report is answered without a trip through the log.
    state
        .check_partition_leader(topic, found.id, partition, leader, leader_epoch, &isr)
        .map_err(PlanError::Refused)?;
    Ok(Some(Record::PartitionLeader {
        topic: topic.into(),
        id: found.id,
        partition,
        leader,
        leader_epoch,
        isr,
    }))
}

/// CreatePartitions: grows `name` to `count` partitions, each with as many replicas as the
/// topic's first partition.
pub fn plan_create_partitions(
    state: &ClusterState,
    name: &str,
    count: i32,
) -> Result<Record, PlanError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| PlanError::UnknownTopic { name: name.into() })?;
    let current = u32::try_from(topic.partitions.len()).expect("bounded by the topic limit");
    if i64::from(count) <= i64::from(current) {
        return Err(PlanError::PartitionsNotIncreased {
            current,
            requested: count,
        });
    }
    let total = partition_count(count)?;
    let added = total - current;
    check_cluster_partitions(state, added)?;
    let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let added = place(state, added, replication_factor)?;
    Ok(Record::CreatePartitions {
        name: name.to_string(),
        id: topic.id,
        partitions_before: current,
        added,
    })
}

pub fn plan_delete_topic(state: &ClusterState, name: &str) -> Result<Record, PlanError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| PlanError::UnknownTopic { name: name.into() })?;
    Ok(Record::DeleteTopic {
        name: name.to_string(),
        id: topic.id,
    })
}

/// AlterConfigs / IncrementalAlterConfigs: `configs` is the topic's full new set, computed and
/// validated by the server.
pub fn plan_alter_configs(
    state: &ClusterState,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<Record, PlanError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| PlanError::UnknownTopic { name: name.into() })?;
    validate_configs(&configs).map_err(plan_error)?;
    Ok(Record::AlterTopicConfigs {
        name: name.to_string(),
        id: topic.id,
        configs,
    })
}

/// A block of `count` producer ids for `node` (InitProducerId on that node ran out).
pub fn plan_allocate_producer_ids(
    state: &ClusterState,
    node: NodeId,
    count: u32,
) -> Result<Record, PlanError> {
    if state.broker(node).is_none() {
        return Err(PlanError::UnknownBroker { node });
    }
    if count == 0 {
        return Err(PlanError::Invalid(Invalid::NoProducerIds));
    }
    if count > PRODUCER_IDS_PER_BLOCK_MAX {
        return Err(PlanError::Limit(Limit::ProducerIdsPerBlock));
    }
    if state
        .next_producer_id()
        .checked_add(i64::from(count))
        .is_none()
    {
        return Err(PlanError::ProducerIdsExhausted);
    }
    Ok(Record::AllocateProducerIds { node, count })
}

/// Coordinators for every group partition that has none or whose broker is fenced (or None
/// when every one has a live coordinator). Each goes to the unfenced node coordinating the
/// fewest group partitions (lowest id on a tie), on its least loaded core by the same count.
/// Live coordinators never move: moving one would make its groups reload their state.
pub fn plan_group_placement(state: &ClusterState) -> Result<Option<Record>, PlanError> {
    let orphans: Vec<u32> = (0..GROUP_PARTITIONS)
        .filter(|&p| state.group_coordinator(p).is_none())
        .collect();
    if orphans.is_empty() {
        return Ok(None);
    }
    // Group partitions held by each unfenced node, in total and by core.
    let mut load: BTreeMap<NodeId, (usize, Vec<usize>)> = state
        .live_brokers()
        .map(|b| {
            (
                b.registration.node,
                (0, vec![0; b.registration.cores as usize]),
            )
        })
        .collect();
    if load.is_empty() {
        return Err(PlanError::Placement(PlacementError::NoUnfencedBrokers));
    }
    for coordinator in (0..GROUP_PARTITIONS).filter_map(|p| state.group_coordinator(p)) {
        let (total, cores) = load
            .get_mut(&coordinator.node)
            .expect("live coordinators are live");
        *total += 1;
        cores[coordinator.core.0 as usize] += 1;
    }
    let assignments: Vec<GroupAssignment> = orphans
        .into_iter()
        .map(|partition| {
            let (&node, (total, cores)) = load
                .iter_mut()
                .min_by_key(|(node, (total, _))| (*total, **node))
                .expect("checked non-empty above");
            *total += 1;
            let coordinator = Replica {
                node,
                core: least_loaded_core(cores),
            };
            GroupAssignment {
                partition,
                coordinator,
            }
        })
        .collect();
    debug_assert!(!assignments.is_empty());
    Ok(Some(Record::PlaceGroupPartitions { assignments }))
}

/// A requested partition count as a count within the topic limit.
fn partition_count(partitions: i32) -> Result<u32, PlanError> {
    match u32::try_from(partitions) {
        Ok(count) if (1..=PARTITIONS_PER_TOPIC_MAX).contains(&count) => Ok(count),
        _ => Err(PlanError::InvalidPartitions(partitions)),
    }
}

fn check_cluster_partitions(state: &ClusterState, added: u32) -> Result<(), PlanError> {
    if state.partition_count() + added as usize > PARTITIONS_PER_CLUSTER_MAX {
        return Err(PlanError::Limit(Limit::PartitionsPerCluster));
    }
    Ok(())
}

/// The plan-time form of a validation `apply` would refuse the record for.
pub(crate) fn plan_error(error: ApplyError) -> PlanError {
    match error {
        ApplyError::Limit(limit) => PlanError::Limit(limit),
        ApplyError::Invalid(invalid) => PlanError::Invalid(invalid),
        ApplyError::UnknownBroker { node } => PlanError::UnknownBroker { node },
        other => unreachable!("not a validation error: {other}"),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
