//! DescribeCluster: every live broker; this node is named the controller, since every node
//! forwards metadata changes to the controller leader (as in Metadata).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::cluster::Cluster;

/// Kafka `EndpointType.BROKER`: the only endpoints a broker describes.
const ENDPOINT_BROKER: i8 = 1;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let broker = cluster.broker();
    let response = DescribeClusterResponse::default();
    if version >= 1 && request.endpoint_type != ENDPOINT_BROKER {
        return response
            .with_endpoint_type(request.endpoint_type)
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("only broker endpoints are served")));
    }
    response
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.node_id))
        .with_brokers(
            cluster
                .brokers()
                .iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
}
