//! Suffix truncation: cutting the log back to a batch boundary. Raft's log-matching rule (a
//! follower drops the entries a new leader's log does not have) and Kafka's follower
//! truncation to the leader's epoch end offset both need it.
//!
//! With the placement permit held (nothing is placed meanwhile), [`Log::truncate_suffix`] runs
//! these steps:
//! 1. **Drain.** Everything placed is written and synced, and no write (a confirm write
//!    included) is in flight.
//! 2. **Locate.** It finds the segment the cut falls in. A scan from that segment's last
//!    index entry below `from` gives the byte position of `from`, or refuses an offset inside
//!    a batch.
//! 3. **Intent.** It writes `pending_truncation` (`{from, term}`, CRC) atomically. From here
//!    on, the new end wins: if the process crashes, [`Log::open`] completes the truncation
//!    before the log serves anything.
//! 4. **Memory.** It cuts the log end, both watermarks, the segment map, the writer and the
//!    batch cache in one step, and readers see the new log from then on. It then waits for
//!    disk reads that started earlier.
//! 5. **Disk.** It unlinks the segments wholly above the cut and syncs the directory. It
//!    `ftruncate`s the cut segment and `fdatasync`s it, then rewrites that segment's index
//!    files. A cut segment of an older term is sealed, and the log's term gets a new segment
//!    at `from` (or the cut segment is renamed if it is empty).
//! 6. **Producers.** It restores their state from memory where that is exact, and otherwise
//!    replays the log below `from`. It then rewrites the snapshot to cover `from`.
//! 7. **Done.** It removes the intent file and syncs the directory.
//!
//! A replicated log is cut by Raft index instead ([`Log::truncate_entries_from`]): an offset
//! is ambiguous there, because an internal entry shares its base offset with the next data
//! batch. The steps are the same; the cut is located by the entry's ordinal (sparse index,
//! then a scan), the intent (version 2) records the index too, and the log keeps the cut
//! segment's term (no segment is created or renamed: the next entries bring their own term).

use std::rc::Rc;

use shoal_io::{Disk, DmaFile};
use shoal_model::constants::BATCH_HEADER_BYTES;
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::batch;
use crate::error::{EntriesRefused, Error, OfflineReason, Result, TruncationRefused};
use crate::index::{IndexCheckpoint, SparseIndex};
use crate::log::Log;
use crate::recovery::remove_segment_names;
use crate::replicated::first_index_of;
use crate::segment::{align_down, path_of, write_small_file, Segment, SegmentKey, LOG_SUFFIX};
use crate::writer::Writer;

/// The intent file of a truncation in progress.
pub(crate) const TRUNCATION_FILE: &str = "pending_truncation";
const TRUNCATION_MAGIC: &[u8; 4] = b"SHTR";
const TRUNCATION_BYTES: usize = 4 + 8 + 4 + 4;
/// Version 2, a replicated log's: the Raft index of the cut follows the term.
const TRUNCATION_MAGIC_REPLICATED: &[u8; 4] = b"SHT2";
const TRUNCATION_BYTES_REPLICATED: usize = 4 + 8 + 4 + 8 + 4;

/// Bytes asked of each disk read while locating the cut (the read path adds its read-ahead).
const LOCATE_READ_BYTES: usize = 64 * 1024;

/// What [`Log::truncate_suffix`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated {
    /// The log end offset now: `from`. The high watermark is at most this (equal to it).
    pub log_end: Offset,
    /// The log end offset before the call.
    pub previous_log_end: Offset,
    /// Bytes of stored batches removed (what [`Log::size_bytes`] lost).
    pub bytes_removed: u64,
    /// Segment files deleted whole.
    pub segments_deleted: usize,
}

/// A truncation whose intent is on disk: recovery completes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingTruncation {
    pub(crate) from: Offset,
    /// The log's term when it started; the log keeps it (a new segment may carry it). In a
    /// replicated log, the cut segment's term, which the log ends in.
    pub(crate) term: Term,
    /// The Raft index of the cut (a replicated log's; version 2 of the file).
    pub(crate) index: Option<RaftIndex>,
}

