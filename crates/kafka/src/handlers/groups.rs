//! Consumer group APIs (classic protocol): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete. Each turns the request into a `shoal_groups::GroupOp` that the server runs on
//! the group's core ([`Cluster::group`]), and the reply into the response of the version.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use shoal_groups::{CommitRequest, GroupOp, GroupReply, GroupResult, LeaveMember, SyncRequest, Tp};

use super::{str_bytes, topic_name};
use crate::cluster::Cluster;

/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;
/// `authorized_operations` when the client did not ask for them.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// Group ACL operations (READ, DESCRIBE, DELETE): everything is allowed on this broker.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 8) | (1 << 6);

fn code(result: &GroupResult<()>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(error) => error.code(),
    }
}

fn opt_str(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(|s| s.to_string())
}

pub async fn find_coordinator<C: Cluster>(
    cluster: &C,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let answer = |key_type: i8| -> Result<(), (ResponseError, &'static str)> {
        match key_type {
            KEY_GROUP => Ok(()),
            // Transactions are not served yet. COORDINATOR_NOT_AVAILABLE is retriable: the Java
            // producer's initTransactions() and kgo then wait until their timeouts (kgo's
            // forever). UNSUPPORTED_VERSION, as Redpanda answers with transactions disabled,
            // fails a transactional producer at once with this message.
            KEY_TRANSACTION => Err((
                ResponseError::UnsupportedVersion,
                "transactions are not supported by this broker yet",
            )),
            _ => Err((ResponseError::InvalidRequest, "unknown key type")),
        }
    };
    let key_type = if version >= 1 {
        request.key_type
    } else {
        KEY_GROUP
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match answer(key_type).and_then(|()| coordinator_of(cluster, key)) {
                    Ok(broker) => c
                        .with_node_id(BrokerId(broker.node_id))
                        .with_host(str_bytes(&broker.host))
                        .with_port(broker.port),
                    Err((error, message)) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(str_bytes(""))
                        .with_port(-1)
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match answer(key_type).and_then(|()| coordinator_of(cluster, &request.key)) {
        Ok(broker) => response
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(&broker.host))
            .with_port(broker.port),
        Err((error, message)) => {
            let response = response
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1)
                .with_error_code(error.code());
            if version >= 1 {
                response.with_error_message(Some(str_bytes(message)))
            } else {
                response
            }
        }
    }
}

/// The group's coordinator, or COORDINATOR_NOT_AVAILABLE (retriable) while it has none.
fn coordinator_of<C: Cluster>(
    cluster: &C,
    group_id: &str,
) -> Result<crate::cluster::BrokerInfo, (ResponseError, &'static str)> {
    cluster.group_coordinator(group_id).ok_or((
        ResponseError::CoordinatorNotAvailable,
        "the group's coordinator is being moved to a live broker",
    ))
}

pub async fn join_group<C: Cluster>(
    cluster: &C,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let op = GroupOp::Join(shoal_groups::JoinRequest {
        group_id: group_id.clone(),
        member_id: request.member_id.to_string(),
        instance_id: if version >= 5 {
            opt_str(&request.group_instance_id)
        } else {
            None
        },
        client_id: client_id.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member: version >= 4,
    });
    let GroupReply::Join(reply) = cluster.group(&group_id, op).await else {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code());
    };
    let members = reply
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.instance_id.as_deref().map(str_bytes)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(reply.error.map_or(0, |e| e.code()))
        .with_generation_id(reply.generation)
        .with_leader(str_bytes(&reply.leader))
        .with_member_id(str_bytes(&reply.member_id))
        .with_members(members);
    if version >= 7 {
        response
            .with_protocol_type(reply.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(reply.protocol.as_deref().map(str_bytes))
    } else {
        response.with_protocol_name(Some(str_bytes(reply.protocol.as_deref().unwrap_or(""))))
    }
}

