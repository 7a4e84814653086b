//! One partition's log: appends, the flusher (group commit), reads, rolls, retention.
//!
//! A `Log` is owned by the core that owns the partition; it is `!Send` and every method runs
//! on that core. Offsets are assigned here and nowhere else, in arrival order.
//!
//! ## When an append completes, and what is on the device then
//! 1. [`Log::append`] validates the batch (framing, CRC32C) and waits, in arrival order, for
//!    room in a write chunk (pages leased from the per-core [`BufferPool`]).
//! 2. It stamps the base offset and term into the batch and copies it into the chunk. The
//!    batch is now *buffered*: in memory only. `Wait::Buffered` returns here (acks=0).
//! 3. The log's flusher task ([`Log::run_flusher`]) writes chunks in order with O_DIRECT.
//!    When a write completes the batch is *written*: it survives kill -9, not a power loss.
//! 4. In `Durability::Fsync` the flusher then calls `fdatasync`; when it returns, every batch
//!    written before the call is *synced* and survives a power loss. Batches that arrived while
//!    that sync was in flight are written and synced together in the next round: one
//!    `fdatasync` for many batches (group commit).
//!
//! `Wait::Durable` returns at 4 in `Fsync` mode and at 3 in `Relaxed` mode; the returned
//! [`Appended::guarantee`] says which one was reached. The high watermark (what readers see)
//! is the synced end in `Fsync` mode and the written end in `Relaxed` mode, so a consumer never
//! reads a batch that a crash could take back under the topic's contract.
//!
//! A failed write, sync, truncate or allocation takes the log offline: every waiter and every
//! later call gets [`Error::Offline`] with the reason. Nothing is retried on the same file.
//!
//! [`Log::truncate_suffix`] (`truncate.rs`) is the one operation that moves the log end, and
//! with it the high watermark, back: see its documentation for when that is durable.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use shoal_io::{Clock, Disk, DmaFile};
use shoal_model::{Offset, Term};

use crate::batch;
use crate::cache::{BatchCache, CachedBatch, LogUid};
use crate::config::{Durability, Fallocation, LogConfig};
use crate::error::{Error, OfflineReason, Result};
use crate::pool::BufferPool;
use crate::producers::{last_sequence, BatchRange, ProducerStates, SequenceError, Verdict};
use crate::replicated::{EntryMeta, RaftState};
use crate::segment::{Segment, SegmentKey};
use crate::sync::{Event, FifoSemaphore};
use crate::writer::Writer;

/// How long [`Log::append`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return once the batch has an offset and is in memory (Kafka acks=0).
    Buffered,
    /// Return once the topic's durability mode is met (acks=1 and acks=all).
    Durable,
}

/// What a completed append reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Guarantee {
    /// In memory only: lost on a crash.
    Buffered,
    /// DMA write completed: survives kill -9, not a power loss.
    Written,
    /// Covered by a completed fdatasync: survives a power loss.
    Synced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub guarantee: Guarantee,
    /// The log start offset when the batch was placed (Kafka's Produce `log_start_offset`).
    pub log_start: Offset,
}

/// Batches returned by [`Log::read`], each a complete stored batch (CRC verified).
#[derive(Clone, Debug, Default)]
pub struct ReadBatches {
    pub batches: Vec<Bytes>,
    pub high_watermark: Offset,
    pub log_start: Offset,
    /// The log's leader epoch when it was read (KIP-320 fencing of readers).
    pub leader_epoch: Term,
}

/// Counters for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogStats {
    pub appends: u64,
    pub dma_writes: u64,
    pub syncs: u64,
    pub rolls: u64,
    /// Segments deleted by retention, DeleteRecords and suffix truncation.
    pub segments_deleted: u64,
    /// Completed [`Log::truncate_suffix`] calls that removed data.
    pub truncations: u64,
    /// Bytes of stored batches those truncations removed.
    pub bytes_truncated: u64,
}

