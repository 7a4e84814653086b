use std::collections::BTreeMap;

use shoal_model::{NodeId, PartitionId, ShardId};

use crate::error::{ApplyError, Invalid, InvariantError, Limit, SnapshotError};
use crate::limits::{
    ADDRESS_BYTES_MAX, BROKERS_MAX, CONFIGS_PER_TOPIC_MAX, CONFIG_NAME_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, CORES_PER_BROKER_MAX, GROUP_PARTITIONS, PARTITIONS_PER_CLUSTER_MAX,
    PARTITIONS_PER_TOPIC_MAX, PRODUCER_IDS_PER_BLOCK_MAX, REPLICATION_FACTOR_MAX, TOPICS_MAX,
    TOPIC_NAME_BYTES_MAX,
};
use crate::record::{GroupAssignment, PartitionAssignment, Record};
use crate::state::{Applied, ClusterState};
use crate::test_support::*;

/// Applies `record`, expects `error`, and checks that nothing but the version changed.
fn refused(state: &mut ClusterState, record: &Record, error: ApplyError) {
    let mut before = state.clone();
    assert_eq!(apply_next(state, record), Err(error));
    before.applied_index = state.applied_index();
    assert_eq!(*state, before, "a refused record changed the state");
}

/// Brokers 0 (2 cores) and 1 (4 cores), with topic "t" of two partitions on broker 0.
fn with_topic() -> ClusterState {
    let mut state = cluster(&[(0, 2, None), (1, 4, None)]);
    let created = create_topic(&mut state, "t", 1, vec![assignment(0, 0), assignment(0, 1)]);
    assert_eq!(
        created,
        Ok(Applied::TopicCreated {
            name: "t".into(),
            partitions: 2
        })
    );
    state
}

fn epoch(state: &ClusterState, node: i32) -> u64 {
    state.broker(NodeId(node)).expect("registered").broker_epoch
}

#[test]
fn registration_takes_the_entry_index_as_epoch_and_starts_fenced() {
    let mut state = ClusterState::new("c".into());
    let record = Record::RegisterBroker(registration(7, 2, Some("r1")));
    assert_eq!(
        state.apply(5, &record),
        Ok(Applied::BrokerRegistered {
            node: NodeId(7),
            broker_epoch: 5,
            replicas_moved: 0
        })
    );
    let broker = state.broker(NodeId(7)).expect("registered");
    assert!(broker.fenced);
    assert_eq!((broker.broker_epoch, state.applied_index()), (5, 5));
    assert_eq!(state.live_brokers().count(), 0);
}

#[test]
fn registrations_that_break_a_rule_are_refused() {
    let mut state = cluster(&[(0, 1, None)]);
    let cases = [
        (
            registration(-1, 1, None),
            ApplyError::Invalid(Invalid::NegativeNodeId(NodeId(-1))),
        ),
        (
            registration(1, 0, None),
            ApplyError::Invalid(Invalid::NoCores),
        ),
        (
            registration(1, CORES_PER_BROKER_MAX + 1, None),
            ApplyError::Limit(Limit::CoresPerBroker),
        ),
        (
            registration(1, 1, Some(&"r".repeat(ADDRESS_BYTES_MAX + 1))),
            ApplyError::Limit(Limit::AddressBytes),
        ),
    ];
    for (registration, error) in cases {
        refused(&mut state, &Record::RegisterBroker(registration), error);
    }
    let mut long_host = registration(1, 1, None);
    long_host.kafka_host = "h".repeat(ADDRESS_BYTES_MAX + 1);
    refused(
        &mut state,
        &Record::RegisterBroker(long_host),
        ApplyError::Limit(Limit::AddressBytes),
    );
    let mut long_rpc = registration(1, 1, None);
    long_rpc.rpc_addr = "h".repeat(ADDRESS_BYTES_MAX + 1);
    refused(
        &mut state,
        &Record::RegisterBroker(long_rpc),
        ApplyError::Limit(Limit::AddressBytes),
    );
}

#[test]
fn a_full_cluster_refuses_new_brokers_but_not_reregistrations() {
    let mut state = ClusterState::new("c".into());
    for node in 0..BROKERS_MAX as i32 {
        let record = Record::RegisterBroker(registration(node, 1, None));
        assert!(apply_next(&mut state, &record).is_ok());
    }
    let new = Record::RegisterBroker(registration(BROKERS_MAX as i32, 1, None));
    refused(&mut state, &new, ApplyError::Limit(Limit::Brokers));
    let again = Record::RegisterBroker(registration(3, 1, None));
    assert!(apply_next(&mut state, &again).is_ok());
}