pub async fn sync_group<C: Cluster>(
    cluster: &C,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let op = GroupOp::Sync(SyncRequest {
        group_id: group_id.clone(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: if version >= 3 {
            opt_str(&request.group_instance_id)
        } else {
            None
        },
        protocol_type: if version >= 5 {
            opt_str(&request.protocol_type)
        } else {
            None
        },
        protocol: if version >= 5 {
            opt_str(&request.protocol_name)
        } else {
            None
        },
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    });
    let GroupReply::Sync(reply) = cluster.group(&group_id, op).await else {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code());
    };
    let response = SyncGroupResponse::default()
        .with_error_code(reply.error.map_or(0, |e| e.code()))
        .with_assignment(reply.assignment);
    if version >= 5 {
        response
            .with_protocol_type(reply.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(reply.protocol.as_deref().map(str_bytes))
    } else {
        response
    }
}

pub async fn heartbeat<C: Cluster>(
    cluster: &C,
    request: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let op = GroupOp::Heartbeat(shoal_groups::HeartbeatRequest {
        group_id: group_id.clone(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: if version >= 3 {
            opt_str(&request.group_instance_id)
        } else {
            None
        },
    });
    let error = match cluster.group(&group_id, op).await {
        GroupReply::Heartbeat(result) => code(&result),
        _ => ResponseError::UnknownServerError.code(),
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub async fn leave_group<C: Cluster>(
    cluster: &C,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let members: Vec<LeaveMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                instance_id: opt_str(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    };
    let op = GroupOp::Leave {
        group_id: group_id.clone(),
        members: members.clone(),
    };
    let result = match cluster.group(&group_id, op).await {
        GroupReply::Leave(result) => result,
        _ => Err(ResponseError::UnknownServerError),
    };
    let response = LeaveGroupResponse::default();
    match result {
        Err(error) => response.with_error_code(error.code()),
        Ok(per_member) if version < 3 => {
            response.with_error_code(per_member.first().map_or(0, code))
        }
        Ok(per_member) => response.with_members(
            members
                .iter()
                .zip(&per_member)
                .map(|(m, result)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_error_code(code(result))
                })
                .collect(),
        ),
    }
}

pub async fn offset_commit<C: Cluster>(
    cluster: &C,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    // Unknown topics and partitions are answered here; the rest goes to the coordinator.
    let mut unknown = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let count = cluster.topic(&name).map(|t| t.partitions);
        for p in &topic.partitions {
            let tp = Tp {
                topic: name.clone(),
                partition: p.partition_index,
            };
            if count.is_some_and(|n| (0..n).contains(&p.partition_index)) {
                let epoch = if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                };
                offsets.push((
                    tp,
                    p.committed_offset,
                    epoch,
                    opt_str(&p.committed_metadata),
                ));
            } else {
                unknown.push(tp);
            }
        }
    }
    let mut results: Vec<(Tp, i16)> = unknown
        .into_iter()
        .map(|tp| (tp, ResponseError::UnknownTopicOrPartition.code()))
        .collect();
    if !offsets.is_empty() {
        let tps: Vec<Tp> = offsets.iter().map(|o| o.0.clone()).collect();
        let op = GroupOp::Commit(CommitRequest {
            group_id: group_id.clone(),
            generation: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            instance_id: if version >= 7 {
                opt_str(&request.group_instance_id)
            } else {
                None
            },
            retention_ms: if (2..=4).contains(&version) {
                request.retention_time_ms
            } else {
                -1
            },
            offsets,
        });
        match cluster.group(&group_id, op).await {
            GroupReply::Commit(Ok(per_partition)) => {
                results.extend(per_partition.iter().map(|(tp, r)| (tp.clone(), code(r))));
            }
            GroupReply::Commit(Err(error)) => {
                results.extend(tps.into_iter().map(|tp| (tp, error.code())));
            }
            _ => results.extend(
                tps.into_iter()
                    .map(|tp| (tp, ResponseError::UnknownServerError.code())),
            ),
        }
    }
    // Answer in request order.
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = results
                        .iter()
                        .find(|(tp, _)| tp.topic == name && tp.partition == p.partition_index)
                        .map_or(0, |(_, e)| *e);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Committed offsets of one group: (topic, [(partition, offset, epoch, metadata)]), or the
/// group-level error.
type FetchedTopics = Vec<(String, Vec<(i32, i64, i32, String)>)>;

async fn fetch_group<C: Cluster>(
    cluster: &C,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<FetchedTopics, ResponseError> {
    let partitions = topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|(name, parts)| {
                parts.iter().map(|&partition| Tp {
                    topic: name.clone(),
                    partition,
                })
            })
            .collect()
    });
    let op = GroupOp::FetchOffsets {
        group_id: group_id.clone(),
        partitions,
    };
    let fetched = match cluster.group(&group_id, op).await {
        GroupReply::FetchOffsets(result) => result?,
        _ => return Err(ResponseError::UnknownServerError),
    };
    let mut out: FetchedTopics = Vec::new();
    for (tp, committed) in fetched {
        let entry = match committed {
            Some(o) => (
                tp.partition,
                o.offset,
                o.leader_epoch,
                o.metadata.unwrap_or_default(),
            ),
            None => (tp.partition, -1, -1, String::new()),
        };
        match out.iter_mut().find(|(name, _)| *name == tp.topic) {
            Some((_, parts)) => parts.push(entry),
            None => out.push((tp.topic, vec![entry])),
        }
    }
    Ok(out)
}