/// Offsets of one log, as Kafka reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start: Offset,
    /// What readers may see (synced end in Fsync mode, written end in Relaxed mode).
    pub high_watermark: Offset,
    /// The next offset to assign.
    pub log_end: Offset,
    /// The current leader epoch (the term appends are stamped with).
    pub leader_epoch: Term,
    /// The epoch of the oldest data: the first segment's term (Kafka's earliest epoch entry).
    pub log_start_epoch: Term,
}

pub struct Log<D: Disk> {
    pub(crate) inner: Rc<Inner<D>>,
}

impl<D: Disk> Clone for Log<D> {
    fn clone(&self) -> Self {
        Log {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<D: Disk> {
    pub(crate) disk: Rc<D>,
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) dir: PathBuf,
    pub(crate) config: RefCell<LogConfig>,
    pub(crate) pool: BufferPool,
    pub(crate) cache: BatchCache,
    pub(crate) uid: LogUid,
    /// A replicated log (`replicated.rs`): the Raft log of a partition group. Fixed at open.
    pub(crate) replicated: bool,
    pub(crate) state: RefCell<State<D::File>>,
    /// Serialises placement (and structural changes) in arrival order.
    pub(crate) placement: FifoSemaphore,
    /// Notified when a watermark moves, the log goes offline or closes.
    pub(crate) progress: Event,
    /// Notified when the flusher has something to do.
    pub(crate) work: Event,
    /// Disk reads of batches in progress (`read.rs`). A suffix truncation waits for them to
    /// finish before it shortens or deletes a file they may be reading.
    pub(crate) disk_reads: Cell<usize>,
    /// Notified when `disk_reads` drops to zero.
    pub(crate) reads_idle: Event,
}

pub(crate) struct State<F: DmaFile> {
    /// All segments by base offset (and first Raft index); the last one is active.
    pub(crate) segments: BTreeMap<SegmentKey, Segment<F>>,
    pub(crate) writer: Writer<F::Buf>,
    pub(crate) log_start: Offset,
    pub(crate) log_end: Offset,
    /// The leader epoch (Raft term) stamped into appended batches; the active segment's term.
    /// Part of the log's state, not of its configuration: a config change never resets it.
    pub(crate) term: Term,
    pub(crate) written_next: Offset,
    pub(crate) synced_next: Offset,
    /// The Raft index after the last placed, written and synced batch. Meaningful in a
    /// replicated log; a plain log counts its batches from 0 at open and never uses them.
    pub(crate) next_index: u64,
    pub(crate) written_next_index: u64,
    pub(crate) synced_next_index: u64,
    /// A replicated log's commit point and recent entries (`None` in a plain log).
    pub(crate) raft: Option<RaftState>,
    pub(crate) batches_unsynced: u64,
    pub(crate) sync_requested: bool,
    /// Chunks the flusher has taken from the queue and not yet finished writing.
    pub(crate) writes_in_flight: usize,
    /// Suffix truncations that moved the log end back. A durability waiter that sees this
    /// change knows its batch was synced (a truncation first syncs everything placed) even
    /// though the synced end may now be below it.
    pub(crate) truncations: u64,
    pub(crate) offline: Option<Rc<OfflineReason>>,
    pub(crate) closed: bool,
    pub(crate) producers: ProducerStates,
    pub(crate) stats: LogStats,
    /// The cleaner's checkpoint and whether the log was ever compacted (`compact.rs`).
    pub(crate) compaction: crate::compact::CompactionState,
}

impl<F: DmaFile> State<F> {
    pub(crate) fn active(&self) -> &Segment<F> {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment<F> {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn high_watermark(&self, durability: Durability) -> Offset {
        if crate::fault_switches::serve_above_hwm() {
            // Mutation evidence only: serve batches that are in memory, not yet durable.
            return self.log_end;
        }
        if let Some(raft) = &self.raft {
            // Set by the caller's commit index (`Log::advance_commit`), never by the disk.
            return raft.hw_offset;
        }
        match durability {
            Durability::Fsync => self.synced_next,
            Durability::Relaxed { .. } => self.written_next,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if let Some(reason) = &self.offline {
            return Err(Error::Offline(reason.clone()));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl<D: Disk> Log<D> {
    /// Appends one record batch (Kafka v2, as a producer sent it) and waits as `wait` says.
    /// See the module documentation for exactly what is on the device when this returns.
    ///
    /// A replicated log refuses it ([`Error::WrongMode`]): its entries go through Raft
    /// ([`Log::propose`]).
    pub async fn append(&self, batch: Vec<u8>, wait: Wait) -> Result<Appended> {
        if self.inner.replicated {
            return Err(Error::WrongMode {
                op: "append",
                replicated: true,
            });
        }
        let (appended, _) = self.append_client_batch(batch, wait).await?;
        Ok(appended)
    }

    /// [`Log::append`] and [`Log::propose`]: validate, deduplicate, place, wait. Returns the
    /// answer and, when the batch was placed (not answered as a retry), its Raft index.
    pub(crate) async fn append_client_batch(
        &self,
        batch: Vec<u8>,
        wait: Wait,
    ) -> Result<(Appended, Option<(u64, Term)>)> {
        let limit_bytes = self.batch_bytes_limit();
        if batch.len() > limit_bytes {
            return Err(Error::BatchTooLarge {
                size_bytes: batch.len(),
                limit_bytes,
            });
        }
        let header = batch::validate_client(&batch).map_err(|defect| {
            if defect == batch::BatchDefect::InternalAttribute {
                // Worth an operator's eye: no Kafka client sets that bit.
                tracing::warn!(dir = %self.inner.dir.display(), why = defect.describe(),
                    "refused a client batch");
            }
            if defect.is_corruption() {
                Error::CorruptBatch(defect)
            } else {
                Error::InvalidBatch(defect)
            }
        })?;
        if header.size_bytes != batch.len() {
            // Produce v3+ carries exactly one batch per partition; trailing bytes are damage.
            return Err(Error::CorruptBatch(batch::BatchDefect::LengthOutOfRange));
        }
        let (appended, index, term) = {
            let _permit = self.inner.placement.acquire(1).await;
            self.inner.state.borrow().check_usable()?;
            // Idempotent producers: a retry is answered with the original offsets (once they
            // are as durable as asked), a gap or a fenced epoch is refused. The check and the
            // placement happen under the same permit, so no other batch can slip in between.
            if let Some(original) = self.check_producer(&header)? {
                drop(_permit);
                let answer = match wait {
                    Wait::Buffered => original,
                    Wait::Durable => self.wait_durable(original).await?,
                };
                return Ok((answer, None));
            }
            self.roll_if_due(batch.len(), header.max_timestamp).await?;
            self.reserve_chunk(batch.len()).await?;
            self.place(batch, &header, true)?
        };
        self.inner.work.notify();
        let answer = match wait {
            Wait::Buffered => appended,
            // Mutation evidence only: acknowledge what is in memory as if it were durable.
            Wait::Durable if crate::fault_switches::ack_before_sync() => appended,
            // An index names the batch even where offsets do not (internal entries).
            Wait::Durable if self.inner.replicated => Appended {
                guarantee: self.wait_durable_index(index).await?,
                ..appended
            },
            Wait::Durable => self.wait_durable(appended).await?,
        };
        Ok((answer, Some((index, term))))
    }

    /// The largest batch this log takes: `max.message.bytes`, and no more than one write chunk
    /// of the core's buffer pool can hold (after the inherited partial block and the trailer),
    /// so a batch is refused rather than waiting for a chunk the pool can never lease.
    pub(crate) fn batch_bytes_limit(&self) -> usize {
        let block = shoal_model::constants::DMA_ALIGNMENT_BYTES as usize;
        let pool = self.inner.pool.budget_bytes() / block * block;
        let fits_a_chunk = pool.saturating_sub(block + crate::trailer::TRAILER_BYTES);
        self.inner.config.borrow().batch_bytes_max.min(fits_a_chunk)
    }

    /// Makes sure the open chunk has room for `len` bytes, leasing a new one if needed.
    /// Runs with the placement permit held, so arrival order is kept while it waits.
    pub(crate) async fn reserve_chunk(&self, len: usize) -> Result<()> {
        let (chunk_bytes, file) = {
            let state = self.inner.state.borrow();
            if state.writer.fits(len) {
                return Ok(());
            }
            let chunk_bytes_min = self.inner.config.borrow().write_chunk_bytes;
            let chunk_bytes = state.writer.chunk_bytes_for(len, chunk_bytes_min);
            (
                chunk_bytes.min(self.inner.pool.budget_bytes()),
                state.active().file.clone(),
            )
        };
        let lease = self.inner.pool.lease(chunk_bytes).await;
        let buf = file.alloc_buf(chunk_bytes);
        let mut state = self.inner.state.borrow_mut();
        state.check_usable()?;
        let next = (state.log_end, state.next_index);
        state.writer.start_chunk(buf, lease, next);
        assert!(
            state.writer.fits(len),
            "a fresh chunk holds at least one batch"
        );
        drop(state);
        // The previous chunk (if any) is now queued for the flusher.
        self.inner.work.notify();
        Ok(())
    }

    /// Assigns offsets and an index, copies the batch into the open chunk, indexes and caches
    /// it. `stamp`: write the base offset and the log's term into it (a leader's batch); else
    /// the batch must already carry both (a follower stores the leader's bytes unchanged).
    /// Returns the answer, the batch's index and its term. An internal entry takes no
    /// offset: its answer's `last_offset` is its base offset less one.
    pub(crate) fn place(
        &self,
        mut batch: Vec<u8>,
        header: &batch::BatchHeader,
        stamp: bool,
    ) -> Result<(Appended, u64, Term)> {
        let (offset_count, max_ts) = (header.offset_count, header.max_timestamp);
        let config = self.inner.config.borrow();
        let mut state = self.inner.state.borrow_mut();
        let base = state.log_end;
        let next = base.plus(offset_count);
        let term = state.term;
        let index = state.next_index;
        assert_eq!(
            term,
            state.active().term,
            "the active segment carries the log's term"
        );
        if stamp {
            batch::stamp(&mut batch, base, term);
        } else {
            assert_eq!(
                (header.base_offset, header.term),
                (base, term),
                "a stored batch continues the offsets, in its segment's term"
            );
        }
        let pos = state.writer.place(&batch, (next, index + 1));
        // Internal entries carry no timestamp: they take no part in segment ages or maxima.
        let max_ts = (!header.internal).then_some(max_ts);
        let meta = EntryMeta {
            index,
            term,
            base,
            next,
            internal: header.internal,
            segment_index: 0,
            pos,
            size_bytes: batch.len(),
        };
        self.record_in_segment(&mut state, meta, max_ts, config.index_interval_bytes);
        state.next_index = index + 1;
        state.log_end = next;
        state.batches_unsynced += 1;
        state.stats.appends += 1;
        if let Durability::Relaxed { flush_messages, .. } = config.durability {
            if state.batches_unsynced >= flush_messages {
                state.sync_requested = true;
            }
        }
        if header.producer_id >= 0 && !header.internal {
            let range = BatchRange {
                first_sequence: header.base_sequence,
                last_sequence: last_sequence(header.base_sequence, offset_count),
                base_offset: base,
                last_offset: Offset(next.0 - 1),
            };
            let now_ms = self.inner.clock.now_ms();
            state
                .producers
                .record(header.producer_id, header.producer_epoch, range, now_ms);
        }
        // The caller's buffer becomes the cache entry: no second copy of the batch.
        let stored = Bytes::from(batch);
        debug_assert!(
            batch::validate(&stored).is_ok(),
            "CRC checked again after the copy"
        );
        // Internal entries stay out of the cache: it is keyed by offset, which they share
        // with the next data batch, and only Raft reads them (rarely; from disk is enough).
        if !header.internal {
            self.inner.cache.insert(
                self.inner.uid,
                base,
                CachedBatch {
                    bytes: stored,
                    next_offset: next,
                },
            );
        }
        if crate::fault_switches::serve_above_hwm() {
            // Mutation evidence only: wake waiting fetches for a batch that is not durable.
            self.inner.progress.notify();
        }
        let appended = Appended {
            base_offset: base,
            last_offset: Offset(next.0 - 1),
            guarantee: Guarantee::Buffered,
            log_start: state.log_start,
        };
        Ok((appended, index, term))
    }

    /// Records a placed batch in the active segment (size, index, maxima) and, in a
    /// replicated log, among the recent entries.
    fn record_in_segment(
        &self,
        state: &mut State<D::File>,
        mut meta: EntryMeta,
        max_ts: Option<shoal_model::TimestampMs>,
        index_interval_bytes: u64,
    ) {
        let replicated = self.inner.replicated;
        let segment = state.active_mut();
        if segment.is_empty() && !meta.internal {
            segment.first_max_timestamp = max_ts;
        }
        let ordinal = replicated.then_some(segment.batches);
        segment
            .index
            .observe(meta.base, ordinal, meta.pos, max_ts, index_interval_bytes);
        segment.size_bytes += meta.size_bytes as u64;
        segment.next_offset = meta.next;
        segment.max_timestamp = segment.max_timestamp.max(max_ts);
        if replicated {
            segment.batches += 1;
            meta.segment_index = segment.first_index.expect("a replicated segment").0;
            assert_eq!(
                segment.next_index().map(|next| next.0),
                Some(meta.index + 1),
                "the segment's name and batch count give the entry's index"
            );
            state.raft.as_mut().expect("a replicated log").push(meta);
        }
    }

    /// `Some(original offsets)` if the batch is a retry of a cached batch of its producer.
    fn check_producer(&self, header: &batch::BatchHeader) -> Result<Option<Appended>> {
        if header.producer_id < 0 {
            return Ok(None);
        }
        let range = (
            header.base_sequence,
            last_sequence(header.base_sequence, header.offset_count),
        );
        let verdict = self.inner.state.borrow().producers.check(
            header.producer_id,
            header.producer_epoch,
            range,
        );
        match verdict {
            Ok(Verdict::Append) => Ok(None),
            // Mutation evidence only: a retry is written again, as a duplicate.
            Ok(Verdict::Duplicate(_)) if crate::fault_switches::no_idempotent_dedup() => Ok(None),
            Ok(Verdict::Duplicate(original)) => Ok(Some(Appended {
                base_offset: original.base_offset,
                last_offset: original.last_offset,
                guarantee: Guarantee::Buffered,
                log_start: self.inner.state.borrow().log_start,
            })),
            Err(SequenceError::OutOfOrder { expected, received }) => {
                Err(Error::OutOfOrderSequence { expected, received })
            }
            Err(SequenceError::InvalidEpoch { current, received }) => {
                Err(Error::InvalidProducerEpoch { current, received })
            }
            Err(SequenceError::UnknownProducer) => Err(Error::UnknownProducerId),
        }
    }

    /// The idempotent producers this partition knows (Kafka DescribeProducers).
    pub fn producers(&self) -> Vec<crate::producers::ProducerInfo> {
        self.inner.state.borrow().producers.describe()
    }

    async fn wait_durable(&self, appended: Appended) -> Result<Appended> {
        let next = appended.last_offset.plus(1);
        let truncations = self.inner.state.borrow().truncations;
        loop {
            let listener = self.inner.progress.listen();
            {
                let state = self.inner.state.borrow();
                // A truncation since the batch was placed synced it first (and may have cut
                // it since, which is a later operation than this append).
                if state.synced_next >= next || state.truncations != truncations {
                    return Ok(Appended {
                        guarantee: Guarantee::Synced,
                        ..appended
                    });
                }
                let relaxed = matches!(
                    self.inner.config.borrow().durability,
                    Durability::Relaxed { .. }
                );
                if relaxed && state.written_next >= next {
                    return Ok(Appended {
                        guarantee: Guarantee::Written,
                        ..appended
                    });
                }
                if let Some(reason) = &state.offline {
                    return Err(Error::Offline(reason.clone()));
                }
            }
            listener.await;
        }
    }

    /// Requests a sync of everything written so far and waits for it (the `flush.ms` timer,
    /// and shutdown, call this). Returns the synced end.
    pub async fn sync(&self) -> Result<Offset> {
        let target = {
            let mut state = self.inner.state.borrow_mut();
            state.check_usable()?;
            state.sync_requested = true;
            state.writer.seal_open();
            state.log_end
        };
        self.inner.work.notify();
        self.wait_synced(target).await
    }

    pub(crate) async fn wait_synced(&self, target: Offset) -> Result<Offset> {
        let truncations = self.inner.state.borrow().truncations;
        loop {
            let listener = self.inner.progress.listen();
            {
                let state = self.inner.state.borrow();
                if let Some(reason) = &state.offline {
                    return Err(Error::Offline(reason.clone()));
                }
                // A truncation synced everything up to `target` before it cut the log.
                if state.synced_next >= target || state.truncations != truncations {
                    return Ok(state.synced_next);
                }
            }
            listener.await;
        }
    }

    /// Returns once the high watermark is above `offset` (data at `offset` is readable), or
    /// the log goes offline or closes. Fetch long-polls with this.
    pub async fn wait_for_high_watermark_above(&self, offset: Offset) {
        loop {
            let listener = self.inner.progress.listen();
            {
                let durability = self.inner.config.borrow().durability;
                let state = self.inner.state.borrow();
                if state.high_watermark(durability) > offset
                    || state.offline.is_some()
                    || state.closed
                {
                    return;
                }
            }
            listener.await;
        }
    }

    pub fn offsets(&self) -> LogOffsets {
        let durability = self.inner.config.borrow().durability;
        let state = self.inner.state.borrow();
        LogOffsets {
            log_start: state.log_start,
            high_watermark: state.high_watermark(durability),
            log_end: state.log_end,
            leader_epoch: state.term,
            log_start_epoch: state
                .segments
                .values()
                .next()
                .map_or(state.term, |segment| segment.term),
        }
    }

    pub fn stats(&self) -> LogStats {
        self.inner.state.borrow().stats
    }

    /// Why the log is offline, if it is.
    pub fn offline_reason(&self) -> Option<Rc<OfflineReason>> {
        self.inner.state.borrow().offline.clone()
    }

    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Changes the configuration (topic config altered). Takes effect for the next append.
    pub fn set_config(&self, config: LogConfig) {
        *self.inner.config.borrow_mut() = config;
        self.inner.work.notify();
    }

    /// Changes the configuration like [`Log::set_config`], without moving the high watermark
    /// back: leaving relaxed durability (where readers see the written end) for `Fsync`
    /// (where they see the synced end) first syncs everything written, with new appends held
    /// back, so every offset a reader already saw stays readable.
    pub async fn reconfigure(&self, config: LogConfig) -> Result<()> {
        let _permit = self.inner.placement.acquire(1).await;
        let leaving_relaxed = matches!(
            self.inner.config.borrow().durability,
            Durability::Relaxed { .. }
        ) && config.durability == Durability::Fsync;
        if leaving_relaxed {
            let target = {
                let mut state = self.inner.state.borrow_mut();
                state.check_usable()?;
                state.sync_requested = true;
                state.writer.seal_open();
                state.log_end
            };
            self.inner.work.notify();
            let _ = self.wait_synced(target).await?;
        }
        self.set_config(config);
        Ok(())
    }

    /// Total bytes of stored batches across segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.size_bytes)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Takes the log offline for `reason` and wakes every waiter.
    pub(crate) fn go_offline(&self, reason: OfflineReason) {
        tracing::error!(dir = %self.inner.dir.display(), %reason, "partition log offline");
        {
            let mut state = self.inner.state.borrow_mut();
            if state.offline.is_none() {
                state.offline = Some(Rc::new(reason));
            }
        }
        self.inner.progress.notify();
        self.inner.work.notify();
    }

    pub(crate) fn fallocation(&self) -> (Fallocation, u64) {
        let config = self.inner.config.borrow();
        (config.fallocation, config.fallocation_step_bytes_max)
    }
}
