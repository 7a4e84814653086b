//! Consensus for Shoal: raft-rs (tikv/raft 0.7) used sans-IO, over a durable log written
//! through `shoal_io::Disk`, so the same code runs on glommio's O_DIRECT files and on the
//! simulated disk of `shoal-sim-disk`.
//!
//! A [`Replica`] is one member of one Raft group, owned by one core. Its owner feeds it ticks,
//! messages and proposals and calls [`Replica::advance`], which returns the messages to send
//! and the committed entries to apply. No I/O other than the group's own log happens here:
//! the network, timers and the state machine are the owner's (see `README.md`).

mod error;
mod logger;
mod partition;
mod replica;
mod store;
mod wal;

pub use error::{Error, Result};
pub use partition::{
    PartitionProgress, PartitionReplica, PartitionStore, APPENDS_INFLIGHT_MAX,
    MESSAGE_ENTRIES_BYTES_MAX, RECENT_ENTRIES_BYTES_MAX,
};
pub use raft::eraftpb::{Message, MessageType, Snapshot};
pub use replica::{Committed, Progress, Replica, ReplicaOptions, Status};
pub use wal::WAL_FILE_BYTES_MAX;

/// Encodes a raft message for the wire (protobuf, as raft-rs defines it).
pub fn encode_message(message: &Message) -> Result<Vec<u8>> {
    use protobuf::Message as _;
    message
        .write_to_bytes()
        .map_err(|e| Error::Invalid(format!("protobuf encode: {e}")))
}

/// Decodes a raft message from the wire; bad bytes are an error, never a panic.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    use protobuf::Message as _;
    Message::parse_from_bytes(bytes).map_err(|e| Error::Invalid(format!("raft message: {e}")))
}
