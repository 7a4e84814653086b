//! Throttle times in responses (KIP-219): where each response carries `throttle_time_ms`, and
//! from which version the client throttles itself.
//!
//! A broker that throttles a client puts the time in the response and mutes the connection
//! that long. A client on a version from before KIP-219 does not wait by itself: the broker
//! holds the response back for the throttle time instead (Kafka's `shouldClientThrottle`).

use kafka_protocol::messages::{ApiKey, ResponseKind};

/// The response's `throttle_time_ms`, for the APIs this broker serves. Setting it is safe at
/// every version: versions without the field do not encode it.
pub fn throttle_time_ms(body: &mut ResponseKind) -> Option<&mut i32> {
    macro_rules! field {
        ($($variant:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$variant(response) => Some(&mut response.throttle_time_ms),)*
                _ => None,
            }
        };
    }
    field!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        InitProducerId,
        DescribeProducers,
        DeleteRecords,
        OffsetForLeaderEpoch,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
    )
}

/// Whether a client on `version` of `api_key` waits out a throttle time by itself (the Java
/// client's `shouldClientThrottle` per response). APIs newer than KIP-219 always do.
pub fn client_throttles(api_key: ApiKey, version: i16) -> bool {
    let first = match api_key {
        ApiKey::Produce => 6,
        ApiKey::Fetch => 8,
        ApiKey::ListOffsets => 3,
        ApiKey::Metadata => 6,
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => 4,
        ApiKey::FindCoordinator
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::ApiVersions
        | ApiKey::DeleteTopics
        | ApiKey::DescribeConfigs => 2,
        ApiKey::JoinGroup | ApiKey::CreateTopics | ApiKey::OffsetForLeaderEpoch => 3,
        ApiKey::DeleteRecords
        | ApiKey::InitProducerId
        | ApiKey::AlterConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::CreatePartitions
        | ApiKey::DeleteGroups => 1,
        _ => 0,
    };
    version >= first
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ProduceResponse};

    #[test]
    fn produce_and_fetch_carry_the_field() {
        let mut produce = ResponseKind::Produce(ProduceResponse::default());
        *throttle_time_ms(&mut produce).expect("produce has one") = 7;
        let ResponseKind::Produce(produce) = produce else {
            unreachable!()
        };
        assert_eq!(produce.throttle_time_ms, 7);
        let mut fetch = ResponseKind::Fetch(FetchResponse::default());
        assert!(throttle_time_ms(&mut fetch).is_some());
    }

    #[test]
    fn old_versions_leave_the_wait_to_the_broker() {
        assert!(!client_throttles(ApiKey::Produce, 5));
        assert!(client_throttles(ApiKey::Produce, 6));
        assert!(!client_throttles(ApiKey::Fetch, 7));
        assert!(client_throttles(ApiKey::DescribeClientQuotas, 0));
    }
}
