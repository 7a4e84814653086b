//! One module per Kafka API. Each exposes `handle`, which takes the decoded request and its
//! version and returns the response body (or `None` where the protocol sends no response).

pub mod alter_client_quotas;
pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod fetch;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// KIP-320 fencing: a request's `current_leader_epoch` against the partition's. Older than
/// ours: the client's metadata is stale (FENCED_LEADER_EPOCH, it refreshes). Newer: this
/// broker has not caught up with a newer leader (UNKNOWN_LEADER_EPOCH, it retries). The caller
/// decides which values mean "not given" (Fetch: any negative; ListOffsets and
/// OffsetForLeaderEpoch: exactly -1, as Kafka does).
pub(crate) fn check_leader_epoch(
    requested: i32,
    ours: shoal_model::Term,
) -> Result<(), crate::cluster::ApiError> {
    use kafka_protocol::error::ResponseError;
    let code = match requested.cmp(&ours.0) {
        std::cmp::Ordering::Equal => return Ok(()),
        std::cmp::Ordering::Less => ResponseError::FencedLeaderEpoch,
        std::cmp::Ordering::Greater => ResponseError::UnknownLeaderEpoch,
    };
    Err(crate::cluster::ApiError::with_message(
        code,
        format!(
            "leader epoch {requested} given, the partition is at {}",
            ours.0
        ),
    ))
}

/// Kafka's "no epoch given" in ListOffsets and OffsetForLeaderEpoch.
pub(crate) const NO_EPOCH: i32 = -1;
