//! Replicated mode: the partition log as the Raft log of the partition's group, so each byte
//! is written once (`crates/consensus/PARTITION_GROUPS.md`).
//!
//! **One Raft entry = one stored batch.** An entry's Raft index is its ordinal in the log:
//! each segment's name carries the index of its first batch (`segment.rs`), and the index of
//! any batch is that plus the batches before it in the segment. Two kinds of entries:
//! - a *data entry* is a Kafka v2 batch. A leader's [`Log::propose`] stamps its base offset
//!   and the log's term, as [`Log::append`] does for a plain log. A follower's
//!   [`Log::append_entries`] stores the leader's bytes unchanged;
//! - an *internal entry* ([`Log::propose_internal`]: a new leader's empty entry, a
//!   configuration change) is a batch with attribute bit 15 (`batch.rs`) that takes no Kafka
//!   offset. Kafka readers ([`Log::read`], timestamps, producer state, the batch cache) never
//!   see it; only [`Log::entries`] returns it.
//!
//! **What is in memory, written, synced.** Placement is the same as a plain log's: an entry
//! is *in memory* once the call has placed it (`Wait::Buffered` returns then), *written* when
//! the flusher's DMA write covering it completed ([`Log::written_last_index`]) and *synced*
//! when an fdatasync (or O_DSYNC write) covering it did ([`Log::synced_last_index`]).
//! `Wait::Durable` returns at synced in `Durability::Fsync` and at written in `Relaxed` mode,
//! with the [`Guarantee`] reached. Raft's "persisted" signal is the synced index in Fsync
//! mode (the written index in Relaxed mode, whose restarts need Raft's unclean-restart rule).
//!
//! **The high watermark is the caller's.** In a replicated log the Kafka high watermark
//! (what [`Log::read`] serves, what Fetch waits for) moves only by [`Log::advance_commit`]:
//! the offset after the last data entry at or below the commit index, never above the
//! written end, never back. After open it is the log start until the first call. The log end
//! offset stays distinct ([`Log::offsets`]). A commit index past the written end is kept and
//! applied by the flusher as the writes complete. Entries above the high watermark are kept
//! in memory ([`RaftState`]; Raft bounds how many are in flight above its commit), so the
//! translation never waits for the disk for them; an older commit index (after a restart) is
//! translated through the sparse index on disk.

use std::collections::VecDeque;

use bytes::Bytes;
use shoal_io::Disk;
use shoal_model::constants::RAFT_RECENT_ENTRIES_MAX;
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::batch::{self, BatchDefect, BatchHeader};
use crate::error::{EntriesRefused, Error, Result};
use crate::log::{Appended, Guarantee, Log, State, Wait};
use crate::read::{DiskPlan, DiskRead};
use crate::segment::path_of;
use crate::segment::LOG_SUFFIX;

/// Read-ahead of an entry read from disk beyond what was asked: raft-rs asks again for the
/// next entries soon after (a follower catching up).
const ENTRY_READ_AHEAD_BYTES: usize = 64 * 1024;

/// Which kind of entry a stored batch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A Kafka record batch: takes `lastOffsetDelta + 1` offsets, served by Fetch.
    Data,
    /// A Raft entry with no Kafka data (attribute bit 15): takes no offset.
    Internal,
}

/// One Raft entry as stored: the batch bytes (base offset and term stamped), CRC-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: RaftIndex,
    pub term: Term,
    pub kind: EntryKind,
    pub bytes: Bytes,
}

/// A Raft entry's index and term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryId {
    pub index: RaftIndex,
    pub term: Term,
}

/// What [`Log::propose`] and [`Log::propose_internal`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// Offsets and durability, as [`Log::append`] answers them. An internal entry takes no
    /// offset: its `base_offset` is the next offset and `last_offset` the one before it.
    pub appended: Appended,
    /// The new entry's index and term; `None` when the batch was an idempotent producer's
    /// retry of a batch already in the log, answered with the original offsets (nothing was
    /// appended: the caller waits for the high watermark to pass `last_offset`).
    pub entry: Option<EntryId>,
}

/// What [`Log::append_entries`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendedEntries {
    /// The log's last index now (that of the last entry appended).
    pub last_index: RaftIndex,
    /// The log end offset now.
    pub log_end: Offset,
    pub guarantee: Guarantee,
}

