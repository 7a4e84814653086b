//! Replicated partitions: one raft-rs group per partition replica (`shoal_consensus::
//! PartitionReplica`, whose Raft log is the partition's own log), owned by the core that owns
//! the partition on each of its nodes.
//!
//! One task per group owns its replica (no `RefCell` across an `.await`): it takes commands
//! from a bounded inbox (Raft messages from peers, producers' batches), ticks every
//! `GROUP_TICK_MS`, and after each batch of commands runs one round: `advance` (entries placed
//! and synced, hard state written) with the leader's appends sent *before* its own sync, so
//! the leader's fdatasync runs in parallel with the followers'. Every command that arrived
//! while a round waited on the disk is handled in the next one: that is the group commit.
//!
//! What an acknowledgement means here (the produce path, `propose`):
//! - acks=0: answered once the batch has its offsets (in memory);
//! - acks=1: once the leader's own log has it durable (synced; written with `write.caching`);
//! - acks=all: once the Kafka high watermark (the Raft commit: a majority durable, the
//!   leader's sync counted only when done) passes its last offset.
//!
//! A replica that is not the leader answers NOT_LEADER_OR_FOLLOWER; a leader that loses its
//! term fails every waiting produce with NOT_LEADER_OR_FOLLOWER (the batch may still commit:
//! an idempotent producer's retry is then answered with the original offsets). A failed write
//! or sync stops the group and takes the partition offline (never retried).
//!
//! Transport: Raft messages cross nodes in `shoal-rpc` frames through core 0's connections
//! (`rpc_net.rs`); another core's messages reach core 0, and core 0's inbound ones their
//! owner core, as control-lane jobs over the core mesh (at most `RAFT_FORWARDS_INFLIGHT_MAX`
//! per core in flight, more are dropped: Raft resends). The leader reports itself (term, ISR)
//! to the controller, which records it in the metadata log: every node's Metadata names it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::metrics::MeteredDisk as GlommioDisk;
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::{SinkExt, StreamExt};
use kafka_protocol::error::ResponseError;
use shoal_consensus::Message;
use shoal_consensus::PartitionReplica;
use shoal_kafka::cluster::{Acks, ApiError, TopicPartition};
use shoal_kafka::error_map::storage_error;
use shoal_model::{NodeId, ShardId};
use shoal_storage::Appended;

use crate::shard::Shard;

/// One Raft tick of a partition group: elections after 10-20 ticks (1-2 s), heartbeats every
/// 2 (200 ms), as the controller's.
pub(crate) const GROUP_TICK_MS: u64 = 100;
/// Commands queued for one group before Raft messages are dropped (producers wait instead).
const GROUP_INBOX_MAX: usize = 4096;
/// Commands handled in one round at most (the rest wait for the next).
const COMMANDS_PER_ROUND_MAX: usize = 1024;
/// Produce requests waiting for one group's commit at most; beyond, new ones are refused
/// (REQUEST_TIMED_OUT, retriable) instead of queueing without bound.
const WAITERS_MAX: usize = 8192;
/// A follower that has not caught up with what the leader held this long ago, or has not
/// been heard from for this long, leaves the ISR (Kafka's `replica.lag.time.max.ms`, whose default is 30 s; shorter here, so that
/// `min.insync.replicas` notices a dead follower sooner).
pub(crate) const REPLICA_LAG_TIME_MAX_MS: u64 = 10_000;
/// Points of the leader's index history kept at most (older ones are dropped first, which
/// only makes the ISR stricter).
const HISTORY_POINTS_MAX: usize = 16_384;
/// A leader whose report is not in the applied metadata yet sends it again after this long.
const LEADER_REPORT_RETRY_MS: u64 = 1_000;
/// A clean shutdown waits this long at most for each group it leads to hand leadership away.
pub(crate) const TRANSFER_TIMEOUT_MS: u64 = 3_000;
/// Raft messages between core 0 and the other cores in flight at most, per core.
pub(crate) const RAFT_FORWARDS_INFLIGHT_MAX: usize = 1024;

/// Raft ids are node ids + 1 (raft-rs reserves 0 for "none"), as the controller's.
pub(crate) fn raft_id(node: NodeId) -> u64 {
    node.0 as u64 + 1
}

pub(crate) fn node_of(raft_id: u64) -> NodeId {
    NodeId(raft_id as i32 - 1)
}