#[test]
fn fence_and_unfence_ignore_stale_epochs() {
    let mut state = cluster(&[(0, 1, None)]);
    let first = epoch(&state, 0);
    let again = Record::RegisterBroker(registration(0, 1, None));
    assert!(apply_next(&mut state, &again).is_ok());
    let second = epoch(&state, 0);
    assert!(second > first);
    assert!(state.broker(NodeId(0)).expect("registered").fenced);
    let stale = ApplyError::StaleBrokerEpoch {
        node: NodeId(0),
        broker_epoch: first,
        current: second,
    };
    let unfence_old = Record::UnfenceBroker {
        node: NodeId(0),
        broker_epoch: first,
    };
    refused(&mut state, &unfence_old, stale.clone());
    let unfence = Record::UnfenceBroker {
        node: NodeId(0),
        broker_epoch: second,
    };
    assert!(apply_next(&mut state, &unfence).is_ok());
    // A fence about the previous incarnation (its session expired) must not fence this one.
    let fence_old = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch: first,
    };
    refused(&mut state, &fence_old, stale);
    assert!(!state.broker(NodeId(0)).expect("registered").fenced);
    let fence = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch: second,
    };
    assert_eq!(
        apply_next(&mut state, &fence),
        Ok(Applied::BrokerFenced {
            node: NodeId(0),
            broker_epoch: second,
            changed: true
        })
    );
    assert_eq!(
        apply_next(&mut state, &fence),
        Ok(Applied::BrokerFenced {
            node: NodeId(0),
            broker_epoch: second,
            changed: false
        })
    );
}

#[test]
fn fence_and_unfence_of_unknown_brokers_are_refused() {
    let mut state = cluster(&[(0, 1, None)]);
    let unknown = ApplyError::UnknownBroker { node: NodeId(9) };
    refused(
        &mut state,
        &Record::FenceBroker {
            node: NodeId(9),
            broker_epoch: 1,
        },
        unknown.clone(),
    );
    refused(
        &mut state,
        &Record::UnfenceBroker {
            node: NodeId(9),
            broker_epoch: 1,
        },
        unknown,
    );
}

#[test]
fn unfencing_bumps_the_leader_epoch_of_led_partitions_only() {
    let mut state = with_topic();
    assert!(create_topic(&mut state, "u", 2, vec![assignment(1, 3)]).is_ok());
    let broker_epoch = epoch(&state, 0);
    let fence = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &fence).is_ok());
    assert_eq!(state.leader("t", PartitionId(0)), None);
    let unfence = Record::UnfenceBroker {
        node: NodeId(0),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &unfence).is_ok());
    assert_eq!(state.leader("t", PartitionId(1)), Some(NodeId(0)));
    assert_eq!(epochs(&state, "t"), vec![1, 1]);
    assert_eq!(epochs(&state, "u"), vec![0]);
    // Unfencing an unfenced broker changes nothing.
    assert_eq!(
        apply_next(&mut state, &unfence),
        Ok(Applied::BrokerUnfenced {
            node: NodeId(0),
            broker_epoch,
            changed: false
        })
    );
    assert_eq!(epochs(&state, "t"), vec![1, 1]);
}

fn epochs(state: &ClusterState, topic: &str) -> Vec<i32> {
    let partitions = &state.topic(topic).expect("exists").partitions;
    partitions.iter().map(|p| p.leader_epoch).collect()
}

#[test]
fn a_broker_back_with_fewer_cores_keeps_its_replicas_on_folded_cores() {
    let mut state = cluster(&[(0, 4, None)]);
    let partitions = (0..4).map(|core| assignment(0, core)).collect();
    assert!(create_topic(&mut state, "t", 1, partitions).is_ok());
    let place = Record::PlaceGroupPartitions {
        assignments: vec![GroupAssignment {
            partition: 0,
            coordinator: replica(0, 3),
        }],
    };
    assert!(apply_next(&mut state, &place).is_ok());
    let again = Record::RegisterBroker(registration(0, 2, None));
    let Ok(Applied::BrokerRegistered { replicas_moved, .. }) = apply_next(&mut state, &again)
    else {
        panic!("re-registration refused");
    };
    assert_eq!(replicas_moved, 3);
    let cores: Vec<u32> = state
        .topic("t")
        .expect("exists")
        .partitions
        .iter()
        .map(|p| p.replicas[0].core.0)
        .collect();
    assert_eq!(cores, vec![0, 1, 0, 1]);
    assert_eq!(state.group_coordinators()[0], Some(replica(0, 1)));
}

