//! The node-to-node transport, on core 0: one listener (`rpc_addr`), one outbound connection
//! per peer, frames of `shoal-rpc`.
//!
//! Outbound: `RpcNet::send` queues an envelope for a peer (bounded, `PEER_QUEUE_MAX`; a full
//! queue drops the envelope and counts it: everything sent here is Raft traffic, which
//! tolerates loss and retries by itself). One task per peer connects (backoff
//! `RECONNECT_MS_MIN`..`RECONNECT_MS_MAX`), sends a Hello, then batches whatever is queued
//! into one frame per write.
//!
//! Inbound: every frame is length-checked before it is read, then CRC-, version- and
//! peer-checked (cluster id, destination, known sender); the first envelope of a connection
//! must be a Hello. A frame that fails any check closes the connection with a logged reason:
//! a Kafka client or a node of another cluster on this port is refused, nothing else happens.
//! Raft envelopes of the controller group go to the controller's inbox (core 0); those of
//! partition groups to `Shard::route_raft`, which hands each to its target core
//! (`replication.rs`).
//!
//! Members are the seeds and the registered brokers (decided per frame from the applied
//! metadata). A node that is neither may still reach a voter, but only with registrations
//! (`ControllerRequest`): anything else from it closes the connection as an unknown node.
//! Peers are the seeds at start; each registered broker becomes one when its registration
//! is applied (`ensure_peer`), at the address it registered.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use shoal_model::{NodeId, ShardId};
use shoal_rpc::{
    check_peer, decode_frame, encode_frame, frame_length, ClusterId, Envelope, FrameHeader, Hello,
    Incarnation, MessageKind, RaftMessage, FRAME_PREFIX_BYTES,
};

/// Envelopes queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 4096;
/// Envelopes written in one frame at most.
const ENVELOPES_PER_WRITE_MAX: usize = 1024;
/// Raft messages queued for the controller before new ones are dropped.
pub(crate) const INBOX_MAX: usize = 4096;
const RECONNECT_MS_MIN: u64 = 50;
const RECONNECT_MS_MAX: u64 = 2000;
const CONNECT_TIMEOUT_MS: u64 = 1000;
/// The first frame of a connection carries only the Hello: anything larger is refused before
/// it is read, so a stranger cannot make this node allocate a full frame.
const FIRST_FRAME_BYTES_MAX: usize = 1024;
/// Inbound node-to-node connections held at once (a cluster needs one per peer; reconnects
/// overlap briefly); more are closed at once.
const INBOUND_CONNECTIONS_MAX: usize = 64;

/// What arrived for the controller driver.
pub(crate) enum Inbound {
    /// A Raft message of the controller group.
    Raft { from: NodeId, message: Bytes },
    /// A broker's liveness report (served by the controller leader).
    Heartbeat {
        from: NodeId,
        beat: shoal_rpc::BrokerHeartbeat,
    },
    /// The leader's answer to one of this node's heartbeats (times the round trip).
    HeartbeatResponse {
        from: NodeId,
        response: shoal_rpc::BrokerHeartbeatResponse,
    },
    /// A call to the controller from another node (a registration; served by the leader).
    ControllerRequest {
        from: NodeId,
        request: shoal_rpc::ControllerRequest,
    },
    /// A metadata change from this node's own requests (`cluster::ClusterHandle`).
    Propose(crate::cluster::Proposal),
}

/// Counters for `/metrics` and `/v1/cluster`.
#[derive(Default)]
pub(crate) struct NetStats {
    pub(crate) bytes_out: Cell<u64>,
    pub(crate) bytes_in: Cell<u64>,
    pub(crate) frames_refused: Cell<u64>,
    pub(crate) envelopes_dropped: Cell<u64>,
    pub(crate) connects: Cell<u64>,
    pub(crate) inbound_connections: Cell<usize>,
}

/// Takes a partition group's Raft message: (from, target core, group, message).
pub(crate) type PartitionInbox = Rc<dyn Fn(NodeId, ShardId, u64, Bytes)>;

