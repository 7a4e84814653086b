//! Property tests: random metadata logs keep every invariant, refused records change nothing
//! but the version, planned records apply, a snapshot taken anywhere continues to the same
//! state, placement stays balanced, and no bytes panic a decoder.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use shoal_model::{NodeId, ShardId};

use crate::error::ApplyError;
use crate::error::PlanError;
use crate::liveness::{Heartbeat, HeartbeatReply, Liveness};
use crate::place::place;
use crate::plan::*;
use crate::record::{GroupAssignment, PartitionAssignment, Record, Registration, Replica};
use crate::state::{Applied, ClusterState};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const NODES: i32 = 5;

/// One step of a random log. `Plan*` steps go through the leader's planning (and must then
/// apply); the others write records directly, valid or not.
#[derive(Clone, Debug)]
enum Action {
    Register {
        node: i32,
        cores: u32,
        rack: Option<u8>,
        incarnation: u64,
    },
    Fence {
        node: i32,
        stale: bool,
    },
    Unfence {
        node: i32,
        stale: bool,
    },
    Create {
        name: usize,
        id: u8,
        partitions: Vec<(i32, u32, i32)>,
        configs: u8,
    },
    PlanCreate {
        name: usize,
        id: u8,
        partitions: i32,
        rf: i16,
    },
    Delete {
        name: usize,
        id: u8,
    },
    PlanDelete {
        name: usize,
    },
    Grow {
        name: usize,
        id: u8,
        before: u32,
        added: Vec<(i32, u32, i32)>,
    },
    PlanGrow {
        name: usize,
        count: i32,
    },
    Alter {
        name: usize,
        id: u8,
        configs: u8,
    },
    PlanAlter {
        name: usize,
        configs: u8,
    },
    Allocate {
        node: i32,
        count: u32,
    },
    PlanAllocate {
        node: i32,
        count: u32,
    },
    PlaceGroups(Vec<(u32, i32, u32)>),
    PlanGroups,
    /// An entry without a record.
    Advance,
}

fn replicas() -> impl Strategy<Value = Vec<(i32, u32, i32)>> {
    // (node, core, second replica's node or -1)
    vec(
        (
            0..NODES + 1,
            0u32..5,
            prop_oneof![4 => Just(-1), 1 => 0..NODES],
        ),
        0..4,
    )
}

fn stale() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.2)
}

fn action() -> impl Strategy<Value = Action> {
    let node = 0..NODES;
    let name = 0..NAMES.len();
    prop_oneof![
        3 => (
            prop_oneof![9 => 0..NODES, 1 => Just(-1)],
            prop_oneof![9 => 1u32..5, 1 => Just(0)],
            prop::option::of(0u8..3),
            0u64..3,
        ).prop_map(
            |(node, cores, rack, incarnation)| Action::Register { node, cores, rack, incarnation }
        ),
        2 => (node.clone(), stale()).prop_map(|(node, stale)| Action::Fence { node, stale }),
        4 => (node.clone(), stale()).prop_map(|(node, stale)| Action::Unfence { node, stale }),
        1 => (name.clone(), 0u8..6, replicas(), 0u8..3).prop_map(
            |(name, id, partitions, configs)| Action::Create { name, id, partitions, configs }
        ),
        6 => (name.clone(), 0u8..8, -1i32..6, -1i16..3).prop_map(
            |(name, id, partitions, rf)| Action::PlanCreate { name, id, partitions, rf }
        ),
        1 => (name.clone(), 0u8..6).prop_map(|(name, id)| Action::Delete { name, id }),
        1 => name.clone().prop_map(|name| Action::PlanDelete { name }),
        2 => (name.clone(), 0u8..6, 0u32..6, replicas()).prop_map(
            |(name, id, before, added)| Action::Grow { name, id, before, added }
        ),
        2 => (name.clone(), -1i32..10).prop_map(|(name, count)| Action::PlanGrow { name, count }),
        2 => (name.clone(), 0u8..6, 0u8..3).prop_map(
            |(name, id, configs)| Action::Alter { name, id, configs }
        ),
        1 => (name.clone(), 0u8..3).prop_map(|(name, configs)| Action::PlanAlter { name, configs }),
        1 => (-1..NODES, 0u32..2000).prop_map(|(node, count)| Action::Allocate { node, count }),
        1 => (node.clone(), 0u32..2000)
            .prop_map(|(node, count)| Action::PlanAllocate { node, count }),
        1 => vec((0u32..18, 0..NODES + 1, 0u32..5), 0..4).prop_map(Action::PlaceGroups),
        2 => Just(Action::PlanGroups),
        1 => Just(Action::Advance),
    ]
}

