//! One replica of one Raft group: a raft-rs `RawNode` over the group's durable log.
//!
//! Owned by one task on one core (the group's owner); nothing here is shared or `Send`. The
//! owner's loop, for each group:
//! 1. feeds it time (`tick`, one call per tick interval) and messages from peers (`step`), and
//!    proposals (`propose`, on the leader);
//! 2. calls `advance`, which drains raft-rs's `Ready`: messages raft may send at once, entries
//!    and hard state written to the log in **one synced write**, then messages that must wait
//!    for that write (votes, append acknowledgements), then committed entries to apply;
//! 3. sends `Progress::messages` to their nodes, applies `Progress::committed` (after installing
//!    `Progress::snapshot`, if any) to its state machine, in order;
//! 4. now and then calls `compact` with a snapshot of its state machine, so the log stays short.
//!
//! Durability: an entry is acknowledged to the leader only after this replica's write of it is
//! synced, and the hard state (term, vote) is synced before any vote leaves. So an entry that
//! `advance` reports committed is on the disks of a majority.

use std::path::Path;
use std::rc::Rc;

use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_io::Disk;

use crate::error::{Error, Result};
use crate::store::{Mem, Store};
use crate::wal::{Records, Wal};
use protobuf::Message as _;

/// How a replica is set up. Raft ids are never 0 (raft-rs reserves it for "none").
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// The group (0 is the controller).
    pub group: u64,
    /// This replica's Raft id.
    pub id: u64,
    /// The voters of the group when it is created. Used only when the log is empty (first
    /// start); afterwards the persisted configuration is authoritative.
    pub initial_voters: Vec<u64>,
    /// Replicas that follow the group without a vote (raft-rs learners) when it is created;
    /// this replica may be one of them. Used only when the log is empty, as `initial_voters`.
    /// A learner applies the same committed log and never campaigns; the leader counts it in
    /// no quorum, so it joins (`propose_add_learner`) without a membership vote of its own.
    pub initial_learners: Vec<u64>,
    /// Ticks without hearing from a leader before a follower campaigns. raft-rs draws the
    /// actual timeout from `election_ticks_min..election_ticks_max`.
    pub election_ticks_min: usize,
    pub election_ticks_max: usize,
    /// Seeds this replica's draw of election timeouts (see `Replica::redraw_election_timeout`).
    pub election_seed: u64,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Most bytes of entries in one append message (bounds catch-up traffic per message).
    pub append_bytes_max: u64,
    /// Most append messages in flight to one follower.
    pub inflight_appends_max: usize,
}

impl ReplicaOptions {
    /// Defaults for a group with `id` among `voters`: election after 10-20 ticks, heartbeat
    /// every 2, pre-vote and check-quorum on (always, see `raft_config`).
    pub fn new(group: u64, id: u64, voters: Vec<u64>) -> ReplicaOptions {
        ReplicaOptions {
            group,
            id,
            initial_voters: voters,
            initial_learners: Vec::new(),
            election_ticks_min: 10,
            election_ticks_max: 20,
            election_seed: id,
            heartbeat_ticks: 2,
            append_bytes_max: 1024 * 1024,
            inflight_appends_max: 256,
        }
    }
}

/// What one `advance` produced.
#[derive(Default, Debug)]
pub struct Progress {
    /// Messages to send to other replicas (each names its `to`).
    pub messages: Vec<Message>,
    /// A snapshot received from the leader, already made durable: the state machine must
    /// restore from its data before applying `committed`.
    pub snapshot: Option<Snapshot>,
    /// Newly committed entries with data, in log order, to apply to the state machine.
    pub committed: Vec<Committed>,
    /// The index of the last committed entry handed out (entries without data included).
    pub applied_index: u64,
    /// A configuration change (a learner added) was applied: the owner should `compact` now,
    /// so that any snapshot the leader sends later names the new member (raft-rs refuses a
    /// snapshot whose configuration does not contain the receiver).
    pub conf_changed: bool,
}

/// One committed entry: its position and the proposal's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub data: bytes::Bytes,
}

/// Who leads, as this replica knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub term: u64,
    /// 0 while no leader is known.
    pub leader: u64,
    pub is_leader: bool,
    pub commit: u64,
}

pub struct Replica<D: Disk> {
    options: ReplicaOptions,
    raw: RawNode<Store>,
    store: Store,
    wal: Wal<D>,
    applied_index: u64,
    /// Snapshots sent to followers: (follower, ticks left before it counts as lost).
    snapshots_sent: Vec<(u64, usize)>,
    election_rng: StdRng,
    /// Role and term when the election timeout was last drawn.
    drawn_for: (StateRole, u64),
}

