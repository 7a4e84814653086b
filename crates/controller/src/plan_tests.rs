use std::collections::BTreeMap;

use shoal_model::NodeId;

use super::*;
use crate::error::{Invalid, Limit, PlacementError, PlanError};
use crate::limits::{CONFIGS_PER_TOPIC_MAX, GROUP_PARTITIONS, PARTITIONS_PER_TOPIC_MAX};
use crate::record::{PartitionAssignment, Record};
use crate::state::{Applied, ClusterState};
use crate::test_support::*;

fn create(state: &ClusterState, name: &str, partitions: i32, rf: i16) -> Result<Record, PlanError> {
    plan_create_topic(state, name, partitions, rf, BTreeMap::new(), topic_id(42))
}

fn fence(state: &mut ClusterState, node: i32) {
    let broker_epoch = state.broker(NodeId(node)).expect("registered").broker_epoch;
    let fence = Record::FenceBroker {
        node: NodeId(node),
        broker_epoch,
    };
    assert!(apply_next(state, &fence).is_ok());
}

#[test]
fn a_planned_topic_applies_with_one_balanced_replica_each() {
    let mut state = cluster(&[(0, 2, None), (1, 2, None)]);
    for rf in [1, -1] {
        let name = format!("t{rf}");
        let record = create(&state, &name, 4, rf).expect("planned");
        let Record::CreateTopic { partitions, .. } = &record else {
            panic!("{record:?}")
        };
        assert!(partitions
            .iter()
            .all(|p| p.replicas.len() == 1 && p.leader_epoch == 0));
        assert_eq!(
            apply_next(&mut state, &record),
            Ok(Applied::TopicCreated {
                name: name.clone(),
                partitions: 4
            })
        );
        // The next plan must not reuse the id just taken.
        assert_eq!(
            create(&state, "other", 1, 1),
            Err(PlanError::TopicIdUnusable)
        );
        let delete = plan_delete_topic(&state, &name).expect("planned");
        assert!(apply_next(&mut state, &delete).is_ok());
    }
}

#[test]
fn replication_factors_up_to_the_unfenced_brokers_are_placed() {
    let state = cluster(&[(0, 1, None), (1, 1, None), (2, 1, None)]);
    for rf in [2, 3] {
        let Ok(Record::CreateTopic { partitions, .. }) = create(&state, "t", 4, rf) else {
            panic!("rf {rf} planned");
        };
        for p in &partitions {
            assert_eq!(p.replicas.len(), rf as usize);
            assert!(p.is_replicated());
            assert_eq!((p.leader, p.isr.len(), p.leader_epoch), (None, 0, 0));
        }
    }
    for rf in [4, i16::MAX] {
        let error = create(&state, "t", 1, rf).expect_err("refused");
        assert!(matches!(error, PlanError::Placement(_)), "{error:?}");
        assert!(!error.is_retriable());
    }
    for rf in [0, -2, i16::MIN] {
        assert_eq!(
            create(&state, "t", 1, rf),
            Err(PlanError::InvalidReplicationFactor(rf))
        );
    }
}

#[test]
fn create_topic_plan_refusals() {
    let mut state = cluster(&[(0, 1, None)]);
    assert!(create_topic(&mut state, "t", 1, vec![assignment(0, 0)]).is_ok());
    assert_eq!(
        create(&state, "t", 1, 1),
        Err(PlanError::TopicExists { name: "t".into() })
    );
    assert_eq!(create(&state, "", 1, 1), Err(PlanError::TopicNameBytes));
    assert_eq!(
        create(&state, &"n".repeat(250), 1, 1),
        Err(PlanError::TopicNameBytes)
    );
    for partitions in [0, -1, PARTITIONS_PER_TOPIC_MAX as i32 + 1, i32::MIN] {
        assert_eq!(
            create(&state, "x", partitions, 1),
            Err(PlanError::InvalidPartitions(partitions))
        );
    }
    let nil = plan_create_topic(&state, "x", 1, 1, BTreeMap::new(), [0; 16]);
    assert_eq!(nil, Err(PlanError::TopicIdUnusable));
    let taken = plan_create_topic(&state, "x", 1, 1, BTreeMap::new(), topic_id(1));
    assert_eq!(taken, Err(PlanError::TopicIdUnusable));
    let many = (0..=CONFIGS_PER_TOPIC_MAX)
        .map(|i| (format!("k{i}"), String::new()))
        .collect();
    let configs = plan_create_topic(&state, "x", 1, 1, many, topic_id(2));
    assert_eq!(configs, Err(PlanError::Limit(Limit::ConfigsPerTopic)));
}

