//! The one place where internal errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use shoal_storage::{Error, OfflineKind};

use crate::cluster::ApiError;

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
    };
    ApiError::with_message(code, error.to_string())
}
