//! Fetch: reads every requested partition on its owner core, concurrently. If fewer than
//! `min_bytes` are available it waits (up to `max_wait_ms`) for any of the partitions to grow,
//! across cores, then reads again. Limits: `partition_max_bytes` per partition and `max_bytes`
//! for the response, except that the first non-empty partition always returns at least one
//! whole batch so a consumer can pass a batch larger than its limits (KIP-74).
//!
//! `current_leader_epoch` (v9+; negative: not given) is checked against the partition's epoch
//! at the read: FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH (KIP-320). The response-wide limit
//! is capped at the broker's `FETCH_BYTES_MAX` (Kafka's `fetch.max.bytes`, 55 MiB), which also
//! bounds what one fetch can hold in memory.
//!
//! Fetch sessions (KIP-227, v7+): see `fetch_session.rs`. A full fetch answers every partition
//! asked; an incremental one reads every partition of the session and answers those that
//! changed. Without a session cache (`Cluster::fetch_sessions` gives none) every fetch is
//! sessionless (session id 0: the client sends full requests). There are no transactions, so
//! the last stable offset is the high watermark and `isolation_level` changes nothing.
//!
//! Client quotas (`consumer_byte_rate`, see shoal-quotas): the response is cut to what the
//! quota allows at once, and its bytes are counted once the reads are done. A fetch that
//! arrives while its client still owes throttle time is answered empty with that time (KIP-219),
//! as Kafka does: its bytes do not count, an incremental session stays as it was (the client
//! learnt nothing), and a full fetch opens no session (the client's next fetch is full again).
//! A client that owes nothing always gets its data, with the throttle it earned: a first batch
//! larger than the quota allows at once would otherwise never be served.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use shoal_model::Offset;
use shoal_storage::ReadBatches;

use super::{check_leader_epoch, topic_name};
use crate::cluster::{ApiError, Cluster, TopicPartition};
use crate::fetch_session::{CachedPartition, Plan, ReadSummary, Requested, SESSION_ID_NONE};

/// Cap on `max_wait_ms`, so a bogus request cannot park a handler for hours.
const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Kafka's broker `fetch.max.bytes` default: the most one fetch response carries.
pub const FETCH_BYTES_MAX: usize = 55 * 1024 * 1024;
/// The first Fetch version with sessions (KIP-227).
const SESSIONS_VERSION_MIN: i16 = 7;

type PartitionResult = Result<ReadBatches, ApiError>;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: FetchRequest,
    version: i16,
    client_id: &str,
) -> FetchResponse {
    let started = Instant::now();
    let max_wait_ms = u64::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(FETCH_WAIT_MS_MAX);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = if version >= 3 {
        usize::try_from(request.max_bytes).unwrap_or(0)
    } else {
        usize::MAX
    }
    .min(FETCH_BYTES_MAX)
    .min(
        cluster
            .fetch_quota_bytes_max(client_id)
            .unwrap_or(usize::MAX),
    );
    let requested: Vec<Requested> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |p| Requested {
                tp: TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition: p.partition,
                },
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect();
    let plan = plan(cluster, &request, version, &requested);
    // Sessionless and full fetches read what the request names; an incremental one reads
    // every partition of its session, as the session last heard of it.
    let session_reads: Vec<Requested>;
    let wanted: &[Requested] = match &plan {
        Plan::Error(code) => {
            return FetchResponse::default()
                .with_error_code(code.code())
                .with_session_id(SESSION_ID_NONE);
        }
        Plan::Sessionless | Plan::Full => &requested,
        Plan::Incremental { partitions, .. } => {
            session_reads = partitions
                .iter()
                .map(|(tp, cached)| Requested {
                    tp: tp.clone(),
                    fetch_offset: cached.fetch_offset,
                    max_bytes: cached.max_bytes,
                    current_leader_epoch: cached.current_leader_epoch,
                })
                .collect();
            &session_reads
        }
    };
    let mut results = read_all(cluster, wanted, max_bytes).await;
    loop {
        let available: usize = results
            .iter()
            .map(|r| r.as_ref().map_or(0, batch_bytes))
            .sum();
        let any_error = results.iter().any(Result::is_err);
        let waited_ms = started.elapsed().as_millis() as u64;
        // min_bytes 0 asks for an immediate answer (Kafka: `fetchMinBytes <= 0` responds at
        // once, even when nothing is available); otherwise wait for that much data.
        if min_bytes == 0
            || available >= min_bytes
            || any_error
            || waited_ms >= max_wait_ms
            || wanted.is_empty()
        {
            break;
        }
        let watches = wanted
            .iter()
            .map(|w| (w.tp.clone(), Offset(w.fetch_offset)))
            .collect();
        cluster
            .wait_for_data(watches, max_wait_ms - waited_ms)
            .await;
        results = read_all(cluster, wanted, max_bytes).await;
    }
    let answered: Vec<(TopicPartition, PartitionResult)> =
        wanted.iter().map(|w| w.tp.clone()).zip(results).collect();
    let response_bytes: usize = answered
        .iter()
        .map(|(_, r)| r.as_ref().map_or(0, batch_bytes))
        .sum();
    let throttle = cluster.fetch_throttle(client_id, response_bytes).await;
    if !throttle.send_data {
        let session_id = match plan {
            Plan::Incremental { session_id, .. } => session_id,
            _ => SESSION_ID_NONE,
        };
        return FetchResponse::default()
            .with_throttle_time_ms(throttle.ms)
            .with_session_id(session_id);
    }
    let response = match plan {
        Plan::Error(_) | Plan::Sessionless => build_response(answered, SESSION_ID_NONE, version),
        Plan::Full => {
            let session_id = match cluster.fetch_sessions() {
                Some(sessions) => {
                    let partitions = answered
                        .iter()
                        .zip(&requested)
                        .map(|((tp, result), asked)| {
                            let mut view = CachedPartition::from_request(asked);
                            let _ = view.must_respond(&summary(result));
                            (tp.clone(), view)
                        })
                        .collect();
                    sessions.borrow_mut().open(partitions, cluster.now_ms())
                }
                None => SESSION_ID_NONE,
            };
            build_response(answered, session_id, version)
        }
        Plan::Incremental {
            session_id,
            partitions,
        } => {
            let mut views = Vec::with_capacity(partitions.len());
            let mut had_records = Vec::new();
            let mut changed = Vec::new();
            for ((tp, mut view), (_, result)) in partitions.into_iter().zip(answered) {
                let read = summary(&result);
                if view.must_respond(&read) {
                    if read.records_bytes > 0 {
                        had_records.push(tp.clone());
                    }
                    changed.push((tp.clone(), result));
                }
                views.push((tp, view));
            }
            if let Some(sessions) = cluster.fetch_sessions() {
                sessions
                    .borrow_mut()
                    .answered(session_id, views, &had_records);
            }
            build_response(changed, session_id, version)
        }
    };
    response.with_throttle_time_ms(throttle.ms)
}

