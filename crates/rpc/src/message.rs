//! Message kinds and their typed bodies. Each body has a fixed big-endian part and, for the
//! opaque kinds, a payload that runs to the end of the body; decoding checks the kind, the
//! size and every flag bit, so an encoded body decodes to the same value and back to the same
//! bytes.

use std::fmt;

use bytes::Bytes;
use shoal_model::{NodeId, ShardId};

use crate::cursor::Cursor;
use crate::frame::{ClusterId, Envelope, Incarnation};
use crate::{Error, BODY_BYTES_MAX, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};

/// What an envelope's body is. A plain number on the wire, so a kind this node does not know
/// still decodes as part of a valid frame; [`Message::decode`] then refuses just that envelope
/// with [`Error::UnknownKind`]. Kind 0 is never assigned, so a zeroed buffer is no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKind(pub u16);

impl MessageKind {
    /// First message on a new connection: [`Hello`].
    pub const HELLO: MessageKind = MessageKind(1);
    /// A Raft message for one partition group: [`RaftMessage`].
    pub const RAFT: MessageKind = MessageKind(2);
    /// A call to the controller: [`ControllerRequest`].
    pub const CONTROLLER_REQUEST: MessageKind = MessageKind(3);
    /// The controller's answer: [`ControllerResponse`].
    pub const CONTROLLER_RESPONSE: MessageKind = MessageKind(4);
    /// A broker's liveness report to the controller: [`BrokerHeartbeat`].
    pub const BROKER_HEARTBEAT: MessageKind = MessageKind(5);
    /// The controller's answer to a heartbeat: [`BrokerHeartbeatResponse`].
    pub const BROKER_HEARTBEAT_RESPONSE: MessageKind = MessageKind(6);

    /// The kind's name, or `None` for a kind this node does not know.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            MessageKind::HELLO => "Hello",
            MessageKind::RAFT => "Raft",
            MessageKind::CONTROLLER_REQUEST => "ControllerRequest",
            MessageKind::CONTROLLER_RESPONSE => "ControllerResponse",
            MessageKind::BROKER_HEARTBEAT => "BrokerHeartbeat",
            MessageKind::BROKER_HEARTBEAT_RESPONSE => "BrokerHeartbeatResponse",
            _ => return None,
        })
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "kind {}", self.0),
        }
    }
}

/// A typed message body with its own bounded encoding.
pub trait Body: Sized {
    const KIND: MessageKind;

    /// Appends the body's bytes. Refuses a body over [`BODY_BYTES_MAX`] or with an invalid
    /// field, leaving `out` unchanged.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Reads a body of kind [`Body::KIND`]; every byte must belong to a field. Opaque payloads
    /// are zero-copy slices of `body`.
    fn decode_body(body: &Bytes) -> Result<Self, Error>;
}

/// Any message this node knows, as the receiving core matches on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    Hello(Hello),
    Raft(RaftMessage),
    ControllerRequest(ControllerRequest),
    ControllerResponse(ControllerResponse),
    BrokerHeartbeat(BrokerHeartbeat),
    BrokerHeartbeatResponse(BrokerHeartbeatResponse),
}

