//! The controller as it will run: three replicas of the controller Raft group, each applying
//! the committed metadata log (`shoal_controller::Record`s) to its `ClusterState`, with the
//! leader planning each change against its own applied state, as the server's controller
//! leader does. Under the hostile fault mix (loss, delay, reordering, partitions, crashes in
//! the middle of writes, single and site-wide power cuts), over many seeds: no committed
//! metadata change is lost, every replica ends with the same state, and every state keeps
//! the controller's invariants.
//!
//! `SHOAL_SIM_SEEDS=n` runs more seeds; `SHOAL_SIM_SEED=s` replays one.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::Rng;
use shoal_controller::{
    plan_alter_configs, plan_create_partitions, plan_create_topic, plan_delete_topic,
    plan_group_placement, ClusterState, Record, Registration,
};
use shoal_model::{NodeId, PartitionId};
use shoal_sim::{run, FaultOptions, StateMachine};

mod common;

use common::seeds;

const CLUSTER_ID: &str = "sim-cluster";

struct Metadata {
    state: ClusterState,
    /// Records that failed to apply (raced with another): fine, but counted.
    refused: u64,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata {
            state: ClusterState::new(CLUSTER_ID.to_string()),
            refused: 0,
        }
    }
}

impl StateMachine for Metadata {
    fn apply(&mut self, index: u64, data: &[u8]) {
        // A record that does not decode would be a bug in the proposer: fail the run.
        let record = Record::decode(data).expect("every proposal is an encoded Record");
        if self.state.apply(index, &record).is_err() {
            self.refused += 1;
        }
        self.state
            .check()
            .expect("controller invariants hold after every apply");
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.to_snapshot_bytes().expect("snapshot fits")
    }

    fn restore(bytes: &[u8]) -> Metadata {
        Metadata {
            state: ClusterState::from_snapshot_bytes(bytes).expect("snapshot restores"),
            refused: 0,
        }
    }

    fn digest(&self) -> u64 {
        // The snapshot bytes are canonical (ordered maps), so equal states give equal bytes.
        let bytes = self.snapshot();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// The next metadata change, planned by the leader against its applied state, in a cluster
/// of three brokers (the controllers).
fn plan(rng: &mut StdRng, machine: &Metadata) -> Option<Vec<u8>> {
    plan_for_brokers(3, rng, machine)
}

/// The same, with `brokers` brokers registering (nodes `1..=brokers`).
fn plan_for_brokers(brokers: i32, rng: &mut StdRng, machine: &Metadata) -> Option<Vec<u8>> {
    let state = &machine.state;
    let topics: Vec<String> = state.topics().keys().cloned().collect();
    let record = match rng.gen_range(0..10) {
        0 | 1 => {
            let node = NodeId(rng.gen_range(1..=brokers));
            // Each registration is a new process start (a new incarnation).
            Record::RegisterBroker(Registration {
                node,
                incarnation: rng.gen(),
                kafka_host: format!("10.0.0.{}", node.0),
                kafka_port: 9092,
                rpc_addr: format!("10.0.0.{}:33145", node.0),
                rack: Some(format!("rack-{}", node.0 % 2)),
                cores: rng.gen_range(1..=4),
            })
        }
        2 => {
            let broker = state.brokers().values().nth(rng.gen_range(0..4))?;
            let (node, broker_epoch) = (broker.registration.node, broker.broker_epoch);
            if broker.fenced {
                Record::UnfenceBroker { node, broker_epoch }
            } else {
                Record::FenceBroker { node, broker_epoch }
            }
        }
        3..=5 => {
            let name = format!("topic-{}", rng.gen_range(0..12));
            let mut id = [0u8; 16];
            rng.fill(&mut id);
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]);
            plan_create_topic(state, &name, rng.gen_range(1..=8), -1, configs, id).ok()?
        }
        6 => plan_delete_topic(state, topics.get(rng.gen_range(0..topics.len().max(1)))?).ok()?,
        7 => {
            let name = topics.get(rng.gen_range(0..topics.len().max(1)))?;
            let now = state.topic(name)?.partitions.len() as i32;
            plan_create_partitions(state, name, now + rng.gen_range(1..=3)).ok()?
        }
        8 => {
            let name = topics.get(rng.gen_range(0..topics.len().max(1)))?;
            let configs = BTreeMap::from([(
                "retention.ms".to_string(),
                rng.gen_range(1000..100_000).to_string(),
            )]);
            plan_alter_configs(state, name, configs).ok()?
        }
        _ => plan_group_placement(state).ok()??,
    };
    Some(record.encode().expect("a planned record encodes"))
}

