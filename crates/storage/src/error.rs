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