/// What a group's task takes.
pub(crate) enum GroupCmd {
    /// A Raft message from a peer replica.
    Step(Message),
    /// A producer's batch (checked and rewritten by the produce handler already).
    Propose {
        batch: Vec<u8>,
        acks: Acks,
        reply: oneshot::Sender<Result<Appended, ApiError>>,
    },
    /// Stop the task (the partition is dropped or the broker stops); answered when stopped.
    Stop(oneshot::Sender<()>),
    /// A leader hands leadership to its most caught-up in-sync follower (a clean shutdown);
    /// answered once it no longer leads, or after `TRANSFER_TIMEOUT_MS`.
    HandOff(oneshot::Sender<()>),
}

/// What other tasks of the core read of a group, refreshed after every round.
#[derive(Default)]
pub(crate) struct GroupStatus {
    pub(crate) leader: Cell<bool>,
    pub(crate) term: Cell<u64>,
    /// The leader this replica knows of (-1: none).
    pub(crate) leader_node: Cell<i32>,
    pub(crate) commit: Cell<u64>,
    pub(crate) in_sync: RefCell<Vec<i32>>,
    pub(crate) stopped: Cell<bool>,
}

/// A core's handle on one of its groups.
pub(crate) struct GroupHandle {
    pub(crate) group: u64,
    inbox: RefCell<mpsc::Sender<GroupCmd>>,
    pub(crate) status: Rc<GroupStatus>,
}

impl GroupHandle {
    /// Hands a peer's Raft message to the group; dropped if its inbox is full (Raft resends).
    pub(crate) fn step(&self, message: Message) -> bool {
        self.inbox
            .borrow_mut()
            .try_send(GroupCmd::Step(message))
            .is_ok()
    }

    /// Proposes a producer's batch; answers as `acks` asks (see the module documentation).
    pub(crate) async fn propose(&self, batch: Vec<u8>, acks: Acks) -> Result<Appended, ApiError> {
        if !self.status.leader.get() {
            return Err(self.not_leader());
        }
        let (reply, answer) = oneshot::channel();
        let mut inbox = self.inbox.borrow().clone();
        inbox
            .send(GroupCmd::Propose { batch, acks, reply })
            .await
            .map_err(|_| self.not_leader())?;
        answer.await.map_err(|_| self.not_leader())?
    }

    pub(crate) fn not_leader(&self) -> ApiError {
        not_leader(self.status.leader_node.get())
    }

    /// Hands leadership away if this replica leads; returns once it does not (or after
    /// `TRANSFER_TIMEOUT_MS`).
    pub(crate) async fn hand_off(&self) {
        if !self.status.leader.get() {
            return;
        }
        let (done, handed) = oneshot::channel();
        let mut inbox = self.inbox.borrow().clone();
        if inbox.send(GroupCmd::HandOff(done)).await.is_ok() {
            let timeout = glommio::timer::sleep(Duration::from_millis(TRANSFER_TIMEOUT_MS));
            let _ = select(handed, Box::pin(timeout)).await;
        }
    }