/// What the log keeps in memory about one recent entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    pub(crate) index: u64,
    pub(crate) term: Term,
    pub(crate) base: Offset,
    /// The offset after the entry: the high watermark once it is committed (for an internal
    /// entry, its base offset: the offset after the last data entry before it).
    pub(crate) next: Offset,
    pub(crate) internal: bool,
    /// The first index of the segment holding it, and its byte position there.
    pub(crate) segment_index: u64,
    pub(crate) pos: u64,
    pub(crate) size_bytes: usize,
}

/// A replicated log's commit point and its recent entries, part of the log's `State`.
pub(crate) struct RaftState {
    /// The largest index [`Log::advance_commit`] was given since open (0: none yet).
    pub(crate) commit_index: u64,
    /// The index the high watermark stands for: the commit index, bounded by the written
    /// end, once translated to an offset.
    pub(crate) hw_index: u64,
    pub(crate) hw_offset: Offset,
    /// Whether `hw_offset` came from a commit (else it is the log start it opened with).
    hw_from_commit: bool,
    /// The entries placed since open, oldest first, contiguous up to the log's last. Those
    /// above `hw_index` are never dropped (Raft bounds them); older ones beyond
    /// [`RAFT_RECENT_ENTRIES_MAX`] are.
    recent: VecDeque<EntryMeta>,
    /// The index and term of the last entry retention removed from the front: raft-rs asks
    /// the term of the entry before the first one.
    pub(crate) removed_last: Option<(u64, Term)>,
}

impl RaftState {
    pub(crate) fn new(first_index: u64, log_start: Offset) -> RaftState {
        assert!(first_index >= 1, "index 0 is raft-rs's empty prefix");
        RaftState {
            commit_index: 0,
            hw_index: first_index - 1,
            hw_offset: log_start,
            hw_from_commit: false,
            recent: VecDeque::new(),
            removed_last: None,
        }
    }

    pub(crate) fn push(&mut self, meta: EntryMeta) {
        assert!(
            self.recent
                .back()
                .is_none_or(|last| last.index + 1 == meta.index && last.next <= meta.base),
            "recent entries are contiguous"
        );
        self.recent.push_back(meta);
        self.trim();
    }

    fn trim(&mut self) {
        while self.recent.len() > RAFT_RECENT_ENTRIES_MAX
            && self
                .recent
                .front()
                .is_some_and(|e| e.index <= self.hw_index)
        {
            let _ = self.recent.pop_front();
        }
    }

    pub(crate) fn find(&self, index: u64) -> Option<&EntryMeta> {
        let front = self.recent.front()?.index;
        let found = self
            .recent
            .get(usize::try_from(index.checked_sub(front)?).ok()?)?;
        assert_eq!(found.index, index, "recent entries are contiguous");
        Some(found)
    }

    /// Forgets the entries below `end` (a cleaning rewrote the segments holding them; they
    /// are committed, so dropping them from the front keeps the rest contiguous).
    pub(crate) fn forget_recent_below(&mut self, end: u64) {
        assert!(
            end <= self.hw_index + 1,
            "only committed entries are cleaned"
        );
        while self.recent.front().is_some_and(|e| e.index < end) {
            let _ = self.recent.pop_front();
        }
    }

    /// Drops the entries at or after `from` (a suffix cut).
    pub(crate) fn truncate(&mut self, from: u64) {
        assert!(from > self.commit_index, "committed entries are never cut");
        while self.recent.back().is_some_and(|e| e.index >= from) {
            let _ = self.recent.pop_back();
        }
    }

    /// Moves the high watermark to `offset`, the translation of `index`.
    fn set_high_watermark(&mut self, index: u64, offset: Offset) {
        assert!(index > self.hw_index && index <= self.commit_index);
        if self.hw_from_commit {
            assert!(
                offset >= self.hw_offset,
                "the high watermark never goes back"
            );
        }
        // Before the first commit it is the log start, which DeleteRecords may have put
        // inside the entries now committed.
        self.hw_offset = self.hw_offset.max(offset);
        self.hw_index = index;
        self.hw_from_commit = true;
        self.trim();
    }

    /// Applies the commit index as far as `written_next_index` allows, from the recent
    /// entries (those above the high watermark are always there). Returns whether it moved.
    pub(crate) fn apply_commit_within(&mut self, written_next_index: u64) -> bool {
        let target = self.commit_index.min(written_next_index.saturating_sub(1));
        if target <= self.hw_index {
            return false;
        }
        let Some(next) = self.find(target).map(|meta| meta.next) else {
            // Only a commit past entries this process never placed lands here, and those
            // were all written at open: `advance_commit` translated it from the disk.
            return false;
        };
        self.set_high_watermark(target, next);
        true
    }
}