impl PendingTruncation {
    fn encode(&self) -> Vec<u8> {
        let magic = match self.index {
            None => TRUNCATION_MAGIC,
            Some(_) => TRUNCATION_MAGIC_REPLICATED,
        };
        let mut out = magic.to_vec();
        out.extend_from_slice(&self.from.0.to_be_bytes());
        out.extend_from_slice(&self.term.0.to_be_bytes());
        if let Some(index) = self.index {
            out.extend_from_slice(&index.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(PendingTruncation::decode(&out), Some(*self));
        out
    }

    /// Decodes an intent file of either version (zero padding after it is ignored). `None`
    /// if damaged.
    pub(crate) fn decode(bytes: &[u8]) -> Option<PendingTruncation> {
        let replicated = bytes.get(..4)? == TRUNCATION_MAGIC_REPLICATED;
        if !replicated && bytes.get(..4)? != TRUNCATION_MAGIC {
            return None;
        }
        let len = if replicated {
            TRUNCATION_BYTES_REPLICATED
        } else {
            TRUNCATION_BYTES
        };
        if bytes.len() < len {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[len - 4..len].try_into().ok()?);
        if crc != crc32c::crc32c(&bytes[..len - 4]) {
            return None;
        }
        let index = if replicated {
            Some(RaftIndex(u64::from_be_bytes(
                bytes[16..24].try_into().ok()?,
            )))
        } else {
            None
        };
        Some(PendingTruncation {
            from: Offset(i64::from_be_bytes(bytes[4..12].try_into().ok()?)),
            term: Term(i32::from_be_bytes(bytes[12..16].try_into().ok()?)),
            index,
        })
    }
}

/// Where a cut falls: found before anything is changed.
struct CutPoint {
    /// The segment holding `from`, or starting at it (then it keeps nothing).
    segment: SegmentKey,
    /// Byte position of `from` in that segment: the size it keeps.
    pos: u64,
    /// The batches it keeps (a replicated log's; 0 in a plain log, which counts none).
    batches: u64,
    /// Bytes of the block holding `pos`, below `pos` (the writer's partial tail block).
    tail: Vec<u8>,
    /// The largest timestamp of the batches the segment keeps, if that could be computed
    /// exactly; otherwise the segment keeps its old (larger, so safe) value.
    max_timestamp: Option<Option<TimestampMs>>,
    /// The segment's first batch's max timestamp (`segment.ms`), when it was unknown.
    first_max_timestamp: Option<TimestampMs>,
}

impl<D: Disk> Log<D> {
    /// Removes every batch whose base offset is at or above `from`. Afterwards the log ends
    /// at `from`, and the next append is placed at `from`, stamped with the log's current
    /// leader epoch ([`Log::term`], which truncation never changes). A follower uses it for
    /// Raft's log-matching truncation, and Kafka's truncate-to-epoch-end-offset.
    ///
    /// **Which offsets.** `from` must be a batch boundary: the base offset of a stored batch
    /// at or above the log start, or the log end offset (then nothing is done and nothing is
    /// written). Inside a batch, below the log start or above the log end it is refused with
    /// [`Error::InvalidTruncation`] and no batch is removed (what was buffered may have been
    /// synced by then). A log start that DeleteRecords put inside a batch is not a boundary.
    ///
    /// **The high watermark** may be above `from`. The storage high watermark is the synced
    /// end (Relaxed: the written end), not a commit point, so cutting below it is allowed; it
    /// drops to `from` with the log end. The caller guarantees nothing at or above `from` was
    /// committed (Raft: `from` is above the commit index), and bounds consumers by its commit
    /// point. Reads that start after this returns never get a cut batch, from the cache or
    /// the disk. A read that overlaps the call gets the old log or the new one, each whole.
    /// Waiters in [`Log::wait_for_high_watermark_above`] check again and wait for new data.
    ///
    /// **Appends.** The call waits its turn in the placement queue (FIFO) like an append.
    /// Appends called before it are placed first; if they sit at or above `from` they are cut,
    /// and their futures still complete with the offsets they got. Appends called after it get
    /// offsets from `from`. Before cutting, it waits for the flusher to write and sync every
    /// placed batch, with no write (a confirm write included) left in flight, so no write
    /// issued before the truncation can land after it.
    ///
    /// **Durability.** It returns `Ok` only once the cut is on stable storage. After a crash
    /// or power loss at any point after it returns, recovery never brings back a cut batch.
    /// Before anything is cut, the intent `{from, term}` goes atomically to
    /// `pending_truncation` (write, fdatasync, rename, directory sync). A crash before the
    /// intent is durable leaves the old log, every batch of it synced. A crash after it leaves
    /// the new log: [`Log::open`] completes the cut before serving anything. No state in
    /// between is ever served. Each part of the cut is made durable as follows:
    /// - **Segments wholly above `from`** are unlinked and the directory is synced. They are
    ///   never recycled: their batches carry offsets the log will assign again, so a reused
    ///   file would look like a valid continuation to recovery.
    /// - **The segment the cut falls in** is `ftruncate`d to the cut position and
    ///   `fdatasync`ed. That drops everything after the last kept batch: the cut batches, the
    ///   last write's zeroed slack, its sync trailer (which described the old data), and
    ///   fallocated or recycled blocks. The file then ends exactly at the data, which recovery
    ///   accepts as a clean end. The next write rewrites the partial tail block, as every
    ///   write does, and carries a new trailer.
    /// - **Its index files** are rewritten atomically for the part that is kept. Otherwise a
    ///   stale checkpoint could point recovery into the cut range once appends grow the file
    ///   again.
    /// - **A cut segment of an older term than the log's** is sealed as a roll seals, and a
    ///   new segment `{from}-{term}` is created. If nothing of it is kept, it is renamed.
    /// - **The producer snapshot** is rewritten to cover the log up to `from`.
    /// - **Last**, the intent file is removed and the directory synced.
    ///
    /// A failed write, truncate, sync or directory update takes the log offline
    /// ([`Error::Offline`]) and is never retried. Reopening the log completes the truncation.
    ///
    /// **What follows the log.**
    /// - The batch cache.
    /// - The sparse offset and time indexes, and the segment sizes ([`Log::size_bytes`]).
    /// - The epoch history ([`Log::epochs`]): an epoch whose whole range was cut disappears;
    ///   the current epoch is listed from `from`, where its next batch goes, as after
    ///   [`Log::set_term`].
    /// - The log end, the high watermark and [`LogStats`](crate::LogStats).
    /// - The idempotent producer state: as if the cut batches had never been appended.
    ///
    /// **Cost.**
    /// - One sync of what was pending.
    /// - One read of the kept batches between the last index entry before `from` and `from`
    ///   (about `index.interval.bytes` plus one batch), and one read of the tail block.
    /// - Per deleted segment, three unlinks; then one directory sync.
    /// - One `ftruncate` plus `fdatasync`.
    /// - Four small atomic file writes: intent, two index files and producer snapshot, each a
    ///   write, fdatasync, rename and directory sync. Then the intent's removal and a
    ///   directory sync, and possibly a segment creation.
    ///
    /// Producer state costs nothing for producers with no batch at or above `from`, nor for
    /// those whose cached batches below `from` are provably complete. Any other producer with
    /// a cut batch is rebuilt by replaying the log from the last producer snapshot up to
    /// `from`. If that snapshot lies past `from`, the replay starts at the log start: up to
    /// the whole log, read in 1 MiB pieces. Replayed producers get the current time as their
    /// last append, as at recovery.
    ///
    /// Memory is bounded: reads go through the read path in bounded pieces, and nothing is
    /// kept per cut batch.
    ///
    /// A replicated log refuses it ([`Error::WrongMode`]): an offset does not name one entry
    /// there. Its form is [`Log::truncate_entries_from`].
    pub async fn truncate_suffix(&self, from: Offset) -> Result<Truncated> {
        if self.inner.replicated {
            return Err(Error::WrongMode {
                op: "truncate_suffix",
                replicated: true,
            });
        }
        let _permit = self.inner.placement.acquire(1).await;
        let previous_log_end = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            refuse_outside(from, state.log_start, state.log_end)?;
            state.log_end
        };
        if from == previous_log_end {
            return Ok(Truncated {
                log_end: from,
                previous_log_end,
                bytes_removed: 0,
                segments_deleted: 0,
            });
        }
        self.drain_writes().await?;
        let cut = self.locate_cut(from).await?;
        let term = self.term();
        let pending = PendingTruncation {
            from,
            term,
            index: None,
        };
        self.cut(pending, cut, previous_log_end).await
    }

    /// A replicated log's suffix truncation (Raft's log-matching rule): removes every entry
    /// at or after index `from`, data and internal, as [`Log::truncate_suffix`] does by
    /// offset, with the same reader safety, durability (intent file, version 2 with the
    /// index; completed at open after a crash) and producer-state handling. Afterwards the
    /// last index is `from - 1`, the log end offset is the base offset entry `from` had, and
    /// the log's term is that of the segment the cut falls in (the next entries bring their
    /// own: [`Log::append_entries`]). At the last index + 1 it does nothing.
    ///
    /// Refused with [`Error::EntriesRefused`], the log unchanged: at or below the committed
    /// index ([`Log::advance_commit`]; committed entries are never cut) — `Committed`; below
    /// the first index — `Compacted`; past the last index + 1 — `AboveLastIndex`.
    pub async fn truncate_entries_from(&self, from: RaftIndex) -> Result<Truncated> {
        if !self.inner.replicated {
            return Err(Error::WrongMode {
                op: "truncate_entries_from",
                replicated: false,
            });
        }
        let _permit = self.inner.placement.acquire(1).await;
        let (previous_log_end, at_end) = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            refuse_index_outside(from, &state)?;
            (state.log_end, from.0 == state.next_index)
        };
        if at_end {
            return Ok(Truncated {
                log_end: previous_log_end,
                previous_log_end,
                bytes_removed: 0,
                segments_deleted: 0,
            });
        }
        self.drain_writes().await?;
        let (cut, offset) = self.locate_entry_cut(from).await?;
        let term = self.segment_term(cut.segment);
        let pending = PendingTruncation {
            from: offset,
            term,
            index: Some(from),
        };
        self.cut(pending, cut, previous_log_end).await
    }