    /// Stops the group's task and waits for it.
    pub(crate) async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        let mut inbox = self.inbox.borrow().clone();
        if inbox.send(GroupCmd::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

fn not_leader(leader_node: i32) -> ApiError {
    let message = if leader_node >= 0 {
        format!("this replica does not lead the partition; node {leader_node} does")
    } else {
        "this replica does not lead the partition; no leader is known yet".to_string()
    };
    ApiError::with_message(ResponseError::NotLeaderOrFollower, message)
}

/// Where one replica of the group lives: its node, and the core there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) node: NodeId,
    pub(crate) core: ShardId,
}

/// A produce request waiting for its batch's durability.
struct Waiter {
    appended: Appended,
    /// The entry's index (`None`: an idempotent retry of a batch already in the log).
    index: Option<u64>,
    acks: Acks,
    term: u64,
    reply: oneshot::Sender<Result<Appended, ApiError>>,
}

/// Starts the task of one group and returns its handle.
pub(crate) fn start(
    shard: Rc<Shard>,
    tp: TopicPartition,
    topic_id: [u8; 16],
    group: u64,
    replica: PartitionReplica<GlommioDisk>,
    peers: BTreeMap<u64, Peer>,
    preferred: bool,
) -> Rc<GroupHandle> {
    let (sender, receiver) = mpsc::channel(GROUP_INBOX_MAX);
    let status = Rc::new(GroupStatus::default());
    status.leader_node.set(-1);
    let handle = Rc::new(GroupHandle {
        group,
        inbox: RefCell::new(sender),
        status: status.clone(),
    });
    let me = NodeId(shard.config.node_id);
    let driver = GroupDriver {
        shard,
        tp,
        topic_id,
        group,
        me,
        replica,
        peers,
        status,
        waiters: Vec::new(),
        history: VecDeque::new(),
        hand_offs: Vec::new(),
        heard: HashMap::new(),
        reported: None,
        last_term: 0,
    };
    glommio::spawn_local(driver.run(receiver, preferred)).detach();
    handle
}

struct GroupDriver {
    shard: Rc<Shard>,
    tp: TopicPartition,
    topic_id: [u8; 16],
    group: u64,
    me: NodeId,
    replica: PartitionReplica<GlommioDisk>,
    peers: BTreeMap<u64, Peer>,
    status: Rc<GroupStatus>,
    waiters: Vec<Waiter>,
    /// On the leader: when each follower was last heard from (for the ISR).
    heard: HashMap<u64, Instant>,
    /// Clean shutdowns waiting for this replica to stop leading.
    hand_offs: Vec<oneshot::Sender<()>>,
    /// On the leader: its last index over the last `REPLICA_LAG_TIME_MAX_MS` (for the ISR).
    history: VecDeque<(Instant, u64)>,
    /// The (term, ISR) last reported to the controller, and when.
    reported: Option<(u64, Vec<i32>, Instant)>,
    last_term: u64,
}

impl GroupDriver {
    /// `preferred`: this replica is the partition's first (placement balanced those across
    /// nodes and cores), so a new group campaigns here at once instead of waiting for a
    /// random election timeout somewhere.
    async fn run(mut self, mut inbox: mpsc::Receiver<GroupCmd>, preferred: bool) {
        if preferred && self.replica.term() == 0 && self.replica.campaign().is_ok() {
            if let Err(error) = self.advance().await {
                self.fail(&error);
                self.status.stopped.set(true);
                return;
            }
        }
        let mut tick = Box::pin(glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)));
        let mut stopped_by: Option<oneshot::Sender<()>> = None;
        loop {
            let mut commands = Vec::new();
            let mut ticked = false;
            match select(inbox.next(), tick).await {
                Either::Left((Some(command), pending)) => {
                    tick = pending;
                    commands.push(command);
                }
                Either::Left((None, _)) => break,
                Either::Right(((), _)) => {
                    ticked = true;
                    tick = Box::pin(glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)));
                }
            }
            while commands.len() < COMMANDS_PER_ROUND_MAX {
                match inbox.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.round_with(commands, ticked, &mut stopped_by).await {
                self.fail(&error);
                break;
            }
            if stopped_by.is_some() {
                break;
            }
        }
        self.status.stopped.set(true);
        self.status.leader.set(false);
        let gone = not_leader(-1);
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Err(gone.clone()));
        }
        if let Some(done) = stopped_by {
            let _ = done.send(());
        }
    }

    /// One round: steps, the tick, a first `advance` (so the entries raft-rs appended itself
    /// are in the log before any proposal), the proposals, a second `advance`.
    async fn round_with(
        &mut self,
        commands: Vec<GroupCmd>,
        ticked: bool,
        stopped_by: &mut Option<oneshot::Sender<()>>,
    ) -> shoal_consensus::Result<()> {
        let mut proposals = Vec::new();
        for command in commands {
            match command {
                GroupCmd::Step(message) => {
                    if let Err(error) = self.replica.step(message) {
                        tracing::debug!(tp = %self.tp, %error, "raft message not taken");
                    }
                }
                GroupCmd::Propose { batch, acks, reply } => proposals.push((batch, acks, reply)),
                GroupCmd::Stop(done) => *stopped_by = Some(done),
                GroupCmd::HandOff(done) => self.hand_off(done),
            }
        }
        if ticked {
            let _ = self.replica.tick();
        }
        self.advance().await?;
        if !proposals.is_empty() {
            for (batch, acks, reply) in proposals {
                self.propose(batch, acks, reply).await?;
            }
            self.advance().await?;
        }
        // A lagging follower's entries older than those kept in memory: read from the log,
        // then sent by one more advance.
        if self.replica.fetch_wanted().await? {
            self.advance().await?;
        }
        self.answer_waiters();
        self.report_leadership();
        if !self.replica.is_leader() {
            for done in self.hand_offs.drain(..) {
                let _ = done.send(());
            }
        }
        Ok(())
    }

    /// Starts a leader transfer to the in-sync follower with the most entries.
    fn hand_off(&mut self, done: oneshot::Sender<()>) {
        if !self.replica.is_leader() {
            let _ = done.send(());
            return;
        }
        let in_sync = self.status.in_sync.borrow().clone();
        let me = raft_id(self.me);
        let target = self
            .replica
            .followers()
            .into_iter()
            .filter(|&(id, _, _)| id != me && in_sync.contains(&node_of(id).0))
            .max_by_key(|&(id, matched, _)| (matched, std::cmp::Reverse(id)));
        match target {
            Some((id, _, _)) => {
                tracing::info!(tp = %self.tp, to = %node_of(id), "handing leadership away");
                self.replica.transfer_leader(id);
                self.hand_offs.push(done);
            }
            None => {
                let _ = done.send(());
            }
        }
    }

    async fn propose(
        &mut self,
        batch: Vec<u8>,
        acks: Acks,
        reply: oneshot::Sender<Result<Appended, ApiError>>,
    ) -> shoal_consensus::Result<()> {
        if !self.replica.is_leader() {
            let _ = reply.send(Err(not_leader(self.status.leader_node.get())));
            return Ok(());
        }
        if self.waiters.len() >= WAITERS_MAX {
            let _ = reply.send(Err(ApiError::with_message(
                ResponseError::RequestTimedOut,
                format!("{WAITERS_MAX} produce requests already wait for replication here"),
            )));
            return Ok(());
        }
        match self.replica.propose(batch).await {
            Ok((index, appended)) => {
                let waiter = Waiter {
                    appended,
                    index: index.map(|i| i.0),
                    acks,
                    term: self.replica.term(),
                    reply,
                };
                self.waiters.push(waiter);
                Ok(())
            }
            // The batch was refused by the log (a sequence error, a bad batch, a full disk):
            // the producer's answer, the group carries on.
            Err(shoal_consensus::Error::Storage(error)) if !is_fatal(&error) => {
                let _ = reply.send(Err(storage_error(&error)));
                Ok(())
            }
            Err(shoal_consensus::Error::Raft(error)) => {
                // Dropped by raft-rs (leadership lost meanwhile); the log cut it again.
                tracing::debug!(tp = %self.tp, %error, "proposal dropped");
                let _ = reply.send(Err(not_leader(self.status.leader_node.get())));
                Ok(())
            }
            Err(error) => {
                let _ = reply.send(Err(ApiError::with_message(
                    ResponseError::KafkaStorageError,
                    error.to_string(),
                )));
                Err(error)
            }
        }
    }

    async fn advance(&mut self) -> shoal_consensus::Result<()> {
        let (shard, group, peers) = (&self.shard, self.group, &self.peers);
        let progress = self
            .replica
            .advance(&mut |messages| send(shard, group, peers, messages))
            .await?;
        send(shard, group, peers, progress.messages);
        self.refresh_status();
        Ok(())
    }

    fn refresh_status(&mut self) {
        let leader = self.replica.is_leader();
        let term = self.replica.term();
        let leader_id = self.replica.leader_id();
        self.status.leader.set(leader);
        self.status.term.set(term);
        self.status.leader_node.set(if leader_id == 0 {
            -1
        } else {
            node_of(leader_id).0
        });
        self.status.commit.set(self.replica.commit_index());
        if leader && term != self.last_term {
            self.history.clear();
            let now = Instant::now();
            self.heard = self.peers.keys().map(|&id| (id, now)).collect();
            tracing::info!(tp = %self.tp, term, "leading the partition");
        }
        self.last_term = term;
        if leader {
            // In sync: holds what this leader held `REPLICA_LAG_TIME_MAX_MS` ago (Kafka's
            // rule). `history` keeps the leader's last index over time; its front is the
            // newest point at least that old (or the term's first, in a younger term).
            let now = Instant::now();
            let last = self.replica.last_index();
            if self.history.back().is_none_or(|&(_, l)| l != last) {
                self.history.push_back((now, last));
            }
            let lag = Duration::from_millis(REPLICA_LAG_TIME_MAX_MS);
            while self.history.len() > HISTORY_POINTS_MAX
                || self
                    .history
                    .get(1)
                    .is_some_and(|&(at, _)| now.duration_since(at) >= lag)
            {
                let _ = self.history.pop_front();
            }
            let target = self.history.front().map_or(last, |&(_, l)| l);
            let me = raft_id(self.me);
            let mut matched: HashMap<u64, u64> = HashMap::new();
            for (id, at, active) in self.replica.followers() {
                let _ = matched.insert(id, at);
                // raft-rs clears `recent_active` every election timeout and sets it on each
                // message from the follower: a follower that went quiet (an idle partition
                // with a dead follower) leaves the ISR too, as Kafka's stop fetching does.
                if active {
                    let _ = self.heard.insert(id, now);
                }
            }
            let mut in_sync = vec![self.me.0];
            for &id in self.peers.keys().filter(|&&id| id != me) {
                let heard = self
                    .heard
                    .get(&id)
                    .is_some_and(|&at| now.duration_since(at) <= lag);
                if heard && matched.get(&id).is_some_and(|&m| m >= target) {
                    in_sync.push(node_of(id).0);
                }
            }
            *self.status.in_sync.borrow_mut() = in_sync;
        } else {
            self.status.in_sync.borrow_mut().clear();
        }
    }

    /// Answers the produce requests whose condition holds, and fails those of a lost term.
    fn answer_waiters(&mut self) {
        let leader = self.replica.is_leader();
        let term = self.replica.term();
        let log = self.replica.log();
        let high_watermark = log.offsets().high_watermark;
        let durable = match log.config().durability {
            shoal_storage::Durability::Fsync => log.synced_last_index().0,
            shoal_storage::Durability::Relaxed { .. } => log.written_last_index().0,
        };
        let leader_node = self.status.leader_node.get();
        let mut kept = Vec::with_capacity(self.waiters.len());
        for waiter in self.waiters.drain(..) {
            let last = waiter.appended.last_offset;
            let done = match waiter.acks {
                Acks::None => true,
                Acks::Leader => waiter.index.is_none_or(|i| i <= durable),
                Acks::All => high_watermark > last,
            };
            if done {
                let _ = waiter.reply.send(Ok(waiter.appended));
            } else if !leader || waiter.term != term {
                let _ = waiter.reply.send(Err(not_leader(leader_node)));
            } else {
                kept.push(waiter);
            }
        }
        self.waiters = kept;
    }

    /// On the leader: tells the controller its term and ISR when they differ from what the
    /// applied metadata says (again after `LEADER_REPORT_RETRY_MS` if it still differs).
    fn report_leadership(&mut self) {
        if !self.replica.is_leader() {
            self.reported = None;
            return;
        }
        let term = self.replica.term();
        let Ok(epoch) = i32::try_from(term) else {
            return;
        };
        let in_sync = self.status.in_sync.borrow().clone();
        let snapshot = self.shard.snapshot();
        let recorded = snapshot.topics.get(&self.tp.topic).is_some_and(|meta| {
            let p = self.tp.partition as usize;
            meta.id == self.topic_id
                && meta.nodes.get(p) == Some(&self.me.0)
                && meta.leader_epochs.get(p) == Some(&epoch)
                && meta.isr.get(p) == Some(&in_sync)
        });
        if recorded {
            return;
        }
        let now = Instant::now();
        if let Some((t, isr, at)) = &self.reported {
            let same = *t == term && *isr == in_sync;
            if same && now.duration_since(*at) < Duration::from_millis(LEADER_REPORT_RETRY_MS) {
                return;
            }
        }
        self.reported = Some((term, in_sync.clone(), now));
        let tp = self.tp.clone();
        let me = self.me;
        let shard = self.shard.clone();
        glommio::spawn_local(async move {
            let reported = shard
                .control(0, move |shard| async move {
                    shard.report_partition_leader(tp, me, epoch, in_sync).await
                })
                .await;
            if let Err(why) = reported {
                tracing::debug!(?why, "leader report not delivered");
            }
        })
        .detach();
    }

    /// A write or sync failed: the partition goes offline here (never retried).
    fn fail(&mut self, error: &shoal_consensus::Error) {
        tracing::error!(tp = %self.tp, %error, "partition group stopped");
        self.shard.health.set_offline(
            &self.tp,
            crate::health::Offline {
                reason: format!("replication stopped: {error}"),
                kind: shoal_storage::OfflineKind::Io,
            },
        );
        let failed = ApiError::with_message(ResponseError::KafkaStorageError, error.to_string());
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Err(failed.clone()));
        }
    }
}

