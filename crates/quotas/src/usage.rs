//! The usage of quota-bound clients on the core that counts them, and the throttle time each
//! new usage earns.
//!
//! A client's usage must be counted in one place whatever core its connections landed on
//! (Kafka's quotas are per broker, and one client often has several connections), so the
//! server counts each set of metric tags on one core, chosen by [`counting_core`]; the other
//! cores send their records there.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::bucket::{Bucket, QuotaWindow};
use crate::entity::{MetricTags, QuotaKind};

/// A sensor unused this long is dropped (Kafka's `InactiveSensorExpirationTimeSeconds`).
pub const SENSOR_IDLE_MS_MAX: u64 = 3_600_000;

/// The core that counts the usage under `tags` (stable for a given number of cores).
pub fn counting_core(kind: QuotaKind, tags: &MetricTags, cores: usize) -> usize {
    assert!(cores > 0);
    let mut hasher = DefaultHasher::new();
    kind.hash(&mut hasher);
    tags.hash(&mut hasher);
    (hasher.finish() % cores as u64) as usize
}

struct Sensor {
    bucket: Bucket,
    used_ms: u64,
}

/// One core's sensors, at most `sensors_max` of them: when full, the one unused longest goes
/// (its client starts a fresh window, which only ever favours that client).
pub struct Usage {
    window: QuotaWindow,
    sensors_max: usize,
    sensors: HashMap<(QuotaKind, MetricTags), Sensor>,
}

/// What a record earned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub ms: u64,
    /// Whether the value was counted (always, except by `record_unless_throttled`).
    pub counted: bool,
}

impl Usage {
    pub fn new(window: QuotaWindow, sensors_max: usize) -> Usage {
        assert!(sensors_max > 0);
        Usage {
            window,
            sensors_max,
            sensors: HashMap::new(),
        }
    }

    pub fn window(&self) -> QuotaWindow {
        self.window
    }

    pub fn sensors(&self) -> usize {
        self.sensors.len()
    }

    fn sensor(
        &mut self,
        kind: QuotaKind,
        tags: &MetricTags,
        bound: f64,
        now_ms: u64,
    ) -> &mut Bucket {
        let key = (kind, tags.clone());
        if !self.sensors.contains_key(&key) {
            self.sensors
                .retain(|_, s| now_ms.saturating_sub(s.used_ms) < SENSOR_IDLE_MS_MAX);
            if self.sensors.len() >= self.sensors_max {
                let oldest = self
                    .sensors
                    .iter()
                    .min_by_key(|(_, s)| s.used_ms)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    let _ = self.sensors.remove(&oldest);
                }
            }
        }
        assert!(self.sensors.len() < self.sensors_max || self.sensors.contains_key(&key));
        let window = self.window;
        let sensor = self.sensors.entry(key).or_insert_with(|| Sensor {
            bucket: Bucket::new(window, bound, now_ms),
            used_ms: now_ms,
        });
        sensor.used_ms = now_ms;
        &mut sensor.bucket
    }

    /// Records `value` against `bound` (per second) and returns the throttle it earned
    /// (Kafka's `recordAndGetThrottleTimeMs`). `throttle_ms_max` caps it (the request quota
    /// caps at one sample, the byte quotas do not) and then debt older than the window is
    /// forgotten, as Kafka's samples leave its window.
    pub fn record(
        &mut self,
        kind: QuotaKind,
        tags: &MetricTags,
        (bound, value): (f64, f64),
        now_ms: u64,
        throttle_ms_max: Option<u64>,
    ) -> Throttle {
        let bucket = self.sensor(kind, tags, bound, now_ms);
        bucket.take(bound, value, now_ms);
        if throttle_ms_max.is_some() {
            bucket.forgive_old_debt(bound);
        }
        let ms = bucket.throttle_ms(bound, now_ms);
        Throttle {
            ms: throttle_ms_max.map_or(ms, |max| ms.min(max)),
            counted: true,
        }
    }

    /// Records `value` unless the client is still in debt; then leaves the usage as it was
    /// and returns the time until it is not (a throttled Fetch sends no data, so its bytes do
    /// not count, as Kafka "unrecords" them). A client not in debt always has its value
    /// counted, whatever it earns: a single record larger than the quota allows at once (a
    /// Fetch's first batch is returned whole, KIP-74) would otherwise be refused for ever.
    pub fn record_unless_throttled(
        &mut self,
        kind: QuotaKind,
        tags: &MetricTags,
        (bound, value): (f64, f64),
        now_ms: u64,
    ) -> Throttle {
        let bucket = self.sensor(kind, tags, bound, now_ms);
        let owed_ms = bucket.throttle_ms(bound, now_ms);
        if owed_ms > 0 {
            return Throttle {
                ms: owed_ms,
                counted: false,
            };
        }
        bucket.take(bound, value, now_ms);
        Throttle {
            ms: bucket.throttle_ms(bound, now_ms),
            counted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(client: &str) -> MetricTags {
        MetricTags {
            user: None,
            client_id: Some(client.to_string()),
        }
    }

    #[test]
    fn sensors_are_bounded_and_the_unused_one_goes() {
        let mut usage = Usage::new(QuotaWindow::default(), 2);
        let p = QuotaKind::ProduceBytes;
        let _ = usage.record(p, &tags("a"), (100.0, 1.0), 0, None);
        let _ = usage.record(p, &tags("b"), (100.0, 1.0), 10, None);
        let _ = usage.record(p, &tags("a"), (100.0, 1.0), 20, None);
        let _ = usage.record(p, &tags("c"), (100.0, 1.0), 30, None);
        assert_eq!(usage.sensors(), 2);
        // "b" was dropped: it starts from an empty window.
        assert_eq!(usage.record(p, &tags("b"), (100.0, 100.0), 40, None).ms, 0);
    }

    #[test]
    fn a_throttled_fetch_leaves_no_usage() {
        let mut usage = Usage::new(QuotaWindow::default(), 8);
        let f = QuotaKind::FetchBytes;
        let t = tags("consumer");
        let first = usage.record_unless_throttled(f, &t, (100.0, 150.0), 0);
        assert_eq!((first.ms, first.counted), (500, true));
        let throttled = usage.record_unless_throttled(f, &t, (100.0, 1000.0), 1);
        assert_eq!((throttled.ms, throttled.counted), (499, false));
        // Only the first 150 bytes count: the debt is paid at 500 ms.
        assert_eq!(usage.record(f, &t, (100.0, 0.0), 500, None).ms, 0);
        // Out of debt, even a value far over the burst is counted (and throttled after).
        let big = usage.record_unless_throttled(f, &t, (100.0, 1000.0), 500);
        assert_eq!((big.ms, big.counted), (10_000, true));
    }

    #[test]
    fn the_request_quota_cap_applies() {
        let mut usage = Usage::new(QuotaWindow::default(), 8);
        let r = QuotaKind::RequestPercentage;
        let t = tags("busy");
        let capped = usage.record(r, &t, (1.0, 1e6), 0, Some(1000));
        assert_eq!(capped.ms, 1000);
    }

    #[test]
    fn the_counting_core_is_stable_and_in_range() {
        for cores in 1..8 {
            let core = counting_core(QuotaKind::FetchBytes, &tags("x"), cores);
            assert!(core < cores);
            assert_eq!(
                core,
                counting_core(QuotaKind::FetchBytes, &tags("x"), cores)
            );
        }
    }
}