    /// The cut itself, once located: intent, memory, disk, producers, done.
    async fn cut(
        &self,
        pending: PendingTruncation,
        cut: CutPoint,
        previous_log_end: Offset,
    ) -> Result<Truncated> {
        let from = pending.from;
        self.write_small(
            "write truncation intent",
            TRUNCATION_FILE,
            &pending.encode(),
        )
        .await?;
        let (doomed, bytes_removed) = self.cut_in_memory(from, &cut, pending.index);
        let segments_deleted = doomed.len();
        self.cut_on_disk(from, &cut, doomed, pending.term).await?;
        self.truncate_producers(from).await?;
        self.clear_truncation_intent().await?;
        {
            let mut state = self.inner.state.borrow_mut();
            state.stats.truncations += 1;
            state.stats.bytes_truncated += bytes_removed;
            state.stats.segments_deleted += segments_deleted as u64;
            assert_eq!(state.log_end, from);
            assert_eq!(state.active().next_offset, from);
            if let Some(index) = pending.index {
                assert_eq!(state.next_index, index.0, "the cut entry's index is next");
                assert_eq!(state.active().next_index(), Some(index));
            }
        }
        tracing::info!(dir = %self.inner.dir.display(), %from, %previous_log_end,
            index = ?pending.index, segments_deleted, "log suffix truncated");
        Ok(Truncated {
            log_end: from,
            previous_log_end,
            bytes_removed,
            segments_deleted,
        })
    }