impl Message {
    #[must_use]
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello(_) => Hello::KIND,
            Message::Raft(_) => RaftMessage::KIND,
            Message::ControllerRequest(_) => ControllerRequest::KIND,
            Message::ControllerResponse(_) => ControllerResponse::KIND,
            Message::BrokerHeartbeat(_) => BrokerHeartbeat::KIND,
            Message::BrokerHeartbeatResponse(_) => BrokerHeartbeatResponse::KIND,
        }
    }

    /// Reads a body by its kind. An unknown kind is [`Error::UnknownKind`], an envelope-only
    /// error: log it and skip the envelope.
    pub fn decode(kind: MessageKind, body: &Bytes) -> Result<Message, Error> {
        Ok(match kind {
            Hello::KIND => Message::Hello(Hello::decode_body(body)?),
            RaftMessage::KIND => Message::Raft(RaftMessage::decode_body(body)?),
            ControllerRequest::KIND => {
                Message::ControllerRequest(ControllerRequest::decode_body(body)?)
            }
            ControllerResponse::KIND => {
                Message::ControllerResponse(ControllerResponse::decode_body(body)?)
            }
            BrokerHeartbeat::KIND => Message::BrokerHeartbeat(BrokerHeartbeat::decode_body(body)?),
            BrokerHeartbeatResponse::KIND => {
                Message::BrokerHeartbeatResponse(BrokerHeartbeatResponse::decode_body(body)?)
            }
            unknown => return Err(Error::UnknownKind(unknown)),
        })
    }

    /// Appends the body's bytes (see [`Body::encode_body`]).
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Message::Hello(body) => body.encode_body(out),
            Message::Raft(body) => body.encode_body(out),
            Message::ControllerRequest(body) => body.encode_body(out),
            Message::ControllerResponse(body) => body.encode_body(out),
            Message::BrokerHeartbeat(body) => body.encode_body(out),
            Message::BrokerHeartbeatResponse(body) => body.encode_body(out),
        }
    }

    /// The message as an envelope for `target_core` of the destination node.
    pub fn to_envelope(&self, target_core: ShardId) -> Result<Envelope, Error> {
        let mut body = Vec::new();
        self.encode_body(&mut body)?;
        Ok(Envelope {
            target_core,
            kind: self.kind(),
            body: Bytes::from(body),
        })
    }
}

impl Envelope {
    /// An envelope carrying `body`, for `target_core` of the destination node.
    pub fn new<B: Body>(target_core: ShardId, body: &B) -> Result<Envelope, Error> {
        let mut bytes = Vec::new();
        body.encode_body(&mut bytes)?;
        Ok(Envelope {
            target_core,
            kind: B::KIND,
            body: Bytes::from(bytes),
        })
    }

    /// Reads the body as `B`; [`Error::WrongKind`] when the envelope is of another kind.
    pub fn decode<B: Body>(&self) -> Result<B, Error> {
        if self.kind != B::KIND {
            return Err(Error::WrongKind {
                expected: B::KIND,
                found: self.kind,
            });
        }
        B::decode_body(&self.body)
    }

    /// Reads the body by its kind (see [`Message::decode`]).
    pub fn message(&self) -> Result<Message, Error> {
        Message::decode(self.kind, &self.body)
    }
}

/// Sent first on every new connection, both ways: who the sender is and which frame versions
/// it speaks. The receiver checks it against the frame header and its own config, and answers
/// in the highest version both speak ([`Hello::shared_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hello {
    pub cluster_id: ClusterId,
    pub node: NodeId,
    pub incarnation: Incarnation,
    /// Oldest frame version the sender reads; never above `version_max`.
    pub version_min: u16,
    /// Newest frame version the sender reads and writes.
    pub version_max: u16,
}

impl Hello {
    const BYTES: usize = 16 + 4 + 8 + 2 + 2;

    /// This node's Hello: the versions this crate speaks.
    #[must_use]
    pub fn ours(cluster_id: ClusterId, node: NodeId, incarnation: Incarnation) -> Hello {
        Hello {
            cluster_id,
            node,
            incarnation,
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX,
        }
    }

    /// The newest frame version both this node and the Hello's sender speak.
    pub fn shared_version(&self) -> Result<u16, Error> {
        let newest = self.version_max.min(PROTOCOL_VERSION_MAX);
        if newest < self.version_min.max(PROTOCOL_VERSION_MIN) {
            return Err(Error::NoCommonVersion {
                min: self.version_min,
                max: self.version_max,
            });
        }
        Ok(newest)
    }

    fn check_range(min: u16, max: u16) -> Result<(), Error> {
        if min > max {
            return Err(Error::BadVersionRange { min, max });
        }
        Ok(())
    }
}

