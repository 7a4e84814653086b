//! Per-core metrics, exported in Prometheus text format by the admin endpoint.
//!
//! Each core writes only its own `CoreMetrics` (relaxed atomics, no locks, no shared cache
//! lines written by two cores); the admin endpoint on core 0 reads all of them when scraped.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shoal_runtime::ObservedDisk;

/// Upper bounds (µs) of the latency histogram buckets; the last bucket is +Inf. Dense between
/// 0.1 and 5 ms, where an fdatasync on a fast disk and a produce round trip land, so a p99
/// read off the buckets can tell a 1 ms tail from a 2 ms one.
const BUCKETS_US: [u64; 22] = [
    50, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
    25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];
/// Kafka API keys are below this (the codec knows ~90).
const API_KEYS_MAX: usize = 96;

#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(crate) fn record_us(&self, us: u64) {
        let slot = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        let _ = self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let _ = self.sum_us.fetch_add(us, Ordering::Relaxed);
        let _ = self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Renders the buckets, sum and count; `labels` may be empty (`a="b",c="d"` otherwise).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let mut cumulative = 0;
        for (slot, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[slot].load(Ordering::Relaxed);
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}\n",
                *bound as f64 / 1e6
            ));
        }
        cumulative += self.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}\n"
        ));
        out.push_str(&format!(
            "{name}_sum{braced} {}\n",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "{name}_count{braced} {}\n",
            self.count.load(Ordering::Relaxed)
        ));
    }
}

pub(crate) struct CoreMetrics {
    /// The shard id (mesh peer id) of the core, set once it joined the mesh.
    pub(crate) shard: AtomicUsize,
    requests: Vec<AtomicU64>,
    request_latency: Vec<Histogram>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections: AtomicU64,
    /// Connections closed at once because the core held `connections_max` / cores.
    pub(crate) connections_refused: AtomicU64,
    /// Bytes of request frames this core holds (read, not yet answered).
    pub(crate) request_bytes_inflight: AtomicU64,
    /// O_DSYNC writes and fdatasyncs: the device's durability latency as the engine sees it.
    pub(crate) durable_io_latency: Histogram,
    pub(crate) pool_used_bytes: AtomicU64,
    pub(crate) pool_budget_bytes: AtomicU64,
    pub(crate) cache_used_bytes: AtomicU64,
    pub(crate) partitions: AtomicU64,
    /// This core's fetch sessions (KIP-227), copied from its cache once a second.
    pub(crate) fetch_sessions: AtomicU64,
    /// Fetches by kind, as the session cache served them: full (a session opened or asked
    /// for), incremental, sessionless, refused with a session error.
    pub(crate) fetches: [AtomicU64; FETCH_KINDS.len()],
    pub(crate) fetch_sessions_opened: AtomicU64,
    pub(crate) fetch_sessions_evicted: AtomicU64,
    /// Full fetches that asked for a session and got none: the cache was full.
    pub(crate) fetch_sessions_refused: AtomicU64,
    /// Log compaction (`cleaner.rs`): cleanings done, bytes of segments they read and wrote,
    /// cleanings that failed or could not run (the map too small).
    pub(crate) log_cleanings: AtomicU64,
    pub(crate) log_cleaner_bytes_read: AtomicU64,
    pub(crate) log_cleaner_bytes_written: AtomicU64,
    pub(crate) log_cleaner_failures: AtomicU64,
    /// Client quotas (`quotas.rs`): responses that carried a throttle time, and the sum of
    /// those times (the connection was muted that long).
    pub(crate) quota_throttled_responses: AtomicU64,
    pub(crate) quota_throttle_ms: AtomicU64,
}

/// The `kind` label of `shoal_fetch_requests_total`, in the order of `CoreMetrics::fetches`.
pub(crate) const FETCH_KINDS: [&str; 4] = ["full", "incremental", "sessionless", "session_error"];