    fn segment_term(&self, key: SegmentKey) -> Term {
        let state = self.inner.state.borrow();
        state.segments.get(&key).expect("a live segment").term
    }

    /// Completes a truncation a crash interrupted (its intent file survived). Called at open,
    /// before the log serves anything, after the segments wholly above `from` were removed.
    pub(crate) async fn finish_truncation(&self, pending: PendingTruncation) -> Result<()> {
        let offsets = self.offsets();
        tracing::warn!(dir = %self.inner.dir.display(), from = %pending.from,
            log_end = %offsets.log_end, "completing a truncation interrupted by a crash");
        // Also at the log end: the file may have been cut already, with its index files
        // (stale: they would become usable again once appends grow the file) or the term's
        // segment still to come. Every step below is idempotent.
        let inside = match pending.index {
            None => pending.from >= offsets.log_start && pending.from <= offsets.log_end,
            Some(index) => {
                let state = self.inner.state.borrow();
                index.0 >= first_index_of(&state) && index.0 <= state.next_index
            }
        };
        if inside {
            let located = match pending.index {
                None => self.locate_cut(pending.from).await,
                Some(index) => match self.locate_entry_cut(index).await {
                    Ok((cut, offset)) if offset == pending.from => Ok(cut),
                    Ok((_, offset)) => Err(Error::InvalidTruncation {
                        requested: offset,
                        refused: TruncationRefused::InsideBatch {
                            base_offset: offset,
                            next_offset: pending.from,
                        },
                    }),
                    Err(error) => Err(error),
                },
            };
            let cut = match located {
                Err(Error::InvalidTruncation { refused, .. }) => {
                    let path = self.inner.dir.join(TRUNCATION_FILE);
                    let detail = format!("the interrupted truncation's cut is invalid: {refused}");
                    self.go_offline(OfflineReason::corruption(path, detail));
                    return Err(Error::Offline(self.offline_reason().expect("just set")));
                }
                located => located?,
            };
            let term = match pending.index {
                None => pending.term.max(self.term()),
                Some(_) => pending.term,
            };
            let (doomed, _) = self.cut_in_memory(pending.from, &cut, pending.index);
            self.cut_on_disk(pending.from, &cut, doomed, term).await?;
        }
        // The cut may have been complete but for the new term's segment.
        if self.term() < pending.term {
            self.set_term(pending.term).await?;
        }
        self.rebuild_producers().await?;
        self.write_producer_snapshot().await?;
        self.clear_truncation_intent().await
    }

    /// Waits, with the placement permit held, until every placed batch is written and synced
    /// and no write is in flight (the flusher is idle until something is placed again).
    pub(crate) async fn drain_writes(&self) -> Result<()> {
        loop {
            let listener = self.inner.progress.listen();
            {
                let mut state = self.inner.state.borrow_mut();
                state.check_usable()?;
                let writer = &state.writer;
                let idle = writer.open.is_none()
                    && writer.queued.is_empty()
                    && state.writes_in_flight == 0
                    && writer.written_bytes == writer.appended_bytes
                    && writer.synced_bytes == writer.written_bytes;
                if idle {
                    assert_eq!(state.synced_next, state.log_end, "drained means synced");
                    return Ok(());
                }
                state.sync_requested = true;
                state.writer.seal_open();
            }
            self.inner.work.notify();
            listener.await;
        }
    }

    /// Finds where the cut at `from` falls (the caller checked `from` is inside the log),
    /// refusing an offset inside a batch. Reads the synced data; changes nothing.
    async fn locate_cut(&self, from: Offset) -> Result<CutPoint> {
        let (key, start, file, first_known, exact_before) = {
            let state = self.inner.state.borrow();
            let (&key, segment) = state
                .segments
                .range(..=SegmentKey::up_to(from))
                .next_back()
                .expect("the log start is in a segment");
            let base = key.base;
            if base == from {
                return Ok(CutPoint {
                    segment: key,
                    pos: 0,
                    batches: 0,
                    tail: Vec::new(),
                    max_timestamp: Some(None),
                    first_max_timestamp: None,
                });
            }
            let index = &segment.index;
            // The last entry before `from`: the entries kept are exactly those up to it.
            let start = index.lookup(Offset(from.0 - 1)).unwrap_or((base, 0));
            // The time index holds the running max up to that entry, unless it was lost.
            let times_known = !index.times.is_empty() || start.1 == 0;
            let before = index
                .times
                .iter()
                .rev()
                .find(|&&(_, offset)| offset <= start.0)
                .map(|&(ts, _)| ts);
            let first_known = segment.first_max_timestamp.is_some();
            (
                key,
                start,
                segment.file.clone(),
                first_known,
                times_known.then_some(before),
            )
        };
        let (pos, scanned_max) = self.scan_to(key, start, from).await?;
        self.finish_cut_point(key, &file, pos, first_known, exact_before, scanned_max)
            .await
    }

