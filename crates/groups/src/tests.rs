//! State machine tests: the clock is the `now` argument.

use bytes::Bytes;
use futures::FutureExt;

use crate::*;

const GROUP: &str = "g";

fn config() -> Config {
    Config {
        initial_rebalance_delay_ms: 0,
        ..Config::default()
    }
}

fn join_req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from_static(b"meta")))
            .collect(),
        require_known_member: false,
    }
}

fn ready<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Ready(v) => v,
        Pending::Wait(mut rx) => rx
            .try_recv()
            .expect("not cancelled")
            .expect("expected a completed response"),
    }
}

fn waiting<T: std::fmt::Debug>(p: Pending<T>) -> futures::channel::oneshot::Receiver<T> {
    match p {
        Pending::Ready(v) => panic!("expected to wait, got {v:?}"),
        Pending::Wait(rx) => rx,
    }
}

fn done<T>(rx: &mut futures::channel::oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("not cancelled").expect("completed")
}

fn sync(
    c: &mut Coordinator,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> Pending<SyncResponse> {
    c.sync(
        SyncRequest {
            group_id: GROUP.into(),
            generation,
            member_id: member.into(),
            instance_id: None,
            protocol_type: None,
            protocol: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        },
        0,
    )
}

fn hb(c: &mut Coordinator, member: &str, generation: i32, now: i64) -> GroupResult<()> {
    c.heartbeat(
        &HeartbeatRequest {
            group_id: GROUP.into(),
            generation,
            member_id: member.into(),
            instance_id: None,
        },
        now,
    )
}

/// One member joins and syncs: generation 1, Stable.
/// A commit of `offset` for partition 0 of topic `t`.
fn commit_req(group_id: &str, generation: i32, member_id: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group_id.into(),
        generation,
        member_id: member_id.into(),
        instance_id: None,
        retention_ms: -1,
        offsets: vec![(
            Tp {
                topic: "t".into(),
                partition: 0,
            },
            offset,
            -1,
            None,
        )],
    }
}

fn single_member(c: &mut Coordinator) -> String {
    let r = ready(c.join(join_req("", None, &["range"]), 0));
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
    let s = ready(sync(c, &r.member_id, 1, &[(&r.member_id, "a0")]));
    assert_eq!(s.assignment, Bytes::from("a0"));
    assert_eq!(c.describe(GROUP).state, "Stable");
    r.member_id
}

#[test]
fn first_join_v4_requires_member_id() {
    let mut c = Coordinator::new(config());
    let mut req = join_req("", None, &["range"]);
    req.require_known_member = true;
    let r = ready(c.join(req.clone(), 0));
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    assert!(!r.member_id.is_empty());
    req.member_id = r.member_id.clone();
    let r2 = ready(c.join(req, 0));
    assert_eq!(r2.error, None);
    assert_eq!(r2.member_id, r.member_id);
    assert_eq!(r2.generation, 1);
}

#[test]
fn second_member_triggers_rebalance_and_both_get_assignments() {
    let mut c = Coordinator::new(config());
    let a = single_member(&mut c);
    // B joins: the group waits for A to rejoin.
    let mut b_join = waiting(c.join(join_req("", None, &["range"]), 10));
    assert_eq!(c.describe(GROUP).state, "PreparingRebalance");
    assert_eq!(
        hb(&mut c, &a, 1, 20),
        Err(ResponseError::RebalanceInProgress)
    );
    // A commit with the old generation is still accepted while preparing.
    let commit = commit_req(GROUP, 1, &a, 5);
    assert!(c.validate_commit(&commit, 20).is_ok());
    let ra = ready(c.join(join_req(&a, None, &["range"]), 30));
    let rb = done(&mut b_join);
    assert_eq!(ra.generation, 2);
    assert_eq!(rb.generation, 2);
    assert_eq!(ra.leader, a, "the leader stays the leader");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(c.describe(GROUP).state, "CompletingRebalance");
    // Follower syncs first and waits for the leader.
    let mut b_sync = waiting(sync(&mut c, &rb.member_id, 2, &[]));
    assert_eq!(hb(&mut c, &rb.member_id, 2, 40), Ok(()));
    // Commits are refused while the assignment is being distributed.
    let commit2 = CommitRequest {
        generation: 2,
        ..commit.clone()
    };
    assert_eq!(
        c.validate_commit(&commit2, 40).err(),
        Some(ResponseError::RebalanceInProgress)
    );
    let sa = ready(sync(&mut c, &a, 2, &[(&a, "pa"), (&rb.member_id, "pb")]));
    assert_eq!(sa.assignment, Bytes::from("pa"));
    assert_eq!(done(&mut b_sync).assignment, Bytes::from("pb"));
    assert_eq!(c.describe(GROUP).state, "Stable");
    // Old generation is now illegal.
    assert_eq!(hb(&mut c, &a, 1, 50), Err(ResponseError::IllegalGeneration));
    assert_eq!(
        c.validate_commit(&commit, 50).err(),
        Some(ResponseError::IllegalGeneration)
    );
    assert!(c.validate_commit(&commit2, 50).is_ok());
}

