//! The read path: batches by offset, from the per-core cache when they are recent, otherwise
//! from the segment through its sparse index with one DMA read plus read-ahead.
//!
//! Reads never go past the high watermark, so they only touch bytes that are written (and, in
//! `Fsync` mode, synced). Every batch read from disk is CRC-checked before it is returned; a
//! mismatch takes the log offline (the data was acknowledged, so this is corruption).
//! Internal entries of a replicated log (`replicated.rs`) are skipped: they are no Kafka
//! data, and only `Log::entries` returns them.

use std::rc::Rc;

use bytes::Bytes;
use shoal_io::{Disk, DmaFile};
use shoal_model::{Offset, TimestampMs};

use crate::batch;
use crate::error::{Error, OfflineReason, Result};
use crate::log::{Log, ReadBatches};
use crate::segment::{path_of, SegmentKey, LOG_SUFFIX};

/// Bytes read beyond what was asked, so a consumer's next fetch is likely served from the same
/// read. Bounded so a read never holds more than this plus `max_bytes`.
const READ_AHEAD_BYTES: usize = 256 * 1024;

/// One disk read in progress, counted in `Inner::disk_reads` while it lives.
pub(crate) struct DiskRead<'a, D: Disk> {
    log: &'a Log<D>,
}

impl<'a, D: Disk> DiskRead<'a, D> {
    pub(crate) fn start(log: &'a Log<D>) -> DiskRead<'a, D> {
        let reads = &log.inner.disk_reads;
        reads.set(reads.get() + 1);
        DiskRead { log }
    }
}

impl<D: Disk> Drop for DiskRead<'_, D> {
    fn drop(&mut self) {
        let reads = &self.log.inner.disk_reads;
        assert!(reads.get() > 0, "disk reads are counted in pairs");
        reads.set(reads.get() - 1);
        if reads.get() == 0 {
            self.log.inner.reads_idle.notify();
        }
    }
}

/// Where a disk read starts and what it may cover.
pub(crate) struct DiskPlan<F> {
    pub(crate) file: Rc<F>,
    pub(crate) stem: String,
    pub(crate) pos: u64,
    pub(crate) end_bytes: u64,
    /// The base offset of the segment after this one, if it starts past the read's offset.
    pub(crate) next_base: Option<Offset>,
}

impl<D: Disk> Log<D> {
    /// Returns whole batches starting with the one that contains `from`, up to `max_bytes`
    /// (always at least one batch when any is visible, as Kafka requires so that a consumer can
    /// make progress past a batch larger than its limit).
    ///
    /// In a replicated log the high watermark is what [`Log::advance_commit`] set: only
    /// committed data is served.
    pub async fn read(&self, from: Offset, max_bytes: usize) -> Result<ReadBatches> {
        self.read_below(from, max_bytes, false).await
    }

    /// [`Log::read`], bounded by the high watermark, or by the written end when `written`
    /// (the log's own replays of producer state, which must see uncommitted data too).
    pub(crate) async fn read_below(
        &self,
        from: Offset,
        max_bytes: usize,
        written: bool,
    ) -> Result<ReadBatches> {
        let (hwm, log_start, log_end, leader_epoch) = {
            let durability = self.inner.config.borrow().durability;
            let state = self.inner.state.borrow();
            if let Some(reason) = &state.offline {
                return Err(Error::Offline(reason.clone()));
            }
            // Paired with the setters: nothing unwritten is ever below the high watermark.
            // (Except under the test-only switch that breaks exactly this rule.)
            assert!(
                crate::fault_switches::serve_above_hwm()
                    || state.high_watermark(durability) <= state.written_next,
                "the high watermark never passes the written end"
            );
            (
                if written {
                    state.written_next
                } else {
                    state.high_watermark(durability)
                },
                state.log_start,
                state.log_end,
                state.term,
            )
        };
        if from < log_start || from > log_end {
            return Err(Error::OffsetOutOfRange {
                requested: from,
                start: log_start,
                end: log_end,
            });
        }
        let mut out = ReadBatches {
            batches: Vec::new(),
            high_watermark: hwm,
            log_start,
            leader_epoch,
        };
        if from >= hwm {
            return Ok(out);
        }
        let mut next = from;
        let mut total = 0usize;
        while next < hwm && (total < max_bytes || out.batches.is_empty()) {
            let Some(hit) = self.inner.cache.get(self.inner.uid, next) else {
                break;
            };
            total += hit.bytes.len();
            next = hit.next_offset;
            out.batches.push(hit.bytes);
        }
        if out.batches.is_empty() {
            self.read_from_disk(from, hwm, max_bytes, &mut out.batches)
                .await?;
        }
        Ok(out)
    }