    /// The cut point at byte `pos` of segment `key`: reads its tail block and, when it is not
    /// known, the first batch's max timestamp. `exact_before`: the running max up to the
    /// scan's start, when known; `scanned_max` that of the scanned batches.
    async fn finish_cut_point(
        &self,
        key: SegmentKey,
        file: &Rc<D::File>,
        pos: u64,
        first_known: bool,
        exact_before: Option<Option<TimestampMs>>,
        scanned_max: Option<TimestampMs>,
    ) -> Result<CutPoint> {
        let path = path_of(&self.inner.dir, &self.stem_of(key), LOG_SUFFIX);
        let tail_from = align_down(pos);
        let tail = self
            .read_exact(file, &path, tail_from, (pos - tail_from) as usize)
            .await?;
        let first_max_timestamp = if first_known {
            None
        } else {
            let head = self.read_exact(file, &path, 0, BATCH_HEADER_BYTES).await?;
            batch::header_max_timestamp(&head)
        };
        Ok(CutPoint {
            segment: key,
            pos,
            batches: 0,
            tail,
            max_timestamp: exact_before.map(|before| before.max(scanned_max)),
            first_max_timestamp,
        })
    }

    /// Finds where the cut at entry `from` falls in a replicated log (the caller checked it
    /// lies in `[first_index, last_index + 1]`): the segment holding it (or starting at it),
    /// the byte position, and the base offset `from` has (the log end offset after the cut).
    /// Reads the synced data; changes nothing.
    async fn locate_entry_cut(&self, from: RaftIndex) -> Result<(CutPoint, Offset)> {
        let (key, first, start, file, first_known, exact_before) = {
            let state = self.inner.state.borrow();
            let segment = state
                .segments
                .values()
                .rev()
                .find(|s| s.first_index.is_some_and(|first| first <= from))
                .expect("the first index is in a segment");
            let (key, first) = (segment.key(), segment.first_index.expect("replicated").0);
            if first == from.0 {
                let cut = CutPoint {
                    segment: key,
                    pos: 0,
                    batches: 0,
                    tail: Vec::new(),
                    max_timestamp: Some(None),
                    first_max_timestamp: None,
                };
                return Ok((cut, segment.base));
            }
            let index = &segment.index;
            // The last entry before `from`: the entries kept are exactly those up to it.
            let start = index
                .lookup_ordinal(from.0 - 1 - first)
                .unwrap_or((segment.base, 0, 0));
            let times_known = !index.times.is_empty() || start.2 == 0;
            let before = index
                .times
                .iter()
                .rev()
                .find(|&&(_, offset)| offset <= start.0)
                .map(|&(ts, _)| ts);
            let first_known = segment.first_max_timestamp.is_some();
            (
                key,
                first,
                start,
                segment.file.clone(),
                first_known,
                times_known.then_some(before),
            )
        };
        let (pos, offset, scanned_max) = self.scan_entries_to(key, first, start, from).await?;
        let mut cut = self
            .finish_cut_point(key, &file, pos, first_known, exact_before, scanned_max)
            .await?;
        cut.batches = from.0 - first;
        Ok((cut, offset))
    }

    /// Scans the entries of segment `key` (whose first index is `first`) from `start` (an
    /// index entry: offset, ordinal, position) to entry `from`: their sizes give its
    /// position, the last one's end its offset. Returns both and the largest timestamp of the
    /// data entries scanned.
    async fn scan_entries_to(
        &self,
        key: SegmentKey,
        first: u64,
        start: (Offset, u64, u64),
        from: RaftIndex,
    ) -> Result<(u64, Offset, Option<TimestampMs>)> {
        let (mut next, mut pos, mut offset) = (first + start.1, start.2, start.0);
        let mut scanned_max: Option<TimestampMs> = None;
        while next < from.0 {
            let read = self.read_raw_entries(next, from.0, LOCATE_READ_BYTES, true);
            let entries = read.await?;
            if entries.is_empty() {
                let detail = format!("the entries end at index {next}, before {from}");
                return Err(self.corrupt_at(key, detail));
            }
            for entry in &entries {
                if entry.index != next || entry.pos != pos || entry.header.base_offset != offset {
                    let detail = format!("entry {} does not continue the log", entry.index);
                    return Err(self.corrupt_at(key, detail));
                }
                pos += entry.bytes.len() as u64;
                offset = entry.header.next_offset();
                next += 1;
                if !entry.header.internal {
                    scanned_max = scanned_max.max(Some(entry.header.max_timestamp));
                }
            }
        }
        assert_eq!(next, from.0, "the scan stops at the cut");
        Ok((pos, offset, scanned_max))
    }

