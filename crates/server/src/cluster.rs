//! This node's part in the cluster, on core 0: its replica of the controller Raft group
//! (`shoal-consensus`, voters = the seeds), the metadata log it applies
//! (`shoal-controller::ClusterState`), and its broker registration.
//!
//! One task owns the `Replica` and drives it: a tick every `TICK_MS`, each Raft message from
//! the transport (`rpc_net.rs`) as it arrives, then `advance` (one synced write of the
//! controller log in `<data_dir>/controller/`), the messages it returns go out through the
//! transport, committed records are applied in order. A failed write of the controller log
//! stops the broker (never retried: see `shoal-consensus`).
//!
//! Every applied change becomes this node's metadata (`Shard::adopt_cluster_metadata`: the
//! `metadata.json` cache, every core's snapshot, this node's logs opened or dropped), and only
//! then are this node's waiting proposals answered. Metadata changes from requests
//! (`cluster_admin.rs`) are planned against the applied state and proposed here; raft-rs
//! forwards a follower's proposal to the leader. Each entry is a 16-byte proposal id and a
//! `shoal_controller::Record`.
//!
//! On the leader only: broker sessions (heartbeats every 500 ms; fenced after
//! `SESSION_TIMEOUT_MS`; unfenced when heard again) and group-coordinator placement.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use glommio::channels::local_channel;
use glommio::net::TcpListener;
use shoal_consensus::{Progress, Replica, ReplicaOptions};
use shoal_controller::{
    Applied, ApplyError, ClusterState, Heartbeat, HeartbeatReply, Liveness, Record, Registration,
};
use shoal_model::NodeId;
use shoal_rpc::Incarnation;
use shoal_runtime::GlommioDisk;

use crate::config::ClusterConfig;
use crate::metadata::{BrokerMeta, Snapshot, TopicMeta};
use crate::rpc_net::{self, Inbound, RpcNet};
use crate::shard::Shard;

/// The controller's Raft group id (partition groups will take others).
pub(crate) const CONTROLLER_GROUP: u64 = 0;
/// One Raft tick. Elections after 10-20 ticks (1-2 s), heartbeats every 2 (200 ms).
const TICK_MS: u64 = 100;
/// Entries applied between two snapshots of the metadata (the log is then truncated).
const COMPACT_EVERY_ENTRIES: u64 = 1000;
/// How often a node whose registration is not yet applied proposes it again.
const REGISTER_RETRY_TICKS: u64 = 10;
/// A voter whose controller log was lost, or a refused registration, is logged at most this
/// often (10 s).
const LOG_LOST_WARN_TICKS: u64 = 100;
/// A node still not registered after this many ticks (10 s) says so in its log.
const UNREGISTERED_WARN_TICKS: u64 = 100;
/// A broker heartbeats the controller leader every this many ticks (500 ms).
const HEARTBEAT_TICKS: u64 = 5;
/// A broker not heard from for this long is fenced (Kafka's `broker.session.timeout.ms` is
/// 9 s; a shorter session moves leadership sooner after a crash).
const SESSION_TIMEOUT_MS: u64 = 6000;
/// A leader whose liveness check (every tick, `TICK_MS`) comes this late after the previous
/// one takes the gap as its own stall, not every broker's.
const LEADER_STALL_MS: u64 = SESSION_TIMEOUT_MS / 3;
/// Heartbeats remembered for timing their answers.
const HEARTBEATS_TIMED_MAX: usize = 16;
/// The leader checks whether the offsets topic is to be created at most this often, in ticks.
const OFFSETS_TOPIC_TICKS: u64 = 20;
pub(crate) const CONTROLLER_DIR: &str = "controller";

/// Longest a metadata change waits to be committed and applied here before the request gets a
/// retriable error (the change may still commit later: the client's retry then finds it).
const PROPOSAL_TIMEOUT_MS: u64 = 10_000;
/// Bytes of the proposal id that prefix every entry of the controller log.
const PROPOSAL_ID_BYTES: usize = 16;

/// A metadata change proposed by this node, and who waits for its outcome.
pub(crate) struct Proposal {
    pub(crate) record: Record,
    pub(crate) done: futures::channel::oneshot::Sender<Result<Applied, ProposeError>>,
}

/// Why a proposal got no outcome.
#[derive(Debug)]
pub(crate) enum ProposeError {
    /// Committed, and refused when applied (raced with another change).
    Refused(ApplyError),
    /// No controller leader is known (an election is under way): retriable.
    NoLeader,
    /// Not committed in time (or the driver stopped): retriable; it may still commit.
    TimedOut,
}

/// What core 0's metadata changes use in cluster mode: the applied controller state (to plan
/// against) and the way to propose.
pub(crate) struct ClusterHandle {
    pub(crate) state: Rc<RefCell<ClusterState>>,
    inbox: Rc<local_channel::LocalSender<Inbound>>,
}

