//! The one error type of the crate. Every message is written to stand alone in a log line:
//! it names the peer, the numbers involved and, where it helps, the likely cause.

use shoal_model::{NodeId, ShardId};

use crate::frame::ClusterId;
use crate::message::MessageKind;
use crate::{FRAME_MAGIC, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};

/// Why a frame or a message body was refused, or could not be built.
///
/// Two classes: frame errors mean the byte stream cannot be trusted past this point, so the
/// receiver logs and closes the connection; envelope errors ([`Error::is_envelope_only`]) spoil
/// one envelope, which the receiver logs and skips while delivering the frame's others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("rpc frame of {len} bytes refused: the limit is {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error(
        "rpc frame of {len} bytes refused: shorter than the {min}-byte frame header \
         (not a Shoal peer?)"
    )]
    TooShort { len: usize, min: usize },
    #[error(
        "not a Shoal rpc frame: magic {found:#010x}, expected {FRAME_MAGIC:#010x} \
         (a Kafka client or another protocol on the internal port?)"
    )]
    BadMagic { found: u32 },
    #[error(
        "rpc frame version {0} refused: this node speaks versions \
         {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}"
    )]
    UnsupportedVersion(u16),
    #[error("rpc frame refused: CRC32C in header {expected:#010x}, of the bytes {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("rpc frame with {count} envelopes refused: the limit is {max}")]
    TooManyEnvelopes { count: usize, max: usize },
    #[error(
        "rpc frame truncated: envelope {index} needs an 8-byte header, {remaining} bytes are left"
    )]
    TruncatedEnvelope { index: usize, remaining: usize },
    #[error(
        "rpc frame truncated: envelope {index} declares a {body_len}-byte body, \
         {remaining} bytes are left"
    )]
    TruncatedBody {
        index: usize,
        body_len: usize,
        remaining: usize,
    },
    #[error("rpc frame refused: {count} bytes after its last envelope")]
    TrailingBytes { count: usize },
    #[error("envelope for core {core:?} refused: a core index must fit in 16 bits on the wire")]
    CoreOutOfRange { core: ShardId },

    #[error(
        "frame from node {source_node} of cluster {cluster} refused: \
         this node is in cluster {expected}"
    )]
    WrongCluster {
        source_node: NodeId,
        cluster: ClusterId,
        expected: ClusterId,
    },
    #[error(
        "frame from node {source_node} refused: \
         node {source_node} is not a member of cluster {cluster}"
    )]
    UnknownNode {
        source_node: NodeId,
        cluster: ClusterId,
    },
    #[error("frame from node {source_node} for node {destination} refused: this is node {me}")]
    NotForMe {
        source_node: NodeId,
        destination: NodeId,
        me: NodeId,
    },
    #[error(
        "frame from node {node} refused: that is this node's own id \
         (two nodes configured with one node id?)"
    )]
    FromSelf { node: NodeId },

    #[error("message {0} is unknown to this node (sent by a newer peer?)")]
    UnknownKind(MessageKind),
    #[error("a {found} message cannot be read as {expected}")]
    WrongKind {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("{kind} body of {len} bytes refused: its fixed part is {min} bytes")]
    BodyTooShort {
        kind: MessageKind,
        len: usize,
        min: usize,
    },
    #[error("{kind} body refused: {count} bytes after its last field")]
    BodyTrailingBytes { kind: MessageKind, count: usize },
    #[error("{kind} body refused: unknown flag bits {flags:#04x}")]
    UnknownFlags { kind: MessageKind, flags: u8 },
    #[error("Hello refused: empty protocol version range {min}..={max}")]
    BadVersionRange { min: u16, max: u16 },
    #[error(
        "peer speaks rpc versions {min}..={max}, this node \
         {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}: no version in common"
    )]
    NoCommonVersion { min: u16, max: u16 },
}

impl Error {
    /// True when only one envelope's body is bad: the frame itself was intact, so the
    /// receiver logs this, skips the envelope and delivers the others. Every other error
    /// closes the connection (frame errors) or refuses the peer (peer checks).
    #[must_use]
    pub fn is_envelope_only(&self) -> bool {
        matches!(
            self,
            Error::UnknownKind(_)
                | Error::WrongKind { .. }
                | Error::BodyTooShort { .. }
                | Error::BodyTrailingBytes { .. }
                | Error::UnknownFlags { .. }
                | Error::BadVersionRange { .. }
        )
    }
}
