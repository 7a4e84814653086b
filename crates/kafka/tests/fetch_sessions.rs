//! Fetch sessions (KIP-227) through the Fetch handler: full and incremental fetches, the
//! session errors, forgetting partitions, closing a session; the cache's eviction rules; and a
//! property test: a client that applies incremental responses to its view of every partition
//! (as the Java client's `FetchSessionHandler` does) always knows what a full fetch would tell
//! it, and receives every record exactly once.

mod common;

use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use proptest::prelude::*;
use shoal_kafka::cluster::TopicPartition;
use shoal_kafka::fetch_session::{CachedPartition, FetchSessions, Plan, Requested};
use shoal_kafka::handlers;

fn tn(name: &str) -> TopicName {
    TopicName(s(name))
}

/// A Fetch v12 of `partitions` (partition, offset) of topic "t".
fn request(session_id: i32, epoch: i32, partitions: &[(i32, i64)], forget: &[i32]) -> FetchRequest {
    let topics = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![FetchTopic::default().with_topic(tn("t")).with_partitions(
            partitions
                .iter()
                .map(|&(partition, offset)| {
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )]
    };
    let forgotten = if forget.is_empty() {
        Vec::new()
    } else {
        vec![ForgottenTopic::default()
            .with_topic(tn("t"))
            .with_partitions(forget.to_vec())]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

fn fetch(fake: &Fake, request: FetchRequest) -> FetchResponse {
    run(handlers::fetch::handle(fake, request, 12, "test-client"))
}

/// (partition, high watermark, record bytes) of every partition answered.
fn answered(response: &FetchResponse) -> Vec<(i32, i64, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.high_watermark,
                p.records.as_ref().map_or(0, |r| r.len()),
            )
        })
        .collect()
}

#[test]
fn a_full_fetch_opens_a_session_and_incremental_ones_answer_only_changes() {
    let fake = Fake::with_topic("t", 3, 1).with_sessions(10);
    let full = fetch(&fake, request(0, 0, &[(0, 0), (1, 0), (2, 0)], &[]));
    assert_eq!(full.error_code, 0);
    assert_ne!(
        full.session_id, 0,
        "a full fetch with epoch 0 opens a session"
    );
    assert_eq!(
        answered(&full).len(),
        3,
        "a full fetch answers every partition"
    );
    let id = full.session_id;
    // The client took the batch of each partition: it sends the new offsets.
    let next = fetch(&fake, request(id, 1, &[(0, 2), (1, 2), (2, 2)], &[]));
    assert_eq!((next.error_code, next.session_id), (0, id));
    assert!(
        answered(&next).is_empty(),
        "nothing changed: {:?}",
        answered(&next)
    );
    // Data arrives on partition 1 only; the client sends no partition (nothing of its own
    // changed), the session remembers the offsets.
    fake.append_to("t", 1);
    let next = fetch(&fake, request(id, 2, &[], &[]));
    let parts = answered(&next);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!((parts[0].0, parts[0].1), (1, 4));
    assert!(parts[0].2 > 0, "the new batch is in the answer");
    // A high watermark that moved without new data to return is answered too.
    fake.topics.borrow_mut().get_mut("t").expect("t").logs[2].log_start = 1;
    let next = fetch(&fake, request(id, 3, &[(1, 4)], &[]));
    assert_eq!(answered(&next), vec![(2, 2, 0)], "log start moved on 2");
    assert_eq!(
        fake.sessions
            .as_ref()
            .map(|s| s.borrow().counts().incremental),
        Some(3)
    );
}

