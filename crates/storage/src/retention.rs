//! Retention, DeleteRecords, index checkpoints and clean close.
//!
//! Segments are deleted whole, oldest first, and only when sealed (retention rolls an expired
//! active segment first). The log start offset is
//! persisted in `log_start_offset` (written atomically) *before* segment files are removed, so
//! a crash in between leaves files that recovery deletes again, never a log that starts earlier
//! than a completed DeleteRecords said.
//!
//! In a replicated log only committed entries go: a segment is removed only when its every
//! entry is at or below the index the high watermark stands for (`Log::advance_commit`), so
//! retention never takes an entry Raft may still cut or need to replicate as uncommitted.
//! Whole sealed segments leave from the front and `Log::first_index` moves up with them;
//! the term of the last removed entry is remembered (in memory) for raft-rs's
//! `term(first_index - 1)`. A follower that needs entries below the first index gets a
//! snapshot from its leader (the consensus crate's part).

use shoal_io::Disk;
use shoal_model::{Offset, TimestampMs};

use crate::error::{Error, Result};
use crate::index::IndexCheckpoint;
use crate::log::{Log, State};
use crate::producers::{last_sequence, BatchRange, ProducerStates};
use crate::roll::RECYCLE_DIR;
use crate::segment::{
    decode_offset_file, encode_offset_file, path_of, read_small_file, write_small_file, Segment,
    SegmentKey, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

pub(crate) const LOG_START_FILE: &str = "log_start_offset";
pub(crate) const PRODUCER_SNAPSHOT_FILE: &str = "producer_state.snapshot";
const LOG_START_MAGIC: &[u8; 4] = b"SHLS";

pub(crate) fn encode_log_start(offset: Offset) -> Vec<u8> {
    encode_offset_file(LOG_START_MAGIC, offset)
}

pub(crate) fn decode_log_start(bytes: &[u8]) -> Option<Offset> {
    decode_offset_file(LOG_START_MAGIC, bytes)
}

/// Whether every entry of `segment` is committed (always true in a plain log).
fn committed_whole<F: shoal_io::DmaFile>(state: &State<F>, segment: &Segment<F>) -> bool {
    match (&state.raft, segment.next_index()) {
        (Some(raft), Some(next)) => next.0 <= raft.hw_index + 1,
        _ => true,
    }
}

impl<D: Disk> Log<D> {
    /// Kafka DeleteRecords: advances the log start offset to `before` (which must not pass the
    /// high watermark) and deletes the segments wholly below it. Returns the new log start.
    pub async fn delete_records(&self, before: Offset) -> Result<Offset> {
        let _permit = self.inner.placement.acquire(1).await;
        let offsets = self.offsets();
        if before < Offset(0) || before > offsets.high_watermark {
            return Err(Error::OffsetOutOfRange {
                requested: before,
                start: offsets.log_start,
                end: offsets.high_watermark,
            });
        }
        if before > offsets.log_start {
            self.set_log_start(before).await?;
        }
        self.delete_segments_below_start().await?;
        Ok(self.offsets().log_start)
    }

    /// Applies `retention.bytes` and `retention.ms` as Kafka does: oldest first, it deletes
    /// each segment whose newest record is older than `retention.ms`, or whose removal still
    /// leaves the log at least `retention.bytes` large, and stops at the first that stays. The
    /// active segment is a candidate too once it holds data and all of it is visible (below
    /// the high watermark): a fresh segment is rolled first and the old one deleted, so a
    /// partition that stopped receiving data still loses what expired.
    pub async fn enforce_retention(&self) -> Result<()> {
        let _permit = self.inner.placement.acquire(1).await;
        let (new_start, roll_first) = {
            let config = self.inner.config.borrow();
            let state = self.inner.state.borrow();
            let now_ms = self.inner.clock.now_ms();
            let all_visible = state.high_watermark(config.durability) == state.log_end
                && state
                    .raft
                    .as_ref()
                    .is_none_or(|raft| raft.hw_index + 1 == state.next_index);
            let mut size: u64 = state.segments.values().map(|s| s.size_bytes).sum();
            let (mut new_start, mut roll_first) = (None, false);
            let last = state.segments.len() - 1;
            for (i, segment) in state.segments.values().enumerate() {
                let active = i == last;
                if active && (segment.is_empty() || !all_visible) {
                    break;
                }
                if !committed_whole(&state, segment) {
                    break;
                }
                let over_bytes = config
                    .retention_bytes
                    .is_some_and(|max| size.saturating_sub(segment.size_bytes) >= max);
                let newest = segment.max_timestamp.unwrap_or(TimestampMs(i64::MIN));
                let expired = config
                    .retention_ms
                    .is_some_and(|max| now_ms.saturating_sub(newest.0) > max as i64);
                if !(over_bytes || expired) {
                    break;
                }
                size -= segment.size_bytes;
                new_start = Some(segment.next_offset);
                roll_first = active;
            }
            (
                new_start.filter(|&start| start > state.log_start),
                roll_first,
            )
        };
        if roll_first {
            // The log always keeps an active segment: start the next one before the old goes.
            self.roll().await?;
        }
        if let Some(start) = new_start {
            self.set_log_start(start).await?;
        }
        self.delete_segments_below_start().await
    }

    async fn set_log_start(&self, start: Offset) -> Result<()> {
        let bytes = encode_log_start(start);
        if let Err(error) =
            write_small_file(&*self.inner.disk, &self.inner.dir, LOG_START_FILE, &bytes).await
        {
            return Err(self.offline_io(
                "persist log start offset",
                self.inner.dir.join(LOG_START_FILE),
                &error,
            ));
        }
        self.inner.state.borrow_mut().log_start = start;
        Ok(())
    }

    /// Removes sealed segments whose every offset is below the log start offset (in a
    /// replicated log, oldest first and only while every entry of them is committed).
    pub(crate) async fn delete_segments_below_start(&self) -> Result<()> {
        let doomed: Vec<String> = {
            let mut state = self.inner.state.borrow_mut();
            let log_start = state.log_start;
            let active_key = state.active().key();
            let keys: Vec<SegmentKey> = state
                .segments
                .values()
                .take_while(|s| committed_whole(&state, s))
                .filter(|s| s.key() != active_key && s.next_offset <= log_start)
                .map(|s| s.key())
                .collect();
            let removed: Vec<_> = keys
                .into_iter()
                .filter_map(|key| state.segments.remove(&key))
                .collect();
            if let (Some(raft), Some(last)) = (state.raft.as_mut(), removed.last()) {
                let next = last.next_index().expect("a replicated segment");
                raft.removed_last = Some((next.0 - 1, last.term));
            }
            removed.iter().map(|s| s.stem()).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for stem_name in &doomed {
            if let Err(error) = self.remove_segment_files(stem_name).await {
                return Err(self.offline_io(
                    "delete segment",
                    path_of(&self.inner.dir, stem_name, LOG_SUFFIX),
                    &error,
                ));
            }
        }
        if let Err(error) = self.inner.disk.sync_dir(&self.inner.dir).await {
            return Err(self.offline_io("sync directory", self.inner.dir.clone(), &error));
        }
        self.inner.state.borrow_mut().stats.segments_deleted += doomed.len() as u64;
        Ok(())
    }

    pub(crate) async fn remove_segment_files(&self, stem_name: &str) -> std::io::Result<()> {
        let disk = &*self.inner.disk;
        let dir = &self.inner.dir;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            match disk.remove(&path_of(dir, stem_name, suffix)).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let log_path = path_of(dir, stem_name, LOG_SUFFIX);
        let recycled_max = self.inner.config.borrow().recycled_segments_max;
        if recycled_max > 0 {
            let recycle = dir.join(RECYCLE_DIR);
            disk.create_dir_all(&recycle).await?;
            let held = disk.list(&recycle).await?.len();
            if held < recycled_max {
                disk.rename(&log_path, &recycle.join(format!("{stem_name}{LOG_SUFFIX}")))
                    .await?;
                return disk.sync_dir(&recycle).await;
            }
        }
        disk.remove(&log_path).await
    }

    /// Writes the active segment's index files with the synced position, so that recovery
    /// scans only from the last entry and knows which bytes were synced (corruption there is
    /// reported, not truncated). Called periodically by the owner and at close.
    pub async fn checkpoint(&self) -> Result<()> {
        let _permit = self.inner.placement.acquire(1).await;
        let (stem_name, mut index, checkpoint) = {
            let state = self.inner.state.borrow();
            if let Some(reason) = &state.offline {
                return Err(Error::Offline(reason.clone()));
            }
            let active = state.active();
            let synced = state.writer.synced_bytes;
            let checkpoint = IndexCheckpoint {
                covered_bytes: synced,
                next_offset: state.synced_next.min(active.next_offset).max(active.base),
                max_timestamp: active.max_timestamp.unwrap_or(TimestampMs(-1)),
                // The batches below `covered_bytes`: those synced, of this segment.
                batches: active.first_index.map_or(0, |first| {
                    state
                        .synced_next_index
                        .saturating_sub(first.0)
                        .min(active.batches)
                }),
            };
            (active.stem(), active.index.clone(), checkpoint)
        };
        index.truncate_at(checkpoint.covered_bytes);
        self.write_index_files(&stem_name, &index, checkpoint)
            .await?;
        self.snapshot_producers().await
    }

    /// Expires idle producers and writes the producer state snapshot, valid for the log up to
    /// its current end (recovery discards it if the log ends up shorter after a crash).
    async fn snapshot_producers(&self) -> Result<()> {
        {
            let idle_ms_max = self.inner.config.borrow().producer_id_expiration_ms;
            let now_ms = self.inner.clock.now_ms();
            self.inner
                .state
                .borrow_mut()
                .producers
                .expire(now_ms, idle_ms_max);
        }
        self.write_producer_snapshot().await
    }

    /// Writes the producer state snapshot as it is, covering the log up to its current end.
    pub(crate) async fn write_producer_snapshot(&self) -> Result<()> {
        let bytes = {
            let state = self.inner.state.borrow();
            state.producers.encode(state.log_end)
        };
        let disk = &*self.inner.disk;
        if let Err(error) =
            write_small_file(disk, &self.inner.dir, PRODUCER_SNAPSHOT_FILE, &bytes).await
        {
            let path = self.inner.dir.join(PRODUCER_SNAPSHOT_FILE);
            return Err(self.offline_io("write producer snapshot", path, &error));
        }
        Ok(())
    }

    /// Rebuilds the idempotent producer state at open: the snapshot, if it is valid for this
    /// log, then every batch after it (batches carry producer id, epoch and sequence).
    pub(crate) async fn rebuild_producers(&self) -> Result<()> {
        let (states, next) = self.producer_snapshot().await;
        let states = self.replay_producers(states, next, None).await?;
        self.inner.state.borrow_mut().producers = states;
        Ok(())
    }

    /// The saved producer state and the offset it covers the log to, if it is valid for this
    /// log as it is now (covering no more than its end); else empty state from the log start.
    pub(crate) async fn producer_snapshot(&self) -> (ProducerStates, Offset) {
        let path = self.inner.dir.join(PRODUCER_SNAPSHOT_FILE);
        let saved = read_small_file(&*self.inner.disk, &path)
            .await
            .ok()
            .flatten();
        let offsets = self.offsets();
        match saved.as_deref().and_then(ProducerStates::decode) {
            Some((states, covered))
                if covered <= offsets.log_end && covered >= offsets.log_start =>
            {
                (states, covered)
            }
            _ => (ProducerStates::default(), offsets.log_start),
        }
    }

    /// Records into `states` every idempotent batch from `next` to the log end (of the
    /// producers in `only`, if given): one read of that range of the log.
    pub(crate) async fn replay_producers(
        &self,
        mut states: ProducerStates,
        mut next: Offset,
        only: Option<&std::collections::BTreeSet<i64>>,
    ) -> Result<ProducerStates> {
        let offsets = self.offsets();
        let now_ms = self.inner.clock.now_ms();
        while next < offsets.log_end {
            // Bounded by the written end, not the high watermark: a replicated log's producer
            // state covers its uncommitted entries too (in a plain log both are the log end
            // here: replays run at open and after a drain).
            let page = self.read_below(next, 1 << 20, true).await?;
            if page.batches.is_empty() {
                break;
            }
            for bytes in &page.batches {
                let header = crate::batch::validate(bytes).expect("read returns validated batches");
                next = header.next_offset();
                if header.producer_id < 0 || header.next_offset() <= offsets.log_start {
                    continue;
                }
                if only.is_some_and(|ids| !ids.contains(&header.producer_id)) {
                    continue;
                }
                let range = BatchRange {
                    first_sequence: header.base_sequence,
                    last_sequence: last_sequence(header.base_sequence, header.offset_count),
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                };
                states.record(header.producer_id, header.producer_epoch, range, now_ms);
            }
        }
        Ok(states)
    }

    /// Syncs everything, checkpoints the indexes and stops the flusher. Later calls fail with
    /// [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        let _ = self.sync().await?;
        self.checkpoint().await?;
        self.inner.state.borrow_mut().closed = true;
        self.inner.cache.remove_log(self.inner.uid);
        self.inner.work.notify();
        self.inner.progress.notify();
        Ok(())
    }
}