/// A stored entry read back, with where it sits.
pub(crate) struct RawEntry {
    pub(crate) index: u64,
    pub(crate) pos: u64,
    pub(crate) header: BatchHeader,
    pub(crate) bytes: Bytes,
}

impl<D: Disk> Log<D> {
    fn require_replicated(&self, op: &'static str) -> Result<()> {
        if self.inner.replicated {
            Ok(())
        } else {
            Err(Error::WrongMode {
                op,
                replicated: false,
            })
        }
    }

    /// Whether this log was opened with [`Log::open_replicated`].
    pub fn is_replicated(&self) -> bool {
        self.inner.replicated
    }

    /// A leader's data entry: appends a producer's batch as [`Log::append`] does for a plain
    /// log (validation, idempotent producer deduplication, group commit, the same
    /// [`Guarantee`]s), stamped with the next offset and the log's term ([`Log::term`], which
    /// the leader set with [`Log::set_term`]), and returns the Raft index it got. The batch
    /// is readable by [`Log::read`] once [`Log::advance_commit`] covers it.
    pub async fn propose(&self, batch: Vec<u8>, wait: Wait) -> Result<Proposed> {
        self.require_replicated("propose")?;
        let (appended, placed) = self.append_client_batch(batch, wait).await?;
        Ok(Proposed {
            appended,
            entry: placed.map(|(index, term)| EntryId {
                index: RaftIndex(index),
                term,
            }),
        })
    }

    /// A leader's internal entry (a new leader's empty entry, a configuration change):
    /// stores `payload` as the body of an internal batch (`batch.rs`), stamped with the next
    /// offset and the log's term. It takes no Kafka offset and is never served to Kafka
    /// readers. Durability as [`Log::propose`].
    pub async fn propose_internal(&self, payload: &[u8], wait: Wait) -> Result<Proposed> {
        self.require_replicated("propose_internal")?;
        let entry = batch::build_internal(payload);
        let limit_bytes = self.batch_bytes_limit();
        if entry.len() > limit_bytes {
            return Err(Error::BatchTooLarge {
                size_bytes: entry.len(),
                limit_bytes,
            });
        }
        let header = batch::validate(&entry).expect("an internal entry is built valid");
        assert!(header.internal && header.offset_count == 0);
        let (appended, index, term) = {
            let _permit = self.inner.placement.acquire(1).await;
            self.inner.state.borrow().check_usable()?;
            // No timestamp: only `segment.bytes` (and the age of the segment's first data
            // batch) can roll before it.
            self.roll_if_due(entry.len(), TimestampMs(-1)).await?;
            self.reserve_chunk(entry.len()).await?;
            self.place(entry, &header, true)?
        };
        self.inner.work.notify();
        let guarantee = match wait {
            Wait::Buffered => Guarantee::Buffered,
            Wait::Durable => self.wait_durable_index(index).await?,
        };
        Ok(Proposed {
            appended: Appended {
                guarantee,
                ..appended
            },
            entry: Some(EntryId {
                index: RaftIndex(index),
                term,
            }),
        })
    }

