//! Work between cores. Every call that crosses cores is a `Job`: a closure built on the
//! caller's core (so it is `Send`: it holds only plain data, bytes and `Arc` snapshots) that
//! the owner core runs against its own `Shard`, answering through a oneshot channel. There is
//! one generic path instead of a message variant and a hand-written local-or-remote branch per
//! operation; the call site names the target core (`Shard::run_on`, `Shard::ask`).
//!
//! Two kinds of call, because of what a client that goes away may interrupt:
//! - [`Call::Complete`]: a state change (append, metadata change, group commit). It runs as a
//!   detached task on the owner, locally too, so it always completes even when the caller's
//!   request is dropped (client disconnect, timeout): a change is never left half-made.
//! - [`Call::Answer`]: a read or a wait. It stops as soon as nobody waits for the answer.
//!
//! Two lanes, each its own channel mesh, so that a full lane never blocks the other:
//! - `Lane::Requests`: work on behalf of client requests; each core runs at most
//!   `MESH_JOBS_INFLIGHT_MAX` of them at once and stops reading its channels beyond that
//!   (backpressure up to the senders, whose channels are bounded).
//! - `Lane::Control`: the controller's fan-out to partition owners (publish a snapshot, open or
//!   drop logs, apply configs). These jobs never call another core, so they cannot wait in a
//!   cycle with request jobs (a controller job on core 0 waits for control jobs on core N,
//!   which a full request lane on core N cannot stall). Their number is bounded by design: one
//!   metadata change at a time, each fanning out to at most every core once per topic.
//!
//! A remote call waits at most its timeout; then the caller gets [`Unanswered::TimedOut`]
//! (an `Answer` job is dropped with it, a `Complete` job still completes).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use shoal_kafka::cluster::Unanswered;

use crate::shard::Shard;

/// A job for another core.
pub(crate) struct ShardMsg(pub(crate) Job);

pub(crate) type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// How a call treats a caller that stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// A state change: runs to completion, whatever happens to the caller.
    Complete,
    /// A read or wait: dropped when the caller stops waiting.
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

/// Builds the job that runs `work` on the owner and sends its answer back.
pub(crate) fn job<T, W, F>(call: Call, work: W, mut reply: oneshot::Sender<T>) -> Job
where
    T: Send + 'static,
    W: FnOnce(Rc<Shard>) -> F + Send + 'static,
    F: Future<Output = T> + 'static,
{
    Box::new(move |shard| {
        Box::pin(async move {
            let work = work(shard);
            match call {
                Call::Complete => {
                    let _ = reply.send(work.await);
                }
                Call::Answer => {
                    let answered = {
                        let cancelled = reply.cancellation();
                        match select(Box::pin(work), cancelled).await {
                            Either::Left((answer, _)) => Some(answer),
                            Either::Right(((), _)) => None,
                        }
                    };
                    if let Some(answer) = answered {
                        let _ = reply.send(answer);
                    }
                }
            }
        })
    })
}

/// Waits for `answer` at most `timeout_ms`.
pub(crate) async fn await_answer<T>(
    answer: oneshot::Receiver<T>,
    timeout_ms: u64,
) -> Result<T, Unanswered> {
    let timer = Box::pin(glommio::timer::sleep(Duration::from_millis(timeout_ms)));
    match select(answer, timer).await {
        Either::Left((Ok(value), _)) => Ok(value),
        Either::Left((Err(_), _)) => Err(Unanswered::Dropped),
        Either::Right(((), _)) => Err(Unanswered::TimedOut),
    }
}
