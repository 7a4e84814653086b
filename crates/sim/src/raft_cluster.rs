//! A Raft group of N replicas (`shoal_consensus::Replica`), each on its own simulated disk,
//! over a simulated network, driven tick by tick from one seed, with the faults of
//! `FaultOptions`: message loss, duplication, delay and reordering, partitions (both ways and
//! one way), process crashes and power cuts (also in the middle of a replica's write), and
//! restarts. A generic state machine applies what commits.
//!
//! What it checks, each run:
//! - **agreement**: no two replicas ever apply different entries at the same index (the first
//!   entry applied at an index anywhere is remembered for the whole run, so a replica that lost
//!   a committed entry and later commits another one there is caught);
//! - **no acknowledged proposal lost**: a proposal is acknowledged when the replica that
//!   proposed it applies it (that is when the server answers the client); after the faults
//!   stop and every replica is back, every acknowledged proposal is applied on every replica;
//! - **convergence**: once the faults stop, a leader is elected and all replicas reach the
//!   same applied index and the same state-machine digest within a bounded number of ticks.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_consensus::{Message, Progress, Replica, ReplicaOptions};
use shoal_sim_disk::{CutMode, SimDisk};

use crate::net::{NetOptions, SimNet};

/// The application on top of the group.
pub trait StateMachine: Default {
    /// Applies one committed proposal (without the simulator's 8-byte id prefix).
    fn apply(&mut self, index: u64, data: &[u8]);
    fn snapshot(&self) -> Vec<u8>;
    fn restore(bytes: &[u8]) -> Self;
    /// Equal digests mean equal states.
    fn digest(&self) -> u64;
}

#[derive(Clone, Copy, Debug)]
pub struct FaultOptions {
    pub replicas: usize,
    /// Ticks with faults; then the network heals, every replica restarts and the run continues
    /// fault-free until convergence (at most `converge_ticks_max`).
    pub fault_ticks: u64,
    pub converge_ticks_max: u64,
    pub net: NetOptions,
    /// Chances per tick, in per mille.
    pub crash_per_mille: u32,
    pub partition_per_mille: u32,
    pub propose_per_mille: u32,
    /// Power cut (unsynced writes lost or torn) instead of a process crash.
    pub power_cut: bool,
    /// A crash may land in the middle of a replica's `advance` (between its writes).
    pub crash_mid_advance: bool,
    /// Chance per tick, in per mille, that every replica loses power at once (a site-wide
    /// outage): only what each one synced survives.
    pub power_loss_all_per_mille: u32,
    /// The disks acknowledge syncs without doing them (a lying drive cache). Only for showing
    /// that the checks catch the loss that follows.
    pub disks_ignore_syncs: bool,
    /// A replica compacts its log into a snapshot after this many applied entries.
    pub compact_every_entries: u64,
}

impl FaultOptions {
    /// A hostile mix for three replicas.
    pub fn hostile() -> FaultOptions {
        FaultOptions {
            replicas: 3,
            fault_ticks: 1500,
            converge_ticks_max: 600,
            net: NetOptions {
                loss_percent: 5,
                duplicate_percent: 3,
                delay_ticks_min: 0,
                delay_ticks_max: 4,
            },
            crash_per_mille: 8,
            partition_per_mille: 5,
            propose_per_mille: 300,
            power_cut: true,
            crash_mid_advance: true,
            power_loss_all_per_mille: 1,
            disks_ignore_syncs: false,
            compact_every_entries: 50,
        }
    }
}

#[derive(Debug)]
pub enum Violation {
    Disagreement {
        index: u64,
        replica: usize,
        first: (u64, Vec<u8>),
        now: (u64, Vec<u8>),
    },
    AcknowledgedLost {
        proposal: u64,
        index: u64,
    },
    NoConvergence {
        detail: String,
    },
    ReplicaFailed {
        replica: usize,
        error: String,
    },
}

/// What a successful run did (so a test can check the faults actually happened).
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub proposals: u64,
    pub acknowledged: u64,
    pub committed_index_max: u64,
    pub crashes: u64,
    pub crashes_mid_advance: u64,
    pub partitions: u64,
    pub power_losses_all: u64,
    pub leader_changes: u64,
    pub snapshots_installed: u64,
    pub compactions: u64,
    pub messages_dropped: u64,
}

