//! The storage crate's one error type. The broker maps it to Kafka error codes in one place
//! (`kafka::error_map`); the intended code is noted on each variant.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use shoal_model::{Offset, Term};

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