impl ClusterHandle {
    /// Proposes `record` and waits until it is committed and applied on this node (and this
    /// node's cores have the new metadata), or for the reason it was not.
    pub(crate) async fn propose(&self, record: Record) -> Result<Applied, ProposeError> {
        let (done, outcome) = futures::channel::oneshot::channel();
        if self
            .inbox
            .send(Inbound::Propose(Proposal { record, done }))
            .await
            .is_err()
        {
            return Err(ProposeError::TimedOut);
        }
        let timeout = glommio::timer::sleep(Duration::from_millis(PROPOSAL_TIMEOUT_MS));
        match select(outcome, Box::pin(timeout)).await {
            Either::Left((Ok(result), _)) => result,
            _ => Err(ProposeError::TimedOut),
        }
    }
}

/// What `/v1/cluster` shows, refreshed after every round of the driver.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterView {
    pub(crate) node: i32,
    pub(crate) cluster_id: String,
    pub(crate) voters: Vec<i32>,
    /// Brokers that follow the controller log without a vote.
    pub(crate) learners: Vec<i32>,
    pub(crate) registrations_refused: u64,
    pub(crate) leader: Option<i32>,
    pub(crate) term: u64,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
    pub(crate) leader_changes: u64,
    pub(crate) heartbeats_missed: u64,
    /// Round trips of this node's heartbeats to the controller leader: the node-to-node
    /// latency, as a histogram.
    pub(crate) heartbeat_round_trip: Rc<crate::metrics::Histogram>,
    pub(crate) heartbeat_round_trip_us_max: u64,
    pub(crate) rpc_bytes_in: u64,
    pub(crate) rpc_bytes_out: u64,
    pub(crate) rpc_frames_refused: u64,
    pub(crate) rpc_envelopes_dropped: u64,
}

/// Raft ids are never 0; node ids may be.
fn raft_id(node: NodeId) -> u64 {
    node.0 as u64 + 1
}

fn node_of(raft_id: u64) -> NodeId {
    NodeId(raft_id as i32 - 1)
}

/// Opens the controller replica and starts the transport and the driver. Returns the view the
/// admin endpoint reads. Errors (a controller log that does not open) stop the broker.
pub(crate) async fn start(
    shard: Rc<Shard>,
    cluster: &ClusterConfig,
    stopping: Rc<Cell<bool>>,
    fatal: Rc<dyn Fn(String)>,
) -> anyhow::Result<(Rc<RefCell<ClusterView>>, Rc<ClusterHandle>)> {
    let config = shard.config.clone();
    let me = NodeId(config.node_id);
    let voters: Vec<u64> = cluster.seeds.iter().map(|s| raft_id(s.node)).collect();
    let seeds: Vec<NodeId> = cluster.seeds.iter().map(|s| s.node).collect();
    let is_voter = seeds.contains(&me);
    let incarnation = Incarnation(uuid::Uuid::new_v4().as_u64_pair().0);
    let mut options = ReplicaOptions::new(CONTROLLER_GROUP, raft_id(me), voters);
    options.election_seed = incarnation.0;
    if !is_voter {
        // Not a seed: this node follows the metadata log as a learner, added by the leader
        // once its registration is applied.
        options.initial_learners = vec![raft_id(me)];
    }
    let dir = config.data_dir.join(CONTROLLER_DIR);
    let replica = Replica::open(Rc::new(GlommioDisk::new()), Path::new(&dir), options)
        .await
        .map_err(|e| anyhow::anyhow!("controller log {}: {e}", dir.display()))?;
    let cluster_id = cluster.cluster_id.to_string();
    let state = restore(&replica, &cluster_id)?;
    let peers: Vec<(NodeId, String)> = cluster
        .seeds
        .iter()
        .filter(|s| s.node != me)
        .map(|s| (s.node, s.addr.clone()))
        .collect();
    let net = RpcNet::start(
        me,
        cluster.cluster_id,
        incarnation,
        is_voter,
        &peers,
        stopping.clone(),
    );
    let listener = TcpListener::bind(cluster.rpc_addr)
        .map_err(|e| anyhow::anyhow!("binding rpc {}: {e}", cluster.rpc_addr))?;
    tracing::info!(addr = %cluster.rpc_addr, node = %me, voters = ?cluster.seeds, is_voter, "serving node-to-node rpc");
    let (inbox, inbox_receiver) = local_channel::new_bounded(rpc_net::INBOX_MAX);
    let inbox = Rc::new(inbox);
    let state = Rc::new(RefCell::new(state));
    let known: rpc_net::KnownNodes = {
        let (seeds, state) = (seeds.clone(), state.clone());
        Rc::new(move |node| seeds.contains(&node) || state.borrow().broker(node).is_some())
    };
    glommio::spawn_local(
        net.clone()
            .serve(listener, known, inbox.clone(), stopping.clone()),
    )
    .detach();
    {
        let shard = shard.clone();
        net.set_partition_inbox(Rc::new(move |from, core, group, message| {
            shard.route_raft(from, core, group, message)
        }));
    }
    *shard.rpc.borrow_mut() = Some(net.clone());
    let handle = Rc::new(ClusterHandle {
        state: state.clone(),
        inbox,
    });
    let view = Rc::new(RefCell::new(ClusterView {
        node: me.0,
        cluster_id,
        voters: cluster.seeds.iter().map(|s| s.node.0).collect(),
        ..ClusterView::default()
    }));
    let registration = Registration {
        node: me,
        incarnation: incarnation.0,
        kafka_host: config.advertised_host.clone(),
        kafka_port: u16::try_from(config.advertised_port).unwrap_or(0),
        rpc_addr: cluster.advertised_rpc_addr.clone(),
        rack: config.rack.clone(),
        cores: config.cores as u32,
    };
    let driver = Driver {
        replica,
        state,
        net,
        view: view.clone(),
        registration,
        seeds,
        registrations_refused: 0,
        refusals_logged: std::collections::BTreeMap::new(),
        unregistered_warned: false,
        learners_fresh: std::collections::BTreeMap::new(),
        log_lost_warned_tick: 0,
        learners_adding: std::collections::BTreeMap::new(),
        ticks: 0,
        last_leader: 0,
        liveness: None,
        started: std::time::Instant::now(),
        heartbeats_missed: 0,
        shard,
        heartbeats_sent: std::collections::VecDeque::new(),
        pending: std::collections::BTreeMap::new(),
        proposals_made: 0,
        liveness_checked_ms: 0,
    };
    glommio::spawn_local(async move {
        if let Err(error) = driver.run(inbox_receiver, stopping).await {
            fatal(format!("controller replica failed: {error}"));
        }
    })
    .detach();
    Ok((view, handle))
}