#[test]
fn create_topic_refusals() {
    let mut state = with_topic();
    let one = || vec![assignment(1, 0)];
    let long_name = "n".repeat(TOPIC_NAME_BYTES_MAX + 1);
    let cases: Vec<(&str, u8, Vec<PartitionAssignment>, ApplyError)> = vec![
        ("", 9, one(), ApplyError::Invalid(Invalid::EmptyTopicName)),
        (
            &long_name,
            9,
            one(),
            ApplyError::Limit(Limit::TopicNameBytes),
        ),
        ("x", 0, one(), ApplyError::Invalid(Invalid::NilTopicId)),
        ("t", 9, one(), ApplyError::TopicExists { name: "t".into() }),
        ("x", 1, one(), ApplyError::TopicIdInUse { by: "t".into() }),
        ("x", 9, vec![], ApplyError::Invalid(Invalid::NoPartitions)),
        (
            "x",
            9,
            vec![assignment(1, 0); PARTITIONS_PER_TOPIC_MAX as usize + 1],
            ApplyError::Limit(Limit::PartitionsPerTopic),
        ),
    ];
    for (name, seed, partitions, error) in cases {
        let record = Record::CreateTopic {
            name: name.into(),
            id: topic_id(seed),
            partitions,
            configs: BTreeMap::new(),
        };
        refused(&mut state, &record, error);
    }
}

#[test]
fn assignments_that_break_a_rule_are_refused() {
    let mut state = with_topic();
    let register = Record::RegisterBroker(registration(2, 1, None)); // Stays fenced.
    assert!(apply_next(&mut state, &register).is_ok());
    let with = |replicas: Vec<crate::Replica>, leader_epoch: i32| PartitionAssignment {
        leader_epoch,
        ..PartitionAssignment::new(replicas)
    };
    let cases = vec![
        (with(vec![], 0), ApplyError::Invalid(Invalid::NoReplicas)),
        (
            with(vec![replica(0, 0); REPLICATION_FACTOR_MAX + 1], 0),
            ApplyError::Limit(Limit::ReplicationFactor),
        ),
        (
            with(vec![replica(0, 0)], -1),
            ApplyError::Invalid(Invalid::NegativeLeaderEpoch(-1)),
        ),
        (
            with(vec![replica(0, 0), replica(0, 1)], 0),
            ApplyError::Invalid(Invalid::DuplicateReplicaNode(NodeId(0))),
        ),
        (
            with(vec![replica(5, 0)], 0),
            ApplyError::UnknownBroker { node: NodeId(5) },
        ),
        (
            with(vec![replica(2, 0)], 0),
            ApplyError::BrokerFenced { node: NodeId(2) },
        ),
        (
            with(vec![replica(0, 2)], 0),
            ApplyError::CoreOutOfRange {
                node: NodeId(0),
                core: ShardId(2),
                cores: 2,
            },
        ),
    ];
    for (partition, error) in cases {
        let create = Record::CreateTopic {
            name: "x".into(),
            id: topic_id(9),
            partitions: vec![partition.clone()],
            configs: BTreeMap::new(),
        };
        refused(&mut state, &create, error.clone());
        let grow = Record::CreatePartitions {
            name: "t".into(),
            id: topic_id(1),
            partitions_before: 2,
            added: vec![partition],
        };
        refused(&mut state, &grow, error);
    }
}

