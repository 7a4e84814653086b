//! InitProducerId for idempotent (non-transactional) producers: every call gets a fresh
//! producer id with epoch 0, as Kafka does for a null transactional id; ids are never reused,
//! also across restarts (core 0 reserves them in blocks persisted in the metadata).
//! Transactions are not served: a transactional id is refused.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::cluster::Cluster;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match cluster.allocate_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => response.with_error_code(error.code.code()),
    }
}