struct Node<S> {
    disk: Rc<SimDisk>,
    replica: Option<Replica<SimDisk>>,
    machine: S,
    restart_at: u64,
    /// Proposal ids this replica proposed and has not yet applied.
    proposed: BTreeSet<u64>,
}

struct Sim<S> {
    options: FaultOptions,
    rng: StdRng,
    net: SimNet<Message>,
    nodes: Vec<Node<S>>,
    now: u64,
    heal_at: Option<u64>,
    /// First entry applied at each index, anywhere: (term, data).
    applied_first: BTreeMap<u64, (u64, Vec<u8>)>,
    acknowledged: BTreeMap<u64, u64>,
    next_proposal: u64,
    last_leader: u64,
    outcome: Outcome,
}

const DIR: &str = "/raft/controller";

/// Runs one simulation from `seed`. `propose` makes the payload of each proposal from the
/// proposing leader's state (`None`: nothing to propose now).
pub fn run<S: StateMachine>(
    seed: u64,
    options: FaultOptions,
    mut propose: impl FnMut(&mut StdRng, &S) -> Option<Vec<u8>>,
) -> Result<Outcome, Violation> {
    let mut sim = Sim::<S> {
        options,
        rng: StdRng::seed_from_u64(seed),
        net: SimNet::new(options.net),
        nodes: Vec::new(),
        now: 0,
        heal_at: None,
        applied_first: BTreeMap::new(),
        acknowledged: BTreeMap::new(),
        next_proposal: 1,
        last_leader: 0,
        outcome: Outcome::default(),
    };
    for _ in 0..options.replicas {
        let disk = SimDisk::new();
        disk.ignore_syncs(options.disks_ignore_syncs);
        sim.nodes.push(Node {
            disk: Rc::new(disk),
            replica: None,
            machine: S::default(),
            restart_at: 0,
            proposed: BTreeSet::new(),
        });
    }
    for i in 0..options.replicas {
        sim.start(i)?;
    }
    while sim.now < options.fault_ticks {
        sim.faults()?;
        if sim.rng.gen_range(0..1000) < options.propose_per_mille {
            sim.propose(&mut propose);
        }
        sim.step(true)?;
    }
    sim.net.heal();
    sim.net.set_options(NetOptions::reliable());
    for i in 0..options.replicas {
        if sim.nodes[i].replica.is_none() {
            sim.start(i)?;
        }
    }
    let deadline = sim.now + options.converge_ticks_max;
    while sim.now < deadline {
        sim.step(false)?;
        if sim.converged() {
            sim.check_acknowledged()?;
            sim.outcome.messages_dropped = sim.net.stats.dropped + sim.net.stats.blocked;
            return Ok(sim.outcome);
        }
    }
    Err(Violation::NoConvergence {
        detail: sim.describe(),
    })
}

impl<S: StateMachine> Sim<S> {
    fn raft_id(index: usize) -> u64 {
        index as u64 + 1
    }

    fn start(&mut self, i: usize) -> Result<(), Violation> {
        let voters = (0..self.options.replicas).map(Self::raft_id).collect();
        let mut options = ReplicaOptions::new(0, Self::raft_id(i), voters);
        options.election_seed = self.rng.gen();
        let disk = self.nodes[i].disk.clone();
        let replica = block_on(Replica::open(disk, Path::new(DIR), options)).map_err(|e| {
            Violation::ReplicaFailed {
                replica: i,
                error: format!("open: {e}"),
            }
        })?;
        let snapshot = replica.snapshot();
        let node = &mut self.nodes[i];
        node.machine = if snapshot.get_metadata().index == 0 {
            S::default()
        } else {
            S::restore(&snapshot.data)
        };
        node.replica = Some(replica);
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        self.outcome.crashes += 1;
        let node = &mut self.nodes[i];
        node.replica = None;
        node.proposed.clear();
        if self.options.power_cut || self.options.power_loss_all_per_mille > 0 {
            let mode = if self.rng.gen_bool(0.5) {
                CutMode::TearLast
            } else {
                CutMode::Adversarial
            };
            node.disk.power_cut(self.rng.gen(), mode);
        } else {
            node.disk.process_crash();
        }
        node.restart_at = self.now + self.rng.gen_range(5..80);
        self.net.drop_node(i);
    }