#[test]
fn config_bounds_are_enforced_on_create_and_alter() {
    let mut state = with_topic();
    let many: BTreeMap<String, String> = (0..=CONFIGS_PER_TOPIC_MAX)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let long_name = BTreeMap::from([("k".repeat(CONFIG_NAME_BYTES_MAX + 1), "v".to_string())]);
    let long_value = BTreeMap::from([("k".to_string(), "v".repeat(CONFIG_VALUE_BYTES_MAX + 1))]);
    let cases = [
        (many, Limit::ConfigsPerTopic),
        (long_name, Limit::ConfigNameBytes),
        (long_value, Limit::ConfigValueBytes),
    ];
    for (configs, limit) in cases {
        let create = Record::CreateTopic {
            name: "x".into(),
            id: topic_id(9),
            partitions: vec![assignment(1, 0)],
            configs: configs.clone(),
        };
        refused(&mut state, &create, ApplyError::Limit(limit));
        let alter = Record::AlterTopicConfigs {
            name: "t".into(),
            id: topic_id(1),
            configs,
        };
        refused(&mut state, &alter, ApplyError::Limit(limit));
    }
}

#[test]
fn topic_and_cluster_partition_limits_hold() {
    let mut state = cluster(&[(0, 1, None)]);
    let full_topic = vec![assignment(0, 0); PARTITIONS_PER_TOPIC_MAX as usize];
    let topics = PARTITIONS_PER_CLUSTER_MAX / PARTITIONS_PER_TOPIC_MAX as usize;
    for seed in 1..=topics {
        let seed = u8::try_from(seed).expect("few topics");
        assert!(create_topic(&mut state, &format!("t{seed}"), seed, full_topic.clone()).is_ok());
    }
    let create = Record::CreateTopic {
        name: "x".into(),
        id: topic_id(255),
        partitions: vec![assignment(0, 0)],
        configs: BTreeMap::new(),
    };
    refused(
        &mut state,
        &create,
        ApplyError::Limit(Limit::PartitionsPerCluster),
    );
    let grow = Record::CreatePartitions {
        name: "t1".into(),
        id: topic_id(1),
        partitions_before: PARTITIONS_PER_TOPIC_MAX,
        added: vec![assignment(0, 0)],
    };
    refused(
        &mut state,
        &grow,
        ApplyError::Limit(Limit::PartitionsPerTopic),
    );
}