    /// Reads the batches from the one holding `from` up to (not including) the first one at
    /// or past `hwm`, at least one and then up to `max_bytes`. `from` may be below the log
    /// start (a truncation scans from an index entry there); the caller checked `hwm`.
    pub(crate) async fn read_from_disk(
        &self,
        from: Offset,
        hwm: Offset,
        max_bytes: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<()> {
        // Counted until it returns, so a truncation never shortens a file under this read.
        let _reading = DiskRead::start(self);
        let mut from = from;
        loop {
            let plan = self.plan_disk_read(from);
            let next_base = plan.next_base;
            self.read_segment(plan, from, hwm, max_bytes, out).await?;
            // A compacted segment may end before the next one starts (its last offsets were
            // cleaned out): a read from there continues in the next segment, as Kafka's does.
            match next_base {
                Some(base) if out.is_empty() && base < hwm => from = base,
                _ => return Ok(()),
            }
        }
    }

    /// [`Log::read_from_disk`] within one segment.
    async fn read_segment(
        &self,
        plan: DiskPlan<D::File>,
        from: Offset,
        hwm: Offset,
        max_bytes: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<()> {
        let mut pos = plan.pos;
        let mut total = 0usize;
        while pos < plan.end_bytes && (total < max_bytes || out.is_empty()) {
            let want = max_bytes.saturating_sub(total) + READ_AHEAD_BYTES;
            let len = want.min((plan.end_bytes - pos) as usize);
            let buf = Bytes::from(self.read_bytes(&plan, pos, len).await?);
            let mut at = 0usize;
            while at < buf.len() {
                if at > 0 && buf.len() - at < batch::LENGTH_FIELD_END {
                    break; // The next length field straddles this read.
                }
                let Some(size) = batch::peek_size_bytes(&buf[at..]) else {
                    return Err(self.corrupt(
                        &plan,
                        pos + at as u64,
                        "bad batch length below the high watermark",
                    ));
                };
                let batch_bytes = if at + size <= buf.len() {
                    buf.slice(at..at + size)
                } else if at == 0 {
                    // A batch larger than this read: fetch it whole.
                    Bytes::from(self.read_bytes(&plan, pos, size).await?)
                } else {
                    break; // Continue with a fresh read from this batch's start.
                };
                let header = self.checked_header(&plan, pos + at as u64, &batch_bytes)?;
                at += size;
                if header.next_offset() <= from || header.internal {
                    continue;
                }
                if header.base_offset >= hwm || (total >= max_bytes && !out.is_empty()) {
                    return Ok(());
                }
                total += size;
                out.push(batch_bytes);
            }
            pos += at as u64;
        }
        Ok(())
    }

    fn plan_disk_read(&self, from: Offset) -> DiskPlan<D::File> {
        let state = self.inner.state.borrow();
        // The last segment starting at or before `from`: in a replicated log, of those that
        // start at `from` (earlier ones hold internal entries only), the one holding its data.
        // In a compacted log the log start may lie in a gap before the first segment (an
        // emptied segment was removed): a read from there starts in the first segment.
        let (&key, segment) = state
            .segments
            .range(..=SegmentKey::up_to(from))
            .next_back()
            .or_else(|| state.segments.iter().next())
            .expect("a log always has an active segment");
        let is_active = key == state.active().key();
        let end_bytes = if is_active {
            state.writer.written_bytes
        } else {
            segment.size_bytes
        };
        let pos = segment.index.lookup(from).map_or(0, |(_, pos)| pos);
        let next_base = state
            .segments
            .range(key..)
            .nth(1)
            .map(|(next, _)| next.base)
            .filter(|&base| base > from);
        DiskPlan {
            file: segment.file.clone(),
            stem: segment.stem(),
            pos,
            end_bytes,
            next_base,
        }
    }

    pub(crate) async fn read_bytes(
        &self,
        plan: &DiskPlan<D::File>,
        pos: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        match plan.file.read_at(pos, len).await {
            Ok(bytes) if bytes.len() == len => Ok(bytes),
            Ok(bytes) => Err(self.corrupt(
                plan,
                pos,
                &format!("short read: {} of {len} bytes", bytes.len()),
            )),
            Err(error) => Err(self.offline_io(
                "read",
                path_of(&self.inner.dir, &plan.stem, LOG_SUFFIX),
                &error,
            )),
        }
    }

    pub(crate) fn checked_header(
        &self,
        plan: &DiskPlan<D::File>,
        pos: u64,
        bytes: &[u8],
    ) -> Result<batch::BatchHeader> {
        batch::validate(bytes).map_err(|defect| self.corrupt(plan, pos, defect.describe()))
    }

    pub(crate) fn corrupt(&self, plan: &DiskPlan<D::File>, pos: u64, what: &str) -> Error {
        let path = path_of(&self.inner.dir, &plan.stem, LOG_SUFFIX);
        self.go_offline(OfflineReason::corruption(
            path,
            format!("at byte {pos}: {what}"),
        ));
        Error::Offline(self.offline_reason().expect("just set"))
    }

    /// Kafka ListOffsets by timestamp: the first batch (below the high watermark) whose max
    /// timestamp is at or after `target`, as (its base offset, its max timestamp). Record-level
    /// precision inside a batch needs record decoding, which belongs to the broker.
    pub async fn offset_for_timestamp(
        &self,
        target: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>> {
        let start = {
            let state = self.inner.state.borrow();
            let Some(segment) = state
                .segments
                .values()
                .find(|s| s.max_timestamp.is_some_and(|ts| ts >= target))
            else {
                return Ok(None);
            };
            let hint = segment.index.lookup_time(target).unwrap_or(segment.base);
            hint.max(state.log_start)
        };
        let mut next = start;
        loop {
            let page = self.read(next, 1024 * 1024).await?;
            if page.batches.is_empty() {
                return Ok(None);
            }
            for bytes in &page.batches {
                let header = batch::validate(bytes).expect("read returns validated batches");
                if header.max_timestamp >= target {
                    return Ok(Some((header.base_offset.max(next), header.max_timestamp)));
                }
                next = header.next_offset();
            }
        }
    }

    /// Kafka ListOffsets MAX_TIMESTAMP: the visible batch holding the largest timestamp, as
    /// (its base offset, that timestamp).
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, TimestampMs)>> {
        let max = self
            .inner
            .state
            .borrow()
            .segments
            .values()
            .filter_map(|s| s.max_timestamp)
            .max();
        match max {
            Some(max) => self.offset_for_timestamp(max).await,
            None => Ok(None),
        }
    }
}
