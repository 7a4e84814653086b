//! Handlers of DeleteRecords, CreatePartitions, DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs, OffsetForLeaderEpoch, DescribeCluster and DescribeLogDirs against
//! the in-memory cluster: error codes, effects, and a client-decoder round trip at every
//! advertised version.

mod common;

use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use shoal_kafka::cluster::{config_source, Cluster};
use shoal_kafka::handlers;

fn tn(name: &str) -> TopicName {
    TopicName(s(name))
}

#[test]
fn delete_records_moves_the_low_watermark_and_maps_errors() {
    let fake = Fake::with_topic("t", 2, 3); // Offsets 0..6 in each partition.
    let part = |p: i32, offset: i64| {
        delete_records_request::DeleteRecordsPartition::default()
            .with_partition_index(p)
            .with_offset(offset)
    };
    let request = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(tn("t"))
            .with_partitions(vec![part(0, 2), part(1, -1), part(7, 1)]),
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(tn("missing"))
            .with_partitions(vec![part(0, 1)]),
    ]);
    for version in advertised(ApiKey::DeleteRecords) {
        let fake = Fake::with_topic("t", 2, 3);
        let response = run(handlers::delete_records::handle(
            &fake,
            request.clone(),
            version,
        ));
        let t = &response.topics[0].partitions;
        assert_eq!((t[0].error_code, t[0].low_watermark), (0, 2));
        assert_eq!(
            (t[1].error_code, t[1].low_watermark),
            (0, 6),
            "-1: the high watermark"
        );
        assert_eq!(
            t[2].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            response.topics[1].partitions[0].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        assert_round_trip(
            ApiKey::DeleteRecords,
            version,
            &ResponseKind::DeleteRecords(response),
        );
    }
    // Beyond the high watermark.
    let request = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(tn("t"))
            .with_partitions(vec![part(0, 99), part(1, -5)]),
    ]);
    let response = run(handlers::delete_records::handle(&fake, request, 2));
    let t = &response.topics[0].partitions;
    assert_eq!(t[0].error_code, code(ResponseError::OffsetOutOfRange));
    assert_eq!(t[0].low_watermark, -1);
    assert_eq!(t[1].error_code, code(ResponseError::OffsetOutOfRange));
    assert_eq!(
        fake.topics.borrow()["t"].logs[0].log_start,
        0,
        "nothing deleted"
    );
}

#[test]
fn create_partitions_only_grows_and_honours_validate_only() {
    let topic = |name: &str, count: i32| {
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(tn(name))
            .with_count(count)
    };
    for version in advertised(ApiKey::CreatePartitions) {
        let fake = Fake::with_topic("t", 1, 0);
        fake.add_topic("u", 4, 0);
        fake.add_topic("v", 1, 0);
        fake.add_topic("w", 1, 0);
        let assignment = |broker: i32| {
            create_partitions_request::CreatePartitionsAssignment::default()
                .with_broker_ids(vec![BrokerId(broker)])
        };
        let request = CreatePartitionsRequest::default().with_topics(vec![
            topic("t", 3),
            topic("u", 2),
            topic("u", 5),
            topic("missing", 2),
            topic("v", 2).with_assignments(Some(vec![assignment(NODE_ID)])),
            topic("w", 2).with_assignments(Some(vec![assignment(NODE_ID + 1)])),
        ]);
        let response = run(handlers::create_partitions::handle(&fake, request, version));
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                code(ResponseError::InvalidRequest),
                code(ResponseError::InvalidRequest),
                code(ResponseError::UnknownTopicOrPartition),
                0,
                code(ResponseError::InvalidReplicaAssignment),
            ],
            "v{version}"
        );
        assert_eq!(fake.topic("t").map(|t| t.partitions), Some(3));
        assert_eq!(fake.topic("v").map(|t| t.partitions), Some(2));
        assert_eq!(fake.topic("w").map(|t| t.partitions), Some(1));
        assert_round_trip(
            ApiKey::CreatePartitions,
            version,
            &ResponseKind::CreatePartitions(response),
        );
        // Shrinking or keeping the count is INVALID_PARTITIONS; validate_only changes nothing.
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![topic("t", 2), topic("u", 4), topic("v", 9)])
            .with_validate_only(true);
        let response = run(handlers::create_partitions::handle(&fake, request, version));
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                code(ResponseError::InvalidPartitions),
                code(ResponseError::InvalidPartitions),
                0
            ]
        );
        assert!(response.results[0].error_message.is_some());
        assert_eq!(fake.topic("v").map(|t| t.partitions), Some(2));
        assert_round_trip(
            ApiKey::CreatePartitions,
            version,
            &ResponseKind::CreatePartitions(response),
        );
    }
}

