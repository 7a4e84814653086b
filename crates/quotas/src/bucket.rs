//! How usage becomes a throttle time: a token bucket per client and quota kind.
//!
//! The bucket holds at most one sample's worth of the bound (`burst`), refills at the bound,
//! and each usage is taken from it, down into debt if need be; the throttle time is how long
//! the refill takes to pay the debt back. A new or idle client may so use one sample's worth at
//! once, and from then on exactly the bound.
//!
//! Why not Kafka's sampled `Rate` (usage summed into `quota.window.num` samples, the rate
//! being their sum over the time they span): with sparse usage, a Fetch of a quarter MiB every
//! second or two, each usage opens a sample of its own, and the measured rate jumps as a
//! sample leaves the window (the span shrinks by the gap before the next sample, the sum by one
//! fetch) and again while the window is young (the span is floored, so waiting out the
//! throttle does not lower the rate the formula assumed it would). Measured with librdkafka
//! against a 256 KiB/s consumer quota over 15 s: 0.79-0.92 of the bound with the sampled rate,
//! the bucket within a few percent. Redpanda also moved its client quotas to token buckets.
//! Kafka's own padding of the window (`samples - 1` samples) instead lets a new client burst
//! ten seconds' worth and then starve it: not what a tail-latency broker wants either.
//!
//! `quota.window.num` keeps one role: a capped throttle (the request quota's, at most one
//! sample) forgives debt older than the window, as Kafka's samples leave it.

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaWindow {
    pub samples: usize,
    pub sample_ms: u64,
}

impl Default for QuotaWindow {
    fn default() -> QuotaWindow {
        QuotaWindow {
            samples: 11,
            sample_ms: 1000,
        }
    }
}

impl QuotaWindow {
    /// What a new or idle client may use at once under a bound per second (one sample's
    /// worth). Also the most one Fetch response carries under a byte rate: a consumer then
    /// waits about a sample between fetches, short enough to be smooth, long enough that its
    /// round trips cost it little of its quota.
    pub fn burst(self, bound_per_second: f64) -> f64 {
        bound_per_second * self.sample_ms as f64 / 1000.0
    }

    /// The most debt a capped throttle keeps: the window's worth (see the module doc).
    fn debt_max(self, bound_per_second: f64) -> f64 {
        bound_per_second * (self.samples as u64 * self.sample_ms) as f64 / 1000.0
    }
}

#[derive(Clone, Debug)]
pub struct Bucket {
    window: QuotaWindow,
    /// Usage the client may still take at once; below zero, its debt.
    tokens: f64,
    /// When `tokens` was last refilled.
    at_ms: u64,
}

impl Bucket {
    /// A full bucket: a new client may use `burst` at once.
    pub fn new(window: QuotaWindow, bound_per_second: f64, now_ms: u64) -> Bucket {
        assert!(window.samples >= 2 && window.sample_ms > 0, "{window:?}");
        Bucket {
            window,
            tokens: window.burst(bound_per_second),
            at_ms: now_ms,
        }
    }

    /// Adds what the bound earned since the last call, up to the burst. The bound is the one
    /// in force now (a quota changed by AlterClientQuotas applies from its next use). A clock
    /// read before `at_ms` (another core's, a moment behind) refills nothing.
    fn refill(&mut self, bound_per_second: f64, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        let burst = self.window.burst(bound_per_second);
        self.tokens = (self.tokens + bound_per_second * elapsed_ms as f64 / 1000.0).min(burst);
    }

    /// Takes `value` at `now_ms`, into debt if the bucket does not hold it.
    pub fn take(&mut self, bound_per_second: f64, value: f64, now_ms: u64) {
        assert!(value >= 0.0 && value.is_finite(), "usage {value}");
        self.refill(bound_per_second, now_ms);
        self.tokens -= value;
    }

    /// Forgets debt beyond the window's worth (for a capped throttle).
    pub fn forgive_old_debt(&mut self, bound_per_second: f64) {
        self.tokens = self.tokens.max(-self.window.debt_max(bound_per_second));
    }

    /// How long until the debt is paid, rounded up so that a client back after it finds the
    /// bucket at zero or above (Kafka's throttle time: how long the client must stay quiet).
    /// Zero when not in debt.
    pub fn throttle_ms(&mut self, bound_per_second: f64, now_ms: u64) -> u64 {
        assert!(bound_per_second > 0.0, "bound {bound_per_second}");
        self.refill(bound_per_second, now_ms);
        if self.tokens >= 0.0 {
            return 0;
        }
        (-self.tokens * 1000.0 / bound_per_second).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_may_burst_one_sample_and_then_waits() {
        let mut bucket = Bucket::new(QuotaWindow::default(), 1000.0, 0);
        bucket.take(1000.0, 1000.0, 0);
        assert_eq!(bucket.throttle_ms(1000.0, 0), 0);
        bucket.take(1000.0, 9000.0, 500);
        // 500 refilled, 9000 taken: 8500 of debt at 1000/s.
        assert_eq!(bucket.throttle_ms(1000.0, 500), 8_500);
        assert_eq!(bucket.throttle_ms(1000.0, 9_000), 0);
    }

    #[test]
    fn an_idle_client_refills_only_to_the_burst() {
        let mut bucket = Bucket::new(QuotaWindow::default(), 100.0, 0);
        bucket.take(100.0, 100.0, 0);
        // An hour idle still allows one sample's worth, no more.
        bucket.take(100.0, 101.0, 3_600_000);
        assert_eq!(bucket.throttle_ms(100.0, 3_600_000), 10);
    }

    #[test]
    fn a_client_that_obeys_stays_within_a_percent_over_a_minute() {
        // The whole minute, from the first request: only the one-sample burst to amortise.
        let bound = 512.0 * 1024.0;
        let mut bucket = Bucket::new(QuotaWindow::default(), bound, 0);
        let (mut now, mut sent) = (0u64, 0f64);
        while now < 60_000 {
            bucket.take(bound, 16_384.0, now);
            sent += 16_384.0;
            now += bucket.throttle_ms(bound, now).max(1);
        }
        let achieved = sent * 1000.0 / now as f64;
        // The burst is one second of sixty: 1.7% over.
        assert!(
            (achieved - bound).abs() / bound < 0.02,
            "{achieved} per s against {bound}"
        );
    }

    #[test]
    fn a_clock_read_behind_refills_nothing() {
        let mut bucket = Bucket::new(QuotaWindow::default(), 100.0, 1_000);
        bucket.take(100.0, 200.0, 1_000);
        assert_eq!(bucket.throttle_ms(100.0, 900), 1_000);
        assert_eq!(bucket.throttle_ms(100.0, 1_500), 500);
    }

    #[test]
    fn a_capped_throttle_forgets_debt_older_than_the_window() {
        let mut bucket = Bucket::new(QuotaWindow::default(), 10.0, 0);
        bucket.take(10.0, 1e6, 0);
        bucket.forgive_old_debt(10.0);
        // At most the 11 s window's worth of debt is left.
        assert_eq!(bucket.throttle_ms(10.0, 0), 11_000);
    }

    #[test]
    fn a_lower_bound_applies_from_the_next_use() {
        let mut bucket = Bucket::new(QuotaWindow::default(), 1000.0, 0);
        bucket.take(1000.0, 1000.0, 0);
        // The bound drops to 100/s: the bucket refills at 100/s and holds 100 at most.
        assert_eq!(bucket.throttle_ms(100.0, 10_000), 0);
        bucket.take(100.0, 200.0, 10_000);
        assert_eq!(bucket.throttle_ms(100.0, 10_000), 1_000);
    }
}
