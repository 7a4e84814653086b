//! DescribeLogDirs: the one log directory (the data directory), with the size of each
//! requested partition (all partitions when `topics` is null). Nothing is replicated or moved
//! between directories, so the offset lag is 0 and no partition is a future replica. Version 4
//! adds the file system's total and usable bytes.

use futures::future::join_all;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::cluster::{Cluster, TopicPartition};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    // (topic, partitions) that exist; unknown ones are left out, as Kafka does.
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        None => cluster
            .topics()
            .into_iter()
            .map(|t| (t.name, (0..t.partitions).collect()))
            .collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| {
                let info = cluster.topic(&t.topic.0)?;
                let partitions = t
                    .partitions
                    .iter()
                    .copied()
                    .filter(|p| (0..info.partitions).contains(p))
                    .collect();
                Some((info.name, partitions))
            })
            .collect(),
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, partitions) in wanted {
        let sizes = partitions.into_iter().map(|partition| {
            let tp = TopicPartition {
                topic: name.clone(),
                partition,
            };
            async move {
                // An offline partition has no size to report: it is left out.
                let size = cluster.partition_size(&tp).await.ok()?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(partition)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                )
            }
        });
        let partitions: Vec<_> = join_all(sizes).await.into_iter().flatten().collect();
        topics.push(
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    let dir = cluster.log_dir().await;
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&dir.path))
        .with_topics(topics);
    if version >= 4 {
        let bytes = |n: Option<u64>| n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        result = result
            .with_total_bytes(bytes(dir.total_bytes))
            .with_usable_bytes(bytes(dir.usable_bytes));
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