fn describe(
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> describe_configs_request::DescribeConfigsResource {
    describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect()))
}

#[test]
fn describe_configs_lists_topic_and_broker_configs() {
    let fake = Fake::with_topic("t", 1, 0);
    let _ = run(fake.alter_topic_configs(
        vec![(
            "t".to_string(),
            shoal_kafka::cluster::ConfigChange::Replace(
                [("retention.ms".to_string(), "1000".to_string())].into(),
            ),
        )],
        false,
    ));
    for version in advertised(ApiKey::DescribeConfigs) {
        for include_synonyms in [false, true] {
            let request = DescribeConfigsRequest::default()
                .with_include_synonyms(include_synonyms)
                .with_resources(vec![
                    describe(2, "t", None),
                    describe(2, "t", Some(&["retention.ms", "no.such.config"])),
                    describe(2, "missing", None),
                    describe(4, &NODE_ID.to_string(), None),
                    describe(4, "", None),
                    describe(4, "9", None),
                    describe(99, "x", None),
                ]);
            let response = run(handlers::describe_configs::handle(&fake, request, version));
            let r = &response.results;
            assert_eq!(r.len(), 7);
            assert_eq!((r[0].error_code, r[0].configs.len()), (0, 2));
            let policy = &r[0].configs[0];
            assert_eq!(policy.name.as_str(), "cleanup.policy");
            assert_eq!(policy.value.as_deref(), Some("delete"));
            assert_eq!(policy.config_source, config_source::DEFAULT_CONFIG);
            let retention = &r[1].configs;
            assert_eq!(retention.len(), 1, "only the known requested key");
            assert_eq!(retention[0].value.as_deref(), Some("1000"));
            assert_eq!(
                retention[0].config_source,
                config_source::DYNAMIC_TOPIC_CONFIG
            );
            assert_eq!(retention[0].synonyms.len(), usize::from(include_synonyms));
            if version >= 3 {
                assert_eq!(retention[0].config_type, 5, "LONG");
            }
            assert_eq!(
                r[2].error_code,
                code(ResponseError::UnknownTopicOrPartition)
            );
            assert_eq!(r[2].resource_name.as_str(), "missing");
            assert_eq!(r[3].error_code, 0);
            assert!(r[3].configs.iter().all(|c| c.read_only));
            assert_eq!(r[4].error_code, 0);
            assert_eq!(r[5].error_code, code(ResponseError::InvalidRequest));
            assert_eq!(r[6].error_code, code(ResponseError::InvalidRequest));
            assert_round_trip(
                ApiKey::DescribeConfigs,
                version,
                &ResponseKind::DescribeConfigs(response),
            );
        }
    }
}

fn alterable(name: &str, value: Option<&str>) -> alter_configs_request::AlterableConfig {
    alter_configs_request::AlterableConfig::default()
        .with_name(s(name))
        .with_value(value.map(s))
}

#[test]
fn alter_configs_replaces_the_set_and_refuses_broker_resources() {
    for version in advertised(ApiKey::AlterConfigs) {
        let fake = Fake::with_topic("t", 1, 0);
        fake.topics.borrow_mut().get_mut("t").expect("t").configs =
            [("cleanup.policy".to_string(), "delete".to_string())].into();
        let resource = |kind: i8, name: &str, configs| {
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(s(name))
                .with_configs(configs)
        };
        let request = AlterConfigsRequest::default().with_resources(vec![
            resource(2, "t", vec![alterable("retention.ms", Some("1000"))]),
            resource(2, "missing", vec![]),
            resource(4, "1", vec![alterable("num.partitions", Some("3"))]),
            resource(2, "t2", vec![]),
        ]);
        fake.add_topic("t2", 1, 0);
        let response = run(handlers::alter_configs::handle(&fake, request, version));
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                code(ResponseError::UnknownTopicOrPartition),
                code(ResponseError::InvalidRequest),
                0
            ]
        );
        assert_eq!(response.responses[2].resource_type, 4);
        let configs = fake.topic("t").expect("t").configs;
        assert_eq!(
            configs,
            [("retention.ms".to_string(), "1000".to_string())].into(),
            "the whole set was replaced"
        );
        assert_round_trip(
            ApiKey::AlterConfigs,
            version,
            &ResponseKind::AlterConfigs(response),
        );
        // validate_only and invalid configs change nothing; a key twice is INVALID_REQUEST.
        let request = AlterConfigsRequest::default()
            .with_validate_only(true)
            .with_resources(vec![
                resource(2, "t", vec![]),
                resource(2, "t2", vec![alterable("bogus", Some("1"))]),
            ]);
        let response = run(handlers::alter_configs::handle(&fake, request, version));
        assert_eq!(response.responses[0].error_code, 0);
        assert_eq!(
            response.responses[1].error_code,
            code(ResponseError::InvalidConfig)
        );
        assert_eq!(fake.topic("t").expect("t").configs.len(), 1);
        let request = AlterConfigsRequest::default().with_resources(vec![resource(
            2,
            "t",
            vec![
                alterable("retention.ms", Some("1")),
                alterable("retention.ms", Some("2")),
            ],
        )]);
        let response = run(handlers::alter_configs::handle(&fake, request, version));
        assert_eq!(
            response.responses[0].error_code,
            code(ResponseError::InvalidRequest)
        );
        assert_round_trip(
            ApiKey::AlterConfigs,
            version,
            &ResponseKind::AlterConfigs(response),
        );
    }
}

