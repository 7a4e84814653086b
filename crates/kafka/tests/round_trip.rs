//! Every handler's response, at every advertised version, encoded as the broker does and
//! decoded with kafka-protocol's client decoder, must come back equal: a field set in a version
//! that lacks it would be dropped on the wire (or refused by the encoder). Also: every
//! advertised (API, version) decodes a client's request and reaches a handler.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use shoal_kafka::{codec, handlers, versions};

fn tn(name: &str) -> TopicName {
    TopicName(s(name))
}

/// A small request of each advertised API that a client could send at `version`.
pub fn sample_request(api_key: ApiKey, version: i16) -> RequestKind {
    match api_key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(tn("t"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from_static(&[1, 2, 3]))),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)]),
            ]))
        }
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(tn("t"))),
            ])))
        }
        ApiKey::ApiVersions => {
            let request = ApiVersionsRequest::default();
            RequestKind::ApiVersions(if version >= 3 {
                request
                    .with_client_software_name(s("test"))
                    .with_client_software_version(s("1"))
            } else {
                request
            })
        }
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(tn("new"))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![tn("t")]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            kafka_protocol::messages::InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(
            kafka_protocol::messages::DescribeProducersRequest::default().with_topics(vec![
                kafka_protocol::messages::describe_producers_request::TopicRequest::default()
                    .with_name(tn("t"))
                    .with_partition_indexes(vec![0, 7]),
            ]),
        ),
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(2)]),
            ]))
        }
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configuration_keys(None),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("1000"))),
                    ]),
            ]),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None))
        }
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(tn("t"))
                    .with_count(3)
                    .with_assignments(None),
            ]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        // Consumer groups.
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(if version < 4 { s("g") } else { s("") })
                .with_coordinator_keys(if version >= 4 { vec![s("g")] } else { vec![] }),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { -1 })
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"m"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s("m")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m")),
        ),
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::default().with_group_id(GroupId(s("g")));
            RequestKind::LeaveGroup(if version >= 3 {
                request.with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("m"))
                ])
            } else {
                request.with_member_id(s("m"))
            })
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(tn("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(5),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(tn("t"))
                        .with_partition_indexes(vec![0]),
                ]))
        }),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        ),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(tn("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        // Client quotas.
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(
            DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(s("client-id"))
                    .with_match_type(2),
            ]),
        ),
        ApiKey::AlterClientQuotas => {
            RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s("client-id"))
                        .with_entity_name(Some(s("c")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(s("producer_byte_rate"))
                        .with_value(1024.0)]),
            ]))
        }
        other => panic!("no sample request for {other:?}: add one"),
    }
}

#[test]
fn every_advertised_version_decodes_a_client_request_and_is_served() {
    let corpus = std::env::var_os("SHOAL_WRITE_CORPUS").map(std::path::PathBuf::from);
    for &(api_key, min, max) in versions::SUPPORTED {
        for version in min..=max {
            let body = sample_request(api_key, version);
            let frame = request_frame(api_key, version, &body);
            if let Some(dir) = &corpus {
                let name = format!("{api_key:?}-v{version}").to_lowercase();
                std::fs::write(dir.join(name), &frame).expect("write corpus file");
            }
            let request = codec::decode_request(frame)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            assert_eq!((request.api_key, request.version), (api_key, version));
            assert_eq!(request.header.correlation_id, 42);
            let fake = Fake::with_topic("t", 1, 3);
            let response = run(shoal_kafka::handle(&fake, request))
                .unwrap_or_else(|| panic!("{api_key:?} v{version}: no response"));
            assert_round_trip(api_key, version, &response);
        }
    }
}

#[test]
fn unsupported_versions_are_refused_at_decode() {
    for &(api_key, min, max) in versions::SUPPORTED {
        for version in [min - 1, max + 1] {
            let mut frame = request_frame(api_key, min, &sample_request(api_key, min)).to_vec();
            frame[2..4].copy_from_slice(&version.to_be_bytes());
            match codec::decode_request(Bytes::from(frame)) {
                Err(codec::DecodeError::UnsupportedVersion { correlation_id, .. }) => {
                    assert_eq!(correlation_id, 42)
                }
                other => panic!("{api_key:?} v{version}: {other:?}"),
            }
        }
    }
}

