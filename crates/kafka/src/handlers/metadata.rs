//! Metadata: brokers (every live node of the cluster), and topics with their partitions. A
//! partition of one replica: its node leads it, replicas and ISR `[node]`. A replicated one:
//! the leader its Raft group elected, its replicas, and the ISR that leader reported. Both
//! with the partition's leader epoch. An offline partition (failed or full disk, corruption,
//! no leader known) has no leader: LEADER_NOT_AVAILABLE, leader -1 and, for one replica,
//! that node in `offline_replicas`, as Kafka's KRaft metadata cache reports a partition
//! whose only replica is in a failed log directory; clients wait for it instead of sending
//! to it.
//!
//! Topics can be asked for by id from v12 (unknown: UNKNOWN_TOPIC_ID with a null name). v10
//! and v11 have the id field and a nullable name in their schema, but Kafka serves neither
//! there: such a request fails every topic with INVALID_REQUEST.

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
    let requested: Option<Vec<Requested>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| match t.name {
                _ if !t.topic_id.is_nil() => Requested::Id(t.topic_id),
                Some(name) => Requested::Name(name.0.to_string()),
                None => Requested::Nothing,
            })
            .collect()
    });
    // Version 0 asks for every topic with an empty list; later versions use null.
    let requested = requested.filter(|topics| !(version == 0 && topics.is_empty()));
    // Versions before 4 have no flag and always allowed auto-creation.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let ids_unserved = version < 12
        && requested
            .iter()
            .flatten()
            .any(|r| !matches!(r, Requested::Name(_)));
    let topics = match requested {
        None => cluster
            .topics()
            .iter()
            .map(|t| topic_entry(t, broker.node_id, version))
            .collect(),
        Some(topics) if ids_unserved => topics
            .iter()
            .map(|r| invalid_request_entry(r, version))
            .collect(),
        Some(topics) => {
            let mut out = Vec::with_capacity(topics.len());
            for topic in topics {
                let entry = match topic {
                    Requested::Name(name) => {
                        named_topic(cluster, &name, allow_create, broker.node_id, version).await
                    }
                    Requested::Id(id) => match cluster.topic_by_id(*id.as_bytes()) {
                        Some(topic) => topic_entry(&topic, broker.node_id, version),
                        None => MetadataResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                    Requested::Nothing => invalid_request_entry(&Requested::Nothing, version),
                };
                out.push(entry);
            }
            out
        }
    };
    let brokers = cluster
        .brokers()
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(&broker.cluster_id)));
    }
    // Every node takes admin requests and forwards metadata changes to the controller
    // leader (as KRaft brokers do since KIP-590), so this node is as good a "controller" for
    // clients as any.
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

/// A topic as the request names it.
enum Requested {
    Name(String),
    Id(Uuid),
    /// Neither a name nor an id.
    Nothing,
}

/// INVALID_REQUEST for a topic asked for in a way this version is not served (Kafka echoes
/// the id, and an empty name for a null one).
fn invalid_request_entry(requested: &Requested, version: i16) -> MetadataResponseTopic {
    let (name, id) = match requested {
        Requested::Name(name) => (name.as_str(), Uuid::nil()),
        Requested::Id(id) => ("", *id),
        Requested::Nothing => ("", Uuid::nil()),
    };
    let entry = MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(ResponseError::InvalidRequest.code());
    if version >= 10 {
        entry.with_topic_id(id)
    } else {
        entry
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
            let at = usize::try_from(index).ok();
            let node = at
                .and_then(|i| topic.nodes.get(i).copied())
                .unwrap_or(node_id);
            let brokers = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
            let listed = |lists: &[Vec<i32>]| {
                at.and_then(|i| lists.get(i))
                    .filter(|l| !l.is_empty())
                    .map(|l| brokers(l))
            };
            let replicas = listed(&topic.replicas).unwrap_or_else(|| vec![BrokerId(node)]);
            let isr = listed(&topic.isr).unwrap_or_else(|| vec![BrokerId(node)]);
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(node))
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(isr);
            if topic.offline.binary_search(&index).is_ok() {
                partition = partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(vec![]);
                if version >= 5 && replicas.len() == 1 {
                    partition = partition.with_offline_replicas(replicas);
                }
            }
            if version >= 7 {
                let epoch = usize::try_from(index)
                    .ok()
                    .and_then(|i| topic.leader_epochs.get(i).copied())
                    .unwrap_or(0);
                partition = partition.with_leader_epoch(epoch);
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