#[test]
fn the_topic_count_limit_holds() {
    let mut state = cluster(&[(0, 1, None)]);
    for n in 0..TOPICS_MAX as u32 {
        let mut id = [1; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        let record = Record::CreateTopic {
            name: format!("t{n}"),
            id,
            partitions: vec![assignment(0, 0)],
            configs: BTreeMap::new(),
        };
        let index = state.applied_index() + 1;
        assert!(state.apply(index, &record).is_ok());
    }
    let one_more = Record::CreateTopic {
        name: "x".into(),
        id: [2; 16],
        partitions: vec![assignment(0, 0)],
        configs: BTreeMap::new(),
    };
    refused(&mut state, &one_more, ApplyError::Limit(Limit::Topics));
}

#[test]
fn records_about_a_missing_or_recreated_topic_are_refused() {
    let mut state = with_topic();
    let unknown = ApplyError::UnknownTopic {
        name: "nope".into(),
    };
    let mismatch = ApplyError::TopicIdMismatch { name: "t".into() };
    for (name, id, error) in [("nope", topic_id(1), unknown), ("t", topic_id(2), mismatch)] {
        let name = name.to_string();
        refused(
            &mut state,
            &Record::DeleteTopic {
                name: name.clone(),
                id,
            },
            error.clone(),
        );
        let grow = Record::CreatePartitions {
            name: name.clone(),
            id,
            partitions_before: 2,
            added: vec![assignment(0, 0)],
        };
        refused(&mut state, &grow, error.clone());
        let alter = Record::AlterTopicConfigs {
            name,
            id,
            configs: BTreeMap::new(),
        };
        refused(&mut state, &alter, error);
    }
}

#[test]
fn racing_partition_growth_applies_once() {
    let mut state = with_topic();
    let grow = Record::CreatePartitions {
        name: "t".into(),
        id: topic_id(1),
        partitions_before: 2,
        added: vec![assignment(1, 0), assignment(1, 1)],
    };
    assert_eq!(
        apply_next(&mut state, &grow),
        Ok(Applied::PartitionsCreated {
            name: "t".into(),
            first: 2,
            count: 2
        })
    );
    let changed = ApplyError::PartitionCountChanged {
        name: "t".into(),
        expected: 2,
        current: 4,
    };
    refused(&mut state, &grow, changed);
    let empty = Record::CreatePartitions {
        name: "t".into(),
        id: topic_id(1),
        partitions_before: 4,
        added: vec![],
    };
    refused(
        &mut state,
        &empty,
        ApplyError::Invalid(Invalid::NoPartitions),
    );
    assert_eq!(
        state.partition("t", PartitionId(3)),
        Some(&assignment(1, 1))
    );
    assert_eq!(state.partition("t", PartitionId(4)), None);
    assert_eq!(state.partition("t", PartitionId(-1)), None);
}

#[test]
fn a_topic_created_twice_by_racing_proposals_exists_once() {
    let mut state = with_topic();
    let create = Record::CreateTopic {
        name: "x".into(),
        id: topic_id(5),
        partitions: vec![assignment(1, 0)],
        configs: BTreeMap::new(),
    };
    assert!(apply_next(&mut state, &create).is_ok());
    let racing = Record::CreateTopic {
        name: "x".into(),
        id: topic_id(6),
        partitions: vec![assignment(0, 0)],
        configs: BTreeMap::new(),
    };
    refused(
        &mut state,
        &racing,
        ApplyError::TopicExists { name: "x".into() },
    );
    assert_eq!(state.topic("x").expect("exists").id, topic_id(5));
}

#[test]
fn delete_returns_the_topic_and_alter_replaces_configs() {
    let mut state = with_topic();
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let alter = Record::AlterTopicConfigs {
        name: "t".into(),
        id: topic_id(1),
        configs: configs.clone(),
    };
    assert_eq!(
        apply_next(&mut state, &alter),
        Ok(Applied::TopicConfigsAltered { name: "t".into() })
    );
    assert_eq!(state.topic("t").expect("exists").configs, configs);
    let topic = state.topic("t").expect("exists").clone();
    let delete = Record::DeleteTopic {
        name: "t".into(),
        id: topic_id(1),
    };
    assert_eq!(
        apply_next(&mut state, &delete),
        Ok(Applied::TopicDeleted {
            name: "t".into(),
            topic
        })
    );
    assert!(state.topic("t").is_none());
    assert_eq!(state.leader("t", PartitionId(0)), None);
}

#[test]
fn producer_id_blocks_are_consecutive_and_bounded() {
    let mut state = cluster(&[(0, 1, None)]);
    let block = |count| Record::AllocateProducerIds {
        node: NodeId(0),
        count,
    };
    assert_eq!(
        apply_next(&mut state, &block(10)),
        Ok(Applied::ProducerIds {
            node: NodeId(0),
            first: 0,
            count: 10
        })
    );
    assert_eq!(
        apply_next(&mut state, &block(5)),
        Ok(Applied::ProducerIds {
            node: NodeId(0),
            first: 10,
            count: 5
        })
    );
    assert_eq!(state.next_producer_id(), 15);
    refused(
        &mut state,
        &block(0),
        ApplyError::Invalid(Invalid::NoProducerIds),
    );
    refused(
        &mut state,
        &block(PRODUCER_IDS_PER_BLOCK_MAX + 1),
        ApplyError::Limit(Limit::ProducerIdsPerBlock),
    );
    let unknown = Record::AllocateProducerIds {
        node: NodeId(4),
        count: 1,
    };
    refused(
        &mut state,
        &unknown,
        ApplyError::UnknownBroker { node: NodeId(4) },
    );
    state.next_producer_id = i64::MAX - 1;
    assert!(apply_next(&mut state, &block(1)).is_ok());
    refused(&mut state, &block(1), ApplyError::ProducerIdsExhausted);
}

#[test]
fn group_placement_refusals_and_views() {
    let mut state = with_topic();
    let register = Record::RegisterBroker(registration(2, 1, None)); // Stays fenced.
    assert!(apply_next(&mut state, &register).is_ok());
    let place = |assignments: Vec<(u32, crate::Replica)>| Record::PlaceGroupPartitions {
        assignments: assignments
            .into_iter()
            .map(|(partition, coordinator)| GroupAssignment {
                partition,
                coordinator,
            })
            .collect(),
    };
    let cases = vec![
        (vec![], ApplyError::Invalid(Invalid::NoGroupAssignments)),
        (
            vec![(GROUP_PARTITIONS, replica(0, 0))],
            ApplyError::Invalid(Invalid::GroupPartitionOutOfRange(GROUP_PARTITIONS)),
        ),
        (
            vec![(1, replica(0, 0)), (1, replica(1, 0))],
            ApplyError::Invalid(Invalid::DuplicateGroupPartition(1)),
        ),
        (
            vec![(1, replica(7, 0))],
            ApplyError::UnknownBroker { node: NodeId(7) },
        ),
        (
            vec![(1, replica(2, 0))],
            ApplyError::BrokerFenced { node: NodeId(2) },
        ),
        (
            vec![(1, replica(0, 5))],
            ApplyError::CoreOutOfRange {
                node: NodeId(0),
                core: ShardId(5),
                cores: 2,
            },
        ),
    ];
    for (assignments, error) in cases {
        refused(&mut state, &place(assignments), error);
    }
    assert_eq!(state.group_coordinator(1), None);
    assert_eq!(
        apply_next(
            &mut state,
            &place(vec![(3, replica(1, 2)), (1, replica(0, 1))])
        ),
        Ok(Applied::GroupPartitionsPlaced {
            partitions: vec![1, 3]
        })
    );
    assert_eq!(state.group_coordinator(1), Some(replica(0, 1)));
    assert_eq!(state.group_coordinator(GROUP_PARTITIONS), None);
    let fence = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch: epoch(&state, 0),
    };
    assert!(apply_next(&mut state, &fence).is_ok());
    assert_eq!(state.group_coordinator(1), None);
    assert_eq!(state.group_coordinators()[1], Some(replica(0, 1)));
    // Re-placing a fenced coordinator's partition is allowed.
    assert!(apply_next(&mut state, &place(vec![(1, replica(1, 0))])).is_ok());
    assert_eq!(state.group_coordinator(1), Some(replica(1, 0)));
    let live: Vec<NodeId> = state.live_brokers().map(|b| b.registration.node).collect();
    assert_eq!(live, vec![NodeId(1)]);
}

