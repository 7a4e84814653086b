//! A Raft group of N replicas (`shoal_consensus::Replica`), each on its own simulated disk,
//! over a simulated network, driven tick by tick from one seed, with the faults of
//! `FaultOptions`: message loss, duplication, delay and reordering, partitions (both ways and
//! one way), process crashes and power cuts (also in the middle of a replica's write), and
//! restarts. A generic state machine applies what commits.
//!
//! A group may also have learners (`FaultOptions::learners`), as the server runs the
//! controller group: the voters are the seed nodes, every other broker opens as a learner
//! (its own id in `initial_learners`) and applies the metadata log without a vote. A learner
//! may open late (`learners_start_by`), so it catches up through a long log or a snapshot;
//! whichever replica leads adds every learner that has opened (`propose_add_learner`,
//! retried until its `learners()` names it), and every replica compacts at once when it
//! applies a configuration change, as the server does. Learners take every fault voters do.
//!
//! What it checks, each run:
//! - **agreement**: no two replicas ever apply different entries at the same index (the first
//!   entry applied at an index anywhere is remembered for the whole run, so a replica that lost
//!   a committed entry and later commits another one there is caught);
//! - **no acknowledged proposal lost**: a proposal is acknowledged when the replica that
//!   proposed it applies it (that is when the server answers the client); after the faults
//!   stop and every replica is back, every acknowledged proposal is applied on every replica;
//! - **convergence**: once the faults stop, a leader is elected and all replicas (learners
//!   too) reach the same applied index, the same state-machine digest and the same digest of
//!   the applied log (kept by the simulator itself, carried through snapshots), and every
//!   replica's configuration names every learner, within a bounded number of ticks;
//! - **learners stay learners**: after every tick, no learner leads, and no learner ever sends
//!   a vote request or grants a vote; no replica's voters change and no replica names a
//!   learner that is not one;
//! - **the configuration follows the applied index**: learners are only added, so a replica
//!   that has applied as far as the point where any replica named a learner names it too,
//!   after every tick (a restart that recovers an older configuration than its snapshot's is
//!   caught at once).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_consensus::{Message, MessageType, Progress, Replica, ReplicaOptions};
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
    /// Chance per compaction while the faults run, in per mille, that the replica crashes in
    /// the middle of it (between the writes and renames of the snapshot and the new log).
    pub crash_mid_compact_per_mille: u32,
    /// Chance per tick, in per mille, that every replica loses power at once (a site-wide
    /// outage): only what each one synced survives.
    pub power_loss_all_per_mille: u32,
    /// The disks acknowledge syncs without doing them (a lying drive cache). Only for showing
    /// that the checks catch the loss that follows.
    pub disks_ignore_syncs: bool,
    /// A replica compacts its log into a snapshot after this many applied entries.
    pub compact_every_entries: u64,
    /// Learners after the voters: replicas `replicas..replicas + learners` open with the
    /// voters as `initial_voters` and their own id as `initial_learners`.
    pub learners: usize,
    /// Each learner first opens at a tick drawn from `0..=learners_start_by` (0: at once).
    /// One that opens while the faults run is started at the latest when they stop.
    pub learners_start_by: u64,
    /// The leader adds every learner that has opened. Off only to show that a learner nobody
    /// added never converges.
    pub add_learners: bool,
    /// A replica compacts at once when it applies a configuration change (what the server
    /// does, so the leader's next snapshot names the new learner). Off only to show what
    /// happens without it.
    pub compact_on_conf_change: bool,
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
            crash_mid_compact_per_mille: 0,
            power_loss_all_per_mille: 1,
            disks_ignore_syncs: false,
            compact_every_entries: 50,
            learners: 0,
            learners_start_by: 0,
            add_learners: true,
            compact_on_conf_change: true,
        }
    }

    /// `hostile` with three voters and two learners, which open at random times during the
    /// faults (so most must catch up from far behind).
    pub fn hostile_with_learners() -> FaultOptions {
        FaultOptions {
            learners: 2,
            learners_start_by: 1200,
            crash_mid_compact_per_mille: 200,
            ..FaultOptions::hostile()
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
    /// `replica` (a voter or a learner) had not applied acknowledged `proposal` (at `index`)
    /// when the group converged, or another entry was applied there.
    AcknowledgedLost {
        proposal: u64,
        index: u64,
        replica: usize,
    },
    NoConvergence {
        detail: String,
    },
    /// A learner became leader.
    LearnerLeads {
        replica: usize,
        term: u64,
    },
    /// A learner campaigned (sent a vote or pre-vote request) or granted a vote.
    LearnerVoted {
        replica: usize,
        message: String,
    },
    /// A replica's configuration went wrong: its voters changed, a learner is not a learner
    /// in its own configuration, or it names a learner that is not one.
    MembershipWrong {
        replica: usize,
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
    pub crashes_mid_compact: u64,
    pub partitions: u64,
    pub power_losses_all: u64,
    pub leader_changes: u64,
    pub snapshots_installed: u64,
    pub compactions: u64,
    pub messages_dropped: u64,
    /// `propose_add_learner` calls (retries included).
    pub learner_adds_proposed: u64,
    /// Configuration changes applied, over all replicas (each compacts then).
    pub conf_changes_applied: u64,
    /// Crashes (and power cuts) of learners, snapshots learners installed, and entries they
    /// applied one by one.
    pub learner_crashes: u64,
    pub learner_snapshots_installed: u64,
    pub learner_entries_applied: u64,
    /// The most entries a learner applied in one `advance` (a catch-up through the log).
    pub learner_catch_up_max: u64,
    /// The latest tick a learner first opened at.
    pub learner_last_start: u64,
}

impl Outcome {
    /// Adds `other` to this total (the maxima and latest ticks are kept as maxima).
    pub fn add(&mut self, other: &Outcome) {
        self.proposals += other.proposals;
        self.acknowledged += other.acknowledged;
        self.committed_index_max = self.committed_index_max.max(other.committed_index_max);
        self.crashes += other.crashes;
        self.crashes_mid_advance += other.crashes_mid_advance;
        self.crashes_mid_compact += other.crashes_mid_compact;
        self.partitions += other.partitions;
        self.power_losses_all += other.power_losses_all;
        self.leader_changes += other.leader_changes;
        self.snapshots_installed += other.snapshots_installed;
        self.compactions += other.compactions;
        self.messages_dropped += other.messages_dropped;
        self.learner_adds_proposed += other.learner_adds_proposed;
        self.conf_changes_applied += other.conf_changes_applied;
        self.learner_crashes += other.learner_crashes;
        self.learner_snapshots_installed += other.learner_snapshots_installed;
        self.learner_entries_applied += other.learner_entries_applied;
        self.learner_catch_up_max = self.learner_catch_up_max.max(other.learner_catch_up_max);
        self.learner_last_start = self.learner_last_start.max(other.learner_last_start);
    }
}

struct Node<S> {
    disk: Rc<SimDisk>,
    replica: Option<Replica<SimDisk>>,
    machine: S,
    /// When the replica opens next (the first time too: learners may open late).
    restart_at: u64,
    /// Whether it ever opened (a learner that has not is no member yet, and is not added).
    started: bool,
    /// Proposal ids this replica proposed and has not yet applied.
    proposed: BTreeSet<u64>,
    /// Digest of every entry this replica applied, in order (its index, term and data),
    /// independent of the state machine; carried in front of the machine's bytes in every
    /// snapshot, so a replica that restored one continues the same digest.
    log_digest: u64,
}

struct Sim<S> {
    options: FaultOptions,
    rng: StdRng,
    net: SimNet<Message>,
    nodes: Vec<Node<S>>,
    now: u64,
    /// Whether the faults still run (the tick being stepped).
    faults: bool,
    heal_at: Option<u64>,
    /// First entry applied at each index, anywhere: (term, data).
    applied_first: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Per learner id, the lowest applied index at which a replica (other than the learner
    /// itself, which names itself from its first open) named it: (index, replica).
    learner_named_at: BTreeMap<u64, (u64, usize)>,
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
    let replicas = options.replicas + options.learners;
    let mut sim = Sim::<S> {
        options,
        rng: StdRng::seed_from_u64(seed),
        net: SimNet::new(options.net),
        nodes: Vec::new(),
        now: 0,
        faults: true,
        heal_at: None,
        applied_first: BTreeMap::new(),
        learner_named_at: BTreeMap::new(),
        acknowledged: BTreeMap::new(),
        next_proposal: 1,
        last_leader: 0,
        outcome: Outcome::default(),
    };
    for i in 0..replicas {
        let disk = SimDisk::new();
        disk.ignore_syncs(options.disks_ignore_syncs);
        let restart_at = if i < options.replicas {
            0
        } else {
            sim.rng.gen_range(0..=options.learners_start_by)
        };
        sim.nodes.push(Node {
            disk: Rc::new(disk),
            replica: None,
            machine: S::default(),
            restart_at,
            started: false,
            proposed: BTreeSet::new(),
            log_digest: 0,
        });
    }
    for i in 0..replicas {
        if sim.nodes[i].restart_at == 0 {
            sim.start(i)?;
        }
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
    for i in 0..replicas {
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

    fn voters(&self) -> Vec<u64> {
        (0..self.options.replicas).map(Self::raft_id).collect()
    }

    fn learners(&self) -> Vec<u64> {
        (self.options.replicas..self.nodes.len())
            .map(Self::raft_id)
            .collect()
    }

    fn is_learner(&self, i: usize) -> bool {
        i >= self.options.replicas
    }

    fn start(&mut self, i: usize) -> Result<(), Violation> {
        let mut options = ReplicaOptions::new(0, Self::raft_id(i), self.voters());
        if self.is_learner(i) {
            options.initial_learners = vec![Self::raft_id(i)];
            if !self.nodes[i].started {
                self.outcome.learner_last_start = self.now;
            }
        }
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
        (node.log_digest, node.machine) = if snapshot.get_metadata().index == 0 {
            (0, S::default())
        } else {
            restore_snapshot(&snapshot.data)
        };
        node.replica = Some(replica);
        node.started = true;
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        self.outcome.crashes += 1;
        if self.is_learner(i) {
            self.outcome.learner_crashes += 1;
        }
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
                // Every one of them comes back at about the same time (a learner that has
                // not opened yet keeps its time).
                let at = now + self.rng.gen_range(5..20);
                if self.nodes[i].started {
                    self.nodes[i].restart_at = at;
                }
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

    /// A client's proposal reaches a random voter (a learner never leads), which proposes it
    /// if it leads.
    fn propose(&mut self, make: &mut impl FnMut(&mut StdRng, &S) -> Option<Vec<u8>>) {
        let i = self.rng.gen_range(0..self.options.replicas);
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
        self.faults = faults;
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
        self.check_membership()?;
        self.add_learners();
        Ok(())
    }

    /// Every few ticks, whatever replica leads proposes adding each learner that has opened
    /// and that its configuration does not name yet, one at a time (raft-rs takes one change
    /// at a time, and turns one proposed while another is pending into an empty entry).
    fn add_learners(&mut self) {
        if !self.options.add_learners || self.options.learners == 0 || !self.now.is_multiple_of(4) {
            return;
        }
        let opened: Vec<u64> = (self.options.replicas..self.nodes.len())
            .filter(|&i| self.nodes[i].started)
            .map(Self::raft_id)
            .collect();
        for i in 0..self.options.replicas {
            let Some(replica) = self.nodes[i].replica.as_mut() else {
                continue;
            };
            if !replica.status().is_leader {
                continue;
            }
            let present = replica.learners();
            let missing = opened.iter().copied().find(|id| !present.contains(id));
            if let Some(id) = missing {
                self.outcome.learner_adds_proposed += 1;
                if let Err(error) = replica.propose_add_learner(id) {
                    tracing::debug!(leader = i, learner = id, %error, "add learner refused");
                }
            }
        }
    }

    /// After every tick: no learner leads; each replica's configuration has the initial
    /// voters, and only learners as learners; a learner is one in its own configuration; and
    /// a replica's configuration is the one its applied index implies: learners are only ever
    /// added, so one that has applied as far as the point where some replica named a learner
    /// names it too (after a restart as well, whatever its disk kept).
    fn check_membership(&mut self) -> Result<(), Violation> {
        let voters = self.voters();
        let learners = self.learners();
        let mut confs = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(replica) = node.replica.as_ref() else {
                continue;
            };
            let status = replica.status();
            if self.is_learner(i) && status.is_leader {
                return Err(Violation::LearnerLeads {
                    replica: i,
                    term: status.term,
                });
            }
            let mut now = replica.voters();
            now.sort_unstable();
            let named = replica.learners();
            let wrong = if now != voters {
                Some(format!("voters {now:?}, not {voters:?}"))
            } else if let Some(id) = named.iter().find(|id| !learners.contains(id)) {
                Some(format!("names {id} a learner, among {named:?}"))
            } else if replica.is_learner() != self.is_learner(i) {
                Some(format!(
                    "is_learner {} (voters {now:?}, learners {named:?})",
                    replica.is_learner()
                ))
            } else {
                None
            };
            if let Some(detail) = wrong {
                return Err(Violation::MembershipWrong { replica: i, detail });
            }
            confs.push((i, replica.applied_index(), named));
        }
        for (i, applied, named) in &confs {
            for &id in named.iter().filter(|&&id| id != Self::raft_id(*i)) {
                let at = self.learner_named_at.entry(id).or_insert((*applied, *i));
                if *applied < at.0 {
                    *at = (*applied, *i);
                }
            }
        }
        for (i, applied, named) in &confs {
            for (&id, &(at, by)) in &self.learner_named_at {
                if id != Self::raft_id(*i) && *applied >= at && !named.contains(&id) {
                    return Err(Violation::MembershipWrong {
                        replica: *i,
                        detail: format!(
                            "applied {applied} (snapshot {}) but its learners {named:?} lack \
                             {id}, which replica {by} named at applied {at}",
                            self.nodes[*i]
                                .replica
                                .as_ref()
                                .map_or(0, |r| r.snapshot_index())
                        ),
                    });
                }
            }
        }
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
        if self.is_learner(i) {
            check_learner_messages(i, &progress.messages)?;
        }
        for message in progress.messages {
            let to = (message.to - 1) as usize;
            self.net.send(&mut self.rng, self.now, i, to, message);
        }
        if let Some(snapshot) = progress.snapshot {
            self.outcome.snapshots_installed += 1;
            if self.is_learner(i) {
                self.outcome.learner_snapshots_installed += 1;
            }
            let node = &mut self.nodes[i];
            (node.log_digest, node.machine) = restore_snapshot(&snapshot.data);
        }
        if self.is_learner(i) {
            let applied = progress.committed.len() as u64;
            self.outcome.learner_entries_applied += applied;
            self.outcome.learner_catch_up_max = self.outcome.learner_catch_up_max.max(applied);
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
            node.log_digest = log_digest(node.log_digest, entry.index, entry.term, &entry.data);
            node.machine.apply(entry.index, &entry.data[8..]);
            if node.proposed.remove(&id) {
                let _ = self.acknowledged.insert(id, entry.index);
                self.outcome.acknowledged += 1;
            }
        }
        if progress.conf_changed {
            self.outcome.conf_changes_applied += 1;
        }
        let now = progress.conf_changed && self.options.compact_on_conf_change;
        self.maybe_compact(i, now)
    }

    /// Compacts every `compact_every_entries` applied entries, or at once if `now` (a
    /// configuration change was just applied).
    fn maybe_compact(&mut self, i: usize, now: bool) -> Result<(), Violation> {
        let Some(replica) = self.nodes[i].replica.as_ref() else {
            return Ok(());
        };
        let applied = replica.applied_index();
        let snapshot_index = replica.snapshot_index();
        let due = applied >= snapshot_index.saturating_add(self.options.compact_every_entries);
        if applied <= snapshot_index || !(due || now) {
            return Ok(());
        }
        let per_mille = self.options.crash_mid_compact_per_mille;
        let crash_after_polls =
            (self.faults && per_mille > 0 && self.rng.gen_range(0..1000) < per_mille)
                .then(|| self.rng.gen_range(1..40));
        self.outcome.compactions += 1;
        let node = &mut self.nodes[i];
        let mut data = node.log_digest.to_be_bytes().to_vec();
        data.extend_from_slice(&node.machine.snapshot());
        let Some(replica) = node.replica.as_mut() else {
            return Ok(());
        };
        let compacted = match crash_after_polls {
            None => block_on(replica.compact(applied, data)),
            Some(polls) => match poll_at_most(replica.compact(applied, data), polls) {
                Some(result) => result,
                None => {
                    self.outcome.crashes_mid_compact += 1;
                    self.crash(i);
                    return Ok(());
                }
            },
        };
        compacted.map_err(|e| Violation::ReplicaFailed {
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
        let log_digest = self.nodes[0].log_digest;
        let learners = self.learners();
        leader.commit >= self.outcome.committed_index_max
            && statuses
                .iter()
                .all(|(s, applied)| *applied == leader.commit && s.leader == leader.id)
            && self
                .nodes
                .iter()
                .all(|n| n.machine.digest() == digest && n.log_digest == log_digest)
            && self
                .nodes
                .iter()
                .filter_map(|n| n.replica.as_ref())
                .all(|r| {
                    let named = r.learners();
                    learners.iter().all(|id| named.contains(id))
                })
    }

    /// Every acknowledged proposal is applied on every replica, learners included: each has
    /// applied up to its index, and the entry there (anywhere) is that proposal.
    fn check_acknowledged(&self) -> Result<(), Violation> {
        for (&proposal, &index) in &self.acknowledged {
            let present = self
                .applied_first
                .get(&index)
                .is_some_and(|(_, data)| data.get(..8) == Some(&proposal.to_be_bytes()[..]));
            for (replica, node) in self.nodes.iter().enumerate() {
                let applied = node.replica.as_ref().map_or(0, |r| r.applied_index());
                if !present || index > applied {
                    return Err(Violation::AcknowledgedLost {
                        proposal,
                        index,
                        replica,
                    });
                }
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
                    "{i}{}: {:?} applied {} snapshot {} digest {:x} log {:x} learners {:?}",
                    if self.is_learner(i) { " (learner)" } else { "" },
                    r.status(),
                    r.applied_index(),
                    r.snapshot_index(),
                    n.machine.digest(),
                    n.log_digest,
                    r.learners()
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

/// A learner never asks for votes (pre-votes included) and never grants one.
fn check_learner_messages(replica: usize, messages: &[Message]) -> Result<(), Violation> {
    for message in messages {
        let voted = match message.get_msg_type() {
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse => {
                !message.reject
            }
            _ => false,
        };
        if voted {
            return Err(Violation::LearnerVoted {
                replica,
                message: format!(
                    "{:?} to {} term {} reject {}",
                    message.get_msg_type(),
                    message.to,
                    message.term,
                    message.reject
                ),
            });
        }
    }
    Ok(())
}

/// Folds one applied entry into a replica's log digest.
fn log_digest(digest: u64, index: u64, term: u64, data: &[u8]) -> u64 {
    let mut h = (digest ^ index).wrapping_mul(0x0100_0000_01b3);
    h = (h ^ term).wrapping_mul(0x0100_0000_01b3);
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Splits a snapshot the simulator took: its log digest, then the machine's bytes.
fn restore_snapshot<S: StateMachine>(data: &[u8]) -> (u64, S) {
    assert!(data.len() >= 8, "a snapshot starts with the log digest");
    let mut digest = [0u8; 8];
    digest.copy_from_slice(&data[..8]);
    (u64::from_be_bytes(digest), S::restore(&data[8..]))
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