/// How this request is served: sessionless below v7 or without a session cache; else as the
/// cache decides (which applies the request's changes to its session).
fn plan<C: Cluster>(
    cluster: &C,
    request: &FetchRequest,
    version: i16,
    requested: &[Requested],
) -> Plan {
    let sessions = match cluster.fetch_sessions() {
        Some(sessions) if version >= SESSIONS_VERSION_MIN => sessions,
        _ => return Plan::Sessionless,
    };
    let epoch = request.session_epoch;
    let forgotten: Vec<TopicPartition> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |&partition| TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition,
                })
        })
        .collect();
    sessions.borrow_mut().plan(
        request.session_id,
        epoch,
        requested,
        &forgotten,
        cluster.now_ms(),
    )
}

fn summary(result: &PartitionResult) -> ReadSummary {
    match result {
        Ok(read) => ReadSummary {
            error: false,
            records_bytes: batch_bytes(read),
            high_watermark: read.high_watermark.0,
            log_start_offset: read.log_start.0,
            // No transactions: the last stable offset is the high watermark.
            last_stable_offset: read.high_watermark.0,
        },
        Err(_) => ReadSummary {
            error: true,
            records_bytes: 0,
            high_watermark: -1,
            log_start_offset: -1,
            last_stable_offset: -1,
        },
    }
}

fn batch_bytes(read: &ReadBatches) -> usize {
    read.batches.iter().map(Bytes::len).sum()
}

async fn read_all<C: Cluster>(
    cluster: &C,
    wanted: &[Requested],
    max_bytes: usize,
) -> Vec<PartitionResult> {
    let reads = wanted.iter().map(|w| async move {
        match cluster.topic(&w.tp.topic) {
            Some(topic) if (0..topic.partitions).contains(&w.tp.partition) => {
                let read = cluster
                    .read(
                        &w.tp,
                        Offset(w.fetch_offset),
                        usize::try_from(w.max_bytes).unwrap_or(0).min(max_bytes),
                    )
                    .await?;
                if w.current_leader_epoch >= 0 {
                    check_leader_epoch(w.current_leader_epoch, read.leader_epoch)?;
                }
                Ok(read)
            }
            _ => Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
        }
    });
    let mut results = join_all(reads).await;
    // Enforce the response-wide limit in request (or session) order; the first non-empty
    // partition keeps at least one batch.
    let mut total = 0usize;
    for result in results.iter_mut().flatten() {
        let mut kept = 0;
        for batch in &result.batches {
            if total + batch.len() > max_bytes && total > 0 {
                break;
            }
            total += batch.len();
            kept += 1;
        }
        result.batches.truncate(kept);
    }
    results
}

/// The response: partitions grouped by topic, in the order given (runs of one topic form one
/// topic entry, as the order of a session may interleave topics).
fn build_response(
    answered: Vec<(TopicPartition, PartitionResult)>,
    session_id: i32,
    version: i16,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut current: Option<String> = None;
    for (tp, result) in answered {
        let data = partition_data(result, version).with_partition_index(tp.partition);
        if current.as_deref() != Some(tp.topic.as_str()) {
            topics.push(FetchableTopicResponse::default().with_topic(topic_name(&tp.topic)));
            current = Some(tp.topic);
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(data);
        }
    }
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
}

fn partition_data(result: PartitionResult, version: i16) -> PartitionData {
    let data = PartitionData::default();
    match result {
        Ok(read) => {
            let mut records = BytesMut::with_capacity(batch_bytes(&read));
            for batch in &read.batches {
                records.extend_from_slice(batch);
            }
            let mut data = data
                .with_high_watermark(read.high_watermark.0)
                .with_last_stable_offset(read.high_watermark.0)
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(records.freeze()));
            if version >= 5 {
                data = data.with_log_start_offset(read.log_start.0);
            }
            data
        }
        Err(error) => data
            .with_error_code(error.code.code())
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_records(Some(Bytes::new())),
    }
}