impl Body for Hello {
    const KIND: MessageKind = MessageKind::HELLO;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        Hello::check_range(self.version_min, self.version_max)?;
        let start = out.len();
        out.extend_from_slice(&self.cluster_id.0);
        out.extend_from_slice(&self.node.0.to_be_bytes());
        out.extend_from_slice(&self.incarnation.0.to_be_bytes());
        out.extend_from_slice(&self.version_min.to_be_bytes());
        out.extend_from_slice(&self.version_max.to_be_bytes());
        debug_assert_eq!(out.len() - start, Hello::BYTES);
        Ok(())
    }

    fn decode_body(body: &Bytes) -> Result<Hello, Error> {
        let mut cursor = fixed_body(Self::KIND, body, Hello::BYTES)?;
        let short = || body_too_short(Self::KIND, body, Hello::BYTES);
        let hello = Hello {
            cluster_id: ClusterId(cursor.array().ok_or_else(short)?),
            node: NodeId(cursor.i32().ok_or_else(short)?),
            incarnation: Incarnation(cursor.u64().ok_or_else(short)?),
            version_min: cursor.u16().ok_or_else(short)?,
            version_max: cursor.u16().ok_or_else(short)?,
        };
        Hello::check_range(hello.version_min, hello.version_max)?;
        Ok(hello)
    }
}

/// A Raft message of one partition group: raft-rs's `eraftpb::Message`, protobuf-encoded by
/// the caller (this crate does not depend on raft). Routed to the core that owns the group's
/// replica on the destination node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RaftMessage {
    /// The Raft group (one partition's replica set), as raft-rs numbers it.
    pub group: u64,
    /// The encoded `eraftpb::Message`.
    pub message: Bytes,
}

impl Body for RaftMessage {
    const KIND: MessageKind = MessageKind::RAFT;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        encode_opaque(Self::KIND, self.group, &self.message, out)
    }

    fn decode_body(body: &Bytes) -> Result<RaftMessage, Error> {
        let (group, message) = decode_opaque(Self::KIND, body)?;
        Ok(RaftMessage { group, message })
    }
}

/// A call to the controller. The controller crate defines the payload; `request_id`, chosen
/// by the caller and unique among its calls in flight, pairs the answer with the call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControllerRequest {
    pub request_id: u64,
    pub payload: Bytes,
}

impl Body for ControllerRequest {
    const KIND: MessageKind = MessageKind::CONTROLLER_REQUEST;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        encode_opaque(Self::KIND, self.request_id, &self.payload, out)
    }

    fn decode_body(body: &Bytes) -> Result<ControllerRequest, Error> {
        let (request_id, payload) = decode_opaque(Self::KIND, body)?;
        Ok(ControllerRequest {
            request_id,
            payload,
        })
    }
}

/// The controller's answer to the [`ControllerRequest`] with the same `request_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControllerResponse {
    pub request_id: u64,
    pub payload: Bytes,
}

impl Body for ControllerResponse {
    const KIND: MessageKind = MessageKind::CONTROLLER_RESPONSE;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        encode_opaque(Self::KIND, self.request_id, &self.payload, out)
    }

    fn decode_body(body: &Bytes) -> Result<ControllerResponse, Error> {
        let (request_id, payload) = decode_opaque(Self::KIND, body)?;
        Ok(ControllerResponse {
            request_id,
            payload,
        })
    }
}

/// A broker's periodic liveness report to the controller, as KRaft's BrokerHeartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrokerHeartbeat {
    /// Pairs the answer with this heartbeat (and times the round trip).
    pub request_id: u64,
    pub node: NodeId,
    /// The epoch the controller gave this broker when it registered; a stale epoch is
    /// refused, so a broker from before a restart cannot keep the new one alive.
    pub broker_epoch: i64,
    pub incarnation: Incarnation,
    /// The last offset of the metadata log this broker has applied.
    pub metadata_offset: i64,
    /// The broker asks to be fenced (no leaderships), e.g. while it catches up.
    pub want_fence: bool,
    /// The broker asks to shut down once its leaderships have moved away.
    pub want_shutdown: bool,
}