    /// Scans the batches of segment `base` from `start` (an index entry: offset, position) to
    /// `from`: returns the position of `from` and the largest timestamp scanned, or refuses
    /// a `from` inside a batch.
    async fn scan_to(
        &self,
        base: SegmentKey,
        start: (Offset, u64),
        from: Offset,
    ) -> Result<(u64, Option<TimestampMs>)> {
        let (mut next, mut pos) = start;
        let mut scanned_max: Option<TimestampMs> = None;
        let mut batches = Vec::new();
        while next < from {
            batches.clear();
            self.read_from_disk(next, from, LOCATE_READ_BYTES, &mut batches)
                .await?;
            if batches.is_empty() {
                let detail = format!("the data ends at offset {next}, before {from}");
                return Err(self.corrupt_at(base, detail));
            }
            for bytes in &batches {
                let header = batch::validate(bytes).expect("the read path validated it");
                if header.base_offset != next {
                    let detail = format!("batch {} where {next} was expected", header.base_offset);
                    return Err(self.corrupt_at(base, detail));
                }
                if header.next_offset() > from {
                    return Err(Error::InvalidTruncation {
                        requested: from,
                        refused: TruncationRefused::InsideBatch {
                            base_offset: header.base_offset,
                            next_offset: header.next_offset(),
                        },
                    });
                }
                pos += bytes.len() as u64;
                next = header.next_offset();
                scanned_max = scanned_max.max(Some(header.max_timestamp));
            }
        }
        assert_eq!(next, from, "the scan stops at the cut");
        Ok((pos, scanned_max))
    }

    /// Cuts the in-memory log at `from` in one step: from here readers see the new log.
    /// Returns the segments wholly above the cut (their files still exist) and the bytes cut.
    /// `index`: the Raft index of the cut, in a replicated log.
    fn cut_in_memory(
        &self,
        from: Offset,
        cut: &CutPoint,
        index: Option<RaftIndex>,
    ) -> (Vec<Segment<D::File>>, u64) {
        let now_ms = self.inner.clock.now_ms();
        let mut state = self.inner.state.borrow_mut();
        // Every segment after the cut one goes.
        let mut doomed = state.segments.split_off(&cut.segment);
        let kept = doomed.remove(&cut.segment).expect("the cut segment exists");
        let _ = state.segments.insert(cut.segment, kept);
        let doomed: Vec<_> = doomed.into_values().collect();
        let mut bytes_removed: u64 = doomed.iter().map(|s| s.size_bytes).sum();
        let segment = state
            .segments
            .get_mut(&cut.segment)
            .expect("the cut segment is kept");
        assert!(segment.size_bytes >= cut.pos && segment.next_offset >= from);
        bytes_removed += segment.size_bytes - cut.pos;
        segment.size_bytes = cut.pos;
        segment.next_offset = from;
        if index.is_some() {
            assert!(segment.batches >= cut.batches);
            segment.batches = cut.batches;
            assert_eq!(
                segment.next_index(),
                index,
                "the cut keeps the entries before it"
            );
        }
        if cut.pos == 0 {
            segment.index = SparseIndex::default();
            segment.first_max_timestamp = None;
            segment.created_ms = now_ms;
        } else {
            segment.index.truncate_at(cut.pos);
            segment.first_max_timestamp = segment.first_max_timestamp.or(cut.first_max_timestamp);
        }
        if let Some(max) = cut.max_timestamp {
            segment.max_timestamp = max;
        }
        // Later index entries must record the true running max.
        segment.index.max_timestamp = segment.max_timestamp;
        state.writer = Writer::resume(cut.pos, &cut.tail, cut.pos);
        state.log_end = from;
        state.written_next = from;
        state.synced_next = from;
        state.batches_unsynced = 0;
        state.truncations += 1;
        if let Some(index) = index {
            state.next_index = index.0;
            state.written_next_index = index.0;
            state.synced_next_index = index.0;
            // The log ends in the cut segment's term: no segment is made for another.
            state.term = state.active().term;
            let raft = state.raft.as_mut().expect("a replicated log");
            raft.truncate(index.0);
            assert!(raft.hw_offset <= from, "committed data is never cut");
        }
        assert_eq!(state.active().key(), cut.segment, "the cut segment is last");
        drop(state);
        self.inner.cache.remove_from(self.inner.uid, from);
        self.inner.progress.notify();
        (doomed, bytes_removed)
    }