#[test]
fn unknown_member_and_generation_errors() {
    let mut c = Coordinator::new(config());
    assert_eq!(
        hb(&mut c, "nobody", 1, 0),
        Err(ResponseError::UnknownMemberId)
    );
    let a = single_member(&mut c);
    assert_eq!(
        hb(&mut c, "nobody", 1, 0),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(hb(&mut c, &a, 7, 0), Err(ResponseError::IllegalGeneration));
    assert_eq!(hb(&mut c, &a, 1, 0), Ok(()));
    let r = ready(c.join(join_req("ghost", None, &["range"]), 0));
    assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    let s = ready(sync(&mut c, &a, 9, &[]));
    assert_eq!(s.error, Some(ResponseError::IllegalGeneration));
    let r = ready(c.join(join_req("", None, &["roundrobin"]), 0));
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut bad = join_req("", None, &["range"]);
    bad.session_timeout_ms = 10;
    assert_eq!(
        ready(c.join(bad, 0)).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut c = Coordinator::new(config());
    let a = single_member(&mut c);
    let mut b_join = waiting(c.join(join_req("", None, &["range"]), 0));
    let _ = ready(c.join(join_req(&a, None, &["range"]), 0));
    let b = done(&mut b_join).member_id;
    let _b_sync = waiting(sync(&mut c, &b, 2, &[]));
    let _ = ready(sync(&mut c, &a, 2, &[]));
    // B keeps heartbeating, A goes silent.
    for now in (1_000..=10_000).step_by(1_000) {
        assert_eq!(hb(&mut c, &b, 2, now), Ok(()));
        c.tick(now);
    }
    assert_eq!(c.describe(GROUP).state, "Stable");
    for now in [11_000, 12_000] {
        let _ = hb(&mut c, &b, 2, now);
        c.tick(now);
    }
    assert_eq!(c.describe(GROUP).state, "PreparingRebalance");
    assert_eq!(
        hb(&mut c, &b, 2, 12_500),
        Err(ResponseError::RebalanceInProgress)
    );
    let r = ready(c.join(join_req(&b, None, &["range"]), 12_600));
    assert_eq!(r.generation, 3);
    assert_eq!(r.leader, b);
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        hb(&mut c, &a, 2, 12_700),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut c = Coordinator::new(config());
    let a = single_member(&mut c);
    let mut b_join = waiting(c.join(join_req("", None, &["range"]), 0));
    // A heartbeats (so no session expiry) but never rejoins.
    for now in (1_000..20_000).step_by(1_000) {
        let _ = hb(&mut c, &a, 1, now);
        c.tick(now);
        assert!(b_join.try_recv().expect("open").is_none());
    }
    c.tick(20_001);
    let rb = done(&mut b_join);
    assert_eq!(rb.generation, 2);
    assert_eq!(rb.leader, rb.member_id);
    assert_eq!(
        hb(&mut c, &a, 1, 20_002),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leave_makes_group_empty_and_batched_leave_reports_per_member() {
    let mut c = Coordinator::new(config());
    let a = single_member(&mut c);
    let results = c
        .leave(
            GROUP,
            &[
                LeaveMember {
                    member_id: a.clone(),
                    instance_id: None,
                },
                LeaveMember {
                    member_id: "x".into(),
                    instance_id: None,
                },
            ],
            5,
        )
        .expect("group exists");
    assert_eq!(results, vec![Ok(()), Err(ResponseError::UnknownMemberId)]);
    let d = c.describe(GROUP);
    assert_eq!(d.state, "Empty");
    assert!(d.members.is_empty());
    // A new join starts generation 3 (the empty transition was generation 2).
    let r = ready(c.join(join_req("", None, &["range"]), 6));
    assert_eq!(r.generation, 3);
}

#[test]
fn static_member_rejoin_keeps_assignment_and_fences_old_id() {
    let mut c = Coordinator::new(config());
    let r = ready(c.join(join_req("", Some("i1"), &["range"]), 0));
    let old = r.member_id.clone();
    let _ = ready(sync(&mut c, &old, 1, &[(&old, "mine")]));
    // Restarted client: same instance id, no member id → no rebalance, same generation.
    let r2 = ready(c.join(join_req("", Some("i1"), &["range"]), 100));
    assert_eq!(r2.error, None);
    assert_ne!(r2.member_id, old);
    assert_eq!(r2.generation, 1);
    assert_eq!(c.describe(GROUP).state, "Stable");
    let s = ready(sync(&mut c, &r2.member_id, 1, &[]));
    assert_eq!(s.assignment, Bytes::from("mine"));
    // The old incarnation is fenced.
    let fenced = c.heartbeat(
        &HeartbeatRequest {
            group_id: GROUP.into(),
            generation: 1,
            member_id: old.clone(),
            instance_id: Some("i1".into()),
        },
        200,
    );
    assert_eq!(fenced, Err(ResponseError::FencedInstanceId));
    // Leave by instance id only (v3+).
    let results = c
        .leave(
            GROUP,
            &[LeaveMember {
                member_id: String::new(),
                instance_id: Some("i1".into()),
            }],
            300,
        )
        .expect("group");
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(c.describe(GROUP).state, "Empty");
}

#[test]
fn initial_rebalance_delay_collects_members() {
    let mut c = Coordinator::new(Config {
        initial_rebalance_delay_ms: 3_000,
        ..Config::default()
    });
    let mut a = waiting(c.join(join_req("", None, &["range"]), 0));
    let mut b = waiting(c.join(join_req("", None, &["range"]), 1_000));
    c.tick(2_999);
    assert!(a.try_recv().expect("open").is_none());
    c.tick(3_000);
    let (ra, rb) = (done(&mut a), done(&mut b));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.leader, rb.leader);
}

#[test]
fn protocol_is_chosen_by_votes_among_common_protocols() {
    let mut c = Coordinator::new(config());
    let r = ready(c.join(join_req("", None, &["cooperative-sticky", "range"]), 0));
    assert_eq!(r.protocol.as_deref(), Some("cooperative-sticky"));
    let _ = ready(sync(&mut c, &r.member_id, 1, &[]));
    let mut b = waiting(c.join(join_req("", None, &["range"]), 0));
    let ra = ready(c.join(
        join_req(&r.member_id, None, &["cooperative-sticky", "range"]),
        0,
    ));
    assert_eq!(ra.protocol.as_deref(), Some("range"));
    assert_eq!(done(&mut b).protocol.as_deref(), Some("range"));
}

#[test]
fn commits_persist_and_replay_with_latest_value_winning() {
    let mut c = Coordinator::new(config());
    let tp = Tp {
        topic: "t".into(),
        partition: 1,
    };
    for offset in [3, 7] {
        let req = CommitRequest {
            group_id: "simple".into(),
            generation: -1,
            member_id: String::new(),
            instance_id: None,
            retention_ms: -1,
            offsets: vec![(tp.clone(), offset, -1, Some("m".into()))],
        };
        let per = c.validate_commit(&req, 0).expect("simple commit");
        c.apply_commit(&req, &per, 0, true);
    }
    let a = single_member(&mut c);
    let records = c.take_records();
    let mut restored = Coordinator::new(config());
    for record in records {
        let bytes = record.encode();
        restored.replay(Record::decode(&bytes).expect("decodes"), 1_000);
    }
    let fetched = restored.fetch_offsets("simple", None);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].1.as_ref().map(|o| o.offset), Some(7));
    // The stable group came back with its member, which can keep heartbeating.
    assert_eq!(restored.describe(GROUP).state, "Stable");
    assert_eq!(hb(&mut restored, &a, 1, 1_001), Ok(()));
}

#[test]
fn offsets_of_empty_group_expire_after_retention_then_group_is_removed() {
    let mut c = Coordinator::new(Config {
        offsets_retention_ms: 1_000,
        ..config()
    });
    let a = single_member(&mut c);
    let req = commit_req(GROUP, 1, &a, 1);
    let per = c.validate_commit(&req, 0).expect("member commit");
    c.apply_commit(&req, &per, 0, false);
    c.expire(5_000);
    assert_eq!(
        c.fetch_offsets(GROUP, None).len(),
        1,
        "active groups keep offsets"
    );
    let _ = c.leave(
        GROUP,
        &[LeaveMember {
            member_id: a,
            instance_id: None,
        }],
        5_000,
    );
    c.expire(5_999);
    assert_eq!(c.fetch_offsets(GROUP, None).len(), 1);
    c.expire(6_000);
    assert!(c.fetch_offsets(GROUP, None).is_empty());
    assert!(
        c.list().is_empty(),
        "empty group without offsets is removed"
    );
}

#[test]
fn delete_groups_and_offset_delete_rules() {
    let mut c = Coordinator::new(config());
    assert_eq!(c.delete("nope"), Err(ResponseError::GroupIdNotFound));
    let _a = single_member(&mut c);
    assert_eq!(c.delete(GROUP), Err(ResponseError::NonEmptyGroup));
    assert_eq!(
        c.offset_delete("nope", &[]).err(),
        Some(ResponseError::GroupIdNotFound)
    );
}

#[test]
fn fenced_static_join_with_wrong_member_id() {
    let mut c = Coordinator::new(config());
    let r = ready(c.join(join_req("", Some("i1"), &["range"]), 0));
    let mut req = join_req("someone-else", Some("i1"), &["range"]);
    req.member_id = "someone-else".into();
    assert_eq!(
        ready(c.join(req, 0)).error,
        Some(ResponseError::FencedInstanceId)
    );
    assert!(!r.member_id.is_empty());
    let _ = async {}.now_or_never();
}

#[test]
fn partition_for_matches_java_hash() {
    // "test".hashCode() == 3556498; 3556498 % 50 == 48.
    assert_eq!(partition_for("test", 50), 48);
    assert!(partition_for("", 16) < 16);
}

#[test]
fn unload_drops_only_refused_groups_and_fails_their_waiters() {
    let mut c = Coordinator::new(config());
    let a = single_member(&mut c);
    // A second member waits in a rebalance of GROUP when coordination moves away.
    let mut b_join = waiting(c.join(join_req("", None, &["range"]), 10));
    let req = commit_req("other", -1, "", 5);
    let per = c.validate_commit(&req, 0).expect("simple commit");
    c.apply_commit(&req, &per, 0, true);
    assert_eq!(c.unload(|group| group != GROUP), 1);
    assert_eq!(done(&mut b_join).error, Some(ResponseError::NotCoordinator));
    // Gone: no member, no records of it left to persist; the other group kept its offset.
    assert_eq!(hb(&mut c, &a, 1, 20), Err(ResponseError::UnknownMemberId));
    assert!(c.take_records().iter().all(|r| r.group() != GROUP));
    let fetched = c.fetch_offsets("other", None);
    assert_eq!(fetched[0].1.as_ref().map(|o| o.offset), Some(5));
    assert!(c.list().iter().all(|g| g.group_id != GROUP));
}

#[test]
fn records_round_trip_through_their_kafka_key_and_value() {
    let tp = Tp {
        topic: "orders".into(),
        partition: 7,
    };
    let offset = CommittedOffset {
        offset: 42,
        leader_epoch: 3,
        metadata: Some("m".into()),
        commit_ms: 1_000,
        expire_ms: None,
    };
    let long = "g".repeat(40_000);
    let records = [
        Record::Offset {
            group: "g1".into(),
            tp: tp.clone(),
            offset,
        },
        Record::OffsetTombstone {
            group: "g1".into(),
            tp: tp.clone(),
        },
        Record::GroupTombstone { group: "g1".into() },
        Record::GroupTombstone { group: long },
    ];
    for record in &records {
        let (key, value) = (record.key(), record.value());
        assert_eq!(
            Record::from_key_value(&key, value.as_deref()).as_ref(),
            Some(record)
        );
    }
    // Kafka's layout: version 1, group, topic, partition.
    let key = records[0].key();
    assert_eq!(&key[..4], &[0, 1, 0, 2]);
    assert_eq!(&key[4..6], b"g1");
    assert_eq!(&key[key.len() - 4..], &7i32.to_be_bytes());
    // An offset and its tombstone share the key; the group's differs.
    assert_eq!(records[0].key(), records[1].key());
    assert_ne!(records[0].key(), records[2].key());
    // A value that is not the key's record, a damaged key: refused.
    let other = Record::Offset {
        group: "g2".into(),
        tp,
        offset: match &records[0] {
            Record::Offset { offset, .. } => offset.clone(),
            _ => unreachable!(),
        },
    };
    assert!(Record::from_key_value(&key, other.value().as_deref()).is_none());
    assert!(Record::from_key_value(&key[..5], None).is_none());
    assert!(Record::from_key_value(&[0, 9, 0, 0], None).is_none());
}
