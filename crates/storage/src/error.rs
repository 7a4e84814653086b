//! The storage crate's one error type. The broker maps it to Kafka error codes in one place
//! (`kafka::error_map`); the intended code is noted on each variant.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use shoal_model::{Offset, RaftIndex, Term};

use crate::batch::BatchDefect;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client batch failed framing or CRC checks (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {}", .0.describe())]
    CorruptBatch(BatchDefect),
    /// A client batch is well-formed but unacceptable (Kafka `INVALID_RECORD`).
    #[error("invalid record batch: {}", .0.describe())]
    InvalidBatch(BatchDefect),
    /// The batch exceeds the configured maximum (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    BatchTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// A read or DeleteRecords asked for an offset outside the log (Kafka
    /// `OFFSET_OUT_OF_RANGE`).
    #[error("offset {requested} is outside the log range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    /// The partition is offline and serves nothing (Kafka `KAFKA_STORAGE_ERROR`).
    #[error("partition is offline: {0}")]
    Offline(Rc<OfflineReason>),
    /// An idempotent producer's batch does not follow its last sequence (Kafka
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("out of order sequence: expected {expected}, received {received}")]
    OutOfOrderSequence { expected: i32, received: i32 },
    /// An idempotent producer's epoch is older than the partition's (Kafka
    /// `INVALID_PRODUCER_EPOCH`: the producer was fenced by a newer instance).
    #[error("producer epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch { current: i16, received: i16 },
    /// An idempotent producer this partition has no state for sent a non-zero sequence (Kafka
    /// `UNKNOWN_PRODUCER_ID`).
    #[error("unknown producer id with a non-zero sequence")]
    UnknownProducerId,
    /// A leader epoch older than the log's current one (a caller bug or a stale leader; Kafka
    /// `FENCED_LEADER_EPOCH`).
    #[error("leader epoch {requested} is older than the log's epoch {current}")]
    StaleTerm { current: Term, requested: Term },
    /// The log was closed (Kafka `NOT_LEADER_OR_FOLLOWER`: the partition moved or stopped).
    #[error("log is closed")]
    Closed,
    /// [`crate::Log::truncate_suffix`] was asked to cut where it cannot: inside a batch, below
    /// the log start or above the log end. Nothing was changed. A caller bug (replication
    /// truncates to an entry boundary above the commit index); should it reach a client, Kafka
    /// `OFFSET_OUT_OF_RANGE` fits best.
    #[error("cannot truncate the log at offset {requested}: {refused}")]
    InvalidTruncation {
        requested: Offset,
        refused: TruncationRefused,
    },
    /// A replicated log refused a Raft operation at index `requested`: entries that do not
    /// continue the log ([`crate::Log::append_entries`]), a cut or a read outside it. Nothing
    /// was changed. Distinct from storage failures ([`Error::Offline`]): the log is healthy,
    /// the caller (Raft) asked for something the log does not hold or cannot take. Never from
    /// a client request; should it reach one, Kafka `UNKNOWN_SERVER_ERROR`.
    #[error("replicated log refused the entries at index {requested}: {refused}")]
    EntriesRefused {
        requested: RaftIndex,
        refused: EntriesRefused,
    },
    /// The partition directory holds a log of the other mode (a plain log opened with
    /// [`crate::Log::open_replicated`], or a replicated one with [`crate::Log::open`]).
    /// Nothing was changed; a conversion is not built. Kafka `KAFKA_STORAGE_ERROR`.
    #[error("{} holds a {} log; it cannot be opened as a {} log", .path.display(),
        if *.on_disk_replicated { "replicated" } else { "plain" },
        if *.on_disk_replicated { "plain" } else { "replicated" })]
    ModeMismatch {
        path: PathBuf,
        on_disk_replicated: bool,
    },
    /// An operation of the other mode: a plain append on a replicated log (its entries go
    /// through Raft: [`crate::Log::propose`]), or a Raft operation on a plain log. A caller
    /// bug; Kafka `UNKNOWN_SERVER_ERROR`.
    #[error("{op} is not an operation of a {} log", if *.replicated { "replicated" } else { "plain" })]
    WrongMode { op: &'static str, replicated: bool },
    /// A log cleaning (`cleanup.policy=compact`) failed before its commit point: its cleaned
    /// copy was dropped and the log is unchanged and online (a failed write is not retried;
    /// the next cleaning starts again). Never from a client request; Kafka
    /// `KAFKA_STORAGE_ERROR` should one reach a client.
    #[error("log cleaning failed to {op} {}: {detail}", .path.display())]
    CompactionFailed {
        op: String,
        path: PathBuf,
        detail: String,
    },
}