    /// A follower's append: stores `entries` (each a stored batch, data or internal, and
    /// its term) at indexes `first`, `first + 1`, ... byte for byte as the leader stored
    /// them. Refused with [`Error::EntriesRefused`], before anything is placed (the log is
    /// unchanged), when:
    /// - `first` is not the log's last index + 1 (after a conflict, cut first:
    ///   [`Log::truncate_entries_from`]) — `NotContiguous`;
    /// - a batch is damaged (framing, CRC32C, counts) — `Corrupt`; or too large — `TooLarge`;
    /// - a batch's leader epoch is not its entry's term — `TermMismatch`;
    /// - a term is below the one before it (the log's last entry's, then each other's) —
    ///   `TermWentBack`;
    /// - a batch's base offset is not the log end offset as the entries before it leave it
    ///   (a gap or an overlap) — `OffsetGap`.
    ///
    /// An entry of a new term starts a new segment (as [`Log::set_term`] does; an empty
    /// active segment is renamed instead). Producer state follows the data batches, so this
    /// replica can lead with correct idempotence; a follower never refuses a batch for a
    /// producer's sequence. Written by the same flusher and group commit as every append;
    /// `wait` and the returned [`Guarantee`] as for [`Log::append`]. A storage failure on the
    /// way takes the log offline ([`Error::Offline`]), possibly with some entries placed.
    pub async fn append_entries(
        &self,
        first: RaftIndex,
        entries: Vec<(Term, Vec<u8>)>,
        wait: Wait,
    ) -> Result<AppendedEntries> {
        self.require_replicated("append_entries")?;
        let refuse = |i: usize, refused| Error::EntriesRefused {
            requested: first.plus(i as u64),
            refused,
        };
        let headers = self.check_entries_alone(first, &entries)?;
        let _permit = self.inner.placement.acquire(1).await;
        {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            check_entries_continue(&state, first, &entries, &headers)
                .map_err(|(i, refused)| refuse(i, refused))?;
        }
        let mut last = None;
        for ((term, bytes), header) in entries.into_iter().zip(headers) {
            self.enter_entry_term(term).await?;
            self.roll_if_due(bytes.len(), header.max_timestamp).await?;
            self.reserve_chunk(bytes.len()).await?;
            let (_, index, _) = self.place(bytes, &header, false)?;
            last = Some(index);
        }
        drop(_permit);
        self.inner.work.notify();
        let guarantee = match (wait, last) {
            (Wait::Durable, Some(index)) => self.wait_durable_index(index).await?,
            (Wait::Buffered, Some(_)) => Guarantee::Buffered,
            // Nothing to append: what the log holds is as durable as it was.
            (_, None) => Guarantee::Buffered,
        };
        let state = self.inner.state.borrow();
        Ok(AppendedEntries {
            last_index: RaftIndex(last.map_or(first.0 - 1, |index| index)),
            log_end: state.log_end,
            guarantee,
        })
    }

    /// The checks of [`Log::append_entries`] that need no log state: framing, CRC, size and
    /// leader epoch of each entry.
    fn check_entries_alone(
        &self,
        first: RaftIndex,
        entries: &[(Term, Vec<u8>)],
    ) -> Result<Vec<BatchHeader>> {
        let limit_bytes = self.batch_bytes_limit();
        let mut headers = Vec::with_capacity(entries.len());
        for (i, (term, bytes)) in entries.iter().enumerate() {
            let index = first.plus(i as u64);
            let refuse = |refused| Error::EntriesRefused {
                requested: index,
                refused,
            };
            if bytes.len() > limit_bytes {
                return Err(refuse(EntriesRefused::TooLarge {
                    index,
                    size_bytes: bytes.len(),
                    limit_bytes,
                }));
            }
            let header = match batch::validate(bytes) {
                Ok(header) if header.size_bytes == bytes.len() => header,
                Ok(_) => BatchDefect::LengthOutOfRange
                    .refuse(index)
                    .map_err(refuse)?,
                Err(defect) => defect.refuse(index).map_err(refuse)?,
            };
            if header.term != *term {
                return Err(refuse(EntriesRefused::TermMismatch {
                    index,
                    term: *term,
                    batch_epoch: header.term,
                }));
            }
            headers.push(header);
        }
        Ok(headers)
    }

    /// Gives the active segment the term of the entry about to be placed: a new term starts
    /// a new segment, or renames an empty active one (which may also take a lower term: after
    /// a cut, a new leader's entries may be older than the term the segment was named for).
    async fn enter_entry_term(&self, term: Term) -> Result<()> {
        let (active_term, empty) = {
            let state = self.inner.state.borrow();
            (state.active().term, state.active().is_empty())
        };
        if term == active_term {
            return Ok(());
        }
        if empty {
            return self.rename_active(term).await;
        }
        assert!(
            term > active_term,
            "checked: terms never go back along the log"
        );
        self.roll_into(term).await
    }

    /// Entries `[lo, hi)`, oldest first, as many as fit in `max_bytes` and at least one when
    /// `lo < hi` (raft-rs's `Storage::entries`). Each is a whole stored batch, CRC-checked
    /// when read from disk. Recent data entries come from the batch cache; the others from
    /// the segments, through the sparse index (ordinal lookup, then a scan of at most one
    /// index interval). Entries not yet written are waited for (raft-rs reads only entries
    /// it was told are persisted, so this does not happen in its use). Refused with
    /// `Compacted` below the first index and `AboveLastIndex` past the last index + 1. A read
    /// that overlaps a suffix cut returns entries of the old log or the new one, never both.
    pub async fn entries(
        &self,
        lo: RaftIndex,
        hi: RaftIndex,
        max_bytes: usize,
    ) -> Result<Vec<StoredEntry>> {
        self.require_replicated("entries")?;
        loop {
            let truncations = self.wait_entries_written(lo, hi).await?;
            let out = self.entries_once(lo.0, hi.0, max_bytes).await?;
            if self.inner.state.borrow().truncations == truncations {
                return Ok(out);
            }
            // A cut overlapped the read: read again from the new log alone.
        }
    }

