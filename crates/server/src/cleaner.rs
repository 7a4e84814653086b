//! Log compaction on one core: the cleaner task (`cleanup.policy=compact`).
//!
//! Each core cleans only the logs it owns, one cleaning at a time, so a cleaning never
//! competes with another core's partitions for that core's CPU. Each round it rolls the
//! active segment of a log whose oldest record is past `max.compaction.lag.ms` (the active
//! segment is never cleaned), then asks every
//! compacted log how dirty it is (`Log::dirtiness`, from memory) and cleans the one that is
//! overdue (`max.compaction.lag.ms`) or else has the largest dirty ratio at or above
//! `min.cleanable.dirty.ratio`; with none due it sleeps `log_cleaner_backoff_ms`. The
//! key -> offset map (this core's share of `log_cleaner_dedupe_buffer_bytes`) is allocated
//! the first time the core cleans and reused. Disk traffic is paced to this core's share of
//! `log_cleaner_io_bytes_per_second_max`. The task runs in a task queue of its own with a
//! tenth of the shares of the request queue and a 1 ms slice, and gives way after each batch
//! (see `benches/RESULTS.md`, "Log compaction", for its effect on produce latency).
//!
//! What a cleaning does to the log, and why a crash during one loses nothing, is the storage
//! crate's (`crates/storage/src/compact.rs`).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shoal_kafka::cluster::TopicPartition;
use shoal_storage::{Compacted, CompactionThrottle, OffsetMap};

use crate::shard::Shard;

/// A log whose cleaning failed or whose first dirty batch does not fit the map is skipped
/// this long before it is tried again (the failure is logged each time).
const FAILED_LOG_BACKOFF: Duration = Duration::from_secs(300);

/// Paces a cleaning's reads and writes to `bytes_per_second` (0: unpaced).
struct Pace {
    bytes_per_second: u64,
    started: Instant,
    spent_bytes: Cell<u64>,
}

impl CompactionThrottle for Pace {
    async fn spent(&self, bytes: u64) {
        let spent = self.spent_bytes.get() + bytes;
        self.spent_bytes.set(spent);
        if self.bytes_per_second > 0 {
            let due = Duration::from_secs_f64(spent as f64 / self.bytes_per_second as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
            }
        }
        // Called after every batch too: the cleaner's queue gives way to the request tasks
        // once its slice (1 ms) is used.
        glommio::yield_if_needed().await;
    }
}

impl Shard {
    /// The logs this core's cleaner looks at: its partitions' (a cluster's replicated
    /// `__consumer_offsets` partitions among them) and a one-node broker's group logs.
    fn cleaner_logs(
        &self,
    ) -> Vec<(
        TopicPartition,
        shoal_storage::Log<crate::metrics::MeteredDisk>,
    )> {
        let mut logs = self.logs_now();
        logs.extend(crate::groups::cleanable_logs());
        logs
    }

    /// The cleaner task of this core (see the module documentation). Runs until the broker
    /// stops.
    pub(crate) async fn log_cleaner(self: Rc<Self>) {
        let backoff = Duration::from_millis(self.config.log_cleaner_backoff_ms.max(10));
        let mut map: Option<OffsetMap> = None;
        let mut skipped_until: HashMap<TopicPartition, Instant> = HashMap::new();
        let io_per_core = self.config.log_cleaner_io_bytes_per_second_max / self.cores as u64;
        while !self.stopping.get() {
            let now = Instant::now();
            skipped_until.retain(|_, until| *until > now);
            for (tp, log) in self.cleaner_logs() {
                if let Err(error) = log.roll_if_compaction_overdue().await {
                    tracing::warn!(%tp, %error, "rolling a segment past max.compaction.lag.ms");
                }
            }
            let candidate = self
                .cleaner_logs()
                .into_iter()
                .filter(|(tp, _)| !skipped_until.contains_key(tp))
                .filter_map(|(tp, log)| {
                    let dirtiness = log.dirtiness().filter(|d| d.due)?;
                    Some((tp, log, dirtiness))
                })
                .max_by(|(_, _, a), (_, _, b)| {
                    (a.overdue, a.ratio())
                        .partial_cmp(&(b.overdue, b.ratio()))
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
            let Some((tp, log, dirtiness)) = candidate else {
                glommio::timer::sleep(backoff).await;
                continue;
            };
            let map = map.get_or_insert_with(|| {
                let bytes = self.config.cleaner_map_bytes_per_core();
                tracing::info!(core = self.id, bytes, "allocating the log cleaner's map");
                OffsetMap::with_budget(bytes)
            });
            let pace = Pace {
                bytes_per_second: io_per_core,
                started: Instant::now(),
                spent_bytes: Cell::new(0),
            };
            let started = Instant::now();
            match log.compact(map, &pace).await {
                Ok(Compacted::Cleaned(report)) => {
                    let metrics = &self.metrics;
                    let _ = metrics.log_cleanings.fetch_add(1, Ordering::Relaxed);
                    let _ = metrics
                        .log_cleaner_bytes_read
                        .fetch_add(report.bytes_before, Ordering::Relaxed);
                    let _ = metrics
                        .log_cleaner_bytes_written
                        .fetch_add(report.bytes_after, Ordering::Relaxed);
                    tracing::info!(%tp, ratio = dirtiness.ratio(), overdue = dirtiness.overdue,
                        segments_before = report.segments_before,
                        segments_after = report.segments_after,
                        bytes_before = report.bytes_before, bytes_after = report.bytes_after,
                        records_read = report.records.records_read,
                        records_kept = report.records.records_kept,
                        clean_up_to = %report.clean_up_to,
                        ms = started.elapsed().as_millis() as u64, "log cleaned");
                }
                Ok(Compacted::NothingDue) | Ok(Compacted::Abandoned) => {}
                Ok(Compacted::MapTooSmall { at, map_capacity }) => {
                    tracing::warn!(%tp, %at, map_capacity,
                        "the batch at this offset has more keys than the log cleaner's map \
                         holds; raise log_cleaner_dedupe_buffer_bytes. The partition is not \
                         cleaned meanwhile");
                    let _ = self
                        .metrics
                        .log_cleaner_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = skipped_until.insert(tp, Instant::now() + FAILED_LOG_BACKOFF);
                }
                Err(error) => {
                    tracing::warn!(%tp, %error, "log cleaning failed; the log is unchanged \
                        unless it went offline");
                    let _ = self
                        .metrics
                        .log_cleaner_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = skipped_until.insert(tp, Instant::now() + FAILED_LOG_BACKOFF);
                }
            }
            // Let the core's requests run between two cleanings.
            glommio::yield_if_needed().await;
        }
    }
}