fn restore(replica: &Replica<GlommioDisk>, cluster_id: &str) -> anyhow::Result<ClusterState> {
    let snapshot = replica.snapshot();
    if snapshot.get_metadata().index == 0 {
        return Ok(ClusterState::new(cluster_id.to_string()));
    }
    let state = ClusterState::from_snapshot_bytes(&snapshot.data)
        .map_err(|e| anyhow::anyhow!("controller snapshot: {e}"))?;
    if state.cluster_id() != cluster_id {
        anyhow::bail!(
            "the controller log belongs to cluster {}, this node is configured for {cluster_id}",
            state.cluster_id()
        );
    }
    Ok(state)
}

struct Driver {
    replica: Replica<GlommioDisk>,
    state: Rc<RefCell<ClusterState>>,
    net: Rc<RpcNet>,
    view: Rc<RefCell<ClusterView>>,
    registration: Registration,
    /// The controller voters (from `seeds`); the other brokers are learners.
    seeds: Vec<NodeId>,
    /// Registrations the leader refused (a node id another live process holds), and when
    /// each node's refusal was last logged.
    registrations_refused: u64,
    refusals_logged: std::collections::BTreeMap<NodeId, u64>,
    /// Whether this node already said it is not registered after `UNREGISTERED_WARN_TICKS`.
    unregistered_warned: bool,
    /// On the leader: the broker epoch each learner's progress is current for, and the
    /// epoch a pending add is for (see `add_learners`).
    learners_fresh: std::collections::BTreeMap<NodeId, u64>,
    /// The tick before which a lost controller log is not reported again.
    log_lost_warned_tick: u64,
    learners_adding: std::collections::BTreeMap<NodeId, u64>,
    ticks: u64,
    last_leader: u64,
    /// Broker sessions, kept only while this replica leads the controller.
    liveness: Option<Liveness>,
    started: std::time::Instant,
    heartbeats_missed: u64,
    shard: Rc<Shard>,
    /// Heartbeats sent and not yet answered: (request id, when), the newest few.
    heartbeats_sent: std::collections::VecDeque<(u64, std::time::Instant)>,
    /// This node's proposals not yet applied, by proposal id.
    pending: std::collections::BTreeMap<
        [u8; PROPOSAL_ID_BYTES],
        futures::channel::oneshot::Sender<Result<Applied, ProposeError>>,
    >,
    proposals_made: u64,
    /// When `lead_liveness` last ran (ms since start): a long gap is the leader's own stall.
    liveness_checked_ms: u64,
}

impl Driver {
    async fn run(
        mut self,
        inbox: local_channel::LocalReceiver<Inbound>,
        stopping: Rc<Cell<bool>>,
    ) -> shoal_consensus::Result<()> {
        let mut next = Box::pin(inbox.recv());
        let mut tick = Box::pin(glommio::timer::sleep(Duration::from_millis(TICK_MS)));
        while !stopping.get() {
            match select(next, tick).await {
                Either::Left((inbound, pending_tick)) => {
                    tick = pending_tick;
                    next = Box::pin(inbox.recv());
                    match inbound {
                        None => return Ok(()),
                        Some(Inbound::Raft { from, message }) => self.step(from, &message),
                        Some(Inbound::Heartbeat { from, beat }) => self.on_heartbeat(from, &beat),
                        Some(Inbound::Propose(proposal)) => self.propose_for(proposal),
                        Some(Inbound::HeartbeatResponse { from, response }) => {
                            self.on_heartbeat_response(from, &response)
                        }
                        Some(Inbound::ControllerRequest { from, request }) => {
                            self.on_controller_request(from, &request)
                        }
                    }
                }
                Either::Right(((), pending_next)) => {
                    next = pending_next;
                    tick = Box::pin(glommio::timer::sleep(Duration::from_millis(TICK_MS)));
                    let _ = self.replica.tick();
                    self.ticks += 1;
                    self.register_if_needed();
                    self.heartbeat_if_due();
                    self.lead_liveness();
                }
            }
            let progress = self.replica.advance().await?;
            let conf_changed = progress.conf_changed;
            self.deliver(progress).await?;
            self.compact_if_due(conf_changed).await?;
            self.refresh_view();
        }
        Ok(())
    }