#[test]
fn session_errors_are_top_level_and_answer_no_partition() {
    let fake = Fake::with_topic("t", 2, 1).with_sessions(10);
    let id = fetch(&fake, request(0, 0, &[(0, 0), (1, 0)], &[])).session_id;
    let wrong_epoch = fetch(&fake, request(id, 5, &[], &[]));
    assert_eq!(
        wrong_epoch.error_code,
        code(ResponseError::InvalidFetchSessionEpoch)
    );
    assert!(wrong_epoch.responses.is_empty());
    // The session survives a wrong epoch: the right one still works.
    assert_eq!(fetch(&fake, request(id, 1, &[], &[])).error_code, 0);
    let unknown = fetch(&fake, request(id + 1, 1, &[], &[]));
    assert_eq!(
        unknown.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );
    assert_eq!(unknown.session_id, 0);
    // Epoch -1 with the id closes the session and answers sessionless.
    let closing = fetch(&fake, request(id, -1, &[(0, 2)], &[]));
    assert_eq!((closing.error_code, closing.session_id), (0, 0));
    assert_eq!(answered(&closing).len(), 1);
    let after = fetch(&fake, request(id, 2, &[], &[]));
    assert_eq!(
        after.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );
}

#[test]
fn forgotten_partitions_leave_the_session_and_an_empty_session_closes() {
    let fake = Fake::with_topic("t", 2, 1).with_sessions(10);
    let id = fetch(&fake, request(0, 0, &[(0, 2), (1, 2)], &[])).session_id;
    fake.append_to("t", 0);
    fake.append_to("t", 1);
    let next = fetch(&fake, request(id, 1, &[], &[0]));
    assert_eq!(
        answered(&next).iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1]
    );
    let sessions = fake.sessions.as_ref().expect("sessions");
    assert_eq!(
        sessions.borrow().partitions(id),
        Some(vec![TopicPartition {
            topic: "t".into(),
            partition: 1
        }])
    );
    // Adding a partition in an incremental fetch answers it (never answered before).
    let next = fetch(&fake, request(id, 2, &[(0, 0), (1, 4)], &[]));
    assert_eq!(
        answered(&next).iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![0]
    );
    // Forgetting everything closes the session.
    let last = fetch(&fake, request(id, 3, &[], &[0, 1]));
    assert_eq!((last.error_code, last.session_id), (0, 0));
    assert!(sessions.borrow().is_empty());
}

#[test]
fn an_unknown_partition_is_answered_every_time() {
    let fake = Fake::with_topic("t", 1, 1).with_sessions(10);
    let id = fetch(&fake, request(0, 0, &[(0, 2), (7, 0)], &[])).session_id;
    for epoch in 1..3 {
        let next = fetch(&fake, request(id, epoch, &[], &[]));
        let codes: Vec<(i32, i16)> = next
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(
            codes,
            vec![(7, code(ResponseError::UnknownTopicOrPartition))],
            "errors are always answered"
        );
    }
}

#[test]
fn old_versions_and_no_cache_are_sessionless() {
    let fake = Fake::with_topic("t", 1, 1).with_sessions(10);
    let v6 = run(handlers::fetch::handle(
        &fake,
        request(0, 0, &[(0, 0)], &[]),
        6,
        "test-client",
    ));
    assert_eq!(v6.session_id, 0);
    let plain = Fake::with_topic("t", 1, 1);
    assert_eq!(fetch(&plain, request(0, 0, &[(0, 0)], &[])).session_id, 0);
    let none = Fake::with_topic("t", 1, 1).with_sessions(0);
    assert_eq!(fetch(&none, request(0, 0, &[(0, 0)], &[])).session_id, 0);
}

#[test]
fn partitions_that_returned_records_move_to_the_end() {
    let fake = Fake::with_topic("t", 3, 0).with_sessions(10);
    let id = fetch(&fake, request(0, 0, &[(0, 0), (1, 0), (2, 0)], &[])).session_id;
    fake.append_to("t", 0);
    let _ = fetch(&fake, request(id, 1, &[], &[]));
    let order: Vec<i32> = fake
        .sessions
        .as_ref()
        .and_then(|s| s.borrow().partitions(id))
        .expect("session")
        .iter()
        .map(|tp| tp.partition)
        .collect();
    assert_eq!(order, vec![1, 2, 0]);
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition {
        topic: "t".into(),
        partition,
    }
}