/// Why [`Error::EntriesRefused`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntriesRefused {
    /// The first entry is not the one after the log's last ([`crate::Log::append_entries`]
    /// after a suffix cut must start at the cut).
    #[error("the log's last index is {last_index}: entries must start at the next one")]
    NotContiguous { last_index: RaftIndex },
    /// An entry's term is below the entry before it (Raft terms never go back along a log).
    #[error("entry {index} has term {term}, below the previous entry's term {previous}")]
    TermWentBack {
        index: RaftIndex,
        term: Term,
        previous: Term,
    },
    /// An entry's batch carries a leader epoch that is not the entry's term (the leader
    /// stamps the term into `partitionLeaderEpoch`).
    #[error("entry {index} of term {term} is a batch of leader epoch {batch_epoch}")]
    TermMismatch {
        index: RaftIndex,
        term: Term,
        batch_epoch: Term,
    },
    /// An entry's base offset does not continue the Kafka offsets (a gap or an overlap).
    #[error("entry {index} has base offset {base_offset} where {expected} was expected")]
    OffsetGap {
        index: RaftIndex,
        base_offset: Offset,
        expected: Offset,
    },
    /// An entry's bytes are no valid batch (framing, magic, CRC32C, counts).
    #[error("entry {index} is not a valid batch: {}", .defect.describe())]
    Corrupt {
        index: RaftIndex,
        defect: BatchDefect,
    },
    /// An entry is larger than this log takes (`max.message.bytes`, or its write chunk).
    #[error("entry {index} of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        index: RaftIndex,
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// Below the log's first index: those entries were removed (retention).
    #[error("it is below the first index {first_index}")]
    Compacted { first_index: RaftIndex },
    /// Past the log's last index (+1 where the call allows the end).
    #[error("it is past the last index {last_index}")]
    AboveLastIndex { last_index: RaftIndex },
    /// A cut at or below the committed index: committed entries are never removed.
    #[error("it is at or below the committed index {committed}")]
    Committed { committed: RaftIndex },
}

/// Why [`Error::InvalidTruncation`] refused an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TruncationRefused {
    /// Below the log start offset: data there is already gone (retention, DeleteRecords).
    #[error("it is below the log start offset {log_start}")]
    BelowLogStart { log_start: Offset },
    /// Above the log end offset: there is nothing there to cut.
    #[error("it is above the log end offset {log_end}")]
    AboveLogEnd { log_end: Offset },
    /// Inside the batch `[base_offset, next_offset)`: only whole batches are cut (a batch is
    /// one Raft entry and one CRC).
    #[error("it is inside the batch of offsets [{base_offset}, {next_offset})")]
    InsideBatch {
        base_offset: Offset,
        next_offset: Offset,
    },
}

/// Why a partition went offline. It stays offline until an operator (or the broker, once the
/// cause is gone, e.g. disk space freed) reopens it, which runs recovery again.
#[derive(Debug)]
pub struct OfflineReason {
    pub kind: OfflineKind,
    pub path: PathBuf,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineKind {
    /// ENOSPC or EDQUOT: recoverable by freeing space and reopening.
    DiskFull,
    /// Any other failed write, read, sync, truncate or allocation.
    Io,
    /// Data that was synced fails validation (not a torn tail).
    Corruption,
}

impl fmt::Display for OfflineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            OfflineKind::DiskFull => "disk full",
            OfflineKind::Io => "I/O error",
            OfflineKind::Corruption => "corruption",
        };
        write!(f, "{kind} at {}: {}", self.path.display(), self.detail)
    }
}

impl OfflineReason {
    pub(crate) fn from_io(op: &str, path: PathBuf, error: &io::Error) -> OfflineReason {
        let disk_full = matches!(error.raw_os_error(), Some(code) if code == 28 || code == 122);
        let kind = if disk_full {
            OfflineKind::DiskFull
        } else {
            OfflineKind::Io
        };
        OfflineReason {
            kind,
            path,
            detail: format!("{op} failed: {error}"),
        }
    }

    pub(crate) fn corruption(path: PathBuf, detail: String) -> OfflineReason {
        OfflineReason {
            kind: OfflineKind::Corruption,
            path,
            detail,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