pub async fn offset_fetch<C: Cluster>(
    cluster: &C,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let fetches = request.groups.iter().map(|group| {
            let topics = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let group_id = group.group_id.0.to_string();
            async move {
                let result = fetch_group(cluster, group_id.clone(), topics).await;
                let response = OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(&group_id)));
                match result {
                    Err(error) => response.with_error_code(error.code()),
                    Ok(topics) => response.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&name))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, offset, epoch, metadata)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(&metadata)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            }
        });
        return OffsetFetchResponse::default().with_groups(join_all(fetches).await);
    }
    let topics = if version < 2 {
        Some(request.topics.unwrap_or_default())
    } else {
        request.topics
    };
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let result = fetch_group(cluster, request.group_id.0.to_string(), topics).await;
    match result {
        Err(error) => {
            let response = OffsetFetchResponse::default();
            if version >= 2 {
                response.with_error_code(error.code())
            } else {
                response
            }
        }
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, offset, epoch, metadata)| {
                                    let partition = OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_metadata(Some(str_bytes(&metadata)));
                                    if version >= 5 {
                                        partition.with_committed_leader_epoch(epoch)
                                    } else {
                                        partition
                                    }
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

pub async fn list_groups<C: Cluster>(
    cluster: &C,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string().to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_string().to_lowercase())
        .collect();
    let groups = cluster
        .list_groups()
        .await
        .into_iter()
        .filter(|g| version < 4 || states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|_| version < 5 || types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(str_bytes(g.state))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(str_bytes("classic"))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn describe_groups<C: Cluster>(
    cluster: &C,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let describes = request.groups.iter().map(|group| {
        let group_id = group.0.to_string();
        async move {
            let op = GroupOp::Describe {
                group_id: group_id.clone(),
            };
            let GroupReply::Describe(d) = cluster.group(&group_id, op).await else {
                return DescribedGroup::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_error_code(ResponseError::UnknownServerError.code());
            };
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                    } else {
                        member
                    }
                })
                .collect();
            let described = DescribedGroup::default()
                .with_group_id(GroupId(str_bytes(&d.group_id)))
                .with_group_state(str_bytes(d.state))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol))
                .with_members(members);
            if version >= 3 {
                described.with_authorized_operations(if request.include_authorized_operations {
                    GROUP_OPERATIONS
                } else {
                    AUTHORIZED_OPERATIONS_OMITTED
                })
            } else {
                described
            }
        }
    });
    DescribeGroupsResponse::default().with_groups(join_all(describes).await)
}

pub async fn delete_groups<C: Cluster>(
    cluster: &C,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let deletes = request.groups_names.iter().map(|group| {
        let group_id = group.0.to_string();
        async move {
            let op = GroupOp::Delete {
                group_id: group_id.clone(),
            };
            let error = match cluster.group(&group_id, op).await {
                GroupReply::Delete(result) => code(&result),
                _ => ResponseError::UnknownServerError.code(),
            };
            DeletableGroupResult::default()
                .with_group_id(GroupId(str_bytes(&group_id)))
                .with_error_code(error)
        }
    });
    DeleteGroupsResponse::default().with_results(join_all(deletes).await)
}

pub async fn offset_delete<C: Cluster>(
    cluster: &C,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    let partitions: Vec<Tp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Tp {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
            })
        })
        .collect();
    let op = GroupOp::OffsetDelete {
        group_id: group_id.clone(),
        partitions,
    };
    let results = match cluster.group(&group_id, op).await {
        GroupReply::OffsetDelete(result) => result,
        _ => Err(ResponseError::UnknownServerError),
    };
    let per_partition = match results {
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(per_partition) => per_partition,
    };
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let known = cluster
                        .topic(&name)
                        .is_some_and(|info| (0..info.partitions).contains(&p.partition_index));
                    let error = if known {
                        per_partition
                            .iter()
                            .find(|(tp, _)| tp.topic == name && tp.partition == p.partition_index)
                            .map_or(0, |(_, r)| code(r))
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