#[test]
fn no_unfenced_broker_is_a_retriable_refusal() {
    let empty = ClusterState::new("c".into());
    let error = create(&empty, "t", 1, 1).expect_err("refused");
    assert_eq!(
        error,
        PlanError::Placement(PlacementError::NoUnfencedBrokers)
    );
    assert!(error.is_retriable());
    let mut state = cluster(&[(0, 1, None)]);
    fence(&mut state, 0);
    assert_eq!(create(&state, "t", 1, 1), Err(error));
}

#[test]
fn partition_growth_plans() {
    let mut state = cluster(&[(0, 1, None), (1, 1, None)]);
    assert!(create_topic(&mut state, "t", 1, vec![assignment(0, 0)]).is_ok());
    let unknown = PlanError::UnknownTopic { name: "x".into() };
    assert_eq!(plan_create_partitions(&state, "x", 3), Err(unknown));
    for count in [1, 0, -1] {
        let error = PlanError::PartitionsNotIncreased {
            current: 1,
            requested: count,
        };
        assert_eq!(plan_create_partitions(&state, "t", count), Err(error));
    }
    let too_many = PARTITIONS_PER_TOPIC_MAX as i32 + 1;
    assert_eq!(
        plan_create_partitions(&state, "t", too_many),
        Err(PlanError::InvalidPartitions(too_many))
    );
    let record = plan_create_partitions(&state, "t", 3).expect("planned");
    let Record::CreatePartitions {
        partitions_before,
        added,
        ..
    } = &record
    else {
        panic!()
    };
    assert_eq!(*partitions_before, 1);
    // Node 1 held nothing, so it gets the first new partition.
    let nodes: Vec<i32> = added.iter().map(|p| p.replicas[0].node.0).collect();
    assert_eq!(nodes, vec![1, 0]);
    assert_eq!(
        apply_next(&mut state, &record),
        Ok(Applied::PartitionsCreated {
            name: "t".into(),
            first: 1,
            count: 2
        })
    );
}

#[test]
fn partition_growth_keeps_the_topics_replication_factor() {
    let mut state = cluster(&[(0, 1, None), (1, 1, None)]);
    let two = PartitionAssignment::new(vec![replica(0, 0), replica(1, 0)]);
    assert!(create_topic(&mut state, "t", 1, vec![two]).is_ok());
    let record = plan_create_partitions(&state, "t", 2).expect("planned");
    let Record::CreatePartitions { added, .. } = &record else {
        panic!()
    };
    assert_eq!(added[0].replicas.len(), 2);
    fence(&mut state, 1);
    let error = PlacementError::NotEnoughBrokers {
        replication_factor: 2,
        unfenced: 1,
    };
    assert_eq!(
        plan_create_partitions(&state, "t", 2),
        Err(PlanError::Placement(error))
    );
}