fn cached() -> CachedPartition {
    CachedPartition::from_request(&Requested {
        tp: tp(0),
        fetch_offset: 0,
        max_bytes: 1,
        current_leader_epoch: -1,
    })
}

fn of_size(n: i32) -> Vec<(TopicPartition, CachedPartition)> {
    (0..n).map(|p| (tp(p), cached())).collect()
}

#[test]
fn a_full_cache_evicts_the_stale_then_the_smaller_else_refuses() {
    let mut sessions = FetchSessions::new(2, 1_000, 0, 1, 3);
    let small = sessions.open(of_size(1), 0);
    let big = sessions.open(of_size(5), 100);
    assert!(small > 0 && big > 0 && small != big);
    // Full, nothing idle for 1 s: a session of 1 partition may not take a slot.
    assert_eq!(sessions.open(of_size(1), 500), 0);
    assert_eq!(sessions.counts().refused, 1);
    // A bigger one evicts the smallest.
    let bigger = sessions.open(of_size(3), 600);
    assert!(bigger > 0);
    assert_eq!(sessions.partitions(small), None, "the smallest went");
    // Past the eviction time the least recently used goes, whatever its size.
    let late = sessions.open(of_size(1), 1_200);
    assert!(late > 0);
    assert_eq!(sessions.partitions(big), None, "the stale one went");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.counts().evicted, 2);
}

#[test]
fn session_ids_name_their_core() {
    let mut sessions = FetchSessions::new(1000, 1_000, 3, 4, 11);
    for _ in 0..200 {
        let id = sessions.open(of_size(1), 0);
        assert!(id > 0 && id % 4 == 3, "{id}");
    }
    assert_eq!(sessions.len(), 200, "ids are unique");
    let plan = sessions.plan(5, 1, &[], &[], 0);
    assert_eq!(plan, Plan::Error(ResponseError::FetchSessionIdNotFound));
}

/// What a client knows of one partition.
#[derive(Clone, Debug, Default)]
struct View {
    offset: i64,
    high_watermark: i64,
    log_start: i64,
    bytes: usize,
}

/// The next offset after a fetched record set (batch headers: base offset, length,
/// lastOffsetDelta at 23).
fn next_offset(records: &[u8], current: i64) -> i64 {
    let mut next = current;
    let mut at = 0;
    while at + 27 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().expect("8"));
        let length = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4"));
        let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().expect("4"));
        next = base + i64::from(delta) + 1;
        at += 12 + length as usize;
    }
    next
}