    fn faults(&mut self) -> Result<(), Violation> {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() && self.nodes[i].restart_at <= now {
                self.start(i)?;
            }
        }
        if self.rng.gen_range(0..1000) < self.options.crash_per_mille {
            let i = self.rng.gen_range(0..self.nodes.len());
            if self.nodes[i].replica.is_some() {
                self.crash(i);
            }
        }
        if self.rng.gen_range(0..1000) < self.options.power_loss_all_per_mille {
            self.outcome.power_losses_all += 1;
            for i in 0..self.nodes.len() {
                if self.nodes[i].replica.is_some() {
                    self.crash(i);
                }
                // Every one of them comes back at about the same time.
                self.nodes[i].restart_at = now + self.rng.gen_range(5..20);
            }
        }
        if self.heal_at.is_some_and(|at| at <= now) {
            self.net.heal();
            self.heal_at = None;
        }
        if self.heal_at.is_none() && self.rng.gen_range(0..1000) < self.options.partition_per_mille
        {
            self.outcome.partitions += 1;
            let n = self.nodes.len();
            if self.rng.gen_bool(0.25) {
                let from = self.rng.gen_range(0..n);
                let to = (from + self.rng.gen_range(1..n)) % n;
                self.net.cut_one_way(from, to);
            } else {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for node in 0..n {
                    if self.rng.gen_bool(0.5) {
                        a.push(node)
                    } else {
                        b.push(node)
                    }
                }
                self.net.partition(&[a, b]);
            }
            self.heal_at = Some(now + self.rng.gen_range(10..150));
        }
        Ok(())
    }

    fn propose(&mut self, make: &mut impl FnMut(&mut StdRng, &S) -> Option<Vec<u8>>) {
        let i = self.rng.gen_range(0..self.nodes.len());
        let id = self.next_proposal;
        let node = &mut self.nodes[i];
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        if !replica.status().is_leader {
            return;
        }
        let Some(payload) = make(&mut self.rng, &node.machine) else {
            return;
        };
        let mut data = id.to_be_bytes().to_vec();
        data.extend_from_slice(&payload);
        if replica.propose(data).is_ok() {
            self.next_proposal += 1;
            self.outcome.proposals += 1;
            let _ = node.proposed.insert(id);
        }
    }

    fn step(&mut self, faults: bool) -> Result<(), Violation> {
        self.now += 1;
        for node in &mut self.nodes {
            if let Some(replica) = node.replica.as_mut() {
                let _ = replica.tick();
            }
        }
        for (from, to, message) in self.net.deliver(self.now) {
            if let Some(replica) = self.nodes[to].replica.as_mut() {
                if let Err(error) = replica.step(message) {
                    tracing::debug!(from, to, %error, "message refused");
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.advance(i, faults)?;
        }
        self.track_leader();
        Ok(())
    }

    fn advance(&mut self, i: usize, faults: bool) -> Result<(), Violation> {
        let crash_after_polls = (faults
            && self.options.crash_mid_advance
            && self.rng.gen_range(0..1000) < self.options.crash_per_mille / 2)
            .then(|| self.rng.gen_range(1..6));
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return Ok(());
        };
        let progress = match crash_after_polls {
            None => block_on(replica.advance()),
            Some(polls) => match poll_at_most(replica.advance(), polls) {
                Some(result) => result,
                None => {
                    self.outcome.crashes_mid_advance += 1;
                    self.crash(i);
                    return Ok(());
                }
            },
        };
        let progress = progress.map_err(|e| Violation::ReplicaFailed {
            replica: i,
            error: e.to_string(),
        })?;
        self.deliver_progress(i, progress)
    }

    fn deliver_progress(&mut self, i: usize, progress: Progress) -> Result<(), Violation> {
        for message in progress.messages {
            let to = (message.to - 1) as usize;
            self.net.send(&mut self.rng, self.now, i, to, message);
        }
        if let Some(snapshot) = progress.snapshot {
            self.outcome.snapshots_installed += 1;
            self.nodes[i].machine = S::restore(&snapshot.data);
        }
        for entry in progress.committed {
            let now = (entry.term, entry.data.to_vec());
            match self.applied_first.get(&entry.index) {
                Some(first) if *first != now => {
                    return Err(Violation::Disagreement {
                        index: entry.index,
                        replica: i,
                        first: first.clone(),
                        now,
                    })
                }
                Some(_) => {}
                None => {
                    let _ = self.applied_first.insert(entry.index, now);
                }
            }
            self.outcome.committed_index_max = self.outcome.committed_index_max.max(entry.index);
            assert!(entry.data.len() >= 8, "every proposal carries its id");
            let mut id = [0u8; 8];
            id.copy_from_slice(&entry.data[..8]);
            let id = u64::from_be_bytes(id);
            let node = &mut self.nodes[i];
            node.machine.apply(entry.index, &entry.data[8..]);
            if node.proposed.remove(&id) {
                let _ = self.acknowledged.insert(id, entry.index);
                self.outcome.acknowledged += 1;
            }
        }
        self.maybe_compact(i)
    }

    fn maybe_compact(&mut self, i: usize) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        let Some(replica) = node.replica.as_mut() else {
            return Ok(());
        };
        let applied = replica.applied_index();
        let snapshot_index = replica.snapshot_index();
        if applied < snapshot_index + self.options.compact_every_entries {
            return Ok(());
        }
        self.outcome.compactions += 1;
        let data = node.machine.snapshot();
        block_on(replica.compact(applied, data)).map_err(|e| Violation::ReplicaFailed {
            replica: i,
            error: format!("compact: {e}"),
        })
    }

    fn track_leader(&mut self) {
        let leader = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.status())
            .filter(|s| s.is_leader)
            .max_by_key(|s| s.term)
            .map_or(0, |s| s.id);
        if leader != 0 && leader != self.last_leader {
            self.outcome.leader_changes += 1;
            self.last_leader = leader;
        }
    }

    fn converged(&self) -> bool {
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| (r.status(), r.applied_index()))
            .collect();
        if statuses.len() != self.nodes.len() {
            return false;
        }
        let Some((leader, _)) = statuses.iter().find(|(s, _)| s.is_leader) else {
            return false;
        };
        let digest = self.nodes[0].machine.digest();
        leader.commit >= self.outcome.committed_index_max
            && statuses
                .iter()
                .all(|(s, applied)| *applied == leader.commit && s.leader == leader.id)
            && self.nodes.iter().all(|n| n.machine.digest() == digest)
    }

    fn check_acknowledged(&self) -> Result<(), Violation> {
        let applied = self.nodes[0]
            .replica
            .as_ref()
            .map_or(0, |r| r.applied_index());
        for (&proposal, &index) in &self.acknowledged {
            let present = self
                .applied_first
                .get(&index)
                .is_some_and(|(_, data)| data.get(..8) == Some(&proposal.to_be_bytes()[..]));
            if !present || index > applied {
                return Err(Violation::AcknowledgedLost { proposal, index });
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match n.replica.as_ref() {
                Some(r) => format!(
                    "{i}: {:?} applied {} digest {:x}",
                    r.status(),
                    r.applied_index(),
                    n.machine.digest()
                ),
                None => format!("{i}: down"),
            })
            .collect();
        format!(
            "tick {}, committed max {}, in flight {}; {}",
            self.now,
            self.outcome.committed_index_max,
            self.net.in_flight(),
            nodes.join("; ")
        )
    }
}

/// Runs a future of the simulated disk to completion. Its operations only yield (they wake
/// themselves at once), so polling in a loop is a complete executor.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Polls a future at most `polls` times; `None` if it did not finish (it is then dropped, as
/// a process dies in the middle of its work).
fn poll_at_most<F: Future>(future: F, polls: u32) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
    }
    None
}