#[test]
fn api_versions_round_trips_including_the_fallback() {
    for version in advertised(ApiKey::ApiVersions) {
        let body = ResponseKind::ApiVersions(handlers::api_versions::handle());
        assert_round_trip(ApiKey::ApiVersions, version, &body);
    }
    let fallback = handlers::api_versions::unsupported_version();
    assert_eq!(
        fallback.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert_round_trip(ApiKey::ApiVersions, 0, &ResponseKind::ApiVersions(fallback));
}

#[test]
fn metadata_round_trips_for_all_errorless_and_error_topics() {
    for version in advertised(ApiKey::Metadata) {
        for auto_create in [false, true] {
            let mut fake = Fake::with_topic("t", 2, 0);
            fake.auto_create = auto_create;
            let named = |name: &str| {
                metadata_request::MetadataRequestTopic::default().with_name(Some(tn(name)))
            };
            let mut request = MetadataRequest::default().with_topics(Some(vec![
                named("t"),
                named("fresh"),
                named("bad/name"),
            ]));
            if version >= 4 {
                request = request.with_allow_auto_topic_creation(true);
            }
            let response = run(handlers::metadata::handle(&fake, request, version));
            let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
            let fresh = if auto_create {
                0
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            assert_eq!(
                codes,
                vec![0, fresh, ResponseError::InvalidTopicException.code()]
            );
            assert_eq!(response.topics[0].partitions.len(), 2);
            assert_round_trip(ApiKey::Metadata, version, &ResponseKind::Metadata(response));
            // All topics: null (v1+) or an empty list (v0).
            let all = if version == 0 { Some(vec![]) } else { None };
            let response = run(handlers::metadata::handle(
                &fake,
                MetadataRequest::default().with_topics(all),
                version,
            ));
            assert_eq!(response.topics.len(), if auto_create { 2 } else { 1 });
            assert_round_trip(ApiKey::Metadata, version, &ResponseKind::Metadata(response));
        }
    }
}

#[test]
fn produce_round_trips_successes_and_errors() {
    for version in advertised(ApiKey::Produce) {
        let fake = Fake::with_topic("t", 1, 0);
        // A log that starts at 10 (DeleteRecords ran): the response carries that start.
        fake.topics.borrow_mut().get_mut("t").expect("t").logs[0].log_start = 10;
        // Two records per batch: offsets advance by the record count, not by one per append.
        let partition = |index: i32| {
            produce_request::PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(common::real_batch(0, 1000)))
        };
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(tn("t"))
                    .with_partition_data(vec![partition(0), partition(0), partition(3)]),
                produce_request::TopicProduceData::default()
                    .with_name(tn("missing"))
                    .with_partition_data(vec![partition(0)]),
            ]);
        let response =
            run(handlers::produce::handle(&fake, request, version)).expect("acks=-1 answers");
        let results: Vec<(i16, i64, i64)> = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .map(|p| (p.error_code, p.base_offset, p.log_start_offset))
            .collect();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        // The log start offset is reported from v5 on (-1 before, and on errors).
        let start = if version >= 5 { 10 } else { -1 };
        assert_eq!(
            results,
            vec![
                (0, 10, start),
                (0, 12, start),
                (unknown, -1, -1),
                (unknown, -1, -1)
            ]
        );
        assert_round_trip(ApiKey::Produce, version, &ResponseKind::Produce(response));
        let acks_zero = ProduceRequest::default().with_acks(0);
        assert!(run(handlers::produce::handle(&fake, acks_zero, version)).is_none());
    }
}

#[test]
fn fetch_round_trips_data_and_errors() {
    for version in advertised(ApiKey::Fetch) {
        let fake = Fake::with_topic("t", 1, 3);
        let partition = |p: i32, offset: i64| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![partition(0, 2), partition(0, 99), partition(8, 0)]),
                fetch_request::FetchTopic::default()
                    .with_topic(tn("missing"))
                    .with_partitions(vec![partition(0, 0)]),
            ]);
        let response = run(handlers::fetch::handle(
            &fake,
            request,
            version,
            "test-client",
        ));
        let t = &response.responses[0].partitions;
        assert_eq!(t[0].error_code, 0);
        assert_eq!(t[0].high_watermark, 6);
        assert_eq!(
            t[0].records.as_ref().map(|r| r.len()),
            Some(2 * common::real_batch_bytes())
        );
        assert_eq!(t[1].error_code, ResponseError::OffsetOutOfRange.code());
        assert_eq!(
            t[2].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_round_trip(ApiKey::Fetch, version, &ResponseKind::Fetch(response));
    }
}