impl BrokerHeartbeat {
    const BYTES: usize = 8 + 4 + 8 + 8 + 8 + 1;
    const WANT_FENCE: u8 = 1 << 0;
    const WANT_SHUTDOWN: u8 = 1 << 1;
}

impl Body for BrokerHeartbeat {
    const KIND: MessageKind = MessageKind::BROKER_HEARTBEAT;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.node.0.to_be_bytes());
        out.extend_from_slice(&self.broker_epoch.to_be_bytes());
        out.extend_from_slice(&self.incarnation.0.to_be_bytes());
        out.extend_from_slice(&self.metadata_offset.to_be_bytes());
        out.push(
            flag(self.want_fence, Self::WANT_FENCE) | flag(self.want_shutdown, Self::WANT_SHUTDOWN),
        );
        debug_assert_eq!(out.len() - start, Self::BYTES);
        Ok(())
    }

    fn decode_body(body: &Bytes) -> Result<BrokerHeartbeat, Error> {
        let mut cursor = fixed_body(Self::KIND, body, Self::BYTES)?;
        let short = || body_too_short(Self::KIND, body, Self::BYTES);
        let request_id = cursor.u64().ok_or_else(short)?;
        let node = NodeId(cursor.i32().ok_or_else(short)?);
        let broker_epoch = cursor.i64().ok_or_else(short)?;
        let incarnation = Incarnation(cursor.u64().ok_or_else(short)?);
        let metadata_offset = cursor.i64().ok_or_else(short)?;
        let flags = cursor.u8().ok_or_else(short)?;
        check_flags(Self::KIND, flags, Self::WANT_FENCE | Self::WANT_SHUTDOWN)?;
        Ok(BrokerHeartbeat {
            request_id,
            node,
            broker_epoch,
            incarnation,
            metadata_offset,
            want_fence: flags & Self::WANT_FENCE != 0,
            want_shutdown: flags & Self::WANT_SHUTDOWN != 0,
        })
    }
}

/// The controller's answer to the [`BrokerHeartbeat`] with the same `request_id`, as KRaft's
/// BrokerHeartbeatResponse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrokerHeartbeatResponse {
    pub request_id: u64,
    /// The broker this answers.
    pub node: NodeId,
    /// The broker's epoch as the controller knows it.
    pub broker_epoch: i64,
    /// The broker's metadata log is close enough to the controller's to lead partitions.
    pub is_caught_up: bool,
    /// The broker is fenced: it must not lead or accept writes.
    pub is_fenced: bool,
    /// The broker may complete its controlled shutdown.
    pub should_shutdown: bool,
}

impl BrokerHeartbeatResponse {
    const BYTES: usize = 8 + 4 + 8 + 1;
    const CAUGHT_UP: u8 = 1 << 0;
    const FENCED: u8 = 1 << 1;
    const SHOULD_SHUTDOWN: u8 = 1 << 2;
}

impl Body for BrokerHeartbeatResponse {
    const KIND: MessageKind = MessageKind::BROKER_HEARTBEAT_RESPONSE;

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.node.0.to_be_bytes());
        out.extend_from_slice(&self.broker_epoch.to_be_bytes());
        out.push(
            flag(self.is_caught_up, Self::CAUGHT_UP)
                | flag(self.is_fenced, Self::FENCED)
                | flag(self.should_shutdown, Self::SHOULD_SHUTDOWN),
        );
        debug_assert_eq!(out.len() - start, Self::BYTES);
        Ok(())
    }

    fn decode_body(body: &Bytes) -> Result<BrokerHeartbeatResponse, Error> {
        let mut cursor = fixed_body(Self::KIND, body, Self::BYTES)?;
        let short = || body_too_short(Self::KIND, body, Self::BYTES);
        let request_id = cursor.u64().ok_or_else(short)?;
        let node = NodeId(cursor.i32().ok_or_else(short)?);
        let broker_epoch = cursor.i64().ok_or_else(short)?;
        let flags = cursor.u8().ok_or_else(short)?;
        check_flags(
            Self::KIND,
            flags,
            Self::CAUGHT_UP | Self::FENCED | Self::SHOULD_SHUTDOWN,
        )?;
        Ok(BrokerHeartbeatResponse {
            request_id,
            node,
            broker_epoch,
            is_caught_up: flags & Self::CAUGHT_UP != 0,
            is_fenced: flags & Self::FENCED != 0,
            should_shutdown: flags & Self::SHOULD_SHUTDOWN != 0,
        })
    }
}

