//! Latency histograms (HDR, microseconds) and counters shared between a worker thread and the
//! once-a-second reporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded: 5 minutes in µs (larger values are clamped).
const MAX_US: u64 = 300_000_000;

pub(crate) fn new_hist() -> Histogram<u64> {
    // 3 significant digits: p99.99 is read to 0.1%.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

pub(crate) fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// One kind of latency: the histogram of the current second and that of the measured window.
pub(crate) struct Pair {
    pub(crate) interval: Histogram<u64>,
    pub(crate) total: Histogram<u64>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            interval: new_hist(),
            total: new_hist(),
        }
    }

    pub(crate) fn record(&mut self, us: u64, measured: bool) {
        record(&mut self.interval, us);
        if measured {
            record(&mut self.total, us);
        }
    }
}

/// Everything one producer or consumer thread records.
pub(crate) struct WorkerStats {
    pub(crate) latency: Mutex<Pair>,
    /// Producers only: how late each send was against its schedule (fixed-rate runs).
    pub(crate) send_delay: Mutex<Pair>,
    /// Records sent (producers) or received (consumers), since start.
    pub(crate) records: AtomicU64,
    /// Records acknowledged (producers) since start.
    pub(crate) acked: AtomicU64,
    /// Within the measured window: records and bytes acknowledged / received.
    pub(crate) window_records: AtomicU64,
    pub(crate) window_bytes: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl WorkerStats {
    pub(crate) fn new() -> Self {
        WorkerStats {
            latency: Mutex::new(Pair::new()),
            send_delay: Mutex::new(Pair::new()),
            records: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            window_records: AtomicU64::new(0),
            window_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    pub(crate) fn count_window(&self, bytes: u64) {
        self.window_records.fetch_add(1, Ordering::Relaxed);
        self.window_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Takes and resets the interval histograms of all workers, merged; optionally the totals.
pub(crate) fn drain_interval(workers: &[std::sync::Arc<WorkerStats>]) -> Histogram<u64> {
    let mut merged = new_hist();
    for w in workers {
        if let Ok(mut pair) = w.latency.lock() {
            let _ = merged.add(&pair.interval);
            pair.interval.reset();
        }
    }
    merged
}

pub(crate) fn merge_totals(
    workers: &[std::sync::Arc<WorkerStats>],
    pick: impl Fn(&WorkerStats) -> &Mutex<Pair>,
) -> Histogram<u64> {
    let mut merged = new_hist();
    for w in workers {
        if let Ok(pair) = pick(w).lock() {
            let _ = merged.add(&pair.total);
        }
    }
    merged
}

pub(crate) fn sum(
    workers: &[std::sync::Arc<WorkerStats>],
    pick: impl Fn(&WorkerStats) -> u64,
) -> u64 {
    workers.iter().map(|w| pick(w)).sum()
}

/// The percentiles every report shows, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) mean_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) p9999_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        p9999_ms: ms(h.value_at_quantile(0.9999)),
        max_ms: ms(h.max()),
    }
}

/// The latency distribution as (quantile, ms) points for the percentile plot: quantiles
/// 1 - 10^-k/8 steps up to the highest the sample count supports.
pub(crate) fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let n = h.len() as f64;
    let mut k = 0.0f64;
    while k <= 6.0 {
        let q = 1.0 - 10f64.powf(-k);
        // Beyond 1/n the quantile is the max: stop there.
        if (1.0 - q) * n < 1.0 {
            out.push((1.0 - 1.0 / n, h.max() as f64 / 1000.0));
            break;
        }
        out.push((q, h.value_at_quantile(q) as f64 / 1000.0));
        k += 0.125;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_sample() {
        let mut h = new_hist();
        for us in 1..=100_000u64 {
            record(&mut h, us);
        }
        let p = percentiles(&h);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.p9999_ms - 99.99).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        let d = distribution(&h);
        assert!(d.len() > 30);
        assert!(d.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