pub(crate) struct RpcNet {
    partition_inbox: RefCell<Option<PartitionInbox>>,
    me: NodeId,
    cluster_id: ClusterId,
    incarnation: Incarnation,
    /// Whether this node is a controller voter: only voters take registrations from nodes
    /// they do not know yet (see `read_connection`).
    serves_registrations: bool,
    peers: RefCell<BTreeMap<NodeId, Peer>>,
    stopping: Rc<Cell<bool>>,
    pub(crate) stats: Rc<NetStats>,
}

/// One outbound connection's queue. Dropping it (`retired` set, sender dropped) ends the
/// task that keeps the connection.
struct Peer {
    addr: String,
    sender: LocalSender<Envelope>,
    retired: Rc<Cell<bool>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.retired.set(true);
    }
}

impl RpcNet {
    /// Starts one outbound task per peer (`peers`: node id -> host:port) and returns the
    /// handle to queue envelopes with. More peers join with `ensure_peer`.
    pub(crate) fn start(
        me: NodeId,
        cluster_id: ClusterId,
        incarnation: Incarnation,
        serves_registrations: bool,
        peers: &[(NodeId, String)],
        stopping: Rc<Cell<bool>>,
    ) -> Rc<RpcNet> {
        let net = Rc::new(RpcNet {
            partition_inbox: RefCell::new(None),
            me,
            cluster_id,
            incarnation,
            serves_registrations,
            peers: RefCell::new(BTreeMap::new()),
            stopping,
            stats: Rc::new(NetStats::default()),
        });
        for (node, addr) in peers {
            net.ensure_peer(*node, addr);
        }
        net
    }

    /// Makes sure envelopes for `node` go to `addr`: a new peer gets its connection task; a
    /// peer whose address changed (it registered again from elsewhere) gets a new one and the
    /// old task ends. This node itself is never a peer.
    pub(crate) fn ensure_peer(&self, node: NodeId, addr: &str) {
        if node == self.me {
            return;
        }
        if self
            .peers
            .borrow()
            .get(&node)
            .is_some_and(|p| p.addr == addr)
        {
            return;
        }
        let (sender, receiver) = local_channel::new_bounded(PEER_QUEUE_MAX);
        let retired = Rc::new(Cell::new(false));
        let header = FrameHeader {
            cluster_id: self.cluster_id,
            source_node: self.me,
            source_incarnation: self.incarnation,
            destination_node: node,
        };
        let task = outbound(
            header,
            addr.to_string(),
            receiver,
            self.stats.clone(),
            self.stopping.clone(),
            retired.clone(),
        );
        glommio::spawn_local(task).detach();
        let peer = Peer {
            addr: addr.to_string(),
            sender,
            retired,
        };
        if let Some(old) = self.peers.borrow_mut().insert(node, peer) {
            tracing::info!(node = %node, from = %old.addr, to = %addr, "peer address changed");
        }
    }

    /// Queues a Raft message of the controller group for `to` (raft-rs resends what
    /// matters when it is dropped).
    pub(crate) fn send_raft(&self, to: NodeId, group: u64, message: Bytes) {
        self.send_to_core(to, ShardId(0), &RaftMessage { group, message });
    }

    /// Queues a Raft message of a partition group for the replica on `to`'s core `core`.
    pub(crate) fn send_raft_to(&self, to: NodeId, core: ShardId, group: u64, message: Bytes) {
        self.send_to_core(to, core, &RaftMessage { group, message });
    }

    /// Where Raft messages of partition groups go (core 0's `Shard::route_raft`).
    pub(crate) fn set_partition_inbox(&self, inbox: PartitionInbox) {
        *self.partition_inbox.borrow_mut() = Some(inbox);
    }

    /// Queues a broker heartbeat for the controller leader `to` (when it is dropped, the next
    /// one follows within a heartbeat interval).
    pub(crate) fn send_heartbeat(&self, to: NodeId, beat: &shoal_rpc::BrokerHeartbeat) {
        self.send(to, beat);
    }

    /// Queues the answer to a broker's heartbeat.
    pub(crate) fn send_heartbeat_response(
        &self,
        to: NodeId,
        response: &shoal_rpc::BrokerHeartbeatResponse,
    ) {
        self.send(to, response);
    }