#[test]
fn incremental_alter_configs_sets_deletes_and_refuses_list_ops_on_scalars() {
    let op = |name: &str, operation: i8, value: Option<&str>| {
        incremental_alter_configs_request::AlterableConfig::default()
            .with_name(s(name))
            .with_config_operation(operation)
            .with_value(value.map(s))
    };
    let resource = |kind: i8, name: &str, configs| {
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configs(configs)
    };
    for version in advertised(ApiKey::IncrementalAlterConfigs) {
        let fake = Fake::with_topic("t", 1, 0);
        fake.add_topic("u", 1, 0);
        fake.topics.borrow_mut().get_mut("t").expect("t").configs =
            [("cleanup.policy".to_string(), "delete".to_string())].into();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            resource(
                2,
                "t",
                vec![
                    op("retention.ms", 0, Some("1000")),
                    op("cleanup.policy", 1, None),
                ],
            ),
            resource(2, "u", vec![op("retention.ms", 2, Some("5"))]),
            resource(2, "missing", vec![op("retention.ms", 0, Some("5"))]),
            resource(4, "1", vec![op("num.partitions", 0, Some("3"))]),
            resource(2, "u", vec![]),
        ]);
        let response = run(handlers::incremental_alter_configs::handle(
            &fake, request, version,
        ));
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                code(ResponseError::InvalidRequest), // "u" is listed twice.
                code(ResponseError::UnknownTopicOrPartition),
                code(ResponseError::InvalidRequest),
                code(ResponseError::InvalidRequest),
            ]
        );
        assert_eq!(
            fake.topic("t").expect("t").configs,
            [("retention.ms".to_string(), "1000".to_string())].into()
        );
        assert_round_trip(
            ApiKey::IncrementalAlterConfigs,
            version,
            &ResponseKind::IncrementalAlterConfigs(response),
        );
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            resource(2, "u", vec![op("retention.ms", 3, Some("5"))]),
            resource(2, "t", vec![op("retention.ms", 9, Some("5"))]),
        ]);
        let response = run(handlers::incremental_alter_configs::handle(
            &fake, request, version,
        ));
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                code(ResponseError::InvalidRequest),
                code(ResponseError::InvalidRequest)
            ]
        );
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(true)
            .with_resources(vec![resource(2, "t", vec![op("retention.ms", 1, None)])]);
        let response = run(handlers::incremental_alter_configs::handle(
            &fake, request, version,
        ));
        assert_eq!(response.responses[0].error_code, 0);
        assert_eq!(
            fake.topic("t").expect("t").configs.len(),
            1,
            "validate only"
        );
    }
}