/// Whether a storage error stops the group (the log is offline) rather than refusing one batch.
fn is_fatal(error: &shoal_storage::Error) -> bool {
    matches!(
        error,
        shoal_storage::Error::Offline(_) | shoal_storage::Error::Closed
    )
}

/// Sends a round's messages to the replicas they name: through core 0's connections.
fn send(shard: &Rc<Shard>, group: u64, peers: &BTreeMap<u64, Peer>, messages: Vec<Message>) {
    let mut out: Vec<(NodeId, ShardId, Bytes)> = Vec::with_capacity(messages.len());
    for message in messages {
        let Some(peer) = peers.get(&message.to) else {
            tracing::debug!(
                to = message.to,
                "raft message for an unknown replica dropped"
            );
            continue;
        };
        match shoal_consensus::encode_message(&message) {
            Ok(bytes) => out.push((peer.node, peer.core, bytes.into())),
            Err(error) => tracing::warn!(%error, "raft message not encoded"),
        }
    }
    if out.is_empty() {
        return;
    }
    if shard.id == 0 {
        for (node, core, bytes) in out {
            shard.rpc_send_raft(node, core, group, bytes);
        }
        return;
    }
    shard.forward_raft(0, move |shard| async move {
        for (node, core, bytes) in out {
            shard.rpc_send_raft(node, core, group, bytes);
        }
    });
}