    /// Queues a call to the controller (a registration) for the voter `to`.
    pub(crate) fn send_controller_request(
        &self,
        to: NodeId,
        request: &shoal_rpc::ControllerRequest,
    ) {
        self.send(to, request);
    }

    /// Queues one message for `to`, for core 0 there.
    fn send<B: shoal_rpc::Body>(&self, to: NodeId, body: &B) {
        self.send_to_core(to, ShardId(0), body)
    }

    /// Queues one message for `to`'s core `core`. Never waits: a full queue, an unknown peer
    /// or a body that does not encode drops the message and counts it.
    fn send_to_core<B: shoal_rpc::Body>(&self, to: NodeId, core: ShardId, body: &B) {
        let envelope = match Envelope::new(core, body) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, to = %to, kind = %B::KIND, "message not sent");
                self.count_dropped();
                return;
            }
        };
        let queued = self
            .peers
            .borrow()
            .get(&to)
            .map(|p| p.sender.try_send(envelope));
        if !matches!(queued, Some(Ok(()))) {
            self.count_dropped();
        }
    }

    fn count_dropped(&self) {
        let dropped = &self.stats.envelopes_dropped;
        dropped.set(dropped.get() + 1);
    }

    /// Serves the listener until the broker stops: each connection in its own task.
    pub(crate) async fn serve(
        self: Rc<Self>,
        listener: TcpListener,
        known: Rc<dyn Fn(NodeId) -> bool>,
        inbox: Rc<LocalSender<Inbound>>,
        stopping: Rc<Cell<bool>>,
    ) {
        while !stopping.get() {
            match listener.accept().await {
                Ok(stream) => {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let open = self.stats.inbound_connections.get();
                    if open >= INBOUND_CONNECTIONS_MAX {
                        tracing::warn!(peer = %peer, open, "internal connection refused: too many open");
                        continue;
                    }
                    self.stats.inbound_connections.set(open + 1);
                    let (net, known, inbox) = (self.clone(), known.clone(), inbox.clone());
                    glommio::spawn_local(async move {
                        if let Err(reason) = net.read_connection(stream, &*known, &inbox).await {
                            net.stats
                                .frames_refused
                                .set(net.stats.frames_refused.get() + 1);
                            tracing::warn!(peer = %peer, "internal connection closed: {reason}");
                        }
                        let open = net.stats.inbound_connections.get();
                        net.stats.inbound_connections.set(open.saturating_sub(1));
                    })
                    .detach();
                }
                Err(error) => tracing::warn!(%error, "rpc accept failed"),
            }
        }
    }

    /// Reads frames until the peer closes (`Ok`) or a frame is refused (`Err` with the reason
    /// to log).
    async fn read_connection(
        &self,
        mut stream: TcpStream,
        known: &dyn Fn(NodeId) -> bool,
        inbox: &LocalSender<Inbound>,
    ) -> Result<(), String> {
        let mut greeted = false;
        loop {
            let mut prefix = [0u8; FRAME_PREFIX_BYTES];
            match stream.read_exact(&mut prefix).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(format!("read failed: {e}")),
            }
            let len = frame_length(prefix).map_err(|e| e.to_string())?;
            if !greeted && len > FIRST_FRAME_BYTES_MAX {
                return Err(format!(
                    "first frame of {len} bytes refused: a connection starts with a Hello of at \
                     most {FIRST_FRAME_BYTES_MAX} bytes (not a Shoal peer?)"
                ));
            }
            let mut frame = vec![0u8; len];
            stream
                .read_exact(&mut frame)
                .await
                .map_err(|e| format!("frame of {len} bytes cut short: {e}"))?;
            self.stats
                .bytes_in
                .set(self.stats.bytes_in.get() + (len + FRAME_PREFIX_BYTES) as u64);
            let (header, envelopes) =
                decode_frame(&Bytes::from(frame)).map_err(|e| e.to_string())?;
            // A node not yet registered may only ask a voter to register it: check the rest
            // of the header first, then whether the sender is a member.
            check_peer(&header, self.cluster_id, self.me, |_| true).map_err(|e| e.to_string())?;
            let member = known(header.source_node);
            let unknown = || shoal_rpc::Error::UnknownNode {
                source_node: header.source_node,
                cluster: header.cluster_id,
            };
            if !member && !self.serves_registrations {
                return Err(unknown().to_string());
            }
            for envelope in envelopes {
                if !member && greeted && envelope.kind != MessageKind::CONTROLLER_REQUEST {
                    return Err(format!(
                        "{} (it sent {}, not a registration)",
                        unknown(),
                        envelope.kind
                    ));
                }
                if !greeted {
                    let hello: Hello = envelope
                        .decode()
                        .map_err(|e| format!("first envelope is not a Hello: {e}"))?;
                    if hello.node != header.source_node || hello.cluster_id != self.cluster_id {
                        return Err(format!(
                            "Hello of node {} in cluster {} does not match its frame",
                            hello.node, hello.cluster_id
                        ));
                    }
                    let _ = hello.shared_version().map_err(|e| e.to_string())?;
                    greeted = true;
                    continue;
                }
                self.dispatch(header.source_node, envelope, inbox);
            }
        }
    }

    fn dispatch(&self, from: NodeId, envelope: Envelope, inbox: &LocalSender<Inbound>) {
        if envelope.kind == MessageKind::BROKER_HEARTBEAT {
            match envelope.decode::<shoal_rpc::BrokerHeartbeat>() {
                Ok(beat) if beat.node == from => {
                    self.to_inbox(inbox, Inbound::Heartbeat { from, beat })
                }
                Ok(beat) => {
                    tracing::warn!(from = %from, claimed = %beat.node, "heartbeat for another node dropped")
                }
                Err(error) => tracing::warn!(from = %from, %error, "heartbeat skipped"),
            }
            return;
        }
        if envelope.kind == MessageKind::BROKER_HEARTBEAT_RESPONSE {
            match envelope.decode::<shoal_rpc::BrokerHeartbeatResponse>() {
                Ok(response) => self.to_inbox(inbox, Inbound::HeartbeatResponse { from, response }),
                Err(error) => tracing::warn!(from = %from, %error, "heartbeat response skipped"),
            }
            return;
        }
        if envelope.kind == MessageKind::CONTROLLER_REQUEST {
            match envelope.decode::<shoal_rpc::ControllerRequest>() {
                Ok(request) => self.to_inbox(inbox, Inbound::ControllerRequest { from, request }),
                Err(error) => tracing::warn!(from = %from, %error, "controller request skipped"),
            }
            return;
        }
        if envelope.kind != MessageKind::RAFT {
            tracing::debug!(from = %from, kind = %envelope.kind, "envelope of a kind not served here, skipped");
            return;
        }
        match envelope.decode::<RaftMessage>() {
            Ok(raft) if raft.group == crate::cluster::CONTROLLER_GROUP => {
                let message = raft.message;
                self.to_inbox(inbox, Inbound::Raft { from, message });
            }
            Ok(raft) => {
                let inbox = self.partition_inbox.borrow().clone();
                match inbox {
                    Some(inbox) => inbox(from, envelope.target_core, raft.group, raft.message),
                    None => {
                        tracing::debug!(from = %from, group = raft.group, "raft message for an unknown group, skipped")
                    }
                }
            }
            Err(error) => tracing::warn!(from = %from, %error, "raft envelope skipped"),
        }
    }

    fn to_inbox(&self, inbox: &LocalSender<Inbound>, inbound: Inbound) {
        if inbox.try_send(inbound).is_err() {
            self.count_dropped();
        }
    }
}