#[test]
fn list_offsets_round_trips_every_kind_of_lookup() {
    for version in advertised(ApiKey::ListOffsets) {
        let fake = Fake::with_topic("t", 1, 3);
        let partition = |p: i32, timestamp: i64| {
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(p)
                .with_timestamp(timestamp)
        };
        let request = ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(tn("t"))
                .with_partitions(vec![
                    partition(0, -1),
                    partition(0, -2),
                    partition(0, -3),
                    partition(0, 1500),
                    partition(0, 9999),
                    partition(2, -1),
                ]),
        ]);
        let response = run(handlers::list_offsets::handle(&fake, request, version));
        let got: Vec<(i16, i64, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.timestamp))
            .collect();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            got,
            vec![
                (0, 6, -1),
                (0, 0, -1),
                // Record precision: the max timestamp is the second record of the last
                // batch; 1500 is the first record of the second batch (its max is 2000).
                (0, 5, 3000),
                (0, 2, 1500),
                (0, -1, -1),
                (unknown, -1, -1)
            ]
        );
        assert_round_trip(
            ApiKey::ListOffsets,
            version,
            &ResponseKind::ListOffsets(response),
        );
    }
}

#[test]
fn create_and_delete_topics_round_trip() {
    for version in advertised(ApiKey::CreateTopics) {
        let fake = Fake::with_topic("t", 1, 0);
        let topic = |name: &str, partitions: i32| {
            create_topics_request::CreatableTopic::default()
                .with_name(tn(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
        };
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic("new", 2),
            topic("t", 1),
            topic("bad/name", 1),
            topic("zero", 0),
            topic("__consumer_offsets", 1),
        ]);
        let response = run(handlers::create_topics::handle(&fake, request, version));
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                ResponseError::TopicAlreadyExists.code(),
                ResponseError::InvalidTopicException.code(),
                ResponseError::InvalidPartitions.code(),
                ResponseError::InvalidRequest.code(),
            ]
        );
        assert_round_trip(
            ApiKey::CreateTopics,
            version,
            &ResponseKind::CreateTopics(response),
        );
    }
    for version in advertised(ApiKey::DeleteTopics) {
        let fake = Fake::with_topic("t", 1, 0);
        let request = DeleteTopicsRequest::default().with_topic_names(vec![tn("t"), tn("gone")]);
        let response = run(handlers::delete_topics::handle(&fake, request, version));
        let codes: Vec<i16> = response.responses.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        assert_round_trip(
            ApiKey::DeleteTopics,
            version,
            &ResponseKind::DeleteTopics(response),
        );
    }
}

#[test]
fn init_producer_id_hands_out_fresh_ids_and_refuses_transactions() {
    for version in advertised(ApiKey::InitProducerId) {
        let fake = Fake::with_topic("t", 1, 1);
        let request =
            kafka_protocol::messages::InitProducerIdRequest::default().with_transactional_id(None);
        let first = run(handlers::init_producer_id::handle(
            &fake,
            request.clone(),
            version,
        ));
        let second = run(handlers::init_producer_id::handle(&fake, request, version));
        assert_eq!((first.error_code, first.producer_epoch), (0, 0));
        assert_ne!(
            first.producer_id, second.producer_id,
            "ids are never reused"
        );
        let transactional = kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
                kafka_protocol::protocol::StrBytes::from_static_str("tx"),
            )));
        let refused = run(handlers::init_producer_id::handle(
            &fake,
            transactional,
            version,
        ));
        assert_eq!(
            refused.error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );
        assert_round_trip(
            ApiKey::InitProducerId,
            version,
            &ResponseKind::InitProducerId(first),
        );
    }
}

#[test]
fn describe_producers_reports_each_partition() {
    let fake = Fake::with_topic("t", 1, 1);
    let RequestKind::DescribeProducers(request) = sample_request(ApiKey::DescribeProducers, 0)
    else {
        unreachable!()
    };
    let response = run(handlers::describe_producers::handle(&fake, request, 0));
    let partitions = &response.topics[0].partitions;
    assert_eq!(partitions[0].active_producers[0].producer_id.0, 42);
    assert_eq!(partitions[0].active_producers[0].last_sequence, 9);
    assert_eq!(
        partitions[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_round_trip(
        ApiKey::DescribeProducers,
        0,
        &ResponseKind::DescribeProducers(response),
    );
}