fn id(seed: u8) -> [u8; 16] {
    [seed; 16]
}

fn configs(seed: u8) -> BTreeMap<String, String> {
    (0..seed)
        .map(|i| (format!("k{i}"), format!("v{seed}")))
        .collect()
}

fn assignments(raw: &[(i32, u32, i32)]) -> Vec<PartitionAssignment> {
    raw.iter()
        .map(|&(node, core, second)| {
            let mut replicas = vec![Replica {
                node: NodeId(node),
                core: ShardId(core),
            }];
            if second >= 0 {
                replicas.push(Replica {
                    node: NodeId(second),
                    core: ShardId(0),
                });
            }
            PartitionAssignment::new(replicas)
        })
        .collect()
}

/// Seed 0 names the topic's current id (so raw records often match), others a fixed id.
fn topic_id(state: &ClusterState, name: usize, seed: u8) -> [u8; 16] {
    match state.topic(NAMES[name]) {
        Some(topic) if seed == 0 => topic.id,
        _ => id(seed),
    }
}

fn current_epoch(state: &ClusterState, node: i32, stale: bool) -> u64 {
    let epoch = state.broker(NodeId(node)).map_or(1, |b| b.broker_epoch);
    if stale {
        epoch.saturating_sub(1)
    } else {
        epoch
    }
}

/// The record an action writes at this point of the log (None: an entry without one), and
/// whether the leader planned it.
fn resolve(action: &Action, state: &ClusterState) -> (Option<Record>, bool) {
    let raw = |record| (Some(record), false);
    let planned = |plan: Result<Record, PlanError>| (plan.ok(), true);
    match action.clone() {
        Action::Register {
            node,
            cores,
            rack,
            incarnation,
        } => raw(Record::RegisterBroker(Registration {
            node: NodeId(node),
            incarnation,
            kafka_host: format!("h{node}"),
            kafka_port: 9092,
            rpc_addr: format!("h{node}:9400"),
            rack: rack.map(|r| format!("rack{r}")),
            cores,
        })),
        Action::Fence { node, stale } => {
            let broker_epoch = current_epoch(state, node, stale);
            raw(Record::FenceBroker {
                node: NodeId(node),
                broker_epoch,
            })
        }
        Action::Unfence { node, stale } => {
            let broker_epoch = current_epoch(state, node, stale);
            raw(Record::UnfenceBroker {
                node: NodeId(node),
                broker_epoch,
            })
        }
        Action::Create {
            name,
            id: seed,
            partitions,
            configs: c,
        } => raw(Record::CreateTopic {
            name: NAMES[name].into(),
            id: id(seed),
            partitions: assignments(&partitions),
            configs: configs(c),
        }),
        Action::PlanCreate {
            name,
            id: seed,
            partitions,
            rf,
        } => planned(plan_create_topic(
            state,
            NAMES[name],
            partitions,
            rf,
            configs(1),
            id(seed),
        )),
        Action::Delete { name, id: seed } => raw(Record::DeleteTopic {
            name: NAMES[name].into(),
            id: topic_id(state, name, seed),
        }),
        Action::PlanDelete { name } => planned(plan_delete_topic(state, NAMES[name])),
        Action::Grow {
            name,
            id: seed,
            before,
            added,
        } => raw(Record::CreatePartitions {
            name: NAMES[name].into(),
            id: topic_id(state, name, seed),
            // 0 names the current count.
            partitions_before: match state.topic(NAMES[name]) {
                Some(topic) if before == 0 => topic.partitions.len() as u32,
                _ => before,
            },
            added: assignments(&added),
        }),
        Action::PlanGrow { name, count } => {
            planned(plan_create_partitions(state, NAMES[name], count))
        }
        Action::Alter {
            name,
            id: seed,
            configs: c,
        } => raw(Record::AlterTopicConfigs {
            name: NAMES[name].into(),
            id: topic_id(state, name, seed),
            configs: configs(c),
        }),
        Action::PlanAlter { name, configs: c } => {
            planned(plan_alter_configs(state, NAMES[name], configs(c)))
        }
        Action::Allocate { node, count } => raw(Record::AllocateProducerIds {
            node: NodeId(node),
            count,
        }),
        Action::PlanAllocate { node, count } => {
            planned(plan_allocate_producer_ids(state, NodeId(node), count))
        }
        Action::PlaceGroups(raw_assignments) => {
            let assignments = raw_assignments
                .into_iter()
                .map(|(partition, node, core)| GroupAssignment {
                    partition,
                    coordinator: Replica {
                        node: NodeId(node),
                        core: ShardId(core),
                    },
                })
                .collect();
            raw(Record::PlaceGroupPartitions { assignments })
        }
        Action::PlanGroups => (plan_group_placement(state).ok().flatten(), true),
        Action::Advance => (None, false),
    }
}