/// Keeps one connection to a peer: connect, Hello, then write batches of queued envelopes.
async fn outbound(
    header: FrameHeader,
    addr: String,
    queue: LocalReceiver<Envelope>,
    stats: Rc<NetStats>,
    stopping: Rc<Cell<bool>>,
    retired: Rc<Cell<bool>>,
) {
    let mut backoff_ms = RECONNECT_MS_MIN;
    let mut batches = queue.stream().ready_chunks(ENVELOPES_PER_WRITE_MAX);
    while !stopping.get() && !retired.get() {
        let connected = connect(&addr).await;
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(peer = %addr, %error, "connect failed; retrying");
                glommio::timer::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(RECONNECT_MS_MAX);
                continue;
            }
        };
        stats.connects.set(stats.connects.get() + 1);
        backoff_ms = RECONNECT_MS_MIN;
        let hello = Hello::ours(
            header.cluster_id,
            header.source_node,
            header.source_incarnation,
        );
        let mut pending = match Envelope::new(ShardId(0), &hello) {
            Ok(envelope) => vec![envelope],
            Err(error) => {
                tracing::error!(%error, "cannot encode our Hello");
                return;
            }
        };
        'connection: loop {
            // What is queued goes out in as few frames as the frame limit allows (Raft
            // appends of many partitions can add up to more than one frame).
            for envelopes in frames_of(std::mem::take(&mut pending)) {
                let mut frame = Vec::new();
                if let Err(error) = encode_frame(&header, &envelopes, &mut frame) {
                    tracing::warn!(peer = %addr, %error, "frame not sent");
                } else if let Err(error) = stream.write_all(&frame).await {
                    tracing::debug!(peer = %addr, %error, "write failed; reconnecting");
                    break 'connection;
                } else {
                    stats
                        .bytes_out
                        .set(stats.bytes_out.get() + frame.len() as u64);
                }
            }
            match batches.next().await {
                Some(batch) => pending = batch,
                None => return,
            }
        }
    }
}

