use std::path::PathBuf;

/// Everything that can go wrong in a Raft group of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write or sync of the Raft log failed. Fatal for the group: the write is never retried
    /// (the kernel may have dropped the dirty pages), the owner stops the group and recovers it
    /// from disk.
    #[error("raft log {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that were synced do not read back: a write of the log other than the last one is
    /// damaged (a torn last write is expected after a power cut and is cut off silently).
    #[error("raft log {path} is corrupt at byte {pos}: {reason}")]
    Corrupt {
        path: PathBuf,
        pos: u64,
        reason: String,
    },
    /// The log file is larger than this crate is willing to read into memory at open.
    #[error("raft log {path} holds {len_bytes} bytes, more than the {max_bytes} allowed")]
    TooLarge {
        path: PathBuf,
        len_bytes: u64,
        max_bytes: u64,
    },
    /// raft-rs refused a call (a proposal while not leader, a message for another group, ...).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The leader takes this voter to hold entries up to `leader_believes`, its log ends at
    /// `last_index`: its log was lost (a wiped data dir) and it came back with its old id.
    /// Its messages are refused, so it cannot vote with a log that forgot acknowledged
    /// entries; it needs a new id (or, later, a membership change).
    #[error(
        "the leader takes this voter to hold entries up to {leader_believes}, its log ends at \
         {last_index}: its log was lost, and a voter must not rejoin without it"
    )]
    LogLost {
        leader_believes: u64,
        last_index: u64,
    },
    /// A partition group's log (`shoal_storage::Log`, replicated mode) failed or refused.
    #[error("partition log: {0}")]
    Storage(#[from] shoal_storage::Error),
    /// A partition group's entry that does not decode (its batch checked out: a bug or a
    /// stranger's bytes).
    #[error("partition entry: {0}")]
    BadEntry(String),
    /// A caller broke the API's contract (e.g. compacting past the applied index).
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