impl<D: Disk> Replica<D> {
    /// Opens (recovers) the replica's log in `dir`, creating it on first start.
    pub async fn open(disk: Rc<D>, dir: &Path, options: ReplicaOptions) -> Result<Replica<D>> {
        assert!(options.id != 0, "raft ids start at 1");
        let (mut wal, recovered) = Wal::open(disk, dir).await?;
        let fresh = recovered.conf_state.is_none()
            && recovered.entries.is_empty()
            && recovered.snapshot.get_metadata().index == 0;
        // Raft resumes applying at the snapshot's index, so the configuration is the one the
        // snapshot names. The log's conf-state record can be older: a crash between the two
        // renames of `Wal::rewrite` leaves the new snapshot with the old log, whose record
        // predates the conf changes the snapshot covers (and replay skips those entries).
        let snapshot_conf = recovered.snapshot.get_metadata().get_conf_state().clone();
        let conf_state = if recovered.snapshot.get_metadata().index > 0 {
            snapshot_conf
        } else {
            recovered.conf_state.unwrap_or(snapshot_conf)
        };
        let mut mem = Mem {
            hard_state: recovered.hard_state,
            conf_state,
            snapshot: recovered.snapshot,
            entries: recovered.entries,
        };
        if fresh {
            let member = options.initial_voters.contains(&options.id)
                || options.initial_learners.contains(&options.id);
            if !member {
                return Err(Error::Invalid(format!(
                    "replica {} is not among the initial voters {:?} or learners {:?}",
                    options.id, options.initial_voters, options.initial_learners
                )));
            }
            let learners: Vec<u64> = options
                .initial_learners
                .iter()
                .copied()
                .filter(|id| !options.initial_voters.contains(id))
                .collect();
            mem.conf_state = ConfState::from((options.initial_voters.clone(), learners));
            wal.append(&Records {
                conf_state: Some(&mem.conf_state),
                ..Records::default()
            })
            .await?;
        }
        let applied_index = mem.snapshot.get_metadata().index;
        let store = Store(Rc::new(std::cell::RefCell::new(mem)));
        let config = raft_config(&options, applied_index);
        let logger = crate::logger::logger(options.group);
        let raw = RawNode::new(&config, store.clone(), &logger)?;
        let seed = options.election_seed;
        Ok(Replica {
            options,
            raw,
            store,
            wal,
            applied_index,
            snapshots_sent: Vec::new(),
            election_rng: StdRng::seed_from_u64(seed),
            drawn_for: (StateRole::Follower, u64::MAX),
        }
        .with_drawn_timeout())
    }

    /// Advances the logical clock by one tick. Returns whether `advance` has work.
    pub fn tick(&mut self) -> bool {
        self.expire_snapshots();
        let ready = self.raw.tick();
        self.redraw_election_timeout();
        ready
    }

    fn with_drawn_timeout(mut self) -> Replica<D> {
        self.redraw_election_timeout();
        self
    }

    /// raft-rs draws each election timeout from `rand::thread_rng()`, which a simulation
    /// cannot seed. Whenever raft has just reset its timer (a new role or term), this replaces
    /// the draw with one from the replica's own seeded generator: the same spread of timeouts
    /// (what breaks split votes), reproducible from the seed.
    fn redraw_election_timeout(&mut self) {
        let now = (self.raw.raft.state, self.raw.raft.term);
        if now == self.drawn_for {
            return;
        }
        self.drawn_for = now;
        let (min, max) = (
            self.options.election_ticks_min,
            self.options.election_ticks_max,
        );
        let timeout = self.election_rng.gen_range(min..max);
        self.raw.raft.set_randomized_election_timeout(timeout);
    }

    /// raft-rs keeps a follower that was sent a snapshot waiting until the application reports
    /// the send's outcome. A transport cannot know whether a message arrived, so a snapshot
    /// the follower has not confirmed within two election timeouts counts as lost, and the
    /// leader sends a fresh one.
    fn expire_snapshots(&mut self) {
        let mut lost = Vec::new();
        self.snapshots_sent.retain_mut(|(to, ticks_left)| {
            *ticks_left = ticks_left.saturating_sub(1);
            if *ticks_left == 0 {
                lost.push(*to);
            }
            *ticks_left > 0
        });
        for to in lost {
            let waiting = self
                .raw
                .raft
                .prs()
                .get(to)
                .is_some_and(|p| p.state == raft::ProgressState::Snapshot);
            if waiting {
                self.raw.report_snapshot(to, raft::SnapshotStatus::Failure);
            }
        }
    }