type Outcome = Option<Result<Applied, ApplyError>>;

/// Entries by index: a record, or none (an entry without one).
type Log = Vec<(u64, Option<Record>)>;

/// One log entry: applies it, or only advances for an entry without a record.
fn step(state: &mut ClusterState, index: u64, record: Option<&Record>) -> Outcome {
    match record {
        Some(record) => Some(state.apply(index, record)),
        None => {
            state.advance(index);
            None
        }
    }
}

/// Builds a random log against the state as it goes, checking each entry.
fn build_log(
    actions: &[(u64, Action)],
) -> Result<(ClusterState, Log, Vec<Outcome>), TestCaseError> {
    let mut state = ClusterState::new("prop".into());
    let (mut log, mut outcomes) = (Vec::new(), Vec::new());
    for (gap, action) in actions {
        let index = state.applied_index() + gap;
        let (record, planned) = resolve(action, &state);
        // Every record survives its encoding, as it would through the Raft log.
        if let Some(record) = &record {
            let bytes = record
                .encode()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&Record::decode(&bytes).expect("round trip"), record);
        }
        let before = state.clone();
        let outcome = step(&mut state, index, record.as_ref());
        prop_assert_eq!(state.applied_index(), index);
        prop_assert_eq!(state.check(), Ok(()));
        if let Some(Err(error)) = &outcome {
            prop_assert!(
                !planned,
                "a planned record was refused: {error} ({record:?})"
            );
            let mut unchanged = before;
            unchanged.applied_index = index;
            prop_assert_eq!(&state, &unchanged, "refused with {}", error);
        }
        log.push((index, record));
        outcomes.push(outcome);
    }
    Ok((state, log, outcomes))
}