/// Bytes of the id before an opaque payload.
const OPAQUE_ID_BYTES: usize = 8;

/// An id (`u64`) followed by a payload that runs to the end of the body.
fn encode_opaque(
    kind: MessageKind,
    id: u64,
    payload: &Bytes,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = OPAQUE_ID_BYTES.saturating_add(payload.len());
    if len > BODY_BYTES_MAX {
        return Err(Error::TooLarge {
            len,
            max: BODY_BYTES_MAX,
        });
    }
    debug_assert!(kind.name().is_some());
    out.reserve(len);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

fn decode_opaque(kind: MessageKind, body: &Bytes) -> Result<(u64, Bytes), Error> {
    check_body_size(kind, body, OPAQUE_ID_BYTES)?;
    let mut cursor = Cursor::new(body);
    let id = cursor
        .u64()
        .ok_or_else(|| body_too_short(kind, body, OPAQUE_ID_BYTES))?;
    let payload = cursor.rest();
    debug_assert_eq!(cursor.remaining(), 0);
    Ok((id, payload))
}

/// A cursor over a body that must be exactly `len` bytes.
fn fixed_body(kind: MessageKind, body: &Bytes, len: usize) -> Result<Cursor<'_>, Error> {
    check_body_size(kind, body, len)?;
    if body.len() > len {
        return Err(Error::BodyTrailingBytes {
            kind,
            count: body.len() - len,
        });
    }
    Ok(Cursor::new(body))
}

fn check_body_size(kind: MessageKind, body: &Bytes, min: usize) -> Result<(), Error> {
    if body.len() > BODY_BYTES_MAX {
        return Err(Error::TooLarge {
            len: body.len(),
            max: BODY_BYTES_MAX,
        });
    }
    if body.len() < min {
        return Err(body_too_short(kind, body, min));
    }
    Ok(())
}

