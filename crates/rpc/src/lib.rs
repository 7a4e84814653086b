//! The node-to-node (internal) frame of a Shoal cluster. Encode and decode only: no runtime,
//! no clock, no randomness, no I/O.
//!
//! Data flow. A sending core collects the messages it has for one peer node (Raft messages of
//! its partition groups, controller calls, heartbeats) into [`Envelope`]s, each naming the
//! core on the peer that owns its target ([`Envelope::target_core`]), and [`encode_frame`]
//! writes them as one frame: that is the batching. The server's rpc listener reads the
//! 4-byte length prefix, sizes it with [`frame_length`] before allocating anything, reads
//! that many bytes and calls [`decode_frame`], then [`check_peer`] (cluster, source node,
//! destination). Each envelope then crosses the core mesh to its `target_core`, where
//! [`Message::decode`] (or [`Body::decode_body`] for one expected kind) reads the body.
//!
//! Failure classes. A frame error (size, magic, version, CRC, structure) means the stream
//! cannot be trusted: log it and close the connection. A peer error (wrong cluster, unknown
//! node, not for this node) means the peer is misconfigured: log and refuse it. A body error
//! ([`Error::is_envelope_only`], e.g. a kind this node does not know) spoils one envelope:
//! log and skip it, so a newer peer does not break an older one.
//!
//! The byte layout is in this crate's README.md.

mod cursor;
mod error;
mod frame;
mod message;

pub use error::Error;
pub use frame::{
    check_peer, decode_frame, encode_frame, frame_length, ClusterId, Envelope, FrameHeader,
    Incarnation,
};
pub use message::{
    Body, BrokerHeartbeat, BrokerHeartbeatResponse, ControllerRequest, ControllerResponse, Hello,
    Message, MessageKind, RaftMessage,
};

/// Fixed value of the frame's `magic` field: ASCII `SHRP` ("SHoal RPc"). A Kafka request on
/// the internal port puts its api key and version (both small) here, so it is refused at once.
pub const FRAME_MAGIC: u32 = u32::from_be_bytes(*b"SHRP");

/// The frame version this node writes.
pub const PROTOCOL_VERSION_MAX: u16 = 1;

/// The oldest frame version this node reads.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Bytes of the `length` prefix of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Bytes of the fixed frame header after the length prefix: magic, version, crc32c, cluster
/// id, source node, source incarnation, destination node, envelope count.
pub const FRAME_HEADER_BYTES: usize = 4 + 2 + 4 + 16 + 4 + 8 + 4 + 4;

/// Bytes of each envelope's header: target core, kind, body length.
pub const ENVELOPE_HEADER_BYTES: usize = 2 + 2 + 4;

/// The largest value of a frame's `length` field (the bytes after the prefix). A receiver
/// allocates at most this much per connection for a frame, and refuses larger ones before
/// reading them.
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The most envelopes one frame carries. Bounds the receiver's envelope list independently
/// of the byte limit; a sender with more messages for a peer writes another frame.
pub const ENVELOPES_PER_FRAME_MAX: usize = 65_536;

/// The largest body one envelope can carry: a frame holding only that envelope.
pub const BODY_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_HEADER_BYTES - ENVELOPE_HEADER_BYTES;

/// Room a Raft message needs beyond the record batches it carries (protobuf fields, entry
/// headers). Only used to check the frame limit against the batch limit below.
const RAFT_MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024;

const _: () = assert!(PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION_MAX);
const _: () = assert!(FRAME_HEADER_BYTES == 46);
// The length field is a u32, and the checked arithmetic of the encoder assumes a usize that
// holds any frame.
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(ENVELOPES_PER_FRAME_MAX <= u32::MAX as usize);
// A frame full of empty envelopes is within both limits, so neither hides the other.
const _: () = assert!(
    FRAME_HEADER_BYTES + ENVELOPES_PER_FRAME_MAX * ENVELOPE_HEADER_BYTES <= FRAME_BYTES_MAX
);
// A follower must be able to receive one largest record batch in one Raft append.
const _: () = assert!(
    shoal_model::constants::BATCH_BYTES_MAX + RAFT_MESSAGE_OVERHEAD_BYTES <= BODY_BYTES_MAX
);
