//! Where new replicas go: across nodes by load and rack, then to a core within the node.
//!
//! Deterministic (same state, same answer): ties are broken by node id, then core id. Only
//! unfenced brokers are candidates. Load counts replicas of topic partitions; group
//! coordinators are balanced separately (see [`crate::plan_group_placement`]).

use std::collections::BTreeSet;

use shoal_model::{NodeId, ShardId};

use crate::error::PlacementError;
use crate::limits::{PARTITIONS_PER_TOPIC_MAX, REPLICATION_FACTOR_MAX};
use crate::record::{PartitionAssignment, Replica};
use crate::state::ClusterState;

/// Assignments for `count` new partitions of `replication_factor` replicas each, all with
/// leader epoch 0.
///
/// Each partition's first replica (its leader) goes to the unfenced node leading the fewest
/// partitions, then holding the fewest replicas, then the lowest id. Each further replica
/// goes to a node of a rack the partition does not use yet if there is one (brokers without
/// a rack form one rack of their own), then to the node holding the fewest replicas, then
/// the lowest id. Within the chosen node, the replica goes to the core holding the fewest
/// replicas (lowest id on a tie), as the single-node `metadata::place` does. Loads include
/// the partitions placed earlier in the same call.
pub fn place(
    state: &ClusterState,
    count: u32,
    replication_factor: usize,
) -> Result<Vec<PartitionAssignment>, PlacementError> {
    if !(1..=REPLICATION_FACTOR_MAX).contains(&replication_factor) {
        return Err(PlacementError::ReplicationFactor(replication_factor));
    }
    if count > PARTITIONS_PER_TOPIC_MAX {
        return Err(PlacementError::TooManyPartitions(count));
    }
    let mut load = Load::of(state);
    if load.nodes.is_empty() {
        return Err(PlacementError::NoUnfencedBrokers);
    }
    if load.nodes.len() < replication_factor {
        let unfenced = load.nodes.len();
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            unfenced,
        });
    }
    let assignments: Vec<PartitionAssignment> = (0..count)
        .map(|_| PartitionAssignment::new(load.pick(replication_factor)))
        .collect();
    debug_assert!(assignments
        .iter()
        .all(|a| a.replicas.len() == replication_factor));
    Ok(assignments)
}

/// The core of `cores` holding the fewest replicas (lowest id on a tie); counts it.
pub(crate) fn least_loaded_core(cores: &mut [usize]) -> ShardId {
    let (core, _) = cores
        .iter()
        .enumerate()
        .min_by_key(|&(core, &replicas)| (replicas, core))
        .expect("a registered broker has at least one core");
    cores[core] += 1;
    ShardId(u32::try_from(core).expect("cores are bounded by CORES_PER_BROKER_MAX"))
}

/// Replicas held by each unfenced broker and each of its cores.
struct Load<'a> {
    /// By node id.
    nodes: Vec<NodeLoad<'a>>,
}

struct NodeLoad<'a> {
    node: NodeId,
    rack: Option<&'a str>,
    leaders: usize,
    replicas: usize,
    /// Replicas by core.
    cores: Vec<usize>,
}

impl<'a> Load<'a> {
    fn of(state: &'a ClusterState) -> Load<'a> {
        let mut nodes: Vec<NodeLoad<'a>> = state
            .live_brokers()
            .map(|broker| NodeLoad {
                node: broker.registration.node,
                rack: broker.registration.rack.as_deref(),
                leaders: 0,
                replicas: 0,
                cores: vec![0; broker.registration.cores as usize],
            })
            .collect();
        let partitions = state
            .topics()
            .values()
            .flat_map(|topic| topic.partitions.iter());
        for partition in partitions {
            for (slot, replica) in partition.replicas.iter().enumerate() {
                let Ok(at) = nodes.binary_search_by_key(&replica.node, |n| n.node) else {
                    continue; // On a fenced broker: it takes nothing new, its load is moot.
                };
                let node = &mut nodes[at];
                node.replicas += 1;
                node.leaders += usize::from(slot == 0);
                // Folding on registration keeps every core in range (an invariant).
                node.cores[replica.core.0 as usize] += 1;
            }
        }
        Load { nodes }
    }

    /// The replicas of one new partition; counts them.
    fn pick(&mut self, replication_factor: usize) -> Vec<Replica> {
        assert!(replication_factor <= self.nodes.len(), "checked by place()");
        let mut chosen: Vec<usize> = Vec::with_capacity(replication_factor);
        let mut racks: BTreeSet<Option<&str>> = BTreeSet::new();
        for slot in 0..replication_factor {
            let (at, _) = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(at, _)| !chosen.contains(at))
                .min_by_key(|(_, n)| {
                    if slot == 0 {
                        (false, n.leaders, n.replicas, n.node)
                    } else {
                        (racks.contains(&n.rack), n.replicas, 0, n.node)
                    }
                })
                .expect("more nodes than replicas");
            chosen.push(at);
            let _new = racks.insert(self.nodes[at].rack);
        }
        let replicas: Vec<Replica> = chosen
            .iter()
            .enumerate()
            .map(|(slot, &at)| {
                let node = &mut self.nodes[at];
                node.replicas += 1;
                node.leaders += usize::from(slot == 0);
                Replica {
                    node: node.node,
                    core: least_loaded_core(&mut node.cores),
                }
            })
            .collect();
        debug_assert_eq!(
            replicas
                .iter()
                .map(|r| r.node)
                .collect::<BTreeSet<_>>()
                .len(),
            replicas.len()
        );
        replicas
    }
}

#[cfg(test)]
#[path = "place_tests.rs"]
mod tests;