#[test]
#[should_panic(expected = "applied after")]
fn the_applied_index_only_grows() {
    let mut state = cluster(&[(0, 1, None)]);
    let index = state.applied_index();
    let _ = state.apply(
        index,
        &Record::AllocateProducerIds {
            node: NodeId(0),
            count: 1,
        },
    );
}

#[test]
fn entries_without_records_advance_the_version() {
    let mut state = cluster(&[(0, 1, None)]);
    let before = state.clone();
    state.advance(100);
    assert_eq!(state.applied_index(), 100);
    let record = Record::AllocateProducerIds {
        node: NodeId(0),
        count: 1,
    };
    assert!(state.apply(101, &record).is_ok());
    assert_ne!(state, before);
}

#[test]
fn snapshot_round_trip_is_equal() {
    let mut state = with_topic();
    let place = Record::PlaceGroupPartitions {
        assignments: vec![GroupAssignment {
            partition: 2,
            coordinator: replica(1, 3),
        }],
    };
    assert!(apply_next(&mut state, &place).is_ok());
    assert!(apply_next(
        &mut state,
        &Record::AllocateProducerIds {
            node: NodeId(1),
            count: 7
        }
    )
    .is_ok());
    assert!(apply_next(&mut state, &quota_record("c", Some(2048.0))).is_ok());
    let bytes = state.to_snapshot_bytes().expect("bounded");
    let restored = ClusterState::from_snapshot_bytes(&bytes).expect("valid");
    assert_eq!(restored, state);
    assert!(!restored.client_quotas().is_empty());
    assert_eq!(restored.to_snapshot_bytes().expect("bounded"), bytes);
}

fn quota_record(client: &str, producer_byte_rate: Option<f64>) -> Record {
    Record::AlterClientQuotas {
        entity: shoal_quotas::QuotaEntity {
            user: None,
            client_id: Some(shoal_quotas::Name::Named(client.to_string())),
        },
        ops: crate::record::QuotaOps(vec![(
            shoal_quotas::QuotaKind::ProduceBytes,
            producer_byte_rate,
        )]),
    }
}

