//! Metadata: brokers (this node), and topics with their partitions. A single node leads every
//! partition with epoch 0, replicas and ISR `[node]`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::{Cluster, NewTopic, TopicInfo};
use crate::topic_name as names;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let broker = cluster.broker();
    let requested: Option<Vec<String>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect()
    });
    // Version 0 asks for every topic with an empty list; later versions use null.
    let requested = requested.filter(|names| !(version == 0 && names.is_empty()));
    // Versions before 4 have no flag and always allowed auto-creation.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        None => cluster
            .topics()
            .iter()
            .map(|t| topic_entry(t, broker.node_id, version))
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(named_topic(cluster, &name, allow_create, broker.node_id, version).await);
            }
            out
        }
    };
    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(&broker.host))
            .with_port(broker.port)
            .with_rack(broker.rack.as_deref().map(str_bytes))])
        .with_topics(topics);
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(&broker.cluster_id)));
    }
    if version >= 1 {
        response = response.with_controller_id(BrokerId(broker.node_id));
    }
    // There are no ACLs: every operation is allowed. When a client asks (v8+), say so with the
    // real bitfield; left unasked, the field keeps its "not requested" value (INT32_MIN).
    if version >= 8 && request.include_topic_authorized_operations {
        for topic in response.topics.iter_mut().filter(|t| t.error_code == 0) {
            topic.topic_authorized_operations = TOPIC_OPERATIONS;
        }
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    response
}

/// Bit n set = Kafka `AclOperation` code n allowed: READ 3, WRITE 4, CREATE 5, DELETE 6,
/// ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12.
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

async fn named_topic<C: Cluster>(
    cluster: &C,
    name: &str,
    allow_create: bool,
    node_id: i32,
    version: i16,
) -> MetadataResponseTopic {
    if let Some(topic) = cluster.topic(name) {
        return topic_entry(&topic, node_id, version);
    }
    if names::validate(name).is_err() {
        return error_entry(name, ResponseError::InvalidTopicException);
    }
    if !(allow_create && cluster.auto_create_topics()) {
        return error_entry(name, ResponseError::UnknownTopicOrPartition);
    }
    let new_topic = NewTopic {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
    };
    match cluster.create_topics(vec![new_topic], false).await.pop() {
        Some(Ok(topic)) => topic_entry(&topic, node_id, version),
        // Another request created it first: serve what exists now.
        Some(Err(error)) if error.code == ResponseError::TopicAlreadyExists => {
            match cluster.topic(name) {
                Some(topic) => topic_entry(&topic, node_id, version),
                None => error_entry(name, ResponseError::LeaderNotAvailable),
            }
        }
        Some(Err(error)) => error_entry(name, error.code),
        None => error_entry(name, ResponseError::UnknownServerError),
    }
}

fn error_entry(name: &str, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(code.code())
}

pub(crate) fn topic_entry(topic: &TopicInfo, node_id: i32, version: i16) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(node_id))
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)]);
            if version >= 7 {
                partition = partition.with_leader_epoch(0);
            }
            partition
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions);
    if version >= 10 {
        entry = entry.with_topic_id(Uuid::from_bytes(topic.id));
    }
    entry
}