    /// Checks `[lo, hi)` lies in the log and waits until all of it is written. Returns the
    /// log's truncation count then.
    async fn wait_entries_written(&self, lo: RaftIndex, hi: RaftIndex) -> Result<u64> {
        loop {
            let listener = self.inner.progress.listen();
            {
                let state = self.inner.state.borrow();
                state.check_usable()?;
                let first = first_index_of(&state);
                let refused = if lo.0 < first {
                    Some(EntriesRefused::Compacted {
                        first_index: RaftIndex(first),
                    })
                } else if hi.0 > state.next_index || lo > hi {
                    Some(EntriesRefused::AboveLastIndex {
                        last_index: RaftIndex(state.next_index - 1),
                    })
                } else {
                    None
                };
                if let Some(refused) = refused {
                    return Err(Error::EntriesRefused {
                        requested: lo,
                        refused,
                    });
                }
                if hi.0 <= state.written_next_index {
                    return Ok(state.truncations);
                }
            }
            listener.await;
        }
    }

    async fn entries_once(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<StoredEntry>> {
        let mut out: Vec<StoredEntry> = Vec::new();
        let mut total_bytes = 0usize;
        let fits = |out: &Vec<StoredEntry>, total: usize, size: usize| {
            out.is_empty() || total.saturating_add(size) <= max_bytes
        };
        let mut next = lo;
        while next < hi {
            if let Some(entry) = self.cached_entry(next) {
                if !fits(&out, total_bytes, entry.bytes.len()) {
                    break;
                }
                total_bytes += entry.bytes.len();
                out.push(entry);
                next += 1;
                continue;
            }
            let budget = max_bytes.saturating_sub(total_bytes);
            let raw = self
                .read_raw_entries(next, hi, budget, out.is_empty())
                .await?;
            if raw.is_empty() {
                break;
            }
            for entry in raw {
                assert_eq!(entry.index, next, "entries are read in order");
                let stored = StoredEntry {
                    index: RaftIndex(entry.index),
                    term: entry.header.term,
                    kind: if entry.header.internal {
                        EntryKind::Internal
                    } else {
                        EntryKind::Data
                    },
                    bytes: entry.bytes,
                };
                total_bytes += stored.bytes.len();
                out.push(stored);
                next += 1;
            }
            if total_bytes >= max_bytes {
                break;
            }
        }
        assert!(lo == hi || !out.is_empty(), "at least one entry when asked");
        Ok(out)
    }

    /// A recent data entry from the batch cache, if it is there.
    fn cached_entry(&self, index: u64) -> Option<StoredEntry> {
        let meta = {
            let state = self.inner.state.borrow();
            *state.raft.as_ref()?.find(index)?
        };
        if meta.internal {
            return None;
        }
        let hit = self.inner.cache.get(self.inner.uid, meta.base)?;
        if hit.bytes.len() != meta.size_bytes || hit.next_offset != meta.next {
            return None;
        }
        debug_assert!(batch::validate(&hit.bytes).is_ok_and(|h| h.base_offset == meta.base));
        Some(StoredEntry {
            index: RaftIndex(index),
            term: meta.term,
            kind: EntryKind::Data,
            bytes: hit.bytes,
        })
    }

    /// Reads entries from `next` (which the log holds, written) up to `hi`, from the disk,
    /// within one segment: one read plus read-ahead, at least one entry when `at_least_one`,
    /// then up to `max_bytes`. Every batch is CRC-checked; damage takes the log offline.
    pub(crate) async fn read_raw_entries(
        &self,
        next: u64,
        hi: u64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<Vec<RawEntry>> {
        // Counted until it returns, so a truncation never shortens a file under this read.
        let _reading = DiskRead::start(self);
        let (plan, mut index, segment_term) = self.plan_entry_read(next);
        let mut pos = plan.pos;
        let mut out: Vec<RawEntry> = Vec::new();
        let mut total = 0usize;
        // Whether an entry of `size` bytes is still taken.
        let room = |out: &Vec<RawEntry>, total: usize, size: usize| {
            (out.is_empty() && at_least_one) || total.saturating_add(size) <= max_bytes
        };
        while pos < plan.end_bytes && room(&out, total, 0) {
            let want = max_bytes
                .saturating_sub(total)
                .saturating_add(ENTRY_READ_AHEAD_BYTES);
            let len = want.min((plan.end_bytes - pos) as usize);
            let buf = Bytes::from(self.read_bytes(&plan, pos, len).await?);
            let mut at = 0usize;
            while at < buf.len() {
                if at > 0 && buf.len() - at < batch::LENGTH_FIELD_END {
                    break; // The next length field straddles this read.
                }
                let Some(size) = batch::peek_size_bytes(&buf[at..]) else {
                    let why = "bad batch length below the written end";
                    return Err(self.corrupt(&plan, pos + at as u64, why));
                };
                let bytes = if at + size <= buf.len() {
                    buf.slice(at..at + size)
                } else if at == 0 {
                    Bytes::from(self.read_bytes(&plan, pos, size).await?)
                } else {
                    break; // Continue with a fresh read from this batch's start.
                };
                let entry_pos = pos + at as u64;
                let header = self.checked_header(&plan, entry_pos, &bytes)?;
                if header.term != segment_term {
                    let why = format!(
                        "a batch of term {} in a segment of term {segment_term}",
                        header.term
                    );
                    return Err(self.corrupt(&plan, entry_pos, &why));
                }
                at += size;
                let this = index;
                index += 1;
                if this < next {
                    continue;
                }
                if this >= hi || !room(&out, total, size) {
                    return Ok(out);
                }
                total += size;
                out.push(RawEntry {
                    index: this,
                    pos: entry_pos,
                    header,
                    bytes,
                });
            }
            pos += at as u64;
        }
        Ok(out)
    }

    /// Where a disk read of entry `index` starts: its segment, a position at or before it
    /// (the recent entry itself, else the sparse index's last entry before it) and the index
    /// of the batch there; and the segment's term.
    fn plan_entry_read(&self, index: u64) -> (DiskPlan<D::File>, u64, Term) {
        let state = self.inner.state.borrow();
        let segment = state
            .segments
            .values()
            .rev()
            .find(|s| s.batches > 0 && s.first_index.is_some_and(|first| first.0 <= index))
            .expect("an index within the log belongs to a segment");
        let first = segment.first_index.expect("a replicated segment").0;
        assert!(
            index < first + segment.batches,
            "the index is in the segment"
        );
        let recent = state.raft.as_ref().and_then(|raft| raft.find(index));
        let (start_index, pos) = match recent {
            Some(meta) if meta.segment_index == first => (index, meta.pos),
            _ => segment
                .index
                .lookup_ordinal(index - first)
                .map_or((first, 0), |(_, ordinal, pos)| (first + ordinal, pos)),
        };
        let is_active = segment.key() == state.active().key();
        let end_bytes = if is_active {
            state.writer.written_bytes
        } else {
            segment.size_bytes
        };
        let plan = DiskPlan {
            file: segment.file.clone(),
            stem: segment.stem(),
            pos,
            end_bytes,
            // A cleaning keeps every batch of a replicated log: an entry read never skips to
            // the next segment.
            next_base: None,
        };
        (plan, start_index, segment.term)
    }

    /// Raft's `term(index)`: the term of entry `index`, from the segment names (the term
    /// cache). Also for the entry just before the first: term 0 for a log that starts at
    /// index 1 (raft-rs's empty prefix), or the term of the last entry retention removed in
    /// this process. `None` elsewhere (and in a plain log).
    pub fn term_of(&self, index: RaftIndex) -> Option<Term> {
        let state = self.inner.state.borrow();
        let raft = state.raft.as_ref()?;
        let first = first_index_of(&state);
        if index.0 + 1 == first {
            if first == 1 {
                return Some(Term(0));
            }
            return raft
                .removed_last
                .filter(|&(removed, _)| removed == index.0)
                .map(|(_, term)| term);
        }
        if index.0 < first || index.0 >= state.next_index {
            return None;
        }
        let segment = state
            .segments
            .values()
            .rev()
            .find(|s| s.batches > 0 && s.first_index.is_some_and(|f| f <= index))?;
        Some(segment.term)
    }

    /// The term cache: for each term in the log, oldest first, (term, its first index, its
    /// first offset), from the segment names. The current term is listed where its next
    /// entry goes when it has none yet.
    pub fn term_starts(&self) -> Vec<(Term, RaftIndex, Offset)> {
        let state = self.inner.state.borrow();
        let mut out: Vec<(Term, RaftIndex, Offset)> = Vec::new();
        for segment in state.segments.values() {
            let Some(first) = segment.first_index else {
                continue;
            };
            if out.last().is_none_or(|&(term, _, _)| term != segment.term) {
                out.push((segment.term, first, segment.base));
            }
        }
        out
    }

    /// The index of the first entry the log holds (1 for a new log; retention moves it up).
    /// 0 in a plain log, which counts no indexes.
    pub fn first_index(&self) -> RaftIndex {
        let state = self.inner.state.borrow();
        RaftIndex(if state.raft.is_some() {
            first_index_of(&state)
        } else {
            0
        })
    }

    /// The index of the last entry placed (in memory at least); `first_index() - 1` when the
    /// log holds none. 0 in a plain log.
    pub fn last_index(&self) -> RaftIndex {
        self.index_below(|state| state.next_index)
    }

    /// The last index whose bytes are written (survive kill -9): raft-rs's "persisted" in
    /// `Durability::Relaxed` mode.
    pub fn written_last_index(&self) -> RaftIndex {
        self.index_below(|state| state.written_next_index)
    }

    /// The last index whose bytes are synced (survive a power loss): raft-rs's "persisted"
    /// in `Durability::Fsync` mode.
    pub fn synced_last_index(&self) -> RaftIndex {
        self.index_below(|state| state.synced_next_index)
    }

    /// The commit index [`Log::advance_commit`] was last given (0 before the first call).
    pub fn committed_index(&self) -> RaftIndex {
        let state = self.inner.state.borrow();
        RaftIndex(state.raft.as_ref().map_or(0, |raft| raft.commit_index))
    }

    fn index_below(&self, next: impl Fn(&State<D::File>) -> u64) -> RaftIndex {
        let state = self.inner.state.borrow();
        match state.raft {
            Some(_) => RaftIndex(next(&state) - 1),
            None => RaftIndex(0),
        }
    }

    /// Raft committed every entry up to `committed`: the Kafka high watermark (what
    /// [`Log::read`] serves) moves to the offset after the last data entry at or below it.
    /// It never goes back (a lower or equal index changes nothing) and never passes the
    /// written end: a commit index past the written entries is kept and applied as the
    /// flusher writes them (raft-rs may commit entries a follower has not written yet).
    /// Returns the high watermark now. A commit past the last index is refused
    /// (`AboveLastIndex`: Raft never commits an entry the log does not hold). Translating an
    /// index the log no longer keeps in memory (after a restart) reads it through the sparse
    /// index; recent ones need no I/O.
    pub async fn advance_commit(&self, committed: RaftIndex) -> Result<Offset> {
        self.require_replicated("advance_commit")?;
        let target = {
            let durability = self.inner.config.borrow().durability;
            let mut state = self.inner.state.borrow_mut();
            state.check_usable()?;
            if committed.0 >= state.next_index {
                return Err(Error::EntriesRefused {
                    requested: committed,
                    refused: EntriesRefused::AboveLastIndex {
                        last_index: RaftIndex(state.next_index - 1),
                    },
                });
            }
            let written_next_index = state.written_next_index;
            let raft = state.raft.as_mut().expect("a replicated log");
            if committed.0 <= raft.commit_index {
                return Ok(state.high_watermark(durability));
            }
            raft.commit_index = committed.0;
            let target = committed.0.min(written_next_index - 1);
            if target <= raft.hw_index || raft.apply_commit_within(written_next_index) {
                drop(state);
                self.inner.progress.notify();
                return Ok(self.offsets().high_watermark);
            }
            target
        };
        // Not among the recent entries: read it (committed, so no cut can remove it).
        let entry = self.read_raw_entries(target, target + 1, 0, true).await?;
        let found = entry.first().filter(|e| e.index == target);
        let Some(next) = found.map(|e| e.header.next_offset()) else {
            let detail = format!("entry {target} cannot be read back");
            let path = path_of(&self.inner.dir, &self.stem_of_index(target), LOG_SUFFIX);
            self.go_offline(crate::error::OfflineReason::corruption(path, detail));
            return Err(Error::Offline(self.offline_reason().expect("just set")));
        };
        {
            let mut state = self.inner.state.borrow_mut();
            let written_next = state.written_next;
            assert!(next <= written_next, "a committed offset is written");
            let raft = state.raft.as_mut().expect("a replicated log");
            if target > raft.hw_index {
                raft.set_high_watermark(target, next);
            }
        }
        self.inner.progress.notify();
        Ok(self.offsets().high_watermark)
    }

    fn stem_of_index(&self, index: u64) -> String {
        let state = self.inner.state.borrow();
        state
            .segments
            .values()
            .rev()
            .find(|s| s.first_index.is_some_and(|first| first.0 <= index))
            .map_or_else(String::new, |s| s.stem())
    }

    /// Waits until entry `index` is as durable as the log's mode asks (synced in Fsync mode,
    /// written in Relaxed mode), like `wait_durable` does by offsets for a plain log; an
    /// index names internal entries too, which offsets cannot.
    /// The public form of the wait: entry `index` durable as the mode asks (raft-rs's
    /// "persisted" for the entries of a Ready the caller placed with `Wait::Buffered`).
    pub async fn wait_entry_durable(&self, index: RaftIndex) -> Result<Guarantee> {
        self.require_replicated("wait_entry_durable")?;
        self.wait_durable_index(index.0).await
    }

    pub(crate) async fn wait_durable_index(&self, index: u64) -> Result<Guarantee> {
        let truncations = self.inner.state.borrow().truncations;
        loop {
            let listener = self.inner.progress.listen();
            {
                let state = self.inner.state.borrow();
                // A truncation since the entry was placed synced it first (and may have cut
                // it since, which is a later operation than this append).
                if state.synced_next_index > index || state.truncations != truncations {
                    return Ok(Guarantee::Synced);
                }
                let relaxed = matches!(
                    self.inner.config.borrow().durability,
                    crate::config::Durability::Relaxed { .. }
                );
                if relaxed && state.written_next_index > index {
                    return Ok(Guarantee::Written);
                }
                if let Some(reason) = &state.offline {
                    return Err(Error::Offline(reason.clone()));
                }
            }
            listener.await;
        }
    }
}

/// The first index of a replicated log's state: its first segment's.
pub(crate) fn first_index_of<F>(state: &State<F>) -> u64
where
    F: shoal_io::DmaFile,
{
    let first = state.segments.values().next().expect("a log has a segment");
    first.first_index.map_or(0, |index| index.0)
}

/// The term of a replicated log's last entry (or of the entry before the first when it holds
/// none, 0 when unknown): the floor for the next entry's term.
fn last_entry_term<F: shoal_io::DmaFile>(state: &State<F>) -> Term {
    let segment = state.segments.values().rev().find(|s| s.batches > 0);
    match segment {
        Some(segment) => segment.term,
        None => state
            .raft
            .as_ref()
            .and_then(|raft| raft.removed_last)
            .map_or(Term(0), |(_, term)| term),
    }
}

/// The checks of [`Log::append_entries`] against the log: contiguity, terms, offsets.
/// `Err((position of the refused entry, why))`.
fn check_entries_continue<F: shoal_io::DmaFile>(
    state: &State<F>,
    first: RaftIndex,
    entries: &[(Term, Vec<u8>)],
    headers: &[BatchHeader],
) -> std::result::Result<(), (usize, EntriesRefused)> {
    if first.0 != state.next_index {
        let last_index = RaftIndex(state.next_index - 1);
        return Err((0, EntriesRefused::NotContiguous { last_index }));
    }
    let mut previous = last_entry_term(state);
    let mut expected = state.log_end;
    for (i, ((term, _), header)) in entries.iter().zip(headers).enumerate() {
        let index = first.plus(i as u64);
        if *term < previous {
            return Err((
                i,
                EntriesRefused::TermWentBack {
                    index,
                    term: *term,
                    previous,
                },
            ));
        }
        if header.base_offset != expected {
            return Err((
                i,
                EntriesRefused::OffsetGap {
                    index,
                    base_offset: header.base_offset,
                    expected,
                },
            ));
        }
        previous = *term;
        expected = header.next_offset();
    }
    Ok(())
}

impl BatchDefect {
    /// The refusal of entry `index` whose bytes have this defect.
    fn refuse(self, index: RaftIndex) -> std::result::Result<BatchHeader, EntriesRefused> {
        Err(EntriesRefused::Corrupt {
            index,
            defect: self,
        })
    }
}