    fn step(&mut self, from: NodeId, bytes: &[u8]) {
        let message = match shoal_consensus::decode_message(bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(from = %from, %error, "undecodable raft message dropped");
                return;
            }
        };
        // raft-rs trusts `from`; the transport checked who sent the frame, so a message that
        // claims another sender is refused here.
        if node_of(message.from) != from {
            tracing::warn!(from = %from, claimed = message.from, "raft message with a forged sender dropped");
            return;
        }
        match self.replica.step(message) {
            Ok(()) => {}
            Err(error @ shoal_consensus::Error::LogLost { .. }) => {
                // Every leader heartbeat says it again: once every 10 s is enough.
                if self.ticks >= self.log_lost_warned_tick {
                    self.log_lost_warned_tick = self.ticks + LOG_LOST_WARN_TICKS;
                    tracing::error!(from = %from, %error, "this controller voter lost its log");
                }
            }
            Err(error) => tracing::debug!(from = %from, %error, "raft message refused"),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Every `HEARTBEAT_TICKS`, once registered: a heartbeat to the controller leader (handled
    /// in place when this node leads).
    fn heartbeat_if_due(&mut self) {
        if !self.ticks.is_multiple_of(HEARTBEAT_TICKS) {
            return;
        }
        let me = self.registration.node;
        let Some(broker_epoch) = self.state.borrow().broker(me).and_then(|b| {
            (b.registration.incarnation == self.registration.incarnation).then_some(b.broker_epoch)
        }) else {
            return;
        };
        let status = self.replica.status();
        if status.leader == 0 {
            self.heartbeats_missed += 1;
            return;
        }
        let beat = shoal_rpc::BrokerHeartbeat {
            request_id: self.ticks,
            node: me,
            broker_epoch: broker_epoch as i64,
            incarnation: shoal_rpc::Incarnation(self.registration.incarnation),
            metadata_offset: self.state.borrow().applied_index() as i64,
            want_fence: false,
            want_shutdown: false,
        };
        let leader = node_of(status.leader);
        if leader == me {
            self.on_heartbeat(me, &beat);
        } else {
            if self.heartbeats_sent.len() >= HEARTBEATS_TIMED_MAX {
                let _ = self.heartbeats_sent.pop_front();
            }
            self.heartbeats_sent
                .push_back((beat.request_id, std::time::Instant::now()));
            self.net.send_heartbeat(leader, &beat);
        }
    }

    /// Times the round trip of one of this node's heartbeats (the node-to-node latency
    /// `/metrics` reports).
    fn on_heartbeat_response(
        &mut self,
        from: NodeId,
        response: &shoal_rpc::BrokerHeartbeatResponse,
    ) {
        let Some(at) = self
            .heartbeats_sent
            .iter()
            .position(|(id, _)| *id == response.request_id)
        else {
            return; // too old, or not ours
        };
        let (_, sent) = self.heartbeats_sent.remove(at).expect("found above");
        let rtt_us = sent.elapsed().as_micros() as u64;
        let mut view = self.view.borrow_mut();
        view.heartbeat_round_trip.record_us(rtt_us);
        view.heartbeat_round_trip_us_max = view.heartbeat_round_trip_us_max.max(rtt_us);
        if response.is_fenced {
            tracing::debug!(leader = %from, "the controller has this broker fenced");
        }
    }

    /// On the leader: extend the sender's session; propose what the answer calls for.
    fn on_heartbeat(&mut self, from: NodeId, beat: &shoal_rpc::BrokerHeartbeat) {
        let now_ms = self.now_ms();
        let Some(liveness) = self.liveness.as_mut() else {
            return; // not the leader (any more): the broker finds the new one
        };
        let heartbeat = Heartbeat {
            node: from,
            broker_epoch: u64::try_from(beat.broker_epoch).unwrap_or(0),
            applied_index: u64::try_from(beat.metadata_offset).unwrap_or(0),
            want_fence: beat.want_fence,
        };
        let reply = liveness.heartbeat(&self.state.borrow(), &heartbeat, now_ms);
        if from != self.registration.node {
            let fenced = self.state.borrow().broker(from).is_none_or(|b| b.fenced);
            let response = shoal_rpc::BrokerHeartbeatResponse {
                request_id: beat.request_id,
                node: from,
                broker_epoch: beat.broker_epoch,
                is_caught_up: !matches!(reply, HeartbeatReply::NotYetApplied),
                is_fenced: fenced,
                should_shutdown: false,
            };
            self.net.send_heartbeat_response(from, &response);
        }
        let record = match reply {
            HeartbeatReply::Unfence(record) | HeartbeatReply::Fence(record) => record,
            _ => return,
        };
        self.propose(&record);
    }

    /// On the leader, every tick: fence brokers whose session expired.
    fn lead_liveness(&mut self) {
        let now_ms = self.now_ms();
        let leads = self.replica.status().is_leader;
        match (&mut self.liveness, leads) {
            (None, true) => {
                let mut liveness = Liveness::new(SESSION_TIMEOUT_MS);
                liveness.on_become_leader(&self.state.borrow(), now_ms);
                self.liveness = Some(liveness);
                // The learners a previous leader added are taken as current.
                let learners = self.replica.learners();
                self.learners_adding.clear();
                self.learners_fresh = self
                    .state
                    .borrow()
                    .brokers()
                    .values()
                    .filter(|b| learners.contains(&raft_id(b.registration.node)))
                    .map(|b| (b.registration.node, b.broker_epoch))
                    .collect();
            }
            (Some(_), false) => self.liveness = None,
            _ => {}
        }
        if self.liveness.is_some() {
            self.add_learners();
        }
        // A leader whose own loop stalled (a slow controller-log sync on a loaded disk, a
        // SIGSTOP) heard nobody meanwhile through no fault of theirs: sessions restart instead
        // of every broker, this one included, being fenced at once.
        let stalled_ms = now_ms.saturating_sub(self.liveness_checked_ms);
        let first_check = self.liveness_checked_ms == 0;
        self.liveness_checked_ms = now_ms.max(1);
        if !first_check && stalled_ms > LEADER_STALL_MS {
            if let Some(liveness) = self.liveness.as_mut() {
                tracing::warn!(
                    stalled_ms,
                    "the controller leader's loop stalled: broker sessions restart"
                );
                liveness.on_become_leader(&self.state.borrow(), now_ms);
            }
        }
        let Some(liveness) = self.liveness.as_mut() else {
            return;
        };
        let expired = liveness.expired(&self.state.borrow(), now_ms);
        for (node, broker_epoch) in expired {
            tracing::warn!(node = %node, broker_epoch, "broker missed its heartbeats: fencing it");
            self.propose(&Record::FenceBroker { node, broker_epoch });
        }
        // The replicated group partitions (see `groups.rs`), once enough brokers are live to
        // hold them. Spaced out, so that one creation is applied before the next is planned
        // (a second one would be refused anyway: the topic exists).
        if self.ticks.is_multiple_of(OFFSETS_TOPIC_TICKS) {
            self.create_offsets_topic();
        }
    }

    /// Proposes the offsets topic if it does not exist yet and `replicas` brokers are live:
    /// `OFFSETS_TOPIC_REPLICATION_FACTOR`, or one per seed in a smaller cluster. As Kafka's
    /// `offsets.topic.replication.factor`, it is not lowered to the brokers live now: groups
    /// wait (COORDINATOR_NOT_AVAILABLE) rather than keep fewer copies forever.
    fn create_offsets_topic(&mut self) {
        use crate::groups::{GROUP_PARTITIONS, OFFSETS_TOPIC, OFFSETS_TOPIC_REPLICATION_FACTOR};
        let planned = {
            let state = self.state.borrow();
            let replicas = OFFSETS_TOPIC_REPLICATION_FACTOR
                .min(self.seeds.len())
                .max(1);
            if state.topic(OFFSETS_TOPIC).is_some() || state.live_brokers().count() < replicas {
                return;
            }
            // Offsets expire by the group rules (offsets.retention.minutes), never by age;
            // the log is compacted on the records' keys, as Kafka's `__consumer_offsets` is.
            // A cluster whose offsets topic was created before this keeps its configs (and
            // its keyless records, which compaction would drop).
            let configs = [
                ("retention.ms".to_string(), "-1".to_string()),
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    // At least what any topic's segment.bytes must be (1 MiB): a stored
                    // config that does not validate is replaced by the defaults.
                    crate::groups::group_log_segment_bytes()
                        .max(1 << 20)
                        .to_string(),
                ),
            ]
            .into();
            shoal_controller::plan_create_topic(
                &state,
                OFFSETS_TOPIC,
                i32::try_from(GROUP_PARTITIONS).expect("16 fits"),
                i16::try_from(replicas).unwrap_or(i16::MAX),
                configs,
                *uuid::Uuid::new_v4().as_bytes(),
            )
        };
        match planned {
            Ok(record) => {
                tracing::info!(topic = OFFSETS_TOPIC, "creating the group partitions");
                self.propose(&record);
            }
            // An unusable random id: the next attempt draws another.
            Err(error) => tracing::debug!(%error, "offsets topic not created yet"),
        }
    }

    /// Proposes a record nobody waits for (registration, liveness).
    fn propose(&mut self, record: &Record) {
        let _ = self.propose_with_id(record);
    }

    /// Proposes a record for a waiting request; its outcome is sent once applied.
    fn propose_for(&mut self, proposal: Proposal) {
        self.pending.retain(|_, done| !done.is_canceled());
        match self.propose_with_id(&proposal.record) {
            Some(id) => {
                let _ = self.pending.insert(id, proposal.done);
            }
            None => {
                let _ = proposal.done.send(Err(ProposeError::NoLeader));
            }
        }
    }

    /// Every entry is `proposal id ++ encoded record`: the id lets the proposing node find
    /// its waiter when the entry is applied. `None` if raft dropped the proposal (no leader).
    fn propose_with_id(&mut self, record: &Record) -> Option<[u8; PROPOSAL_ID_BYTES]> {
        self.proposals_made += 1;
        let mut id = [0u8; PROPOSAL_ID_BYTES];
        id[..8].copy_from_slice(&self.registration.incarnation.to_be_bytes());
        id[8..].copy_from_slice(&self.proposals_made.to_be_bytes());
        let bytes = match record.encode() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "metadata record does not encode");
                return None;
            }
        };
        let mut data = id.to_vec();
        data.extend_from_slice(&bytes);
        match self.replica.propose(data) {
            Ok(()) => Some(id),
            Err(error) => {
                tracing::debug!(%error, "metadata record not proposed");
                None
            }
        }
    }

    /// Asks the controller leader to register this node until the applied state has it (the
    /// leader checks the node id is not held by another live process first). Sent to the
    /// known leader, or to every seed while none is known (a learner learns the leader only
    /// once it is registered and added).
    fn register_if_needed(&mut self) {
        let registered = self
            .state
            .borrow()
            .broker(self.registration.node)
            .is_some_and(|b| b.registration.incarnation == self.registration.incarnation);
        if registered || !self.ticks.is_multiple_of(REGISTER_RETRY_TICKS) {
            return;
        }
        if self.ticks >= UNREGISTERED_WARN_TICKS && !self.unregistered_warned {
            self.unregistered_warned = true;
            tracing::warn!(
                node = %self.registration.node,
                seconds = UNREGISTERED_WARN_TICKS * TICK_MS / 1000,
                "not registered with the controller yet: are the seeds reachable, or does a \
                 live node already use this node_id? (the controller leader logs refusals)"
            );
        }
        let me = self.registration.node;
        let record = Record::RegisterBroker(self.registration.clone());
        let payload = match record.encode() {
            Ok(bytes) => bytes::Bytes::from(bytes),
            Err(error) => {
                tracing::error!(%error, "registration does not encode");
                return;
            }
        };
        let request = shoal_rpc::ControllerRequest {
            request_id: self.ticks,
            payload,
        };
        let leader = self.replica.status().leader;
        let targets: Vec<NodeId> = if leader != 0 {
            vec![node_of(leader)]
        } else {
            self.seeds.clone()
        };
        for to in targets {
            if to == me {
                self.on_controller_request(me, &request);
            } else {
                self.net.send_controller_request(to, &request);
            }
        }
    }

    /// On the leader: a node asks to be registered. Proposed unless its node id is held by
    /// another process that still heartbeats (KRaft's DUPLICATE_BROKER_REGISTRATION), or it
    /// is already registered with this incarnation (a retry).
    fn on_controller_request(&mut self, from: NodeId, request: &shoal_rpc::ControllerRequest) {
        let now_ms = self.now_ms();
        let Some(liveness) = self.liveness.as_mut() else {
            return; // not the leader: the node asks the others too
        };
        let registration = match Record::decode(&request.payload) {
            Ok(Record::RegisterBroker(registration)) => registration,
            Ok(other) => {
                tracing::warn!(from = %from, record = ?other, "controller request other than a registration dropped");
                return;
            }
            Err(error) => {
                tracing::warn!(from = %from, %error, "undecodable controller request dropped");
                return;
            }
        };
        if registration.node != from {
            tracing::warn!(from = %from, claimed = %registration.node, "registration for another node dropped");
            return;
        }
        let state = self.state.borrow();
        let current = state.broker(from).map(|b| b.registration.incarnation);
        if current == Some(registration.incarnation) {
            return; // applied already; the node sees it shortly
        }
        match liveness.plan_register(&state, registration, now_ms) {
            Ok(record) => {
                drop(state);
                self.propose(&record);
            }
            Err(error) => {
                drop(state);
                self.registrations_refused += 1;
                // The refused process asks again every second: say it once per 10 s per node
                // (the counter has every refusal).
                let due = self
                    .refusals_logged
                    .get(&from)
                    .is_none_or(|at| self.ticks >= at + LOG_LOST_WARN_TICKS);
                if due {
                    let _ = self.refusals_logged.insert(from, self.ticks);
                    tracing::warn!(node = %from, %error, refused = self.registrations_refused, "broker registration refused");
                }
            }
        }
    }

    /// On the leader: every registered broker that is not a voter becomes a learner of the
    /// controller group, so it applies the metadata log. A learner that registered again
    /// (a new process, maybe with an empty data dir) is removed and added again: that starts
    /// its progress over, so the leader does not take it to hold the entries its previous
    /// process had. One change at a time (raft-rs ignores a second while one is pending; the
    /// next tick goes on).
    fn add_learners(&mut self) {
        let learners = self.replica.learners();
        let brokers: Vec<(NodeId, u64)> = self
            .state
            .borrow()
            .brokers()
            .values()
            .map(|b| (b.registration.node, b.broker_epoch))
            .filter(|(node, _)| !self.seeds.contains(node))
            .collect();
        for (node, broker_epoch) in brokers {
            let id = raft_id(node);
            let fresh = self.learners_fresh.get(&node) == Some(&broker_epoch);
            let proposed = if !learners.contains(&id) {
                let _ = self.learners_adding.insert(node, broker_epoch);
                self.replica.propose_add_learner(id)
            } else if fresh {
                continue;
            } else if self.learners_adding.get(&node) == Some(&broker_epoch) {
                let _ = self.learners_adding.remove(&node);
                let _ = self.learners_fresh.insert(node, broker_epoch);
                tracing::info!(node = %node, broker_epoch, "broker follows the controller as a learner");
                continue;
            } else {
                self.replica.propose_remove_learner(id)
            };
            if let Err(error) = proposed {
                tracing::debug!(node = %node, %error, "learner change not proposed yet");
            }
            return;
        }
    }

    /// Every registered broker is a peer, at the address it registered (seeds keep the one
    /// configured).
    fn connect_brokers(&self) {
        let state = self.state.borrow();
        for broker in state.brokers().values() {
            let node = broker.registration.node;
            if !self.seeds.contains(&node) {
                self.net.ensure_peer(node, &broker.registration.rpc_addr);
            }
        }
    }

    async fn deliver(&mut self, progress: Progress) -> shoal_consensus::Result<()> {
        for message in &progress.messages {
            let to = node_of(message.to);
            let bytes = shoal_consensus::encode_message(message)?;
            self.net.send_raft(to, CONTROLLER_GROUP, bytes.into());
        }
        let mut changed = false;
        if let Some(snapshot) = &progress.snapshot {
            match ClusterState::from_snapshot_bytes(&snapshot.data) {
                Ok(state) => *self.state.borrow_mut() = state,
                Err(error) => {
                    return Err(shoal_consensus::Error::Invalid(format!(
                        "controller snapshot from the leader: {error}"
                    )))
                }
            }
            changed = true;
        }
        let mut outcomes = Vec::new();
        for entry in progress.committed {
            let (id, record) = entry.data.split_at(PROPOSAL_ID_BYTES.min(entry.data.len()));
            let record = Record::decode(record).map_err(|error| {
                // A record this version cannot read: applying the rest out of order would
                // fork this node's metadata, so stop.
                shoal_consensus::Error::Invalid(format!("metadata record {}: {error}", entry.index))
            })?;
            let applied = self.state.borrow_mut().apply(entry.index, &record);
            match &applied {
                Ok(applied) => tracing::debug!(index = entry.index, ?applied, "metadata applied"),
                Err(error) => {
                    tracing::info!(index = entry.index, %error, "metadata record refused")
                }
            }
            changed = true;
            let waiter = <[u8; PROPOSAL_ID_BYTES]>::try_from(id)
                .ok()
                .and_then(|id| self.pending.remove(&id));
            if let Some(done) = waiter {
                outcomes.push((done, applied.map_err(ProposeError::Refused)));
            }
        }
        let applied_index = progress.applied_index;
        if applied_index > self.state.borrow().applied_index() {
            self.state.borrow_mut().advance(applied_index);
        }
        if changed {
            self.connect_brokers();
            let next = self.server_snapshot();
            self.shard.adopt_cluster_metadata(next).await;
        }
        // Answered only now, so a client whose CreateTopics returned finds the topic's logs
        // open on this node.
        for (done, outcome) in outcomes {
            let _ = done.send(outcome);
        }
        Ok(())
    }

    /// This node's view of the controller's metadata, in the shape every core reads.
    fn server_snapshot(&self) -> Snapshot {
        let state = self.state.borrow();
        let me = self.registration.node.0;
        let topics = state
            .topics()
            .iter()
            .map(|(name, topic)| {
                // A partition's core here is this node's replica's; its node the one
                // that leads it (a replicated partition's reported leader, -1 before one).
                fn here(
                    p: &shoal_controller::PartitionAssignment,
                    me: i32,
                ) -> Option<&shoal_controller::Replica> {
                    p.replicas
                        .iter()
                        .find(|r| r.node.0 == me)
                        .or(p.replicas.first())
                }
                let meta = TopicMeta {
                    id: topic.id,
                    owners: topic
                        .partitions
                        .iter()
                        .map(|p| here(p, me).map_or(0, |r| r.core.0 as usize))
                        .collect(),
                    configs: topic.configs.clone(),
                    leader_epochs: topic.partitions.iter().map(|p| p.leader_epoch).collect(),
                    nodes: topic
                        .partitions
                        .iter()
                        .map(|p| {
                            if p.is_replicated() {
                                p.leader.map_or(-1, |l| l.0)
                            } else {
                                p.replicas.first().map_or(-1, |r| r.node.0)
                            }
                        })
                        .collect(),
                    replicas: topic
                        .partitions
                        .iter()
                        .map(|p| p.replicas.iter().map(|r| (r.node.0, r.core.0)).collect())
                        .collect(),
                    isr: topic
                        .partitions
                        .iter()
                        .map(|p| p.isr.iter().map(|n| n.0).collect())
                        .collect(),
                };
                (name.clone(), meta)
            })
            .collect();
        let brokers = state
            .brokers()
            .values()
            .map(|b| BrokerMeta {
                node: b.registration.node.0,
                host: b.registration.kafka_host.clone(),
                port: i32::from(b.registration.kafka_port),
                rack: b.registration.rack.clone(),
                fenced: b.fenced,
            })
            .collect();
        Snapshot {
            version: 0, // set from the current version when adopted
            cluster_id: state.cluster_id().to_string(),
            topics,
            producer_ids_reserved_until: 0,
            node: me,
            brokers,
            client_quotas: state.client_quotas().clone(),
        }
    }

    /// Snapshots the metadata every `COMPACT_EVERY_ENTRIES`, and at once after a learner was
    /// added (`force`): a snapshot the leader sends must name its receiver.
    async fn compact_if_due(&mut self, force: bool) -> shoal_consensus::Result<()> {
        let applied = self.replica.applied_index();
        let snapshot_index = self.replica.snapshot_index();
        let due = applied >= snapshot_index + COMPACT_EVERY_ENTRIES;
        if !(due || force && applied > snapshot_index) {
            return Ok(());
        }
        let bytes = self
            .state
            .borrow()
            .to_snapshot_bytes()
            .map_err(|e| shoal_consensus::Error::Invalid(format!("metadata snapshot: {e}")))?;
        self.replica.compact(applied, bytes).await
    }

    fn refresh_view(&mut self) {
        let status = self.replica.status();
        if status.leader != 0 && status.leader != self.last_leader {
            tracing::info!(leader = %node_of(status.leader), term = status.term, "controller leader");
            self.last_leader = status.leader;
            self.view.borrow_mut().leader_changes += 1;
        }
        let stats = &self.net.stats;
        let mut view = self.view.borrow_mut();
        view.leader = (status.leader != 0).then(|| node_of(status.leader).0);
        view.voters = self
            .replica
            .voters()
            .into_iter()
            .map(|id| node_of(id).0)
            .collect();
        view.learners = self
            .replica
            .learners()
            .into_iter()
            .map(|id| node_of(id).0)
            .collect();
        view.registrations_refused = self.registrations_refused;
        view.term = status.term;
        view.commit = status.commit;
        view.applied = self.replica.applied_index();
        view.heartbeats_missed = self.heartbeats_missed;
        view.rpc_bytes_in = stats.bytes_in.get();
        view.rpc_bytes_out = stats.bytes_out.get();
        view.rpc_frames_refused = stats.frames_refused.get();
        view.rpc_envelopes_dropped = stats.envelopes_dropped.get();
    }
}

