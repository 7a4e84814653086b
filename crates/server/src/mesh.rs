//! Work between cores. Every call that crosses cores is a `Job`: a closure built on the
//! caller's core (so it is `Send`: it holds only plain data, bytes and `Arc` snapshots) that
//! the owner core runs against its own `Shard`. There is one generic path instead of a message
//! variant and a hand-written local-or-remote branch per operation; the call site names the
//! target core (`Shard::complete`, `Shard::answer`, `Shard::control`).
//!
//! No waker ever crosses cores. The answer goes back as a message too (`ShardMsg::Reply`), and
//! each core completes its own waiting calls from its receive loop, on its own thread. glommio
//! 0.9 races when a task's waker is woken or dropped on another thread (its foreign
//! `drop_waker` lets the reference count reach zero while the owner may destroy the task: the
//! broker died with "double free" under cross-core load, never on one core), and its own
//! channels never do that: the sender signals the other executor, which wakes its local tasks.
//!
//! Two kinds of call, because of what a client that goes away may interrupt:
//! - [`Call::Complete`]: a state change (append, metadata change, group commit). It runs as a
//!   detached task on the owner, locally too, so it always completes even when the caller's
//!   request is dropped (client disconnect, timeout): a change is never left half-made.
//! - [`Call::Answer`]: a read or a wait. When its caller stops waiting, a `Cancel` message
//!   stops it on the owner.
//!
//! Three lanes, each its own channel mesh, so that a full lane never blocks another:
//! - `Lane::Requests`: work on behalf of client requests; each core runs at most
//!   `MESH_JOBS_INFLIGHT_MAX` of them at once and stops reading its channels beyond that
//!   (backpressure up to the senders, whose channels are bounded).
//! - `Lane::Control`: the controller's fan-out to partition owners (publish a snapshot, open or
//!   drop logs, apply configs). These jobs never call another core, so they cannot wait in a
//!   cycle with request jobs. Their number is bounded by design: one metadata change at a time,
//!   each fanning out to at most every core once per topic.
//! - replies: answers, taken off their channel at once by every core (never behind a job).
//!
//! A remote call waits at most its timeout; then the caller gets [`Unanswered::TimedOut`]
//! (an `Answer` job is cancelled, a `Complete` job still completes).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::shard::Shard;

/// What travels between cores.
pub(crate) enum ShardMsg {
    /// Work for the receiving core, from core `from`, answered with `Reply { id }`.
    Job {
        from: usize,
        id: u64,
        call: Call,
        job: Job,
    },
    /// The answer to call `id` of the receiving core, and the time the job took on its core
    /// (measured only while client quotas are set: a request's `request_percentage` counts
    /// the work it caused on every core).
    Reply {
        id: u64,
        answer: Answer,
        busy: std::time::Duration,
    },
    /// Core `from` stopped waiting for its `Answer` call `id`: stop it.
    Cancel { from: usize, id: u64 },
}

/// A call's result, type-erased for the trip back (the caller knows its type).
pub(crate) type Answer = Box<dyn Any + Send>;

pub(crate) type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = Answer>>> + Send>;

/// How a call treats a caller that stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// A state change: runs to completion, whatever happens to the caller.
    Complete,
    /// A read or wait: cancelled when the caller stops waiting.
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Requests,
    Control,
}

/// Longest a remote call waits for its answer by default: longer than any wait a request may
/// ask for (Fetch waits at most 30 s), short enough that a stuck core shows up as
/// REQUEST_TIMED_OUT instead of a hung client.
pub(crate) const CALL_TIMEOUT_MS: u64 = 35_000;

/// Erases `work` into a job whose output is boxed for the reply.
pub(crate) fn job<T, W, F>(work: W) -> Job
where
    T: Send + 'static,
    W: FnOnce(Rc<Shard>) -> F + Send + 'static,
    F: Future<Output = T> + 'static,
{
    Box::new(move |shard| {
        Box::pin(async move {
            let answer: Answer = Box::new(work(shard).await);
            answer
        })
    })
}