/// A random log, most of them after a prelude that registers and unfences a few brokers (so
/// that topics exist often enough for the records about topics to apply).
fn actions() -> impl Strategy<Value = Vec<(u64, Action)>> {
    (vec((1u64..4, action()), 1..120), 0..4i32).prop_map(|(random, brokers)| {
        let prelude = (0..brokers).flat_map(|node| {
            let rack = Some(u8::try_from(node % 2).expect("small"));
            let register = Action::Register {
                node,
                cores: 2,
                rack,
                incarnation: 0,
            };
            [(1, register), (1, Action::Unfence { node, stale: false })]
        });
        prelude.chain(random).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_logs_keep_invariants_and_snapshots_continue_alike(
        actions in actions(),
        split in any::<Index>(),
    ) {
        let (straight, log, outcomes) = build_log(&actions)?;
        let at = split.index(log.len() + 1);
        let mut first = ClusterState::new("prop".into());
        for (index, record) in &log[..at] {
            let _ = step(&mut first, *index, record.as_ref());
        }
        let bytes = first.to_snapshot_bytes().expect("bounded");
        let mut restored = ClusterState::from_snapshot_bytes(&bytes).expect("valid");
        prop_assert_eq!(&restored, &first);
        for ((index, record), outcome) in log[at..].iter().zip(&outcomes[at..]) {
            prop_assert_eq!(&step(&mut restored, *index, record.as_ref()), outcome);
        }
        prop_assert_eq!(&restored, &straight);
        prop_assert_eq!(restored.to_snapshot_bytes().expect("bounded"),
            straight.to_snapshot_bytes().expect("bounded"));
    }

    #[test]
    fn fenced_brokers_lead_nothing_and_get_nothing_new(actions in actions()) {
        let (state, log, _) = build_log(&actions)?;
        for (name, topic) in state.topics() {
            for (p, partition) in (0..).zip(&topic.partitions) {
                let leader = state.leader(name, shoal_model::PartitionId(p));
                // A replicated partition leads where its group reported, if anywhere.
                let first = if partition.is_replicated() {
                    partition.leader
                } else {
                    Some(partition.replicas[0].node)
                };
                prop_assert_eq!(leader, first.filter(|&node| state.is_live(node)));
            }
        }
        for p in 0..crate::limits::GROUP_PARTITIONS {
            if let Some(coordinator) = state.group_coordinator(p) {
                prop_assert!(state.is_live(coordinator.node));
            }
        }
        // Replaying the log with every record checked against the state before it: a
        // partition created or grown may only name brokers unfenced at that point.
        let mut replay = ClusterState::new("prop".into());
        for (index, record) in &log {
            let before = replay.clone();
            let outcome = step(&mut replay, *index, record.as_ref());
            let added = match (record, &outcome) {
                (Some(Record::CreateTopic { partitions, .. }), Some(Ok(_))) => partitions.clone(),
                (Some(Record::CreatePartitions { added, .. }), Some(Ok(_))) => added.clone(),
                _ => Vec::new(),
            };
            for replica in added.iter().flat_map(|a| a.replicas.iter()) {
                prop_assert!(before.is_live(replica.node), "{replica:?} placed while fenced");
            }
        }
    }

    #[test]
    fn placement_from_empty_is_balanced(
        brokers in vec((1u32..5, prop::option::of(0u8..3)), 1..7),
        count in 0u32..200,
        rf in 1usize..4,
    ) {
        let mut state = ClusterState::new("prop".into());
        for (node, (cores, rack)) in (0..).zip(&brokers) {
            let registration = Registration {
                node: NodeId(node),
                incarnation: 0,
                kafka_host: "h".into(),
                kafka_port: 1,
                rpc_addr: "h:2".into(),
                rack: rack.map(|r| r.to_string()),
                cores: *cores,
            };
            let index = state.applied_index() + 1;
            let applied = state.apply(index, &Record::RegisterBroker(registration));
            let Ok(Applied::BrokerRegistered { broker_epoch, .. }) = applied else {
                return Err(TestCaseError::fail("register"));
            };
            let unfence = Record::UnfenceBroker { node: NodeId(node), broker_epoch };
            prop_assert!(state.apply(index + 1, &unfence).is_ok());
        }
        let placed = place(&state, count, rf);
        if rf > brokers.len() {
            prop_assert!(placed.is_err());
            return Ok(());
        }
        let placed = placed.expect("enough brokers");
        prop_assert_eq!(placed.len(), count as usize);
        let mut leaders: BTreeMap<i32, usize> = (0..brokers.len() as i32).map(|n| (n, 0)).collect();
        let mut per_core: BTreeMap<(i32, u32), usize> = BTreeMap::new();
        let racks: BTreeSet<Option<u8>> = brokers.iter().map(|b| b.1).collect();
        for assignment in &placed {
            *leaders.entry(assignment.replicas[0].node.0).or_insert(0) += 1;
            let used: BTreeSet<Option<u8>> =
                assignment.replicas.iter().map(|r| brokers[r.node.0 as usize].1).collect();
            // As many racks as the partition has replicas, or every rack there is.
            prop_assert_eq!(used.len(), rf.min(racks.len()));
            for replica in &assignment.replicas {
                *per_core.entry((replica.node.0, replica.core.0)).or_insert(0) += 1;
            }
        }
        let spread = |counts: &mut dyn Iterator<Item = usize>| {
            let counts: Vec<usize> = counts.collect();
            counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
        };
        prop_assert!(spread(&mut leaders.values().copied()) <= 1, "leaders {leaders:?}");
        for (node, (cores, _)) in (0..).zip(&brokers) {
            let mut on_node = (0..*cores).map(|c| per_core.get(&(node, c)).copied().unwrap_or(0));
            prop_assert!(spread(&mut on_node) <= 1, "cores of node {node}: {per_core:?}");
        }
        if racks.len() == 1 {
            // Without rack constraints, replicas are balanced across nodes too.
            let mut per_node = vec![0usize; brokers.len()];
            for ((node, _), n) in &per_core {
                per_node[*node as usize] += n;
            }
            prop_assert!(spread(&mut per_node.into_iter()) <= 1);
        }
    }

    #[test]
    fn heartbeats_keep_brokers_alive_and_silence_fences_them(
        beats in vec((0..3i32, 1u64..1500), 1..60),
    ) {
        const TIMEOUT_MS: u64 = 1000;
        let mut state = ClusterState::new("prop".into());
        for node in 0..3 {
            let index = state.applied_index() + 1;
            let registration = Registration {
                node: NodeId(node), incarnation: 0, kafka_host: "h".into(), kafka_port: 1,
                rpc_addr: "h:2".into(), rack: None, cores: 1,
            };
            prop_assert!(state.apply(index, &Record::RegisterBroker(registration)).is_ok());
        }
        let mut liveness = Liveness::new(TIMEOUT_MS);
        liveness.on_become_leader(&state, 0);
        let mut heard = [0u64; 3];
        let mut now = 0;
        for (node, gap) in beats {
            now += gap;
            for (expired, epoch) in liveness.expired(&state, now) {
                prop_assert!(now - heard[expired.0 as usize] >= TIMEOUT_MS);
                let index = state.applied_index() + 1;
                let fence = Record::FenceBroker { node: expired, broker_epoch: epoch };
                prop_assert!(state.apply(index, &fence).is_ok());
            }
            // Whoever was heard within the last session is still unfenced.
            for other in 0..3i32 {
                if heard[other as usize] > 0 && now - heard[other as usize] < TIMEOUT_MS {
                    prop_assert!(state.is_live(NodeId(other)), "node {other} fenced early");
                }
            }
            let broker_epoch = state.broker(NodeId(node)).expect("registered").broker_epoch;
            let beat = Heartbeat {
                node: NodeId(node), broker_epoch, applied_index: state.applied_index(),
                want_fence: false,
            };
            heard[node as usize] = now;
            match liveness.heartbeat(&state, &beat, now) {
                HeartbeatReply::Unfence(record) => {
                    let index = state.applied_index() + 1;
                    prop_assert!(state.apply(index, &record).is_ok());
                }
                HeartbeatReply::Alive => prop_assert!(state.is_live(NodeId(node))),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
            prop_assert!(state.is_live(NodeId(node)));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..600)) {
        let _ = Record::decode(&bytes);
        let _ = ClusterState::from_snapshot_bytes(&bytes);
        for version in [1u16, 2] {
            let mut framed = version.to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Record::decode(&framed);
            let _ = ClusterState::from_snapshot_bytes(&framed);
        }
    }

    #[test]
    fn damaged_records_never_panic_decode_or_apply(
        actions in actions(),
        damage in vec((any::<Index>(), any::<u8>()), 1..4),
        cut in any::<Index>(),
    ) {
        let (mut state, log, _) = build_log(&actions)?;
        for (_, record) in log.iter().rev().take(5) {
            let Some(record) = record else { continue };
            let mut bytes = record.encode().expect("bounded");
            for (at, byte) in &damage {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len() / 2));
            if let Ok(decoded) = Record::decode(&bytes) {
                let index = state.applied_index() + 1;
                let _ = state.apply(index, &decoded);
                prop_assert_eq!(state.check(), Ok(()));
            }
        }
    }

    #[test]
    fn damaged_snapshots_never_panic_and_never_restore_broken(
        actions in actions(),
        damage in vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let (state, _, _) = build_log(&actions)?;
        let mut bytes = state.to_snapshot_bytes().expect("bounded");
        for (at, byte) in &damage {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        if let Ok(restored) = ClusterState::from_snapshot_bytes(&bytes) {
            prop_assert_eq!(restored.check(), Ok(()));
        }
    }
}