impl ClusterView {
    /// The JSON of `/v1/cluster`; the brokers are read from the applied `state` when asked.
    pub(crate) fn to_json(&self, state: &ClusterState) -> serde_json::Value {
        let brokers: Vec<serde_json::Value> = state
            .brokers()
            .values()
            .map(|b| {
                let r = &b.registration;
                serde_json::json!({
                    "node_id": r.node.0, "kafka": format!("{}:{}", r.kafka_host, r.kafka_port),
                    "rpc": r.rpc_addr, "rack": r.rack,
                    "broker_epoch": b.broker_epoch, "fenced": b.fenced,
                })
            })
            .collect();
        serde_json::json!({
            "node_id": self.node,
            "cluster_id": self.cluster_id,
            "controller": {
                "voters": self.voters, "learners": self.learners, "leader": self.leader,
                "term": self.term, "commit": self.commit, "leader_changes": self.leader_changes,
                "registrations_refused": self.registrations_refused,
            },
            "metadata_version": self.applied,
            "heartbeats_missed": self.heartbeats_missed,
            "brokers": brokers,
            "rpc": {
                "bytes_in": self.rpc_bytes_in, "bytes_out": self.rpc_bytes_out,
                "frames_refused": self.rpc_frames_refused,
                "envelopes_dropped": self.rpc_envelopes_dropped,
                "heartbeat_round_trips": self.heartbeat_round_trip.count(),
                "heartbeat_round_trip_us_max": self.heartbeat_round_trip_us_max,
            },
        })
    }
}
