//! Client quotas on this broker (`producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`; the rules are in shoal-quotas).
//!
//! Where things live:
//! - The quotas set are part of the metadata: core 0 changes them (AlterClientQuotas), persists
//!   them with the rest (`metadata.json`, or the controller's log on a cluster node) and
//!   publishes them to every core, which resolves its own clients' quotas from its copy.
//! - A client's usage is counted on one core, `counting_core(kind, tags)`, whichever core its
//!   connections landed on: the serving core sends each record there (a mesh call, made only
//!   for clients a quota applies to) and gets the throttle time back.
//! - The connection puts the throttle time in the response and mutes itself that long
//!   (`connection.rs`); Fetch counts its response bytes itself, before it answers
//!   (`handlers/fetch.rs`).
//!
//! Quotas are per broker, as in Kafka: each node of a cluster counts what reaches it.
//! A counting core that does not answer in time throttles nothing: quotas protect the broker's
//! capacity, they never block or fail a request.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use shoal_kafka::cluster::ApiError;
use shoal_kafka::error_map::quota_error;
use shoal_quotas::{counting_core, QuotaEntity, QuotaKind, QuotaOp, Throttle, ANONYMOUS_USER};

use crate::shard::Shard;

/// Longest a serving core waits for the counting core's answer.
const RECORD_TIMEOUT_MS: u64 = 1_000;

/// How a usage is counted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Recording {
    /// Counted; the throttle it earns is capped (the request quota caps at one sample).
    Counted { throttle_ms_max: Option<u64> },
    /// Counted only if it earns no throttle (a throttled Fetch sends no data).
    UnlessThrottled,
}

/// Milliseconds on one clock shared by every core (the counting core's clock reads a
/// record, whichever core sent it).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

thread_local! {
    /// While a [`Timed`] future is being polled on this thread: the time of other cores'
    /// work its calls brought back so far (see [`charge`]).
    static CHARGED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Adds work done elsewhere for the request being polled (the busy time of a cross-core job,
/// or of a local detached one, just answered). Outside a timed poll it does nothing.
pub(crate) fn charge(busy: Duration) {
    CHARGED.with(|charged| {
        if let Some(sum) = charged.get() {
            charged.set(Some(sum + busy));
        }
    });
}

/// A future and the time spent on it: its own polls, plus what [`charge`] adds during them.
/// This is a request's `request_percentage` usage: the core time it took, on every core.
pub(crate) struct Timed<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Timed<F> {
    pub(crate) fn new(inner: F) -> Timed<F> {
        Timed {
            inner: Box::pin(inner),
            busy: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outer = CHARGED.with(|charged| charged.replace(Some(Duration::ZERO)));
        let started = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        let own = started.elapsed();
        let charged = CHARGED
            .with(|charged| charged.replace(outer))
            .unwrap_or_default();
        self.busy += own + charged;
        match polled {
            Poll::Ready(output) => Poll::Ready((output, self.busy)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `work` timed when `timed` (client quotas are set), else with a zero busy time.
pub(crate) async fn timed_if<F: Future>(timed: bool, work: F) -> (F::Output, Duration) {
    if timed {
        Timed::new(work).await
    } else {
        (work.await, Duration::ZERO)
    }
}

impl Shard {
    /// Whether any quota is set (none: nothing is timed or counted).
    pub(crate) fn quotas_set(&self) -> bool {
        !self.meta.borrow().client_quotas.is_empty()
    }

    /// The quota bound of `kind` for a client, per second; `None`: none applies.
    pub(crate) fn quota_bound(&self, kind: QuotaKind, client_id: &str) -> Option<f64> {
        self.meta
            .borrow()
            .client_quotas
            .resolve(kind, ANONYMOUS_USER, client_id)
            .map(|resolved| resolved.bound)
    }

    /// The most bytes one Fetch response carries under a byte-rate `bound` (one sample's
    /// worth, see `QuotaWindow::burst`).
    pub(crate) fn quota_fetch_bytes_max(&self, bound: f64) -> f64 {
        self.quota_usage.borrow().window().burst(bound)
    }

    /// Counts `value` of `kind` for a client on its counting core; the throttle it earned
    /// (none without a quota).
    pub(crate) async fn quota_record(
        self: &Rc<Self>,
        kind: QuotaKind,
        client_id: &str,
        value: f64,
        recording: Recording,
    ) -> Throttle {
        let none = Throttle {
            ms: 0,
            counted: true,
        };
        let resolved = self
            .meta
            .borrow()
            .client_quotas
            .resolve(kind, ANONYMOUS_USER, client_id);
        let Some(resolved) = resolved else {
            return none;
        };
        let core = counting_core(kind, &resolved.tags, self.cores);
        let counted = self
            .answer(core, RECORD_TIMEOUT_MS, move |shard| async move {
                let now = now_ms();
                let mut usage = shard.quota_usage.borrow_mut();
                let pair = (resolved.bound, value);
                match recording {
                    Recording::Counted { throttle_ms_max } => {
                        usage.record(kind, &resolved.tags, pair, now, throttle_ms_max)
                    }
                    Recording::UnlessThrottled => {
                        usage.record_unless_throttled(kind, &resolved.tags, pair, now)
                    }
                }
            })
            .await;
        counted.unwrap_or_else(|why| {
            tracing::debug!(core, ?why, "a quota's counting core did not answer");
            none
        })
    }

    /// AlterClientQuotas on core 0: each entry checked alone, the valid ones applied and
    /// persisted together (one metadata version), unless `validate_only`.
    pub(crate) async fn controller_alter_client_quotas(
        self: &Rc<Self>,
        entries: Vec<(QuotaEntity, Vec<QuotaOp>)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        assert_eq!(self.id, 0, "metadata changes run on shard 0");
        if let Some(cluster) = self.cluster_handle() {
            return self
                .cluster_alter_client_quotas(&cluster, entries, validate_only)
                .await;
        }
        let _permit = match self.metadata_permit().await {
            Ok(permit) => permit,
            Err(error) => return crate::controller::fail_all(entries.len(), &error),
        };
        let mut next = (*self.snapshot()).clone();
        let mut results = Vec::with_capacity(entries.len());
        for (entity, ops) in &entries {
            let outcome = if validate_only {
                next.client_quotas.check(entity, ops)
            } else {
                next.client_quotas.apply(entity, ops)
            };
            results.push(outcome.map_err(|e| quota_error(&e)));
        }
        if validate_only || next.client_quotas == self.snapshot().client_quotas {
            return results;
        }
        if let Err(error) = self.commit(next).await {
            return crate::controller::fail_succeeded(results, &error);
        }
        results
    }
}