/// Splits envelopes, in order, into runs that each fit one frame (`FRAME_BYTES_MAX`). An
/// envelope too large for any frame goes alone (the encoder refuses it and says so).
fn frames_of(envelopes: Vec<Envelope>) -> Vec<Vec<Envelope>> {
    let budget = shoal_rpc::FRAME_BYTES_MAX - shoal_rpc::FRAME_HEADER_BYTES;
    let mut frames: Vec<Vec<Envelope>> = Vec::new();
    let mut bytes = 0;
    for envelope in envelopes {
        let size = shoal_rpc::ENVELOPE_HEADER_BYTES + envelope.body.len();
        let fits = frames.last().is_some_and(|f| !f.is_empty()) && bytes + size <= budget;
        if !fits {
            frames.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        frames.last_mut().expect("pushed").push(envelope);
    }
    frames
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream =
        TcpStream::connect_timeout(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Who may talk to this node: decided per frame, so nodes that register later are let in.
pub(crate) type KnownNodes = Rc<dyn Fn(NodeId) -> bool>;

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(bytes: usize) -> Envelope {
        Envelope {
            target_core: ShardId(0),
            kind: MessageKind::RAFT,
            body: Bytes::from(vec![0u8; bytes]),
        }
    }

    #[test]
    fn queued_envelopes_are_split_into_frames_within_the_limit() {
        let big = shoal_rpc::FRAME_BYTES_MAX / 3;
        let sizes = [big, big, big, 10, big, 7];
        let frames = frames_of(sizes.iter().map(|&b| envelope(b)).collect());
        let budget = shoal_rpc::FRAME_BYTES_MAX - shoal_rpc::FRAME_HEADER_BYTES;
        let mut seen = Vec::new();
        for frame in &frames {
            let bytes: usize = frame
                .iter()
                .map(|e| shoal_rpc::ENVELOPE_HEADER_BYTES + e.body.len())
                .sum();
            assert!(bytes <= budget, "a frame of {bytes} bytes");
            assert!(!frame.is_empty());
            seen.extend(frame.iter().map(|e| e.body.len()));
        }
        assert_eq!(seen, sizes, "every envelope, in order");
        assert_eq!(frames.len(), 2, "two of a third each, then the rest");
        let mut out = Vec::new();
        for frame in &frames {
            let header = FrameHeader {
                cluster_id: ClusterId([1; 16]),
                source_node: NodeId(0),
                source_incarnation: Incarnation(1),
                destination_node: NodeId(1),
            };
            out.clear();
            encode_frame(&header, frame, &mut out).expect("fits a frame");
        }
        // One envelope larger than any frame goes alone (the encoder then refuses it).
        let alone = frames_of(vec![
            envelope(5),
            envelope(shoal_rpc::FRAME_BYTES_MAX),
            envelope(5),
        ]);
        assert_eq!(alone.len(), 3);
    }
}