#[derive(Clone, Debug)]
enum Step {
    Append(usize),
    Truncate(usize),
    Fetch,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4).prop_map(Step::Append),
        1 => (0usize..4).prop_map(Step::Truncate),
        4 => Just(Step::Fetch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn an_incremental_client_sees_what_a_full_fetch_shows(steps in prop::collection::vec(step(), 1..40)) {
        let fake = Fake::with_topic("t", 4, 1).with_sessions(4);
        let mut views = vec![View::default(); 4];
        let mut sent: Vec<i64> = vec![-1; 4];
        let (mut id, mut epoch) = (0, 0);
        for step in steps {
            match step {
                Step::Append(p) => fake.append_to("t", p),
                Step::Truncate(p) => {
                    let mut topics = fake.topics.borrow_mut();
                    let log = &mut topics.get_mut("t").expect("t").logs[p];
                    // DeleteRecords below what the client read: a log start change only.
                    log.log_start = (log.log_start + 1).min(views[p].offset);
                }
                Step::Fetch => {
                    // Send the partitions whose offset changed since the session last heard
                    // of them (all of them in a full fetch).
                    let changed: Vec<(i32, i64)> = (0..4)
                        .filter(|&p| epoch == 0 || sent[p] != views[p].offset)
                        .map(|p| (p as i32, views[p].offset))
                        .collect();
                    let response = fetch(&fake, request(id, epoch, &changed, &[]));
                    prop_assert_eq!(response.error_code, 0);
                    for &(p, offset) in &changed {
                        sent[p as usize] = offset;
                    }
                    if epoch == 0 {
                        prop_assert_ne!(response.session_id, 0);
                        id = response.session_id;
                    }
                    epoch += 1;
                    for part in response.responses.iter().flat_map(|t| t.partitions.iter()) {
                        prop_assert_eq!(part.error_code, 0);
                        let view = &mut views[part.partition_index as usize];
                        view.high_watermark = part.high_watermark;
                        view.log_start = part.log_start_offset;
                        if let Some(records) = part.records.as_ref().filter(|r| !r.is_empty()) {
                            view.bytes += records.len();
                            view.offset = next_offset(records, view.offset);
                        }
                    }
                    // The truth: what every partition holds now.
                    let topics = fake.topics.borrow();
                    for (p, log) in topics.get("t").expect("t").logs.iter().enumerate() {
                        let view = &views[p];
                        prop_assert_eq!(view.high_watermark, log.high_watermark, "p{}", p);
                        prop_assert_eq!(view.log_start, log.log_start, "p{}", p);
                        prop_assert_eq!(view.offset, log.end(), "p{} read to the end", p);
                        let total: usize = log.batches.iter().map(|b| b.3.len()).sum();
                        prop_assert_eq!(view.bytes, total, "p{}: every batch exactly once", p);
                    }
                }
            }
        }
    }
}

/// A consumer over its quota (KIP-219): the response is empty with the throttle time, the
/// incremental session is left as it was (the client learnt nothing, so the next fetch
/// still returns the records), and a full fetch opens no session.
#[test]
fn a_throttled_fetch_is_empty_and_leaves_the_session_as_it_was() {
    use shoal_kafka::cluster::FetchThrottle;
    let fake = Fake::with_topic("t", 2, 1).with_sessions(10);
    let full = fetch(&fake, request(0, 0, &[(0, 0), (1, 0)], &[]));
    let id = full.session_id;
    assert_ne!(id, 0);
    fake.append_to("t", 1);
    fake.fetch_throttle.set(Some(FetchThrottle {
        ms: 700,
        send_data: false,
    }));
    let throttled = fetch(&fake, request(id, 1, &[], &[]));
    assert_eq!(throttled.throttle_time_ms, 700);
    assert_eq!(throttled.session_id, id);
    assert!(throttled.responses.is_empty(), "{throttled:?}");
    // The handler counted the bytes it would have sent.
    assert!(*fake.fetch_bytes_counted.borrow().last().expect("counted") > 0);

    // Served on the next epoch: the records the throttled response held back arrive.
    fake.fetch_throttle.set(Some(FetchThrottle {
        ms: 50,
        send_data: true,
    }));
    let served = fetch(&fake, request(id, 2, &[], &[]));
    assert_eq!(served.error_code, 0);
    assert_eq!(served.throttle_time_ms, 50);
    // The session still reads from offset 0 (the client never moved): partition 1 comes
    // with both batches and the high watermark the throttled answer did not tell.
    let parts = answered(&served);
    assert!(
        parts
            .iter()
            .any(|&(p, hw, bytes)| p == 1 && hw == 4 && bytes > 0),
        "{parts:?}"
    );

    // A throttled full fetch: no partitions, no session.
    fake.fetch_throttle.set(Some(FetchThrottle {
        ms: 300,
        send_data: false,
    }));
    let sessions_before = fake.sessions.as_ref().map(|s| s.borrow().len());
    let full_throttled = fetch(&fake, request(0, 0, &[(0, 0)], &[]));
    assert_eq!(full_throttled.session_id, 0);
    assert!(full_throttled.responses.is_empty());
    assert_eq!(
        fake.sessions.as_ref().map(|s| s.borrow().len()),
        sessions_before
    );
}
