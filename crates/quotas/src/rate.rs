//! Kafka's sampled `Rate`: usage summed into fixed samples of time, the rate being the sum
//! over the retained samples divided by the time they span.
//!
//! One change from Kafka, on purpose: the span is at least one sample, where Kafka pads it to
//! `samples - 1` whole samples. Kafka's padding lets a new (or long idle) client send ten
//! seconds' worth at once, and as that burst's sample leaves the window eleven seconds later
//! the client may burst again: the long-run rate is right, but over a minute a client can be
//! 10-17% above its quota, and its produce latency swings between nothing and ten seconds.
//! With a one-sample floor the burst is at most one second's worth, and the throttle time
//! (usage / bound - span) holds a new client to the bound from its first request.

use std::collections::VecDeque;

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
    /// The largest usage one request may add to an idle window without being throttled
    /// (Kafka's `getMaxValueInQuotaWindow`, over this rate's one-sample floor; Fetch
    /// responses are cut to it).
    pub fn max_value(self, bound_per_second: f64) -> f64 {
        bound_per_second * self.sample_ms as f64 / 1000.0
    }
}

#[derive(Clone, Debug)]
pub struct Rate {
    window: QuotaWindow,
    /// (start of the sample in ms, usage recorded in it), oldest first; at most
    /// `window.samples` of them.
    samples: VecDeque<(u64, f64)>,
}

impl Rate {
    pub fn new(window: QuotaWindow) -> Rate {
        assert!(window.samples >= 2 && window.sample_ms > 0, "{window:?}");
        Rate {
            window,
            samples: VecDeque::with_capacity(window.samples),
        }
    }

    fn purge(&mut self, now_ms: u64) {
        let span_ms = self.window.samples as u64 * self.window.sample_ms;
        while self
            .samples
            .front()
            .is_some_and(|&(start, _)| start.saturating_add(span_ms) <= now_ms)
        {
            let _ = self.samples.pop_front();
        }
    }

    /// Adds `value` (negative: takes back a recorded value) at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        self.purge(now_ms);
        match self.samples.back_mut() {
            Some((start, sum)) if now_ms < start.saturating_add(self.window.sample_ms) => {
                *sum += value;
            }
            _ => {
                if self.samples.len() == self.window.samples {
                    let _ = self.samples.pop_front();
                }
                self.samples.push_back((now_ms, value));
            }
        }
        assert!(self.samples.len() <= self.window.samples);
    }

    /// The time the retained samples span, in ms, at least one sample (Kafka's
    /// `Rate.windowSize`, with the floor described above).
    pub fn window_ms(&mut self, now_ms: u64) -> u64 {
        self.purge(now_ms);
        let oldest = self.samples.front().map_or(now_ms, |&(start, _)| start);
        now_ms.saturating_sub(oldest).max(self.window.sample_ms)
    }

    /// Whether nothing is counted in the window.
    pub fn is_idle(&mut self, now_ms: u64) -> bool {
        self.purge(now_ms);
        self.samples.iter().all(|&(_, sum)| sum <= 0.0)
    }

    /// Usage per second over the window.
    pub fn per_second(&mut self, now_ms: u64) -> f64 {
        let window_ms = self.window_ms(now_ms);
        let sum: f64 = self.samples.iter().map(|&(_, sum)| sum).sum();
        sum * 1000.0 / window_ms as f64
    }

    /// How long the client must stay quiet for the rate to come back to `bound`: with the
    /// observed rate O over window W, O·W / (W + X) = bound gives X = (O - bound) / bound · W
    /// (Kafka's `QuotaUtils.throttleTime`). Zero when within the bound.
    pub fn throttle_ms(&mut self, bound: f64, now_ms: u64) -> u64 {
        let observed = self.per_second(now_ms);
        if observed <= bound {
            return 0;
        }
        let window_ms = self.window_ms(now_ms) as f64;
        ((observed - bound) / bound * window_ms).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_burst_is_held_to_the_bound() {
        let mut rate = Rate::new(QuotaWindow::default());
        rate.record(1_000.0, 0);
        // One second's worth fits the one-sample floor.
        assert_eq!(rate.window_ms(0), 1_000);
        assert_eq!(rate.throttle_ms(1000.0, 0), 0);
        rate.record(9_000.0, 500);
        // 10 000 against 1000/s over the one-second floor: quiet for 9 s.
        assert_eq!(rate.throttle_ms(1000.0, 500), 9_000);
    }

    #[test]
    fn a_client_that_obeys_stays_within_a_percent_over_a_minute() {
        // The whole minute, from the first request: no burst allowance to amortise.
        let bound = 512.0 * 1024.0;
        let mut rate = Rate::new(QuotaWindow::default());
        let (mut now, mut sent) = (0u64, 0f64);
        while now < 60_000 {
            rate.record(16_384.0, now);
            sent += 16_384.0;
            now += rate.throttle_ms(bound, now).max(1);
        }
        let achieved = sent * 1000.0 / now as f64;
        assert!(
            (achieved - bound).abs() / bound < 0.01,
            "{achieved} per s against {bound}"
        );
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut rate = Rate::new(QuotaWindow::default());
        rate.record(50_000.0, 0);
        rate.record(1.0, 11_000);
        assert!(rate.per_second(11_000) <= 1.0);
    }

    #[test]
    fn an_unrecorded_value_is_gone() {
        let mut rate = Rate::new(QuotaWindow::default());
        rate.record(3000.0, 100);
        rate.record(-3000.0, 200);
        assert_eq!(rate.per_second(300), 0.0);
    }

    #[test]
    fn obeying_the_throttle_converges_to_the_bound() {
        // A client that sends 4 KiB whenever it may, and waits what it is told.
        let bound = 1024.0 * 100.0;
        let mut rate = Rate::new(QuotaWindow::default());
        let (mut now, mut sent) = (0u64, 0f64);
        while now < 120_000 {
            rate.record(4096.0, now);
            sent += 4096.0;
            now += rate.throttle_ms(bound, now).max(1);
        }
        let achieved = sent * 1000.0 / now as f64;
        assert!(
            (achieved - bound).abs() / bound < 0.1,
            "{achieved} per s against {bound}"
        );
    }
}