#[test]
fn delete_and_alter_plans() {
    let mut state = cluster(&[(0, 1, None)]);
    assert!(create_topic(&mut state, "t", 1, vec![assignment(0, 0)]).is_ok());
    let unknown = PlanError::UnknownTopic { name: "x".into() };
    assert_eq!(plan_delete_topic(&state, "x"), Err(unknown.clone()));
    assert_eq!(
        plan_alter_configs(&state, "x", BTreeMap::new()),
        Err(unknown)
    );
    let long = BTreeMap::from([("k".to_string(), "v".repeat(5000))]);
    assert_eq!(
        plan_alter_configs(&state, "t", long),
        Err(PlanError::Limit(Limit::ConfigValueBytes))
    );
    let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let alter = plan_alter_configs(&state, "t", configs.clone()).expect("planned");
    assert!(apply_next(&mut state, &alter).is_ok());
    assert_eq!(state.topic("t").expect("exists").configs, configs);
    let delete = plan_delete_topic(&state, "t").expect("planned");
    assert_eq!(
        delete,
        Record::DeleteTopic {
            name: "t".into(),
            id: topic_id(1)
        }
    );
}

#[test]
fn producer_id_plans() {
    let mut state = cluster(&[(0, 1, None)]);
    let unknown = PlanError::UnknownBroker { node: NodeId(3) };
    assert_eq!(
        plan_allocate_producer_ids(&state, NodeId(3), 1),
        Err(unknown)
    );
    let zero = PlanError::Invalid(Invalid::NoProducerIds);
    assert_eq!(plan_allocate_producer_ids(&state, NodeId(0), 0), Err(zero));
    let many = PlanError::Limit(Limit::ProducerIdsPerBlock);
    assert_eq!(
        plan_allocate_producer_ids(&state, NodeId(0), u32::MAX),
        Err(many)
    );
    let record = plan_allocate_producer_ids(&state, NodeId(0), 1000).expect("planned");
    assert!(apply_next(&mut state, &record).is_ok());
    state.next_producer_id = i64::MAX - 10;
    let exhausted = plan_allocate_producer_ids(&state, NodeId(0), 11);
    assert_eq!(exhausted, Err(PlanError::ProducerIdsExhausted));
}

fn coordinators_by_node(state: &ClusterState) -> BTreeMap<(i32, u32), usize> {
    let mut counts = BTreeMap::new();
    for coordinator in state.group_coordinators().iter().flatten() {
        *counts
            .entry((coordinator.node.0, coordinator.core.0))
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn group_partitions_spread_and_only_orphans_move() {
    let empty = ClusterState::new("c".into());
    let none = PlanError::Placement(PlacementError::NoUnfencedBrokers);
    assert_eq!(plan_group_placement(&empty), Err(none));
    let mut state = cluster(&[(0, 2, None), (1, 2, None), (2, 1, None)]);
    let record = plan_group_placement(&state)
        .expect("planned")
        .expect("all orphans");
    assert!(apply_next(&mut state, &record).is_ok());
    assert!((0..GROUP_PARTITIONS).all(|p| state.group_coordinator(p).is_some()));
    let counts = coordinators_by_node(&state);
    // 16 over three nodes: 6, 5, 5, and spread over each node's cores.
    assert_eq!(
        counts,
        BTreeMap::from([
            ((0, 0), 3),
            ((0, 1), 3),
            ((1, 0), 3),
            ((1, 1), 2),
            ((2, 0), 5)
        ])
    );
    assert_eq!(plan_group_placement(&state), Ok(None));
    let before = state.group_coordinators().to_vec();
    fence(&mut state, 0);
    let record = plan_group_placement(&state)
        .expect("planned")
        .expect("node 0's partitions");
    let Record::PlaceGroupPartitions { assignments } = &record else {
        panic!()
    };
    assert_eq!(assignments.len(), 6);
    assert!(assignments
        .iter()
        .all(|a| before[a.partition as usize].is_some_and(|c| c.node.0 == 0)));
    assert!(apply_next(&mut state, &record).is_ok());
    assert!((0..GROUP_PARTITIONS).all(|p| state.group_coordinator(p).is_some()));
    let counts = coordinators_by_node(&state);
    let on = |node| {
        counts
            .iter()
            .filter(|((n, _), _)| *n == node)
            .map(|(_, c)| c)
            .sum::<usize>()
    };
    assert_eq!((on(0), on(1), on(2)), (0, 8, 8));
}
