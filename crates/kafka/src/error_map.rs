//! The one place where internal errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use shoal_storage::{Error, OfflineKind};

use crate::cluster::{ApiError, Owner, Unanswered};

/// Maps a storage error to the code a Kafka client expects.
pub fn storage_error(error: &Error) -> ApiError {
    let code = match error {
        // The client's bytes were damaged in flight or by the client: it may retry.
        Error::CorruptBatch(_) => ResponseError::CorruptMessage,
        // Well-formed but unacceptable (wrong magic, counts): retrying the same bytes won't help.
        Error::InvalidBatch(_) => ResponseError::InvalidRecord,
        Error::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // A full disk is still a storage error to clients (Kafka has no separate code); the
        // message tells an operator which one it is.
        Error::Offline(reason) => match reason.kind {
            OfflineKind::DiskFull | OfflineKind::Io | OfflineKind::Corruption => {
                ResponseError::KafkaStorageError
            }
        },
        // Idempotent producer rules (see shoal_storage::producers).
        Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        Error::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        Error::UnknownProducerId => ResponseError::UnknownProducerId,
        // A caller with an older leader epoch than the partition's.
        Error::StaleTerm { .. } => ResponseError::FencedLeaderEpoch,
        // The log was closed under us (topic deleted, shutdown): clients refresh metadata.
        Error::Closed => ResponseError::NotLeaderOrFollower,
        // A replication caller's cut at an offset that is no batch boundary of the log; never
        // from a client request. OFFSET_OUT_OF_RANGE is the nearest code.
        Error::InvalidTruncation { .. } => ResponseError::OffsetOutOfRange,
        // A Raft caller's request a replicated log refused, or an operation of the other
        // mode: caller bugs, never from a client request.
        Error::EntriesRefused { .. } | Error::WrongMode { .. } => ResponseError::UnknownServerError,
        // A partition directory of the other mode: the partition cannot be served.
        Error::ModeMismatch { .. } => ResponseError::KafkaStorageError,
        // A failed log cleaning (the log is unchanged); the broker's cleaner task logs it,
        // never a client request's answer.
        Error::CompactionFailed { .. } => ResponseError::KafkaStorageError,
    };
    ApiError::with_message(code, error.to_string())
}

/// The code a client gets when the owner of its work did not answer. Every one is retriable
/// in the Java client: the work may have been lost with a stopping core or may still complete,
/// so the client must retry (idempotent producers make a produce retry safe) rather than give
/// up as UNKNOWN_SERVER_ERROR would make it.
pub fn unanswered(owner: Owner, why: Unanswered) -> ApiError {
    let code = match (owner, why) {
        // Kafka's own code for work that did not finish in time.
        (Owner::Partition | Owner::Controller, Unanswered::TimedOut) => {
            ResponseError::RequestTimedOut
        }
        // The client refreshes metadata and retries on the partition's (new) owner.
        (Owner::Partition, _) => ResponseError::NotLeaderOrFollower,
        // The client looks for the controller again and retries.
        (Owner::Controller, _) => ResponseError::NotController,
        // The client looks for the coordinator again (FindCoordinator) and retries.
        (Owner::Coordinator, _) => ResponseError::CoordinatorNotAvailable,
    };
    let what = match owner {
        Owner::Partition => "the partition's owner",
        Owner::Controller => "the metadata owner",
        Owner::Coordinator => "the group coordinator",
    };
    let why = match why {
        Unanswered::Unreachable => "could not be reached",
        Unanswered::Dropped => "dropped the request",
        Unanswered::TimedOut => "did not answer in time",
    };
    ApiError::with_message(code, format!("{what} {why}"))
}

/// Maps a refused quota entity, filter or value to its Kafka code: Kafka answers all of them
/// INVALID_REQUEST with the reason (unknown entity types and keys included); a limit of this
/// broker is a POLICY_VIOLATION, the code Kafka uses for changes a rule forbids.
pub fn quota_error(error: &shoal_quotas::Error) -> ApiError {
    let code = match error {
        shoal_quotas::Error::Invalid(_) | shoal_quotas::Error::Unsupported(_) => {
            ResponseError::InvalidRequest
        }
        shoal_quotas::Error::Limit(_) => ResponseError::PolicyViolation,
    };
    ApiError::with_message(code, error.to_string())
}
