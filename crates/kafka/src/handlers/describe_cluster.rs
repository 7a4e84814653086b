//! DescribeCluster: one broker (this node), which is also the controller.

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
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id))
            .with_host(str_bytes(&broker.host))
            .with_port(broker.port)
            .with_rack(broker.rack.as_deref().map(str_bytes))])
}
