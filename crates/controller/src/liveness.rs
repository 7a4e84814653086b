//! Broker sessions, on the controller leader only: in memory, never in the log (as KRaft's
//! `BrokerHeartbeatManager`). The leader turns what this returns into `FenceBroker` and
//! `UnfenceBroker` records; every node learns about liveness from those records alone.
//!
//! Time is passed in, in milliseconds of a monotonic clock (not wall-clock time: a clock
//! step must not fence the cluster). A new leader knows no session, so it gives every broker
//! a full session ([`Liveness::on_become_leader`]) before it may fence one.

use std::collections::BTreeMap;

use shoal_model::NodeId;

use crate::apply::validate_registration;
use crate::error::{Limit, PlanError};
use crate::limits::BROKERS_MAX;
use crate::plan::plan_error;
use crate::record::{Record, Registration};
use crate::state::ClusterState;

/// The sessions of the registered brokers, as seen by the controller leader.
#[derive(Clone, Debug)]
pub struct Liveness {
    /// A broker not heard from for this long is fenced (Kafka's
    /// `broker.session.timeout.ms`, 9000 by default).
    session_timeout_ms: u64,
    sessions: BTreeMap<NodeId, Session>,
    /// The latest time passed in: time never goes back.
    now_ms_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Session {
    broker_epoch: u64,
    /// The last heartbeat, or when this leader started counting.
    heard_ms: u64,
}

/// One broker heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub node: NodeId,
    pub broker_epoch: u64,
    /// The broker's metadata version: it is unfenced only once it has applied its own
    /// registration (so it knows which partitions it hosts before it is named their leader).
    pub applied_index: u64,
    /// The broker asks to be (or stay) fenced: it is still recovering its logs, or shutting
    /// down in a controlled way (KRaft's `wantFence`).
    pub want_fence: bool,
}

/// What the leader answers a heartbeat with and, for some, proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatReply {
    /// Unfenced; the session was extended.
    Alive,
    /// Fenced and staying so (it asked to, or has not caught up); the session was extended.
    Fenced,
    /// Fenced, caught up and ready: the leader proposes this `UnfenceBroker` record.
    Unfence(Record),
    /// Unfenced and asking to be fenced: the leader proposes this `FenceBroker` record.
    Fence(Record),
    /// The node is not registered, or the epoch is older than its current one: the broker
    /// registers again (and heartbeats with the epoch it gets).
    Reregister,
    /// The epoch is newer than any this leader applied (its registration is not applied
    /// here yet): the broker retries shortly.
    NotYetApplied,
}

impl Liveness {
    pub fn new(session_timeout_ms: u64) -> Liveness {
        assert!(
            session_timeout_ms > 0,
            "a zero session fences every broker at once"
        );
        Liveness {
            session_timeout_ms,
            sessions: BTreeMap::new(),
            now_ms_max: 0,
        }
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// This node became the controller leader: every registered broker starts a full
    /// session now, whatever the previous leader saw.
    pub fn on_become_leader(&mut self, state: &ClusterState, now_ms: u64) {
        self.observe(now_ms);
        self.sessions = state
            .brokers()
            .values()
            .map(|b| {
                (
                    b.registration.node,
                    Session {
                        broker_epoch: b.broker_epoch,
                        heard_ms: now_ms,
                    },
                )
            })
            .collect();
        debug_assert_eq!(self.sessions.len(), state.brokers().len());
    }

    pub fn heartbeat(
        &mut self,
        state: &ClusterState,
        beat: &Heartbeat,
        now_ms: u64,
    ) -> HeartbeatReply {
        self.observe(now_ms);
        let Some(broker) = state.broker(beat.node) else {
            return HeartbeatReply::Reregister;
        };
        if beat.broker_epoch < broker.broker_epoch {
            return HeartbeatReply::Reregister;
        }
        if beat.broker_epoch > broker.broker_epoch {
            return HeartbeatReply::NotYetApplied;
        }
        let session = Session {
            broker_epoch: beat.broker_epoch,
            heard_ms: now_ms,
        };
        let _previous = self.sessions.insert(beat.node, session);
        let (node, broker_epoch) = (beat.node, beat.broker_epoch);
        let caught_up = beat.applied_index >= broker.broker_epoch;
        match (broker.fenced, beat.want_fence) {
            (true, false) if caught_up => {
                HeartbeatReply::Unfence(Record::UnfenceBroker { node, broker_epoch })
            }
            (true, _) => HeartbeatReply::Fenced,
            (false, true) => HeartbeatReply::Fence(Record::FenceBroker { node, broker_epoch }),
            (false, false) => HeartbeatReply::Alive,
        }
    }

    /// Unfenced brokers not heard from for a session timeout, by node id: the leader proposes
    /// a `FenceBroker` for each. A broker this leader has no session for (registered since it
    /// became leader, or registered again) starts a full session now.
    pub fn expired(&mut self, state: &ClusterState, now_ms: u64) -> Vec<(NodeId, u64)> {
        self.observe(now_ms);
        self.sessions
            .retain(|node, _| state.broker(*node).is_some());
        let mut expired = Vec::new();
        for broker in state.live_brokers() {
            let (node, broker_epoch) = (broker.registration.node, broker.broker_epoch);
            let fresh = Session {
                broker_epoch,
                heard_ms: now_ms,
            };
            let session = self.sessions.entry(node).or_insert(fresh);
            if session.broker_epoch != broker_epoch {
                *session = fresh;
            }
            if now_ms - session.heard_ms >= self.session_timeout_ms {
                expired.push((node, broker_epoch));
            }
        }
        debug_assert!(expired.iter().all(|(node, _)| state.is_live(*node)));
        expired
    }

    /// A `RegisterBroker` record for `registration`, unless another process holds the node
    /// id: a registration with a different incarnation while the current one still has a
    /// live session is refused (DUPLICATE_BROKER_REGISTRATION), as in KRaft. The same
    /// incarnation registering again (a retry) is accepted and gets a new epoch.
    pub fn plan_register(
        &mut self,
        state: &ClusterState,
        registration: Registration,
        now_ms: u64,
    ) -> Result<Record, PlanError> {
        self.observe(now_ms);
        validate_registration(&registration).map_err(plan_error)?;
        let node = registration.node;
        if state.broker(node).is_none() && state.brokers().len() >= BROKERS_MAX {
            return Err(PlanError::Limit(Limit::Brokers));
        }
        if let (Some(broker), Some(session)) = (state.broker(node), self.sessions.get(&node)) {
            let other_process = broker.registration.incarnation != registration.incarnation;
            let live = session.broker_epoch == broker.broker_epoch
                && now_ms - session.heard_ms < self.session_timeout_ms;
            if other_process && live {
                return Err(PlanError::DuplicateBrokerRegistration(node));
            }
        }
        Ok(Record::RegisterBroker(registration))
    }

    fn observe(&mut self, now_ms: u64) {
        assert!(
            now_ms >= self.now_ms_max,
            "the clock went back from {} to {now_ms} ms: pass a monotonic clock",
            self.now_ms_max
        );
        self.now_ms_max = now_ms;
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