impl CoreMetrics {
    pub(crate) fn new() -> CoreMetrics {
        CoreMetrics {
            shard: AtomicUsize::new(usize::MAX),
            requests: (0..API_KEYS_MAX).map(|_| AtomicU64::new(0)).collect(),
            request_latency: (0..API_KEYS_MAX).map(|_| Histogram::default()).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            request_bytes_inflight: AtomicU64::new(0),
            durable_io_latency: Histogram::default(),
            pool_used_bytes: AtomicU64::new(0),
            pool_budget_bytes: AtomicU64::new(0),
            cache_used_bytes: AtomicU64::new(0),
            partitions: AtomicU64::new(0),
            fetch_sessions: AtomicU64::new(0),
            fetches: Default::default(),
            fetch_sessions_opened: AtomicU64::new(0),
            fetch_sessions_evicted: AtomicU64::new(0),
            fetch_sessions_refused: AtomicU64::new(0),
            log_cleanings: AtomicU64::new(0),
            log_cleaner_bytes_read: AtomicU64::new(0),
            log_cleaner_bytes_written: AtomicU64::new(0),
            log_cleaner_failures: AtomicU64::new(0),
            quota_throttled_responses: AtomicU64::new(0),
            quota_throttle_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn record_request(&self, api_key: i16, started: Instant) {
        let Some(slot) = usize::try_from(api_key).ok().filter(|&k| k < API_KEYS_MAX) else {
            return;
        };
        let _ = self.requests[slot].fetch_add(1, Ordering::Relaxed);
        self.request_latency[slot].record_us(started.elapsed().as_micros() as u64);
    }

    /// Copies the counts of this core's fetch-session cache.
    pub(crate) fn record_fetch_sessions(
        &self,
        sessions: &shoal_kafka::fetch_session::FetchSessions,
    ) {
        let counts = sessions.counts();
        let kinds = [
            counts.full,
            counts.incremental,
            counts.sessionless,
            counts.errors,
        ];
        for (slot, count) in self.fetches.iter().zip(kinds) {
            slot.store(count, Ordering::Relaxed);
        }
        self.fetch_sessions
            .store(sessions.len() as u64, Ordering::Relaxed);
        self.fetch_sessions_opened
            .store(counts.opened, Ordering::Relaxed);
        self.fetch_sessions_evicted
            .store(counts.evicted, Ordering::Relaxed);
        self.fetch_sessions_refused
            .store(counts.refused, Ordering::Relaxed);
    }
}

/// A per-core series: name, Prometheus type, how to read it.
type Series = (&'static str, &'static str, fn(&CoreMetrics) -> u64);

/// Renders every core's metrics.
pub(crate) fn render(cores: &[Arc<CoreMetrics>]) -> String {
    let mut out = String::new();
    let gauges: [Series; 20] = [
        ("shoal_bytes_in_total", "counter", |m| {
            m.bytes_in.load(Ordering::Relaxed)
        }),
        ("shoal_bytes_out_total", "counter", |m| {
            m.bytes_out.load(Ordering::Relaxed)
        }),
        ("shoal_connections", "gauge", |m| {
            m.connections.load(Ordering::Relaxed)
        }),
        ("shoal_connections_refused_total", "counter", |m| {
            m.connections_refused.load(Ordering::Relaxed)
        }),
        ("shoal_request_bytes_inflight", "gauge", |m| {
            m.request_bytes_inflight.load(Ordering::Relaxed)
        }),
        ("shoal_buffer_pool_used_bytes", "gauge", |m| {
            m.pool_used_bytes.load(Ordering::Relaxed)
        }),
        ("shoal_buffer_pool_budget_bytes", "gauge", |m| {
            m.pool_budget_bytes.load(Ordering::Relaxed)
        }),
        ("shoal_batch_cache_used_bytes", "gauge", |m| {
            m.cache_used_bytes.load(Ordering::Relaxed)
        }),
        ("shoal_partitions", "gauge", |m| {
            m.partitions.load(Ordering::Relaxed)
        }),
        ("shoal_fetch_sessions", "gauge", |m| {
            m.fetch_sessions.load(Ordering::Relaxed)
        }),
        ("shoal_fetch_sessions_opened_total", "counter", |m| {
            m.fetch_sessions_opened.load(Ordering::Relaxed)
        }),
        ("shoal_fetch_sessions_evicted_total", "counter", |m| {
            m.fetch_sessions_evicted.load(Ordering::Relaxed)
        }),
        ("shoal_fetch_sessions_refused_total", "counter", |m| {
            m.fetch_sessions_refused.load(Ordering::Relaxed)
        }),
        ("shoal_quota_throttled_responses_total", "counter", |m| {
            m.quota_throttled_responses.load(Ordering::Relaxed)
        }),
        ("shoal_quota_throttle_ms_total", "counter", |m| {
            m.quota_throttle_ms.load(Ordering::Relaxed)
        }),
        ("shoal_log_cleanings_total", "counter", |m| {
            m.log_cleanings.load(Ordering::Relaxed)
        }),
        ("shoal_log_cleaner_read_bytes_total", "counter", |m| {
            m.log_cleaner_bytes_read.load(Ordering::Relaxed)
        }),
        ("shoal_log_cleaner_written_bytes_total", "counter", |m| {
            m.log_cleaner_bytes_written.load(Ordering::Relaxed)
        }),
        ("shoal_log_cleaner_failures_total", "counter", |m| {
            m.log_cleaner_failures.load(Ordering::Relaxed)
        }),
        ("shoal_requests_total_all", "counter", |m| {
            m.requests.iter().map(|r| r.load(Ordering::Relaxed)).sum()
        }),
    ];
    for (name, kind, read) in gauges {
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for core in cores {
            out.push_str(&format!(
                "{name}{{core=\"{}\"}} {}\n",
                core.shard.load(Ordering::Relaxed),
                read(core)
            ));
        }
    }
    out.push_str("# TYPE shoal_requests_total counter\n");
    for core in cores {
        let shard = core.shard.load(Ordering::Relaxed);
        for (key, count) in core.requests.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                out.push_str(&format!(
                    "shoal_requests_total{{core=\"{shard}\",api=\"{}\"}} {count}\n",
                    api_name(key)
                ));
            }
        }
    }
    out.push_str("# TYPE shoal_fetch_requests_total counter\n");
    for core in cores {
        let shard = core.shard.load(Ordering::Relaxed);
        for (kind, count) in FETCH_KINDS.iter().zip(&core.fetches) {
            out.push_str(&format!(
                "shoal_fetch_requests_total{{core=\"{shard}\",kind=\"{kind}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
    }
    out.push_str("# TYPE shoal_request_latency_seconds histogram\n");
    for core in cores {
        let shard = core.shard.load(Ordering::Relaxed);
        for (key, histogram) in core.request_latency.iter().enumerate() {
            if histogram.count.load(Ordering::Relaxed) > 0 {
                histogram.render(
                    &mut out,
                    "shoal_request_latency_seconds",
                    &format!("core=\"{shard}\",api=\"{}\"", api_name(key)),
                );
            }
        }
    }
    out.push_str("# TYPE shoal_durable_write_latency_seconds histogram\n");
    for core in cores {
        let labels = format!("core=\"{}\"", core.shard.load(Ordering::Relaxed));
        core.durable_io_latency
            .render(&mut out, "shoal_durable_write_latency_seconds", &labels);
    }
    out
}

fn api_name(key: usize) -> String {
    i16::try_from(key)
        .ok()
        .and_then(|k| kafka_protocol::messages::ApiKey::try_from(k).ok())
        .map_or_else(|| key.to_string(), |k| format!("{k:?}"))
}

/// The glommio disk with every durable operation's latency recorded in this core's metrics.
pub(crate) type MeteredDisk = ObservedDisk;

pub(crate) fn metered_disk(metrics: Arc<CoreMetrics>) -> MeteredDisk {
    ObservedDisk::new(Rc::new(move |started: Instant, finished: Instant| {
        metrics
            .durable_io_latency
            .record_us(finished.duration_since(started).as_micros() as u64);
    }))
}