#[test]
fn three_controllers_lose_no_committed_metadata_change() {
    let mut acknowledged = 0;
    let mut crashes = 0;
    let mut snapshots = 0;
    for seed in seeds(40) {
        match run::<Metadata>(seed, FaultOptions::hostile(), plan) {
            Ok(outcome) => {
                acknowledged += outcome.acknowledged;
                crashes += outcome.crashes;
                snapshots += outcome.snapshots_installed;
            }
            Err(violation) => panic!(
                "seed {seed}: {violation:?}\nreplay: SHOAL_SIM_SEED={seed} cargo test -p \
                 shoal-sim --release --test controller_cluster"
            ),
        }
    }
    println!("acknowledged {acknowledged}, crashes {crashes}, snapshots installed {snapshots}");
    assert!(acknowledged > 1000 && crashes > 0 && snapshots > 0);
}

/// The controller group as the server runs it in a five-broker cluster: the three seed nodes
/// vote, the other two brokers follow as learners (opening at random times, taking every
/// fault) and apply the same metadata log, so every broker ends with the controllers' state.
#[test]
fn learner_brokers_apply_the_same_metadata() {
    let mut total = shoal_sim::Outcome::default();
    let seeds = seeds(40);
    let many = seeds.len() >= 10;
    for seed in seeds {
        let options = FaultOptions::hostile_with_learners();
        match run::<Metadata>(seed, options, |rng, m| plan_for_brokers(5, rng, m)) {
            Ok(outcome) => total.add(&outcome),
            Err(violation) => panic!(
                "seed {seed}: {violation:?}\nreplay: SHOAL_SIM_SEED={seed} cargo test -p \
                 shoal-sim --release --test controller_cluster learner_brokers"
            ),
        }
    }
    println!("{total:?}");
    if many {
        assert!(total.acknowledged > 500 && total.learner_crashes > 0);
        assert!(total.learner_snapshots_installed > 0);
    }
}

/// The planner produces real metadata: after a fault-free run the state has brokers, topics
/// with partitions placed on registered brokers, and group coordinators.
#[test]
fn the_planned_metadata_is_real() {
    let options = FaultOptions {
        crash_per_mille: 0,
        partition_per_mille: 0,
        power_loss_all_per_mille: 0,
        crash_mid_advance: false,
        ..FaultOptions::hostile()
    };
    let outcome = run::<Metadata>(7, options, plan).expect("fault-free run");
    assert!(outcome.acknowledged > 30, "{outcome:?}");
    // Replay the same seed's decisions on one state to look at the result.
    let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(99);
    let mut machine = Metadata::default();
    let mut index = 0;
    for _ in 0..400 {
        if let Some(bytes) = plan(&mut rng, &machine) {
            index += 1;
            machine.apply(index, &bytes);
        }
    }
    let state = &machine.state;
    assert!(state.brokers().len() == 3);
    assert!(!state.topics().is_empty());
    let (name, topic) = state.topics().iter().next().expect("a topic");
    let p0 = state.partition(name, PartitionId(0)).expect("partition 0");
    assert_eq!(p0.replicas.len(), 1);
    assert!(state.broker(p0.replicas[0].node).is_some());
    assert!(!topic.partitions.is_empty());
    assert!(state.group_coordinators().iter().any(Option::is_some));
}
