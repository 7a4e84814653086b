//! Shoal's Kafka protocol layer, free of any runtime: framing and decoding (`codec`), the
//! advertised version table (`versions`), the `Cluster` interface handlers call, one handler
//! per API (`handlers/`), and the one mapping from internal errors to Kafka error codes
//! (`error_map`).
//!
//! Data flow: the server reads a frame → [`codec::decode_request`] → [`handle`] dispatches to
//! the API's handler, which calls [`cluster::Cluster`] (the server routes each partition call to
//! its owner core) → the response body → [`codec::encode_response`].

pub mod cluster;
pub mod codec;
pub mod error_map;
pub mod fetch_session;
pub mod handlers;
pub mod records;
pub mod throttle;
pub mod topic_name;
pub mod versions;

use kafka_protocol::messages::{RequestKind, ResponseKind};

/// Runs the handler of a decoded request. `None`: the protocol sends no response (Produce
/// with acks=0).
pub async fn handle<C: cluster::Cluster>(
    cluster: &C,
    request: codec::Request,
) -> Option<ResponseKind> {
    let version = request.version;
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle()),
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(handlers::metadata::handle(cluster, body, version).await)
        }
        RequestKind::Produce(body) => {
            ResponseKind::Produce(handlers::produce::handle(cluster, body, version).await?)
        }
        RequestKind::Fetch(body) => {
            let client_id = request.header.client_id.as_deref().unwrap_or("");
            ResponseKind::Fetch(handlers::fetch::handle(cluster, body, version, client_id).await)
        }
        RequestKind::DescribeClientQuotas(body) => ResponseKind::DescribeClientQuotas(
            handlers::describe_client_quotas::handle(cluster, body, version).await,
        ),
        RequestKind::AlterClientQuotas(body) => ResponseKind::AlterClientQuotas(
            handlers::alter_client_quotas::handle(cluster, body, version).await,
        ),
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(cluster, body, version).await)
        }
        RequestKind::CreateTopics(body) => ResponseKind::CreateTopics(
            handlers::create_topics::handle(cluster, body, version).await,
        ),
        RequestKind::InitProducerId(body) => ResponseKind::InitProducerId(
            handlers::init_producer_id::handle(cluster, body, version).await,
        ),
        RequestKind::DescribeProducers(body) => ResponseKind::DescribeProducers(
            handlers::describe_producers::handle(cluster, body, version).await,
        ),
        RequestKind::DeleteTopics(body) => ResponseKind::DeleteTopics(
            handlers::delete_topics::handle(cluster, body, version).await,
        ),
        RequestKind::DeleteRecords(body) => ResponseKind::DeleteRecords(
            handlers::delete_records::handle(cluster, body, version).await,
        ),
        RequestKind::CreatePartitions(body) => ResponseKind::CreatePartitions(
            handlers::create_partitions::handle(cluster, body, version).await,
        ),
        RequestKind::DescribeConfigs(body) => ResponseKind::DescribeConfigs(
            handlers::describe_configs::handle(cluster, body, version).await,
        ),
        RequestKind::AlterConfigs(body) => ResponseKind::AlterConfigs(
            handlers::alter_configs::handle(cluster, body, version).await,
        ),
        RequestKind::IncrementalAlterConfigs(body) => ResponseKind::IncrementalAlterConfigs(
            handlers::incremental_alter_configs::handle(cluster, body, version).await,
        ),
        RequestKind::OffsetForLeaderEpoch(body) => ResponseKind::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(cluster, body, version).await,
        ),
        RequestKind::DescribeCluster(body) => ResponseKind::DescribeCluster(
            handlers::describe_cluster::handle(cluster, body, version).await,
        ),
        RequestKind::DescribeLogDirs(body) => ResponseKind::DescribeLogDirs(
            handlers::describe_log_dirs::handle(cluster, body, version).await,
        ),
        RequestKind::FindCoordinator(body) => ResponseKind::FindCoordinator(
            handlers::groups::find_coordinator(cluster, body, version).await,
        ),
        RequestKind::JoinGroup(body) => {
            let client_id = request
                .header
                .client_id
                .as_deref()
                .unwrap_or("")
                .to_string();
            ResponseKind::JoinGroup(
                handlers::groups::join_group(cluster, body, version, &client_id).await,
            )
        }
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(handlers::groups::sync_group(cluster, body, version).await)
        }
        RequestKind::Heartbeat(body) => {
            ResponseKind::Heartbeat(handlers::groups::heartbeat(cluster, body, version).await)
        }
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(handlers::groups::leave_group(cluster, body, version).await)
        }
        RequestKind::OffsetCommit(body) => ResponseKind::OffsetCommit(
            handlers::groups::offset_commit(cluster, body, version).await,
        ),
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(handlers::groups::offset_fetch(cluster, body, version).await)
        }
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(handlers::groups::list_groups(cluster, body, version).await)
        }
        RequestKind::DescribeGroups(body) => ResponseKind::DescribeGroups(
            handlers::groups::describe_groups(cluster, body, version).await,
        ),
        RequestKind::DeleteGroups(body) => ResponseKind::DeleteGroups(
            handlers::groups::delete_groups(cluster, body, version).await,
        ),
        RequestKind::OffsetDelete(body) => ResponseKind::OffsetDelete(
            handlers::groups::offset_delete(cluster, body, version).await,
        ),
        other => {
            // `versions::supports` admitted a request no handler serves: a bug in the table.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for an advertised API");
            return None;
        }
    };
    Some(response)
}