    /// Makes the in-memory cut durable (see [`Log::truncate_suffix`]). The cut segment is the
    /// last one and `term` is the term the log must end in.
    async fn cut_on_disk(
        &self,
        from: Offset,
        cut: &CutPoint,
        doomed: Vec<Segment<D::File>>,
        term: Term,
    ) -> Result<()> {
        self.wait_for_disk_reads().await;
        self.delete_cut_segments(doomed).await?;
        let (file, stem_name, segment_term, index, checkpoint) = {
            let state = self.inner.state.borrow();
            let segment = state.active();
            assert_eq!((segment.key(), segment.size_bytes), (cut.segment, cut.pos));
            let checkpoint = IndexCheckpoint {
                covered_bytes: cut.pos,
                next_offset: from,
                max_timestamp: segment.max_timestamp.unwrap_or(TimestampMs(-1)),
                batches: cut.batches,
            };
            let index = segment.index.clone();
            (
                segment.file.clone(),
                segment.stem(),
                segment.term,
                index,
                checkpoint,
            )
        };
        assert!(segment_term <= term, "segment terms never pass the log's");
        if cut.pos > 0 && segment_term < term {
            // Kept data of an older term: sealed (truncated, synced, indexed) as a roll seals,
            // and the log's term starts its own segment where the next batch goes.
            self.seal_active().await?;
            let index = self.next_segment_index();
            let (segment, allocated) = self.create_segment(from, term, index).await?;
            let mut state = self.inner.state.borrow_mut();
            let previous = state.segments.insert(segment.key(), segment);
            assert!(previous.is_none(), "nothing is left at or above the cut");
            state.writer = Writer::resume(0, &[], allocated);
            return Ok(());
        }
        let path = path_of(&self.inner.dir, &stem_name, LOG_SUFFIX);
        let truncated = async {
            file.truncate(cut.pos).await?;
            file.fdatasync().await
        };
        if let Err(error) = truncated.await {
            return Err(self.offline_io("truncate segment", path, &error));
        }
        self.write_index_files(&stem_name, &index, checkpoint)
            .await?;
        if segment_term < term {
            // Nothing of the segment is kept: it takes the log's term by an atomic rename.
            self.rename_active(term).await?;
        }
        Ok(())
    }

    /// Unlinks the segments wholly above a cut (never recycled: their batches carry offsets
    /// the log assigns again, which a reused file could pass off as a valid continuation),
    /// then syncs the directory.
    async fn delete_cut_segments(&self, doomed: Vec<Segment<D::File>>) -> Result<()> {
        if doomed.is_empty() {
            return Ok(());
        }
        let (disk, dir) = (&*self.inner.disk, &self.inner.dir);
        for segment in doomed.iter().rev() {
            let stem_name = segment.stem();
            if let Err(error) = remove_segment_names(disk, dir, &stem_name).await {
                let path = path_of(dir, &stem_name, LOG_SUFFIX);
                return Err(self.offline_io("delete truncated segment", path, &error));
            }
        }
        if let Err(error) = disk.sync_dir(dir).await {
            return Err(self.offline_io("sync directory", dir.clone(), &error));
        }
        Ok(())
    }

    /// Undoes the cut batches in the idempotent producer state and writes the snapshot.
    async fn truncate_producers(&self, from: Offset) -> Result<()> {
        let rebuild = self.inner.state.borrow_mut().producers.truncate(from);
        if !rebuild.is_empty() {
            let (mut states, next) = self.producer_snapshot().await;
            states.retain_ids(&rebuild);
            let states = self.replay_producers(states, next, Some(&rebuild)).await?;
            self.inner.state.borrow_mut().producers.absorb(states);
        }
        self.write_producer_snapshot().await
    }

    async fn clear_truncation_intent(&self) -> Result<()> {
        let (disk, dir) = (&*self.inner.disk, &self.inner.dir);
        let path = dir.join(TRUNCATION_FILE);
        let removed = async {
            match disk.remove(&path).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
            disk.sync_dir(dir).await
        };
        if let Err(error) = removed.await {
            return Err(self.offline_io("remove truncation intent", path, &error));
        }
        Ok(())
    }

    async fn wait_for_disk_reads(&self) {
        loop {
            let listener = self.inner.reads_idle.listen();
            if self.inner.disk_reads.get() == 0 {
                return;
            }
            listener.await;
        }
    }

    async fn write_small(&self, op: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let (disk, dir) = (&*self.inner.disk, &self.inner.dir);
        if let Err(error) = write_small_file(disk, dir, name, bytes).await {
            return Err(self.offline_io(op, dir.join(name), &error));
        }
        Ok(())
    }

    async fn read_exact(
        &self,
        file: &Rc<D::File>,
        path: &std::path::Path,
        pos: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        match file.read_at(pos, len).await {
            Ok(bytes) if bytes.len() == len => Ok(bytes),
            Ok(bytes) => {
                let detail = format!("short read at {pos}: {} of {len} bytes", bytes.len());
                self.go_offline(OfflineReason::corruption(path.to_path_buf(), detail));
                Err(Error::Offline(self.offline_reason().expect("just set")))
            }
            Err(error) => Err(self.offline_io("read", path.to_path_buf(), &error)),
        }
    }

    fn stem_of(&self, key: SegmentKey) -> String {
        let state = self.inner.state.borrow();
        state.segments.get(&key).expect("a live segment").stem()
    }

    /// Synced data of segment `base` does not read back as the log says: offline.
    fn corrupt_at(&self, base: SegmentKey, detail: String) -> Error {
        let path = path_of(&self.inner.dir, &self.stem_of(base), LOG_SUFFIX);
        self.go_offline(OfflineReason::corruption(path, detail));
        Error::Offline(self.offline_reason().expect("just set"))
    }
}