fn body_too_short(kind: MessageKind, body: &Bytes, min: usize) -> Error {
    Error::BodyTooShort {
        kind,
        len: body.len(),
        min,
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

fn check_flags(kind: MessageKind, flags: u8, known: u8) -> Result<(), Error> {
    if flags & !known != 0 {
        return Err(Error::UnknownFlags { kind, flags });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded<B: Body>(body: &B) -> Bytes {
        let mut out = Vec::new();
        body.encode_body(&mut out).expect("valid body");
        Bytes::from(out)
    }

    fn heartbeat() -> BrokerHeartbeat {
        BrokerHeartbeat {
            request_id: 11,
            node: NodeId(3),
            broker_epoch: 5,
            incarnation: Incarnation(99),
            metadata_offset: 1234,
            want_fence: true,
            want_shutdown: false,
        }
    }

    fn heartbeat_response() -> BrokerHeartbeatResponse {
        BrokerHeartbeatResponse {
            request_id: 11,
            node: NodeId(3),
            broker_epoch: 5,
            is_caught_up: true,
            is_fenced: false,
            should_shutdown: true,
        }
    }

    fn hello() -> Hello {
        Hello::ours(ClusterId([4; 16]), NodeId(1), Incarnation(77))
    }

    #[test]
    fn raft_body_layout_is_group_then_message() {
        let raft = RaftMessage {
            group: 0x0102_0304_0506_0708,
            message: Bytes::from_static(b"pb"),
        };
        assert_eq!(&encoded(&raft)[..], b"\x01\x02\x03\x04\x05\x06\x07\x08pb");
    }

    #[test]
    fn an_unknown_kind_is_an_envelope_only_error() {
        let envelope = Envelope {
            target_core: ShardId(0),
            kind: MessageKind(999),
            body: Bytes::from_static(b"from the future"),
        };
        let err = envelope.message().expect_err("unknown kind");
        assert_eq!(err, Error::UnknownKind(MessageKind(999)));
        assert!(err.is_envelope_only());
        assert_eq!(
            err.to_string(),
            "message kind 999 is unknown to this node (sent by a newer peer?)"
        );
        assert_eq!(MessageKind(0).name(), None);
    }

    #[test]
    fn frame_errors_are_not_envelope_only() {
        assert!(!Error::TrailingBytes { count: 1 }.is_envelope_only());
        assert!(!Error::BadCrc {
            expected: 1,
            actual: 2
        }
        .is_envelope_only());
    }

    #[test]
    fn reading_an_envelope_as_another_kind_is_refused() {
        let envelope = Envelope::new(ShardId(1), &heartbeat()).expect("valid");
        assert_eq!(
            envelope.decode::<BrokerHeartbeatResponse>(),
            Err(Error::WrongKind {
                expected: MessageKind::BROKER_HEARTBEAT_RESPONSE,
                found: MessageKind::BROKER_HEARTBEAT
            })
        );
        assert_eq!(envelope.decode::<BrokerHeartbeat>(), Ok(heartbeat()));
    }

    #[test]
    fn opaque_bodies_shorter_than_their_id_are_refused() {
        let body = Bytes::from_static(&[0; 7]);
        for kind in [
            MessageKind::RAFT,
            MessageKind::CONTROLLER_REQUEST,
            MessageKind::CONTROLLER_RESPONSE,
        ] {
            assert_eq!(
                Message::decode(kind, &body),
                Err(Error::BodyTooShort {
                    kind,
                    len: 7,
                    min: 8
                })
            );
        }
        // Exactly the id: an empty payload.
        let empty = RaftMessage::decode_body(&Bytes::from_static(&[0; 8])).expect("id only");
        assert!(empty.message.is_empty());
    }

    #[test]
    fn opaque_bodies_over_the_limit_are_refused_both_ways() {
        let payload = Bytes::from(vec![0u8; BODY_BYTES_MAX - OPAQUE_ID_BYTES + 1]);
        let raft = RaftMessage {
            group: 1,
            message: payload.clone(),
        };
        let mut out = b"kept".to_vec();
        assert_eq!(
            raft.encode_body(&mut out),
            Err(Error::TooLarge {
                len: BODY_BYTES_MAX + 1,
                max: BODY_BYTES_MAX
            })
        );
        assert_eq!(out, b"kept");
        let body = Bytes::from(vec![0u8; BODY_BYTES_MAX + 1]);
        assert!(matches!(
            ControllerRequest::decode_body(&body),
            Err(Error::TooLarge { .. })
        ));
        let at_limit = RaftMessage {
            group: 1,
            message: payload.slice(1..),
        };
        assert_eq!(encoded(&at_limit).len(), BODY_BYTES_MAX);
    }

    #[test]
    fn fixed_bodies_one_byte_short_are_refused() {
        let cases = [
            (MessageKind::HELLO, encoded(&hello())),
            (MessageKind::BROKER_HEARTBEAT, encoded(&heartbeat())),
            (
                MessageKind::BROKER_HEARTBEAT_RESPONSE,
                encoded(&heartbeat_response()),
            ),
        ];
        for (kind, body) in cases {
            let short = body.slice(..body.len() - 1);
            assert_eq!(
                Message::decode(kind, &short),
                Err(Error::BodyTooShort {
                    kind,
                    len: body.len() - 1,
                    min: body.len()
                })
            );
        }
    }

    #[test]
    fn fixed_bodies_with_trailing_bytes_are_refused() {
        let cases = [
            (MessageKind::HELLO, encoded(&hello())),
            (MessageKind::BROKER_HEARTBEAT, encoded(&heartbeat())),
            (
                MessageKind::BROKER_HEARTBEAT_RESPONSE,
                encoded(&heartbeat_response()),
            ),
        ];
        for (kind, body) in cases {
            let mut long = body.to_vec();
            long.push(0);
            assert_eq!(
                Message::decode(kind, &Bytes::from(long)),
                Err(Error::BodyTrailingBytes { kind, count: 1 })
            );
        }
    }

    #[test]
    fn heartbeat_flags_outside_the_known_bits_are_refused() {
        let mut body = encoded(&heartbeat()).to_vec();
        let last = body.len() - 1;
        body[last] |= 0x04;
        assert_eq!(
            BrokerHeartbeat::decode_body(&Bytes::from(body)),
            Err(Error::UnknownFlags {
                kind: MessageKind::BROKER_HEARTBEAT,
                flags: 0x05
            })
        );
    }

    #[test]
    fn heartbeat_response_flags_outside_the_known_bits_are_refused() {
        let mut body = encoded(&heartbeat_response()).to_vec();
        let last = body.len() - 1;
        body[last] |= 0x80;
        assert_eq!(
            BrokerHeartbeatResponse::decode_body(&Bytes::from(body)),
            Err(Error::UnknownFlags {
                kind: MessageKind::BROKER_HEARTBEAT_RESPONSE,
                flags: 0x85
            })
        );
    }

    #[test]
    fn hello_with_an_empty_version_range_is_refused_both_ways() {
        let backwards = Hello {
            version_min: 3,
            version_max: 2,
            ..hello()
        };
        let mut out = Vec::new();
        assert_eq!(
            backwards.encode_body(&mut out),
            Err(Error::BadVersionRange { min: 3, max: 2 })
        );
        assert!(out.is_empty());
        let mut body = encoded(&hello()).to_vec();
        let at = body.len() - 4;
        body[at..].copy_from_slice(&[0, 3, 0, 2]);
        assert_eq!(
            Hello::decode_body(&Bytes::from(body)),
            Err(Error::BadVersionRange { min: 3, max: 2 })
        );
    }

    #[test]
    fn hello_negotiates_the_newest_shared_version() {
        assert_eq!(hello().shared_version(), Ok(PROTOCOL_VERSION_MAX));
        let newer = Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX + 5,
            ..hello()
        };
        assert_eq!(newer.shared_version(), Ok(PROTOCOL_VERSION_MAX));
        let too_new = Hello {
            version_min: PROTOCOL_VERSION_MAX + 1,
            version_max: PROTOCOL_VERSION_MAX + 5,
            ..hello()
        };
        assert_eq!(
            too_new.shared_version(),
            Err(Error::NoCommonVersion {
                min: PROTOCOL_VERSION_MAX + 1,
                max: PROTOCOL_VERSION_MAX + 5
            })
        );
        let too_old = Hello {
            version_min: 0,
            version_max: PROTOCOL_VERSION_MIN - 1,
            ..hello()
        };
        assert!(matches!(
            too_old.shared_version(),
            Err(Error::NoCommonVersion { .. })
        ));
    }

    fn any_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
    }

    fn any_hello() -> impl Strategy<Value = Hello> {
        (
            any::<[u8; 16]>(),
            any::<i32>(),
            any::<u64>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(cluster, node, incarnation, a, b)| Hello {
                cluster_id: ClusterId(cluster),
                node: NodeId(node),
                incarnation: Incarnation(incarnation),
                version_min: a.min(b),
                version_max: a.max(b),
            })
    }

    fn any_heartbeat() -> impl Strategy<Value = BrokerHeartbeat> {
        (
            any::<u64>(),
            any::<i32>(),
            any::<i64>(),
            any::<u64>(),
            any::<i64>(),
            any::<(bool, bool)>(),
        )
            .prop_map(
                |(request_id, node, broker_epoch, incarnation, metadata_offset, flags)| {
                    BrokerHeartbeat {
                        request_id,
                        node: NodeId(node),
                        broker_epoch,
                        incarnation: Incarnation(incarnation),
                        metadata_offset,
                        want_fence: flags.0,
                        want_shutdown: flags.1,
                    }
                },
            )
    }

    fn any_heartbeat_response() -> impl Strategy<Value = BrokerHeartbeatResponse> {
        (
            any::<u64>(),
            any::<i32>(),
            any::<i64>(),
            any::<(bool, bool, bool)>(),
        )
            .prop_map(
                |(request_id, node, broker_epoch, flags)| BrokerHeartbeatResponse {
                    request_id,
                    node: NodeId(node),
                    broker_epoch,
                    is_caught_up: flags.0,
                    is_fenced: flags.1,
                    should_shutdown: flags.2,
                },
            )
    }

    fn any_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            any_hello().prop_map(Message::Hello),
            (any::<u64>(), any_bytes())
                .prop_map(|(group, message)| Message::Raft(RaftMessage { group, message })),
            (any::<u64>(), any_bytes()).prop_map(|(request_id, payload)| {
                Message::ControllerRequest(ControllerRequest {
                    request_id,
                    payload,
                })
            }),
            (any::<u64>(), any_bytes()).prop_map(|(request_id, payload)| {
                Message::ControllerResponse(ControllerResponse {
                    request_id,
                    payload,
                })
            }),
            any_heartbeat().prop_map(Message::BrokerHeartbeat),
            any_heartbeat_response().prop_map(Message::BrokerHeartbeatResponse),
        ]
    }

    /// Encodes, decodes through the typed decoder and back to the same bytes.
    fn round_trip<B: Body + PartialEq + fmt::Debug>(body: &B) -> Result<(), TestCaseError> {
        let bytes = encoded(body);
        let decoded = B::decode_body(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, body);
        prop_assert_eq!(encoded(&decoded), bytes);
        Ok(())
    }

    proptest! {
        #[test]
        fn hello_round_trips(hello in any_hello()) {
            round_trip(&hello)?;
            prop_assert_eq!(encoded(&hello).len(), Hello::BYTES);
        }

        #[test]
        fn raft_messages_round_trip(group in any::<u64>(), message in any_bytes()) {
            let raft = RaftMessage { group, message };
            round_trip(&raft)?;
            prop_assert_eq!(encoded(&raft).len(), OPAQUE_ID_BYTES + raft.message.len());
        }

        #[test]
        fn controller_calls_round_trip(request_id in any::<u64>(), payload in any_bytes()) {
            round_trip(&ControllerRequest { request_id, payload: payload.clone() })?;
            round_trip(&ControllerResponse { request_id, payload })?;
        }

        #[test]
        fn heartbeats_round_trip(heartbeat in any_heartbeat()) {
            round_trip(&heartbeat)?;
            prop_assert_eq!(encoded(&heartbeat).len(), BrokerHeartbeat::BYTES);
        }

        #[test]
        fn heartbeat_responses_round_trip(response in any_heartbeat_response()) {
            round_trip(&response)?;
            prop_assert_eq!(encoded(&response).len(), BrokerHeartbeatResponse::BYTES);
        }

        #[test]
        fn messages_round_trip_through_envelopes(message in any_message(), core in any::<u16>()) {
            let envelope = message.to_envelope(ShardId(u32::from(core))).expect("valid");
            prop_assert_eq!(envelope.kind, message.kind());
            prop_assert_eq!(envelope.message().expect("own message"), message);
        }

        #[test]
        fn arbitrary_bodies_never_panic_and_decode_canonically(
            kind in prop_oneof![1u16..=6, any::<u16>()],
            body in any_bytes(),
        ) {
            if let Ok(message) = Message::decode(MessageKind(kind), &body) {
                let mut again = Vec::new();
                message.encode_body(&mut again).expect("decoded body");
                prop_assert_eq!(&again[..], &body[..]);
            }
        }
    }
}