#[test]
fn client_quotas_apply_in_log_order_and_bad_values_are_refused() {
    let mut state = with_topic();
    assert_eq!(
        apply_next(&mut state, &quota_record("c", Some(1024.0))),
        Ok(Applied::ClientQuotasAltered)
    );
    let resolved = state
        .client_quotas()
        .resolve(shoal_quotas::QuotaKind::ProduceBytes, "u", "c")
        .expect("a quota applies");
    assert_eq!(resolved.bound, 1024.0);
    // A value the server would have refused, in a record: refused on apply too.
    let bad = quota_record("c", Some(1.5));
    let error = apply_next(&mut state.clone(), &bad).expect_err("not a whole byte rate");
    refused(&mut state, &bad, error);
    assert!(apply_next(&mut state, &quota_record("c", None)).is_ok());
    assert!(state.client_quotas().is_empty());
    // Only the quota record is written in the new envelope version.
    let bytes = quota_record("c", Some(1.0)).encode().expect("small");
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), 3);
    assert_eq!(
        Record::decode(&bytes).expect("decodes"),
        quota_record("c", Some(1.0))
    );
    let other = Record::DeleteTopic {
        name: "t".into(),
        id: [1; 16],
    };
    let bytes = other.encode().expect("small");
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), 2);
}

#[test]
fn bad_snapshots_are_typed_errors() {
    let state = with_topic();
    let bytes = state.to_snapshot_bytes().expect("bounded");
    assert!(matches!(
        ClusterState::from_snapshot_bytes(&bytes[..1]),
        Err(SnapshotError::Truncated { .. })
    ));
    let mut future = bytes.clone();
    future[0] = 9;
    assert!(matches!(
        ClusterState::from_snapshot_bytes(&future),
        Err(SnapshotError::UnsupportedVersion { found: 9, known: 1 })
    ));
    assert!(matches!(
        ClusterState::from_snapshot_bytes(&bytes[..bytes.len() - 1]),
        Err(SnapshotError::Malformed(_))
    ));
    let edit = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value = serde_json::from_slice(&bytes[2..]).expect("json");
        change(&mut value);
        let mut edited = bytes[..2].to_vec();
        edited.extend_from_slice(&serde_json::to_vec(&value).expect("json"));
        ClusterState::from_snapshot_bytes(&edited)
    };
    assert_eq!(edit(&|_| {}).expect("unedited"), state);
    // A replica on a core its broker does not have.
    let Err(SnapshotError::Invalid(InvariantError::Topic { name, error })) =
        edit(&|v| v["topics"]["t"]["partitions"][1]["replicas"][0]["core"] = 2.into())
    else {
        panic!("an out-of-range core was accepted");
    };
    assert_eq!(name, "t");
    assert!(matches!(error, ApplyError::CoreOutOfRange { .. }));
    // A broker listed twice.
    let doubled = edit(&|v| {
        let first = v["brokers"][0].clone();
        v["brokers"].as_array_mut().expect("list").push(first);
    });
    assert!(matches!(
        doubled,
        Err(SnapshotError::DuplicateBroker(NodeId(0)))
    ));
    // An epoch beyond the applied index.
    assert!(matches!(
        edit(&|v| v["applied_index"] = 1.into()),
        Err(SnapshotError::Invalid(
            InvariantError::BrokerEpochAhead { .. }
        ))
    ));
    // The wrong number of group partitions.
    assert!(matches!(
        edit(&|v| {
            let _ = v["group_coordinators"].as_array_mut().expect("list").pop();
        }),
        Err(SnapshotError::Invalid(
            InvariantError::GroupPartitionCount { .. }
        ))
    ));
    // Two topics with one id.
    assert!(matches!(
        edit(&|v| {
            let t = v["topics"]["t"].clone();
            let _ = v["topics"]
                .as_object_mut()
                .expect("map")
                .insert("u".into(), t);
        }),
        Err(SnapshotError::Invalid(
            InvariantError::DuplicateTopicId { .. }
        ))
    ));
    // A topic with no partitions.
    assert!(matches!(
        edit(&|v| v["topics"]["t"]["partitions"] = serde_json::json!([])),
        Err(SnapshotError::Invalid(InvariantError::Topic { .. }))
    ));
    // A negative next producer id.
    assert!(matches!(
        edit(&|v| v["next_producer_id"] = (-1).into()),
        Err(SnapshotError::Invalid(InvariantError::NegativeProducerId(
            -1
        )))
    ));
    // A broker stored with a registration that breaks a rule.
    assert!(matches!(
        edit(&|v| v["brokers"][0]["registration"]["cores"] = 0.into()),
        Err(SnapshotError::Invalid(InvariantError::Broker { .. }))
    ));
    let huge = vec![b' '; crate::limits::SNAPSHOT_BYTES_MAX + 1];
    assert!(matches!(
        ClusterState::from_snapshot_bytes(&huge),
        Err(SnapshotError::TooLarge { .. })
    ));
}