#[test]
fn offset_for_leader_epoch_follows_kafkas_epoch_cache() {
    let fake = Fake::with_topic("t", 1, 3);
    {
        let mut topics = fake.topics.borrow_mut();
        let log = &mut topics.get_mut("t").expect("t").logs[0];
        // Epoch 3 from offset 0, 5 from 2, 7 (current) from 4; one more batch written but not
        // yet durable: log end 8, high watermark 6.
        log.epochs = vec![(3, 0), (5, 2), (7, 4)];
        log.hold_watermark = true;
        assert!(log.append(common::real_batch(0, 9000).to_vec()).is_ok());
    }
    let part = |partition: i32, current: i32, requested: i32| {
        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
            .with_partition(partition)
            .with_current_leader_epoch(current)
            .with_leader_epoch(requested)
    };
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(tn("t"))
            .with_partitions(vec![
                part(0, -1, 7),
                part(0, 7, 7),
                part(0, 7, 5),
                part(0, 7, 6),
                part(0, 7, 1),
                part(0, 7, 9),
                part(0, 7, -1),
                part(0, 8, 7),
                part(0, 6, 7),
                part(4, 7, 7),
            ]),
        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(tn("missing"))
            .with_partitions(vec![part(0, 7, 7)]),
    ]);
    for version in advertised(ApiKey::OffsetForLeaderEpoch) {
        let response = run(handlers::offset_for_leader_epoch::handle(
            &fake,
            request.clone(),
            version,
        ));
        let got: Vec<(i16, i32, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 7, 8), // the current epoch ends at the log end, not the watermark
                (0, 7, 8),
                (0, 5, 4),   // an older epoch ends where the next starts
                (0, 5, 4),   // between epochs: the largest one below
                (0, 1, 0),   // below the history: the requested epoch, the oldest start
                (0, -1, -1), // newer than the current epoch
                (0, -1, -1), // undefined
                (code(ResponseError::UnknownLeaderEpoch), -1, -1),
                (code(ResponseError::FencedLeaderEpoch), -1, -1),
                (code(ResponseError::UnknownTopicOrPartition), -1, -1),
            ]
        );
        assert_eq!(
            response.topics[1].partitions[0].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        assert_round_trip(
            ApiKey::OffsetForLeaderEpoch,
            version,
            &ResponseKind::OffsetForLeaderEpoch(response),
        );
    }
}

#[test]
fn describe_cluster_names_this_node_as_broker_and_controller() {
    let fake = Fake::new();
    for version in advertised(ApiKey::DescribeCluster) {
        let response = run(handlers::describe_cluster::handle(
            &fake,
            DescribeClusterRequest::default(),
            version,
        ));
        assert_eq!(response.error_code, 0);
        assert_eq!(response.cluster_id.as_str(), CLUSTER_ID);
        assert_eq!(response.controller_id, BrokerId(NODE_ID));
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].port, 9092);
        assert_round_trip(
            ApiKey::DescribeCluster,
            version,
            &ResponseKind::DescribeCluster(response),
        );
    }
    let response = run(handlers::describe_cluster::handle(
        &fake,
        DescribeClusterRequest::default().with_endpoint_type(2),
        1,
    ));
    assert_eq!(
        response.error_code,
        code(ResponseError::UnsupportedEndpointType)
    );
    assert_round_trip(
        ApiKey::DescribeCluster,
        1,
        &ResponseKind::DescribeCluster(response),
    );
}

#[test]
fn describe_log_dirs_reports_the_data_dir_and_partition_sizes() {
    let fake = Fake::with_topic("t", 2, 3);
    fake.add_topic("u", 1, 1);
    for version in advertised(ApiKey::DescribeLogDirs) {
        let response = run(handlers::describe_log_dirs::handle(
            &fake,
            DescribeLogDirsRequest::default().with_topics(None),
            version,
        ));
        assert_eq!(response.results.len(), 1);
        let dir = &response.results[0];
        assert_eq!(dir.log_dir.as_str(), "/var/lib/shoal");
        assert_eq!(dir.topics.len(), 2);
        assert_eq!(dir.topics[0].partitions.len(), 2);
        assert_eq!(
            dir.topics[0].partitions[1].partition_size,
            3 * common::real_batch_bytes() as i64
        );
        assert_eq!(
            dir.topics[1].partitions[0].partition_size,
            common::real_batch_bytes() as i64
        );
        assert!(dir.topics[0]
            .partitions
            .iter()
            .all(|p| p.offset_lag == 0 && !p.is_future_key));
        if version >= 4 {
            assert_eq!((dir.total_bytes, dir.usable_bytes), (1 << 40, 1 << 39));
        }
        assert_round_trip(
            ApiKey::DescribeLogDirs,
            version,
            &ResponseKind::DescribeLogDirs(response),
        );
        let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(tn("t"))
                .with_partitions(vec![1, 5]),
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(tn("missing"))
                .with_partitions(vec![0]),
        ]));
        let response = run(handlers::describe_log_dirs::handle(&fake, request, version));
        let topics = &response.results[0].topics;
        assert_eq!(topics.len(), 1, "unknown topics are left out");
        let indexes: Vec<i32> = topics[0]
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .collect();
        assert_eq!(indexes, vec![1]);
        assert_round_trip(
            ApiKey::DescribeLogDirs,
            version,
            &ResponseKind::DescribeLogDirs(response),
        );
    }
}