    fn note_snapshots_sent(&mut self, messages: &[Message]) {
        let timeout = 2 * self.options.election_ticks_max;
        for message in messages {
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                self.snapshots_sent.retain(|(to, _)| *to != message.to);
                self.snapshots_sent.push((message.to, timeout));
            }
        }
    }

    /// Hands a message from a peer to raft. A message for another group or from a replica
    /// that is not a member is refused with an error (log it, drop it).
    pub fn step(&mut self, mut message: Message) -> Result<()> {
        let last_index = self.raw.raft.raft_log.last_index();
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat
            && message.commit > last_index
        {
            // The leader believes this replica holds entries it does not: its log was lost
            // (a data dir wiped) and it came back with the same id. raft-rs would abort on
            // this heartbeat. A learner counts in no quorum: it takes the commit as a hint
            // up to what it has, and its owner has the leader re-add it, which starts its
            // progress over. A voter that lost acknowledged entries must not take part.
            if !self.is_learner() {
                return Err(Error::LogLost {
                    leader_believes: message.commit,
                    last_index,
                });
            }
            message.commit = last_index;
        }
        let stepped = self.raw.step(message);
        self.redraw_election_timeout();
        Ok(stepped?)
    }

    /// Proposes `data` (leader only: elsewhere `raft::Error::ProposalDropped`). The entry is
    /// committed once `advance` returns it in `committed`; it may also be lost if leadership
    /// changes first (the proposer learns that by never seeing it, and times out).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        Ok(self.raw.propose(vec![], data)?)
    }

    /// Proposes removing the learner `id` (leader only; one configuration change at a time,
    /// as `propose_add_learner`). Removing and adding a learner again starts its progress
    /// over: the way back for one that lost its log.
    pub fn propose_remove_learner(&mut self, id: u64) -> Result<()> {
        if !self.learners().contains(&id) {
            return Err(Error::Invalid(format!(
                "{id} is not a learner of the group"
            )));
        }
        self.propose_conf_change(raft::eraftpb::ConfChangeType::RemoveNode, id)
    }

    /// Proposes adding `id` as a learner (leader only). raft-rs takes one configuration change
    /// at a time: while one is pending this one is dropped (an error), so the owner retries
    /// until `learners` names `id`. Adding a present member again changes nothing.
    pub fn propose_add_learner(&mut self, id: u64) -> Result<()> {
        self.propose_conf_change(raft::eraftpb::ConfChangeType::AddLearnerNode, id)
    }

    fn propose_conf_change(
        &mut self,
        change_type: raft::eraftpb::ConfChangeType,
        id: u64,
    ) -> Result<()> {
        let mut change = ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = id;
        Ok(self.raw.propose_conf_change(vec![], change)?)
    }

    /// Starts an election now (tests and leadership transfer).
    pub fn campaign(&mut self) -> Result<()> {
        let campaigned = self.raw.campaign();
        self.redraw_election_timeout();
        Ok(campaigned?)
    }

    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        Status {
            id: self.options.id,
            term: raft.term,
            leader: raft.leader_id,
            is_leader: raft.state == StateRole::Leader,
            commit: raft.raft_log.committed,
        }
    }

    /// The voters of the group's current configuration.
    pub fn voters(&self) -> Vec<u64> {
        self.store.0.borrow().conf_state.voters.clone()
    }

    /// The learners of the group's current configuration (as applied here).
    pub fn learners(&self) -> Vec<u64> {
        self.store.0.borrow().conf_state.learners.clone()
    }

    /// Whether this replica is a learner (never campaigns, counts in no quorum).
    pub fn is_learner(&self) -> bool {
        let conf = &self.store.0.borrow().conf_state;
        conf.learners.contains(&self.options.id) && !conf.voters.contains(&self.options.id)
    }

    /// Tells raft a peer could not be reached (it then probes instead of streaming).
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Bytes in the log file: compact when this grows past the owner's budget.
    pub fn log_bytes(&self) -> u64 {
        self.wal.bytes()
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The index the latest snapshot covers (0: none taken), without copying its data.
    pub fn snapshot_index(&self) -> u64 {
        self.store.0.borrow().snapshot.get_metadata().index
    }

    /// The latest snapshot (index 0 and no data if none was taken): after `open`, the owner
    /// restores its state machine from it, then applies what `advance` commits.
    pub fn snapshot(&self) -> Snapshot {
        self.store.0.borrow().snapshot.clone()
    }

    /// Drains raft's `Ready`: see the module comment for the order. Returns once this
    /// replica's share of the durable work is synced. An `Err` is fatal for the replica: the
    /// owner drops it and reopens it from disk.
    pub async fn advance(&mut self) -> Result<Progress> {
        let mut progress = Progress::default();
        if !self.raw.has_ready() {
            progress.applied_index = self.applied_index;
            return Ok(progress);
        }
        let mut ready = self.raw.ready();
        progress.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(&snapshot).await?;
            self.applied_index = snapshot.get_metadata().index;
            progress.snapshot = Some(snapshot);
        }
        self.collect_committed(ready.take_committed_entries(), &mut progress)?;
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        if !entries.is_empty() || hard_state.is_some() {
            {
                let mut mem = self.store.0.borrow_mut();
                mem.append(&entries);
                if let Some(hs) = &hard_state {
                    mem.hard_state = hs.clone();
                }
            }
            self.wal
                .append(&Records {
                    hard_state: hard_state.as_ref(),
                    conf_state: None,
                    entries: &entries,
                })
                .await?;
        }
        progress.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not written now: a restart re-learns the commit index from the leader, and
            // the next write carries it anyway.
            self.store.0.borrow_mut().hard_state.commit = commit;
        }
        progress.messages.extend(light.take_messages());
        self.collect_committed(light.take_committed_entries(), &mut progress)?;
        self.raw.advance_apply_to(self.applied_index);
        progress.applied_index = self.applied_index;
        self.note_snapshots_sent(&progress.messages);
        Ok(progress)
    }

    /// Replaces the log up to `applied_index` with a snapshot whose state-machine bytes are
    /// `data` (the state after applying every entry up to `applied_index`). Returns once the
    /// snapshot and the shortened log are synced.
    pub async fn compact(&mut self, applied_index: u64, data: Vec<u8>) -> Result<()> {
        if applied_index > self.applied_index {
            return Err(Error::Invalid(format!(
                "compact to {applied_index} beyond the applied index {}",
                self.applied_index
            )));
        }
        let (snapshot, hard_state, conf_state, rest) = {
            let mem = self.store.0.borrow();
            if applied_index <= mem.snapshot.get_metadata().index {
                return Ok(());
            }
            let mut snapshot = Snapshot::default();
            snapshot.set_data(data.into());
            let meta = snapshot.mut_metadata();
            meta.index = applied_index;
            meta.term = mem.term(applied_index)?;
            meta.set_conf_state(mem.conf_state.clone());
            let rest: Vec<Entry> = mem
                .entries
                .iter()
                .filter(|e| e.index > applied_index)
                .cloned()
                .collect();
            (
                snapshot,
                mem.hard_state.clone(),
                mem.conf_state.clone(),
                rest,
            )
        };
        self.wal
            .rewrite(
                &snapshot,
                &Records {
                    hard_state: Some(&hard_state),
                    conf_state: Some(&conf_state),
                    entries: &rest,
                },
            )
            .await?;
        self.store.0.borrow_mut().compact_to(snapshot);
        Ok(())
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (hard_state, conf_state) = {
            let mut mem = self.store.0.borrow_mut();
            mem.install(snapshot.clone());
            (mem.hard_state.clone(), mem.conf_state.clone())
        };
        self.wal
            .rewrite(
                snapshot,
                &Records {
                    hard_state: Some(&hard_state),
                    conf_state: Some(&conf_state),
                    entries: &[],
                },
            )
            .await
    }

    fn collect_committed(&mut self, entries: Vec<Entry>, progress: &mut Progress) -> Result<()> {
        for entry in entries {
            assert!(
                entry.index == self.applied_index + 1,
                "committed entry {} after applied {}",
                entry.index,
                self.applied_index
            );
            self.applied_index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => progress.committed.push(Committed {
                    index: entry.index,
                    term: entry.term,
                    data: entry.data.clone(),
                }),
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| Error::Invalid(format!("conf change: {e}")))?;
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.store.0.borrow_mut().conf_state = conf_state;
                    progress.conf_changed = true;
                }
                EntryType::EntryConfChangeV2 => {
                    let change = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| Error::Invalid(format!("conf change: {e}")))?;
                    // Persisted with the next rewrite; the entry itself is in the log, so a
                    // restart before that applies it again.
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.store.0.borrow_mut().conf_state = conf_state;
                    progress.conf_changed = true;
                }
            }
        }
        Ok(())
    }
}

fn raft_config(options: &ReplicaOptions, applied_index: u64) -> raft::Config {
    raft::Config {
        id: options.id,
        election_tick: options.election_ticks_min,
        min_election_tick: options.election_ticks_min,
        max_election_tick: options.election_ticks_max,
        heartbeat_tick: options.heartbeat_ticks,
        max_size_per_msg: options.append_bytes_max,
        max_inflight_msgs: options.inflight_appends_max,
        applied: applied_index,
        // A partitioned node must not disrupt the cluster when it comes back (pre-vote), and
        // a leader that lost its majority must step down (check-quorum).
        pre_vote: true,
        check_quorum: true,
        ..raft::Config::default()
    }
}