/// Brokers 0, 1, 2 and topic "r" of one partition replicated on all three.
fn with_replicated_topic() -> ClusterState {
    let mut state = cluster(&[(0, 1, None), (1, 1, None), (2, 1, None)]);
    let three = PartitionAssignment::new(vec![replica(0, 0), replica(1, 0), replica(2, 0)]);
    assert!(create_topic(&mut state, "r", 7, vec![three]).is_ok());
    state
}

fn report(leader: i32, leader_epoch: i32, isr: &[i32]) -> Record {
    Record::PartitionLeader {
        topic: "r".into(),
        id: topic_id(7),
        partition: 0,
        leader: NodeId(leader),
        leader_epoch,
        isr: isr.iter().copied().map(NodeId).collect(),
    }
}

#[test]
fn a_replicated_partition_leads_where_its_group_elected_and_stale_reports_are_refused() {
    let mut state = with_replicated_topic();
    // Before any report a replicated partition has no leader (its first replica is not it).
    assert_eq!(state.leader("r", PartitionId(0)), None);
    assert!(apply_next(&mut state, &report(1, 3, &[1, 0, 2])).is_ok());
    assert_eq!(state.leader("r", PartitionId(0)), Some(NodeId(1)));
    let p = state
        .partition("r", PartitionId(0))
        .expect("exists")
        .clone();
    assert_eq!((p.leader_epoch, p.isr.len()), (3, 3));
    // Same term, same leader: an ISR change.
    assert!(apply_next(&mut state, &report(1, 3, &[1, 2])).is_ok());
    // Same term, another leader; an older term: refused, nothing changes.
    let stale = |epoch| ApplyError::StaleLeaderEpoch {
        name: "r".into(),
        partition: 0,
        leader_epoch: epoch,
        current: 3,
    };
    refused(&mut state, &report(2, 3, &[2]), stale(3));
    refused(&mut state, &report(2, 2, &[2]), stale(2));
    // Reports that name no replica, or an ISR without the leader first.
    refused(
        &mut state,
        &report(5, 4, &[5]),
        ApplyError::Invalid(Invalid::NotAReplica(NodeId(5))),
    );
    refused(
        &mut state,
        &report(2, 4, &[0, 2]),
        ApplyError::Invalid(Invalid::IsrWithoutLeader(NodeId(2))),
    );
    refused(
        &mut state,
        &report(2, 4, &[2, 2]),
        ApplyError::Invalid(Invalid::DuplicateReplicaNode(NodeId(2))),
    );
    // A newer term moves it; unfencing never raises a replicated partition's epoch.
    assert!(apply_next(&mut state, &report(2, 4, &[2, 0])).is_ok());
    let broker_epoch = epoch(&state, 2);
    let fence = Record::FenceBroker {
        node: NodeId(2),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &fence).is_ok());
    assert_eq!(
        state.leader("r", PartitionId(0)),
        None,
        "a fenced leader leads nothing"
    );
    let unfence = Record::UnfenceBroker {
        node: NodeId(2),
        broker_epoch,
    };
    assert!(apply_next(&mut state, &unfence).is_ok());
    assert_eq!(epochs(&state, "r"), vec![4]);
    // One replica: no group, no report.
    let mut single = with_topic();
    let one = Record::PartitionLeader {
        topic: "t".into(),
        id: topic_id(1),
        partition: 0,
        leader: NodeId(0),
        leader_epoch: 1,
        isr: vec![NodeId(0)],
    };
    refused(
        &mut single,
        &one,
        ApplyError::Invalid(Invalid::NotReplicated(0)),
    );
}

#[test]
fn topic_ids_sharing_a_group_prefix_are_refused() {
    let mut state = with_replicated_topic();
    let mut id = topic_id(7);
    id[15] = 0; // same first bytes, another id
    let record = Record::CreateTopic {
        name: "s".into(),
        id,
        partitions: vec![assignment(0, 0)],
        configs: BTreeMap::new(),
    };
    refused(
        &mut state,
        &record,
        ApplyError::TopicIdInUse { by: "r".into() },
    );
    assert_ne!(crate::partition_group(&topic_id(7), 0), 0);
    assert_eq!(
        crate::group_partition(crate::partition_group(&topic_id(7), 513)),
        (crate::group_prefix(&topic_id(7)), 513)
    );
}
