use std::collections::{BTreeMap, BTreeSet};

use shoal_model::NodeId;

use super::place;
use crate::error::PlacementError;
use crate::limits::{PARTITIONS_PER_TOPIC_MAX, REPLICATION_FACTOR_MAX};
use crate::record::{PartitionAssignment, Record};
use crate::state::ClusterState;
use crate::test_support::*;

fn replicas_per_node(assignments: &[PartitionAssignment]) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for replica in assignments.iter().flat_map(|a| a.replicas.iter()) {
        *counts.entry(replica.node.0).or_insert(0) += 1;
    }
    counts
}

fn leaders(assignments: &[PartitionAssignment]) -> Vec<i32> {
    assignments.iter().map(|a| a.replicas[0].node.0).collect()
}

#[test]
fn least_loaded_node_first_ties_by_node_id() {
    let mut state = cluster(&[(2, 1, None), (0, 1, None), (1, 1, None)]);
    assert_eq!(
        leaders(&place(&state, 3, 1).expect("placed")),
        vec![0, 1, 2]
    );
    let existing = vec![assignment(0, 0), assignment(0, 0), assignment(1, 0)];
    assert!(create_topic(&mut state, "t", 1, existing).is_ok());
    // Loads 2, 1, 0: node 2; then 1 and 2 tie at one (the lower id wins); then node 2; then
    // all three hold two and take turns by id.
    let placed = place(&state, 6, 1).expect("placed");
    assert_eq!(leaders(&placed), vec![2, 1, 2, 0, 1, 2]);
    let mut total = replicas_per_node(&placed);
    *total.entry(0).or_insert(0) += 2;
    *total.entry(1).or_insert(0) += 1;
    assert_eq!(total, BTreeMap::from([(0, 3), (1, 3), (2, 3)]));
}

#[test]
fn within_a_node_the_least_loaded_core() {
    let mut state = cluster(&[(0, 3, None)]);
    assert!(create_topic(&mut state, "t", 1, vec![assignment(0, 0), assignment(0, 0)]).is_ok());
    let cores: Vec<u32> = place(&state, 5, 1)
        .expect("placed")
        .iter()
        .map(|a| a.replicas[0].core.0)
        .collect();
    assert_eq!(cores, vec![1, 2, 1, 2, 0]);
}

#[test]
fn fenced_brokers_get_nothing() {
    let mut state = cluster(&[(0, 1, None), (1, 1, None)]);
    let broker_epoch = state.broker(NodeId(0)).expect("registered").broker_epoch;
    let fence = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &fence).is_ok());
    assert_eq!(
        leaders(&place(&state, 3, 1).expect("placed")),
        vec![1, 1, 1]
    );
    assert_eq!(
        place(&state, 1, 2),
        Err(PlacementError::NotEnoughBrokers {
            replication_factor: 2,
            unfenced: 1
        })
    );
    let broker_epoch = state.broker(NodeId(1)).expect("registered").broker_epoch;
    let fence = Record::FenceBroker {
        node: NodeId(1),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &fence).is_ok());
    assert_eq!(place(&state, 1, 1), Err(PlacementError::NoUnfencedBrokers));
}

#[test]
fn placement_refusals() {
    assert_eq!(
        place(&ClusterState::new("c".into()), 1, 1),
        Err(PlacementError::NoUnfencedBrokers)
    );
    let state = cluster(&[(0, 1, None)]);
    assert_eq!(
        place(&state, 1, 0),
        Err(PlacementError::ReplicationFactor(0))
    );
    let too_many = REPLICATION_FACTOR_MAX + 1;
    assert_eq!(
        place(&state, 1, too_many),
        Err(PlacementError::ReplicationFactor(too_many))
    );
    let count = PARTITIONS_PER_TOPIC_MAX + 1;
    assert_eq!(
        place(&state, count, 1),
        Err(PlacementError::TooManyPartitions(count))
    );
    assert_eq!(place(&state, 0, 1), Ok(vec![]));
}

#[test]
fn replicas_spread_over_racks() {
    let state = cluster(&[
        (0, 2, Some("a")),
        (1, 2, Some("a")),
        (2, 2, Some("b")),
        (3, 2, Some("b")),
    ]);
    let rack = |node: NodeId| if node.0 < 2 { "a" } else { "b" };
    let placed = place(&state, 6, 2).expect("placed");
    for assignment in &placed {
        let racks: BTreeSet<&str> = assignment.replicas.iter().map(|r| rack(r.node)).collect();
        assert_eq!(racks.len(), 2, "{assignment:?} uses one rack");
    }
    assert_eq!(
        replicas_per_node(&placed),
        BTreeMap::from([(0, 3), (1, 3), (2, 3), (3, 3)])
    );
    let mut led = BTreeMap::new();
    for leader in leaders(&placed) {
        *led.entry(leader).or_insert(0) += 1;
    }
    assert!(led.values().all(|&n| (1..=2).contains(&n)), "{led:?}");
}

#[test]
fn an_uneven_rack_still_gets_one_replica_of_each_partition() {
    let state = cluster(&[
        (0, 1, Some("a")),
        (1, 1, Some("a")),
        (2, 1, Some("a")),
        (3, 1, Some("b")),
        (4, 1, Some("c")),
    ]);
    for assignment in place(&state, 5, 3).expect("placed") {
        let mut nodes: Vec<i32> = assignment.replicas.iter().map(|r| r.node.0).collect();
        nodes.sort_unstable();
        let in_a = nodes.iter().filter(|&&n| n < 3).count();
        assert_eq!(in_a, 1, "{nodes:?}");
        assert!(nodes.contains(&3) && nodes.contains(&4), "{nodes:?}");
    }
}

#[test]
fn leaders_rotate_when_every_node_holds_every_partition() {
    let state = cluster(&[(0, 1, None), (1, 1, None), (2, 1, None)]);
    let placed = place(&state, 6, 3).expect("placed");
    assert_eq!(leaders(&placed), vec![0, 1, 2, 0, 1, 2]);
    for assignment in &placed {
        let nodes: BTreeSet<NodeId> = assignment.replicas.iter().map(|r| r.node).collect();
        assert_eq!(nodes.len(), 3);
        assert_eq!(assignment.leader_epoch, 0);
    }
}

#[test]
fn brokers_without_racks_are_one_rack() {
    let state = cluster(&[(0, 1, None), (1, 1, None), (2, 1, Some("x"))]);
    // Node 2 is the only other rack, so it is every partition's second replica.
    for assignment in place(&state, 4, 2).expect("placed") {
        let nodes: BTreeSet<i32> = assignment.replicas.iter().map(|r| r.node.0).collect();
        assert!(nodes.contains(&2), "{nodes:?}");
    }
}

#[test]
fn placement_is_deterministic() {
    let state = cluster(&[(5, 3, Some("a")), (1, 2, Some("b")), (3, 4, None)]);
    assert_eq!(place(&state, 50, 2), place(&state.clone(), 50, 2));
}