impl Shard {
    /// Core 0: queues a partition group's Raft message for `node`'s core `core`.
    pub(crate) fn rpc_send_raft(&self, node: NodeId, core: ShardId, group: u64, bytes: Bytes) {
        if let Some(net) = self.rpc.borrow().as_ref() {
            net.send_raft_to(node, core, group, bytes);
        }
    }

    /// Runs `work` (Raft traffic) on `core` as a control-lane job, without waiting for it.
    /// At most `RAFT_FORWARDS_INFLIGHT_MAX` of this core's are in flight; beyond, the work is
    /// dropped (Raft resends what matters).
    fn forward_raft<W, F>(self: &Rc<Self>, core: usize, work: W)
    where
        W: FnOnce(Rc<Shard>) -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        let inflight = self.raft_forwards.get();
        if inflight >= RAFT_FORWARDS_INFLIGHT_MAX {
            return;
        }
        self.raft_forwards.set(inflight + 1);
        let shard = self.clone();
        glommio::spawn_local(async move {
            let _ = shard.control(core, work).await;
            shard
                .raft_forwards
                .set(shard.raft_forwards.get().saturating_sub(1));
        })
        .detach();
    }

    /// Core 0: a partition group's Raft message from `from`, for this node's core `core`.
    pub(crate) fn route_raft(
        self: &Rc<Self>,
        from: NodeId,
        core: ShardId,
        group: u64,
        bytes: Bytes,
    ) {
        let core = core.0 as usize;
        if core >= self.cores {
            tracing::debug!(from = %from, core, "raft message for a core this node lacks dropped");
            return;
        }
        if core == self.id {
            self.deliver_raft(from, group, &bytes);
            return;
        }
        self.forward_raft(core, move |shard| async move {
            shard.deliver_raft(from, group, &bytes);
        });
    }

    /// Steps the group `group` of this core with a message from node `from`.
    fn deliver_raft(&self, from: NodeId, group: u64, bytes: &[u8]) {
        let message = match shoal_consensus::decode_message(bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(from = %from, %error, "undecodable partition raft message dropped");
                return;
            }
        };
        if node_of(message.from) != from {
            tracing::warn!(from = %from, claimed = message.from, "partition raft message with a forged sender dropped");
            return;
        }
        let handle = self.group_by_id(group);
        match handle {
            Some(handle) => {
                let _ = handle.step(message);
            }
            None => tracing::debug!(from = %from, group, "raft message for a group not open here"),
        }
    }

    /// Core 0: records a replicated partition's leader, term and ISR in the metadata log.
    pub(crate) async fn report_partition_leader(
        self: &Rc<Self>,
        tp: TopicPartition,
        leader: NodeId,
        epoch: i32,
        in_sync: Vec<i32>,
    ) {
        let Some(cluster) = self.cluster.borrow().clone() else {
            return;
        };
        let Ok(partition) = u32::try_from(tp.partition) else {
            return;
        };
        let isr = in_sync.into_iter().map(NodeId).collect();
        let planned = shoal_controller::plan_partition_leader(
            &cluster.state.borrow(),
            &tp.topic,
            partition,
            leader,
            epoch,
            isr,
        );
        match planned {
            Ok(Some(record)) => {
                if let Err(error) = cluster.propose(record).await {
                    tracing::debug!(%tp, ?error, "leader report not recorded");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%tp, %error, "leader report refused"),
        }
    }
}