/// A replicated log's cut `from` must lie in `[first_index, last_index + 1]`, above the
/// committed index.
fn refuse_index_outside<F: shoal_io::DmaFile>(
    from: RaftIndex,
    state: &crate::log::State<F>,
) -> Result<()> {
    let raft = state.raft.as_ref().expect("a replicated log");
    let first = first_index_of(state);
    let refused = if from.0 <= raft.commit_index {
        EntriesRefused::Committed {
            committed: RaftIndex(raft.commit_index),
        }
    } else if from.0 < first {
        EntriesRefused::Compacted {
            first_index: RaftIndex(first),
        }
    } else if from.0 > state.next_index {
        EntriesRefused::AboveLastIndex {
            last_index: RaftIndex(state.next_index - 1),
        }
    } else {
        return Ok(());
    };
    Err(Error::EntriesRefused {
        requested: from,
        refused,
    })
}

/// `from` must lie in `[log_start, log_end]`.
fn refuse_outside(from: Offset, log_start: Offset, log_end: Offset) -> Result<()> {
    let refused = if from < log_start {
        TruncationRefused::BelowLogStart { log_start }
    } else if from > log_end {
        TruncationRefused::AboveLogEnd { log_end }
    } else {
        return Ok(());
    };
    Err(Error::InvalidTruncation {
        requested: from,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchCache, BufferPool, LogConfig, LogContext, Wait};
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use shoal_sim_disk::SimDisk;
    use std::cell::RefCell;
    use std::path::Path;

    #[test]
    fn the_cut_waits_for_disk_reads_that_started_before_it() {
        let disk = SimDisk::new();
        let mut exec = LocalPool::new();
        let ctx = LogContext {
            disk: Rc::new(disk.clone()),
            clock: Rc::new(shoal_io::SystemClock),
            pool: BufferPool::new(1 << 20),
            cache: BatchCache::new(0),
        };
        let config = LogConfig {
            segment_bytes_max: 1_000,
            ..LogConfig::default()
        };
        let dir = Path::new("/d/p").to_path_buf();
        let log = exec
            .run_until(Log::open(ctx, dir.clone(), config))
            .expect("open");
        let flusher = log.clone();
        let spawner = exec.spawner();
        spawner
            .spawn_local(async move { flusher.run_flusher().await })
            .expect("spawn");
        for _ in 0..6 {
            let batch = batch::build(&[&[7u8; 400]], 0);
            let _ = exec
                .run_until(log.append(batch, Wait::Durable))
                .expect("append");
        }
        let files = |disk: &SimDisk| exec_list(disk, &dir);
        let segments_before = files(&disk);
        assert!(segments_before > 2);
        // A reader that planned on the old log is still reading.
        log.inner.disk_reads.set(1);
        let done: Rc<RefCell<Option<Result<Truncated>>>> = Rc::default();
        let (task_log, out) = (log.clone(), done.clone());
        spawner
            .spawn_local(async move {
                *out.borrow_mut() = Some(task_log.truncate_suffix(Offset(1)).await);
            })
            .expect("spawn");
        exec.run_until_stalled();
        assert!(done.borrow().is_none(), "the cut waits for the reader");
        assert_eq!(
            log.offsets().log_end,
            Offset(1),
            "new readers see the new log"
        );
        assert_eq!(
            files(&disk),
            segments_before,
            "no file deleted under the reader"
        );
        log.inner.disk_reads.set(0);
        log.inner.reads_idle.notify();
        exec.run_until_stalled();
        let truncated = done.borrow_mut().take().expect("done").expect("truncate");
        assert!(truncated.segments_deleted > 0);
        assert!(files(&disk) < segments_before);
    }

    fn exec_list(disk: &SimDisk, dir: &Path) -> usize {
        let names = LocalPool::new().run_until(disk.list(dir)).expect("list");
        names.iter().filter(|n| n.ends_with(LOG_SUFFIX)).count()
    }

    #[test]
    fn the_intent_round_trips_and_damage_is_detected() {
        let plain = PendingTruncation {
            from: Offset(1234),
            term: Term(7),
            index: None,
        };
        let replicated = PendingTruncation {
            index: Some(RaftIndex(99)),
            ..plain
        };
        for (pending, len) in [
            (plain, TRUNCATION_BYTES),
            (replicated, TRUNCATION_BYTES_REPLICATED),
        ] {
            let mut bytes = pending.encode();
            assert_eq!(bytes.len(), len);
            bytes.resize(4096, 0);
            assert_eq!(PendingTruncation::decode(&bytes), Some(pending));
            for at in 0..len {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x08;
                assert_eq!(PendingTruncation::decode(&damaged), None, "flip at {at}");
            }
        }
    }

    #[test]
    fn offsets_outside_the_log_are_refused() {
        let (start, end) = (Offset(10), Offset(20));
        assert!(refuse_outside(Offset(10), start, end).is_ok());
        assert!(refuse_outside(Offset(20), start, end).is_ok());
        assert!(matches!(
            refuse_outside(Offset(9), start, end),
            Err(Error::InvalidTruncation {
                refused: TruncationRefused::BelowLogStart { .. },
                ..
            })
        ));
        assert!(matches!(
            refuse_outside(Offset(21), start, end),
            Err(Error::InvalidTruncation {
                refused: TruncationRefused::AboveLogEnd { .. },
                ..
            })
        ));
    }
}
