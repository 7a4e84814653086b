use shoal_model::NodeId;

use super::*;
use crate::error::{ApplyError, Invalid};
use crate::test_support::*;

const TIMEOUT_MS: u64 = 1000;

fn beat(state: &ClusterState, node: i32) -> Heartbeat {
    let broker = state.broker(NodeId(node)).expect("registered");
    Heartbeat {
        node: NodeId(node),
        broker_epoch: broker.broker_epoch,
        applied_index: state.applied_index(),
        want_fence: false,
    }
}

fn epoch(state: &ClusterState, node: i32) -> u64 {
    state.broker(NodeId(node)).expect("registered").broker_epoch
}

/// Applies what a heartbeat asks the leader to propose.
fn propose(state: &mut ClusterState, reply: HeartbeatReply) {
    let (HeartbeatReply::Unfence(record) | HeartbeatReply::Fence(record)) = reply else {
        panic!("nothing to propose: {reply:?}");
    };
    assert!(apply_next(state, &record).is_ok());
}

#[test]
fn unknown_stale_and_future_epochs() {
    let mut state = cluster(&[(0, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    let mut unknown = beat(&state, 0);
    unknown.node = NodeId(5);
    assert_eq!(
        liveness.heartbeat(&state, &unknown, 1),
        HeartbeatReply::Reregister
    );
    let old = beat(&state, 0);
    assert!(apply_next(
        &mut state,
        &Record::RegisterBroker(registration(0, 1, None))
    )
    .is_ok());
    assert_eq!(
        liveness.heartbeat(&state, &old, 2),
        HeartbeatReply::Reregister
    );
    let mut future = beat(&state, 0);
    future.broker_epoch += 1;
    assert_eq!(
        liveness.heartbeat(&state, &future, 3),
        HeartbeatReply::NotYetApplied
    );
}

#[test]
fn a_fenced_broker_is_unfenced_once_caught_up_and_ready() {
    let mut state = ClusterState::new("c".into());
    assert!(apply_next(
        &mut state,
        &Record::RegisterBroker(registration(0, 1, None))
    )
    .is_ok());
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    let mut behind = beat(&state, 0);
    behind.applied_index = epoch(&state, 0) - 1;
    assert_eq!(
        liveness.heartbeat(&state, &behind, 1),
        HeartbeatReply::Fenced
    );
    let mut recovering = beat(&state, 0);
    recovering.want_fence = true;
    assert_eq!(
        liveness.heartbeat(&state, &recovering, 2),
        HeartbeatReply::Fenced
    );
    let ready = beat(&state, 0);
    let reply = liveness.heartbeat(&state, &ready, 3);
    let unfence = Record::UnfenceBroker {
        node: NodeId(0),
        broker_epoch: epoch(&state, 0),
    };
    assert_eq!(reply, HeartbeatReply::Unfence(unfence));
    propose(&mut state, reply);
    assert_eq!(
        liveness.heartbeat(&state, &beat(&state, 0), 4),
        HeartbeatReply::Alive
    );
    // Controlled shutdown: the broker asks to be fenced.
    let mut stopping = beat(&state, 0);
    stopping.want_fence = true;
    let reply = liveness.heartbeat(&state, &stopping, 5);
    let fence = Record::FenceBroker {
        node: NodeId(0),
        broker_epoch: epoch(&state, 0),
    };
    assert_eq!(reply, HeartbeatReply::Fence(fence));
    propose(&mut state, reply);
    assert!(state.broker(NodeId(0)).expect("registered").fenced);
}

#[test]
fn silent_brokers_expire_after_one_session() {
    let mut state = cluster(&[(0, 1, None), (1, 1, None), (2, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    let broker_epoch = epoch(&state, 2);
    assert!(apply_next(
        &mut state,
        &Record::FenceBroker {
            node: NodeId(2),
            broker_epoch
        }
    )
    .is_ok());
    assert_eq!(
        liveness.heartbeat(&state, &beat(&state, 0), 500),
        HeartbeatReply::Alive
    );
    assert_eq!(liveness.expired(&state, TIMEOUT_MS - 1), vec![]);
    // Node 2 is fenced already: it is never reported.
    assert_eq!(
        liveness.expired(&state, TIMEOUT_MS),
        vec![(NodeId(1), epoch(&state, 1))]
    );
    assert_eq!(
        liveness.expired(&state, 500 + TIMEOUT_MS - 1),
        vec![(NodeId(1), epoch(&state, 1))]
    );
    let both = vec![(NodeId(0), epoch(&state, 0)), (NodeId(1), epoch(&state, 1))];
    assert_eq!(liveness.expired(&state, 500 + TIMEOUT_MS), both);
}

#[test]
fn a_new_leader_gives_every_broker_a_full_session() {
    let state = cluster(&[(0, 1, None)]);
    let mut old_leader = Liveness::new(TIMEOUT_MS);
    old_leader.on_become_leader(&state, 0);
    assert_eq!(old_leader.expired(&state, 10_000).len(), 1);
    let mut new_leader = Liveness::new(TIMEOUT_MS);
    new_leader.on_become_leader(&state, 10_000);
    assert_eq!(new_leader.expired(&state, 10_000 + TIMEOUT_MS - 1), vec![]);
    assert_eq!(new_leader.expired(&state, 10_000 + TIMEOUT_MS).len(), 1);
    // Becoming leader again (after losing it) restarts the count, too.
    new_leader.on_become_leader(&state, 20_000);
    assert_eq!(new_leader.expired(&state, 20_000 + TIMEOUT_MS - 1), vec![]);
}

#[test]
fn brokers_registered_later_start_their_session_when_first_seen() {
    let mut state = cluster(&[(0, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    assert_eq!(
        liveness.heartbeat(&state, &beat(&state, 0), 5_000),
        HeartbeatReply::Alive
    );
    // Node 1 registers and is unfenced without this leader seeing a heartbeat (say, the
    // records were proposed by the previous leader and committed now).
    assert!(apply_next(
        &mut state,
        &Record::RegisterBroker(registration(1, 1, None))
    )
    .is_ok());
    let unfence = Record::UnfenceBroker {
        node: NodeId(1),
        broker_epoch: epoch(&state, 1),
    };
    assert!(apply_next(&mut state, &unfence).is_ok());
    assert_eq!(liveness.expired(&state, 5_500), vec![]);
    assert_eq!(
        liveness.expired(&state, 5_500 + TIMEOUT_MS - 1),
        vec![(NodeId(0), epoch(&state, 0))]
    );
    assert_eq!(liveness.expired(&state, 5_500 + TIMEOUT_MS).len(), 2);
}

#[test]
fn a_fence_planned_for_an_old_incarnation_does_not_fence_the_new_one() {
    let mut state = cluster(&[(0, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    let expired = liveness.expired(&state, TIMEOUT_MS);
    let [(node, broker_epoch)] = expired[..] else {
        panic!("{expired:?}")
    };
    // The broker restarts and registers before the fence is applied.
    let mut restarted = registration(0, 1, None);
    restarted.incarnation = 2;
    let record = liveness
        .plan_register(&state, restarted, TIMEOUT_MS)
        .expect("session expired");
    assert!(apply_next(&mut state, &record).is_ok());
    let current = epoch(&state, 0);
    let stale = ApplyError::StaleBrokerEpoch {
        node,
        broker_epoch,
        current,
    };
    assert_eq!(
        apply_next(&mut state, &Record::FenceBroker { node, broker_epoch }),
        Err(stale)
    );
    let reply = liveness.heartbeat(&state, &beat(&state, 0), TIMEOUT_MS + 1);
    propose(&mut state, reply);
    assert_eq!(liveness.expired(&state, TIMEOUT_MS + 2), vec![]);
}

#[test]
fn a_second_process_with_a_live_node_id_is_refused() {
    let state = cluster(&[(0, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 0);
    let mut other = registration(0, 1, None);
    other.incarnation = 99;
    let refused = liveness.plan_register(&state, other.clone(), 10);
    assert_eq!(
        refused,
        Err(PlanError::DuplicateBrokerRegistration(NodeId(0)))
    );
    // The same process retrying its registration is fine.
    assert!(liveness
        .plan_register(&state, registration(0, 1, None), 11)
        .is_ok());
    // Once the old session has expired, the new process may take the id.
    assert!(liveness.plan_register(&state, other, TIMEOUT_MS).is_ok());
    let invalid = liveness.plan_register(&state, registration(1, 0, None), TIMEOUT_MS);
    assert_eq!(invalid, Err(PlanError::Invalid(Invalid::NoCores)));
}

#[test]
#[should_panic(expected = "monotonic")]
fn time_never_goes_back() {
    let state = cluster(&[(0, 1, None)]);
    let mut liveness = Liveness::new(TIMEOUT_MS);
    liveness.on_become_leader(&state, 100);
    let _ = liveness.expired(&state, 99);
}
