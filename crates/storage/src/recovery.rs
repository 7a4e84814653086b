//! Opening a log: recovery after a clean stop, a crash or a power loss.
//!
//! 1. Leftover `*.tmp` files (an interrupted atomic write) are removed, then the directory is
//!    synced: what a process crash left visible is made durable before it is built upon.
//! 2. Sealed segments are trusted to be synced (a roll syncs before it seals). Their index
//!    files are used when valid and cover the whole file; otherwise the segment is scanned and
//!    every batch validated. Any defect in a sealed segment is corruption: the log is reported
//!    offline with the reason, never silently shortened.
//! 3. The last segment is scanned from its last checkpointed index entry (or its start),
//!    checking each batch's length, CRC32C, offset continuity and term. The scan stops at the
//!    first batch that fails. If that is below the synced extent (the larger of what the last
//!    index checkpoint and the newest sync trailer, `trailer.rs`, recorded), synced data is
//!    damaged: offline. Otherwise it is a torn or unsynced tail: the file is truncated there and
//!    synced, so nothing after a hole is ever served and stale bytes cannot be re-read later.
//! 4. The recovered tail is synced before the log serves it, because data that merely survived
//!    a process crash may still be in a volatile device cache.
//! 5. If a suffix truncation was interrupted (its intent file `pending_truncation` survived),
//!    the segments wholly above its cut are removed before step 2, so the rest reads as one
//!    log. The cut itself is completed once the log is assembled, before anything is served
//!    (`truncate.rs`), so a crash during a truncation opens at the new end.
//! 6. A replicated log ([`Log::open_replicated`]) is validated the same way, and also by its
//!    Raft indexes: each segment's name gives the index of its first batch, which must be
//!    the previous segment's first index plus its batch count (sealed segments are synced,
//!    so a mismatch is corruption: offline with the reason); every batch must carry its
//!    segment's term exactly (a new term always starts a segment). A directory of the other
//!    mode is refused ([`Error::ModeMismatch`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use shoal_io::{Clock, Disk, DmaFile, OpenMode};
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::batch;
use crate::cache::BatchCache;
use crate::compact::{
    complete_swap, read_compaction_state, CompactionState, PendingCompaction, CLEANED_SUFFIX,
    COMPACTION_INTENT_FILE,
};
use crate::config::LogConfig;
use crate::error::{Error, OfflineReason, Result};
use crate::index::{self, IndexCheckpoint, SparseIndex};
use crate::log::{Inner, Log, LogStats, State};
use crate::pool::BufferPool;
use crate::replicated::RaftState;
use crate::retention::{decode_log_start, LOG_START_FILE};
use crate::roll::RECYCLE_DIR;
use crate::segment::{
    align_down, parse_log_name, path_of, read_small_file, Segment, SegmentKey, SegmentName,
    INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, TMP_SUFFIX,
};
use crate::sync::{Event, FifoSemaphore};
use crate::trailer::{self, TRAILER_BYTES};
use crate::truncate::{PendingTruncation, TRUNCATION_FILE};
use crate::writer::Writer;

/// Everything a log needs from its core.
pub struct LogContext<D: Disk> {
    pub disk: Rc<D>,
    pub clock: Rc<dyn Clock>,
    pub pool: BufferPool,
    pub cache: BatchCache,
}

impl<D: Disk> Clone for LogContext<D> {
    fn clone(&self) -> Self {
        LogContext {
            disk: self.disk.clone(),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// What a scan of one segment found.
struct Scan {
    end_bytes: u64,
    next_offset: Offset,
    /// The ordinal in the segment after the last valid batch (replicated logs).
    next_ordinal: Option<u64>,
    max_timestamp: Option<TimestampMs>,
    /// The first invalid batch (position, why), if the scan stopped before the file's end.
    stopped: Option<(u64, String)>,
}

const SCAN_READ_BYTES: usize = 1024 * 1024;

impl<D: Disk> Log<D> {
    /// Opens (creating if needed) the log in `dir`, recovering it as described in the module
    /// documentation. `Err(Error::Offline)` carries the reason a damaged log cannot be served.
    /// A plain log: a directory with replicated-log names is refused with
    /// [`Error::ModeMismatch`].
    pub async fn open(ctx: LogContext<D>, dir: PathBuf, config: LogConfig) -> Result<Log<D>> {
        Log::open_in_mode(ctx, dir, config, false).await
    }

    /// Opens (creating if needed) a replicated log in `dir`: the Raft log of a partition group
    /// (`replicated.rs`). Its segment names carry Raft indexes, its index files are format
    /// version 2; recovery also checks index continuity across segments. A directory that
    /// holds a plain log is refused with [`Error::ModeMismatch`]. The high watermark is the
    /// log start until [`Log::advance_commit`] is called.
    pub async fn open_replicated(
        ctx: LogContext<D>,
        dir: PathBuf,
        config: LogConfig,
    ) -> Result<Log<D>> {
        Log::open_in_mode(ctx, dir, config, true).await
    }

    async fn open_in_mode(
        ctx: LogContext<D>,
        dir: PathBuf,
        config: LogConfig,
        replicated: bool,
    ) -> Result<Log<D>> {
        let io = |op: &str, path: &Path, e: std::io::Error| {
            Error::Offline(Rc::new(OfflineReason::from_io(op, path.to_path_buf(), &e)))
        };
        let disk = ctx.disk.clone();
        disk.create_dir_all(&dir)
            .await
            .map_err(|e| io("create directory", &dir, e))?;
        let names = disk
            .list(&dir)
            .await
            .map_err(|e| io("list directory", &dir, e))?;
        let bases: Vec<SegmentName> = names.iter().filter_map(|n| parse_log_name(n)).collect();
        // Before anything is changed: a directory of the other mode is left as it is.
        check_mode(&dir, &bases, replicated)?;
        for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
            disk.remove(&dir.join(name))
                .await
                .map_err(|e| io("remove temporary file", &dir.join(name), e))?;
        }
        // After a kill -9, names created, renamed or removed just before it are visible but
        // may not be durable. Recovery reads the directory as it is now, so that state must
        // survive a later power cut before the log acknowledges anything on top of it. For
        // example, a truncation intent whose removal was not yet synced must not come back
        // and cut batches appended since, and a segment created just before the crash must
        // not lose its name.
        disk.sync_dir(&dir)
            .await
            .map_err(|e| io("sync directory", &dir, e))?;
        forget_recycled(&*disk, &dir.join(RECYCLE_DIR))
            .await
            .map_err(|e| io("clear recycled segments", &dir.join(RECYCLE_DIR), e))?;
        let compaction = finish_compaction(&*disk, &dir, &names).await?;
        let mut bases: Vec<SegmentName> = if compaction.relist {
            let names = disk
                .list(&dir)
                .await
                .map_err(|e| io("list directory", &dir, e))?;
            names.iter().filter_map(|n| parse_log_name(n)).collect()
        } else {
            bases
        };
        let compaction = compaction.state;
        let lso_path = dir.join(LOG_START_FILE);
        let lso_bytes = read_small_file(&*disk, &lso_path)
            .await
            .map_err(|e| io("read log start", &lso_path, e))?;
        let log_start_saved = lso_bytes.as_deref().and_then(decode_log_start);
        bases.sort_by_key(|name| name.key());
        let pending = read_pending_truncation(&*disk, &dir).await?;
        if let Some(pending) = pending {
            if pending.index.is_some() != replicated {
                let detail = "a truncation intent of the other log mode".to_string();
                return Err(Error::Offline(Rc::new(OfflineReason::corruption(
                    dir.join(TRUNCATION_FILE),
                    detail,
                ))));
            }
            bases = drop_segments_above(&*disk, &dir, bases, pending).await?;
        }

        let now_ms = ctx.clock.now_ms();
        let mut segments = BTreeMap::new();
        let mut expected_next: Option<(Offset, Option<RaftIndex>)> = None;
        let last_index = bases.len().checked_sub(1);
        let mut tail = None;
        for (i, &name) in bases.iter().enumerate() {
            if let Some(expected) = expected_next {
                check_continues(&dir, name, expected, compaction.marker_written)?;
            }
            let is_last = Some(i) == last_index;
            let (segment, tail_bytes) = recover_segment(
                &*disk,
                &dir,
                name,
                is_last,
                now_ms,
                compaction.marker_written,
            )
            .await?;
            expected_next = Some((segment.next_offset, segment.next_index()));
            if is_last {
                tail = Some(tail_bytes);
            }
            let _ = segments.insert(name.key(), segment);
        }
        let recovered_end = segments.values().next_back().map(|s| s.next_offset);
        let relaxed = matches!(config.durability, crate::config::Durability::Relaxed { .. });
        if let (Some(start), Some(end)) = (log_start_saved, recovered_end) {
            // Not for a replicated log: starting it again empty would lose its Raft indexes;
            // it stays offline with the reason (Raft's unclean restart is the consensus
            // crate's part).
            if start > end && relaxed && !replicated {
                // DeleteRecords may move the log start up to the written end in relaxed mode;
                // a power cut then lost unsynced batches below it. Those were deleted anyway and
                // unsynced data is not promised: start the log again, empty, at the log start.
                tracing::warn!(dir = %dir.display(), %start, %end,
                    "unsynced data below the log start was lost at a crash; the log restarts empty");
                for segment in std::mem::take(&mut segments).into_values() {
                    let stem_name = segment.stem();
                    remove_segment_names(&*disk, &dir, &stem_name)
                        .await
                        .map_err(|e| io("remove lost segment", &dir.join(&stem_name), e))?;
                }
                disk.sync_dir(&dir)
                    .await
                    .map_err(|e| io("sync directory", &dir, e))?;
                tail = None;
            }
        }
        let log = Log::assemble(
            ctx,
            dir,
            config,
            replicated,
            segments,
            log_start_saved,
            tail,
        )
        .await?;
        log.inner.state.borrow_mut().compaction = compaction;
        log.delete_segments_below_start().await?;
        match pending {
            // Rebuilds the producer state too, for the log as cut.
            Some(pending) => log.finish_truncation(pending).await?,
            None => log.rebuild_producers().await?,
        }
        Ok(log)
    }

    async fn assemble(
        ctx: LogContext<D>,
        dir: PathBuf,
        config: LogConfig,
        replicated: bool,
        mut segments: BTreeMap<SegmentKey, Segment<D::File>>,
        log_start_saved: Option<Offset>,
        tail: Option<(Vec<u8>, u64)>,
    ) -> Result<Log<D>> {
        let uid = ctx.cache.register_log();
        let inner = Inner {
            disk: ctx.disk.clone(),
            clock: ctx.clock.clone(),
            dir: dir.clone(),
            config: RefCell::new(config),
            pool: ctx.pool.clone(),
            cache: ctx.cache.clone(),
            uid,
            replicated,
            state: RefCell::new(State {
                segments: BTreeMap::new(),
                writer: Writer::resume(0, &[], 0),
                log_start: Offset(0),
                log_end: Offset(0),
                term: Term(0),
                written_next: Offset(0),
                synced_next: Offset(0),
                next_index: 0,
                written_next_index: 0,
                synced_next_index: 0,
                raft: None,
                batches_unsynced: 0,
                sync_requested: false,
                writes_in_flight: 0,
                truncations: 0,
                offline: None,
                closed: false,
                producers: Default::default(),
                stats: LogStats::default(),
                compaction: CompactionState::default(),
            }),
            placement: FifoSemaphore::new(1),
            progress: Event::default(),
            work: Event::default(),
            disk_reads: std::cell::Cell::new(0),
            reads_idle: Event::default(),
        };
        let log = Log {
            inner: Rc::new(inner),
        };
        let (tail_block, allocated) = match tail {
            Some(tail) => tail,
            None => {
                let base = log_start_saved.unwrap_or(Offset(0));
                // A new replicated log's first entry is index 1 (0 is raft-rs's empty prefix).
                let index = replicated.then_some(RaftIndex(1));
                let (segment, allocated) = log.create_segment(base, Term(0), index).await?;
                let _ = segments.insert(segment.key(), segment);
                (Vec::new(), allocated)
            }
        };
        let first_base = segments.keys().next().expect("at least one segment").base;
        let mut state = log.inner.state.borrow_mut();
        state.segments = segments;
        let active = state.active();
        let (end_bytes, log_end) = (active.size_bytes, active.next_offset);
        let log_start = log_start_saved.unwrap_or(first_base).max(first_base);
        if log_start > log_end {
            let detail = format!("log start offset {log_start} is past the recovered end {log_end}: synced data is missing");
            return Err(Error::Offline(Rc::new(OfflineReason::corruption(
                dir.join(LOG_START_FILE),
                detail,
            ))));
        }
        state.writer = Writer::resume(end_bytes, &tail_block, allocated);
        state.term = state.active().term;
        state.log_start = log_start;
        state.log_end = log_end;
        state.written_next = log_end;
        state.synced_next = log_end;
        if replicated {
            let first = state.segments.values().next().and_then(|s| s.first_index);
            let next = state.active().next_index();
            let (first, next) = (first.expect("named").0, next.expect("named").0);
            state.next_index = next;
            state.written_next_index = next;
            state.synced_next_index = next;
            state.raft = Some(RaftState::new(first, log_start));
        }
        drop(state);
        Ok(log)
    }
}

/// Refuses a directory whose segment names are of the other mode (or of both).
fn check_mode(dir: &Path, names: &[SegmentName], replicated: bool) -> Result<()> {
    let named_replicated = names.iter().filter(|n| n.index.is_some()).count();
    if named_replicated > 0 && named_replicated < names.len() {
        let detail = format!(
            "{named_replicated} of {} segments have replicated-log names",
            names.len()
        );
        return Err(Error::Offline(Rc::new(OfflineReason::corruption(
            dir.to_path_buf(),
            detail,
        ))));
    }
    let on_disk_replicated = named_replicated > 0;
    if !names.is_empty() && on_disk_replicated != replicated {
        tracing::error!(dir = %dir.display(), on_disk_replicated,
            "refused to open a partition directory of the other log mode");
        return Err(Error::ModeMismatch {
            path: dir.to_path_buf(),
            on_disk_replicated,
        });
    }
    Ok(())
}

/// A segment must start where the previous one ends: at its next offset and, in a replicated
/// log, at its next Raft index. Sealed segments are synced, so a mismatch is corruption.
fn check_continues(
    dir: &Path,
    name: SegmentName,
    expected: (Offset, Option<RaftIndex>),
    gaps_allowed: bool,
) -> Result<()> {
    let (next_offset, next_index) = expected;
    let offset_fits = if gaps_allowed {
        name.base >= next_offset
    } else {
        name.base == next_offset
    };
    let detail = if !offset_fits {
        format!(
            "segment starts at {} but the previous one ends at {next_offset}",
            name.base
        )
    } else if name.index != next_index {
        format!(
            "segment starts at index {:?} but the previous one ends at index {next_index:?}",
            name.index.map(|i| i.0),
        )
    } else {
        return Ok(());
    };
    let path = path_of(dir, &name.stem(), LOG_SUFFIX);
    Err(Error::Offline(Rc::new(OfflineReason::corruption(
        path, detail,
    ))))
}

/// Recovers one segment. Returns it and, for the last segment, the bytes of its partial tail
/// block and how many bytes the file holds (for the writer).
async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    name: SegmentName,
    is_last: bool,
    now_ms: i64,
    gaps_allowed: bool,
) -> Result<(Segment<D::File>, (Vec<u8>, u64))> {
    let (base, term, first_index) = (name.base, name.term, name.index);
    let replicated = first_index.is_some();
    let stem_name = name.stem();
    let path = path_of(dir, &stem_name, LOG_SUFFIX);
    let io = |op: &str, e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(op, path.clone(), &e)))
    };
    let file = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(|e| io("open segment", e))?;
    let file_bytes = file.size_bytes().await.map_err(|e| io("stat segment", e))?;
    let saved = load_index(disk, dir, &stem_name, replicated).await;
    let usable = saved.filter(|(_, cp)| {
        if is_last {
            cp.covered_bytes <= file_bytes
        } else {
            cp.covered_bytes == file_bytes
        }
    });
    let (mut index, checkpoint) = match usable {
        Some(found) => found,
        None => (
            SparseIndex::default(),
            IndexCheckpoint {
                covered_bytes: 0,
                next_offset: base,
                max_timestamp: TimestampMs(-1),
                batches: 0,
            },
        ),
    };
    if !is_last && checkpoint.covered_bytes == file_bytes && checkpoint.covered_bytes > 0 {
        let max_timestamp = (checkpoint.max_timestamp.0 >= 0).then_some(checkpoint.max_timestamp);
        let segment = Segment {
            base,
            term,
            first_index,
            batches: checkpoint.batches,
            file: Rc::new(file),
            index,
            size_bytes: file_bytes,
            next_offset: checkpoint.next_offset,
            max_timestamp,
            // Sealed segments never roll again.
            first_max_timestamp: None,
            created_ms: now_ms,
        };
        return Ok((segment, (Vec::new(), file_bytes)));
    }
    let start = if replicated {
        let (offset, ordinal, pos) = index.last_ordinal_entry().unwrap_or((base, 0, 0));
        Cursor {
            pos,
            offset,
            ordinal: Some(ordinal),
        }
    } else {
        let (offset, pos) = index.last_offset_entry().unwrap_or((base, 0));
        Cursor {
            pos,
            offset,
            ordinal: None,
        }
    };
    let interval = shoal_model::constants::INDEX_INTERVAL_BYTES_DEFAULT;
    let rules = ScanRules {
        term,
        interval,
        gaps_allowed,
    };
    let scan = scan_segment(&file, &path, start, file_bytes, rules, &mut index).await?;
    if let Some((pos, why)) = &scan.stopped {
        // Bytes below this were synced: all of a sealed segment; for the active one, what the
        // last index checkpoint or the newest sync trailer (`trailer.rs`) recorded.
        let synced_bytes = if is_last {
            let trailer = synced_extent_after(&file, &path, *pos, file_bytes, name).await?;
            checkpoint.covered_bytes.max(trailer.unwrap_or(0))
        } else {
            file_bytes
        };
        if *pos < synced_bytes {
            let detail = format!(
                "invalid batch at byte {pos} below the synced position {synced_bytes}: {why}"
            );
            return Err(Error::Offline(Rc::new(OfflineReason::corruption(
                path, detail,
            ))));
        }
        tracing::warn!(path = %path.display(), pos, why = %why, "truncating torn tail");
    }
    if scan.end_bytes < file_bytes {
        file.truncate(scan.end_bytes)
            .await
            .map_err(|e| io("truncate torn tail", e))?;
    }
    // Recovered bytes may only have survived a process crash: sync before serving them.
    file.fdatasync()
        .await
        .map_err(|e| io("sync recovered segment", e))?;
    let max_timestamp = scan
        .max_timestamp
        .max((checkpoint.max_timestamp.0 >= 0).then_some(checkpoint.max_timestamp));
    let tail_from = align_down(scan.end_bytes);
    let tail_len = (scan.end_bytes - tail_from) as usize;
    let tail = file
        .read_at(tail_from, tail_len)
        .await
        .map_err(|e| io("read tail block", e))?;
    if tail.len() != tail_len {
        let short =
            std::io::Error::other(format!("short read: {} of {tail_len} bytes", tail.len()));
        return Err(io("read tail block", short));
    }
    let allocated = scan.end_bytes;
    index.truncate_at(scan.end_bytes);
    // `truncate_at` falls back to the last time entry's max; the scan saw the batches after it
    // (later entries would otherwise record too low a running max, and ListOffsets by time
    // would skip the batch that set it; suffix truncation derives segment maxima from them).
    index.max_timestamp = index.max_timestamp.max(max_timestamp);
    let first_max_timestamp = if is_last && scan.end_bytes > 0 {
        let head = file
            .read_at(0, shoal_model::constants::BATCH_HEADER_BYTES)
            .await
            .map_err(|e| io("read first batch header", e))?;
        batch::header_max_timestamp(&head)
    } else {
        None
    };
    let segment = Segment {
        base,
        term,
        first_index,
        batches: scan.next_ordinal.unwrap_or(0),
        file: Rc::new(file),
        index,
        size_bytes: scan.end_bytes,
        next_offset: scan.next_offset,
        max_timestamp,
        first_max_timestamp,
        created_ms: now_ms,
    };
    Ok((segment, (tail, allocated)))
}

/// The synced extent recorded by the newest sync trailer of this segment at or after `pos`:
/// first right at `pos` (a clean end, the usual case), else anywhere up to the file's end (a
/// torn write, or damage inside the data). Reading the rest of the file happens only then.
async fn synced_extent_after<F: DmaFile>(
    file: &F,
    path: &Path,
    pos: u64,
    file_bytes: u64,
    name: SegmentName,
) -> Result<Option<u64>> {
    let (base, term, index) = (name.base, name.term, name.index);
    let io = |e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(
            "read sync trailer",
            path.to_path_buf(),
            &e,
        )))
    };
    let here = TRAILER_BYTES.min((file_bytes - pos) as usize);
    let bytes = file.read_at(pos, here).await.map_err(io)?;
    if let Some(extent) = trailer::synced_extent_in(&bytes, pos, base, term, index) {
        return Ok(Some(extent));
    }
    let mut best = None;
    let mut at = pos;
    while at < file_bytes {
        let len = SCAN_READ_BYTES.min((file_bytes - at) as usize);
        let bytes = file.read_at(at, len).await.map_err(io)?;
        best = best.max(trailer::synced_extent_in(&bytes, at, base, term, index));
        if at + (len as u64) >= file_bytes {
            break;
        }
        // Overlap so a trailer straddling two reads is seen whole.
        at += (len - TRAILER_BYTES) as u64;
    }
    Ok(best)
}

/// The intent of a truncation a crash interrupted, if one is on disk. The file is written
/// atomically, so one that does not decode is damage: offline rather than guessing the cut.
async fn read_pending_truncation<D: Disk>(
    disk: &D,
    dir: &Path,
) -> Result<Option<PendingTruncation>> {
    let path = dir.join(TRUNCATION_FILE);
    let bytes = read_small_file(disk, &path).await.map_err(|e| {
        Error::Offline(Rc::new(OfflineReason::from_io(
            "read truncation intent",
            path.clone(),
            &e,
        )))
    })?;
    match bytes.as_deref().map(PendingTruncation::decode) {
        None => Ok(None),
        Some(Some(pending)) => Ok(Some(pending)),
        Some(None) => {
            let detail = "the truncation intent file does not decode".to_string();
            Err(Error::Offline(Rc::new(OfflineReason::corruption(
                path, detail,
            ))))
        }
    }
}

/// Removes the segments an interrupted truncation deletes whole (those after the one the
/// cut falls in: base above its offset, or in a replicated log first index above its index)
/// and syncs the directory; returns the others.
async fn drop_segments_above<D: Disk>(
    disk: &D,
    dir: &Path,
    bases: Vec<SegmentName>,
    pending: PendingTruncation,
) -> Result<Vec<SegmentName>> {
    let (kept, doomed): (Vec<_>, Vec<_>) =
        bases
            .into_iter()
            .partition(|name| match (pending.index, name.index) {
                (Some(from), Some(first)) => first <= from,
                _ => name.base <= pending.from,
            });
    if doomed.is_empty() {
        return Ok(kept);
    }
    for name in doomed.iter().rev() {
        let stem_name = name.stem();
        remove_segment_names(disk, dir, &stem_name)
            .await
            .map_err(|e| {
                let path = path_of(dir, &stem_name, LOG_SUFFIX);
                Error::Offline(Rc::new(OfflineReason::from_io(
                    "delete truncated segment",
                    path,
                    &e,
                )))
            })?;
    }
    disk.sync_dir(dir).await.map_err(|e| {
        Error::Offline(Rc::new(OfflineReason::from_io(
            "sync directory",
            dir.to_path_buf(),
            &e,
        )))
    })?;
    Ok(kept)
}

/// Removes a segment's log and index files (missing ones are fine).
pub(crate) async fn remove_segment_names<D: Disk>(
    disk: &D,
    dir: &Path,
    stem_name: &str,
) -> std::io::Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        match disk.remove(&path_of(dir, stem_name, suffix)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// Drops every file kept for reuse. A move into or out of `recycle/` renames across two
/// directories, and a crash can leave it durable in one and not the other (ext4 without a
/// journal, and the simulated disk, order the two directory updates independently): a file
/// can then be both a live segment and a recycled one, and reusing it would overwrite the
/// segment. Removing the recycled name is safe either way (a file another name still holds
/// stays), so nothing recycled is trusted across a restart.
async fn forget_recycled<D: Disk>(disk: &D, recycle: &Path) -> std::io::Result<()> {
    let names = match disk.list(recycle).await {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if names.is_empty() {
        return Ok(());
    }
    for name in names {
        disk.remove(&recycle.join(name)).await?;
    }
    disk.sync_dir(recycle).await
}

async fn load_index<D: Disk>(
    disk: &D,
    dir: &Path,
    stem_name: &str,
    replicated: bool,
) -> Option<(SparseIndex, IndexCheckpoint)> {
    let offsets = read_small_file(disk, &path_of(dir, stem_name, INDEX_SUFFIX))
        .await
        .ok()??;
    let (mut index, checkpoint) = index::decode(&offsets, replicated)?;
    // A damaged time index only costs timestamp lookups their head start.
    let times = read_small_file(disk, &path_of(dir, stem_name, TIME_INDEX_SUFFIX))
        .await
        .ok()
        .flatten();
    let decoded = times
        .as_deref()
        .and_then(|bytes| index::decode(bytes, replicated));
    if let Some((time_index, time_checkpoint)) = decoded {
        if time_checkpoint == checkpoint {
            index.times = time_index.times;
        }
    }
    Some((index, checkpoint))
}

/// What a scan checks batches against.
#[derive(Clone, Copy)]
struct ScanRules {
    /// The segment's term.
    term: Term,
    /// Index interval in bytes.
    interval: u64,
    /// The log was compacted (`compact.rs`): offsets may have gaps.
    gaps_allowed: bool,
}

/// What `finish_compaction` found.
struct CompactionAtOpen {
    state: CompactionState,
    /// Segment files changed: the directory must be listed again.
    relist: bool,
}

/// Completes a cleaning's swap that a crash interrupted after its commit point (the intent
/// `pending_compaction` exists: its cleaned file was synced before it), or drops the cleaned
/// file of one interrupted before it. Then reads the cleaner's state.
async fn finish_compaction<D: Disk>(
    disk: &D,
    dir: &Path,
    names: &[String],
) -> Result<CompactionAtOpen> {
    let io = |op: &str, path: PathBuf, e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(op, path, &e)))
    };
    let intent_path = dir.join(COMPACTION_INTENT_FILE);
    let intent = read_small_file(disk, &intent_path)
        .await
        .map_err(|e| io("read compaction intent", intent_path.clone(), e))?;
    let mut relist = false;
    match intent.as_deref().map(PendingCompaction::decode) {
        Some(Some(pending)) => {
            let mut stems: Vec<SegmentName> = names
                .iter()
                .filter_map(|n| parse_log_name(n))
                .filter(|name| match (pending.indexes, name.index) {
                    (Some((first, end)), Some(index)) => index >= first && index < end,
                    (None, None) => name.base >= pending.first && name.base < pending.end,
                    // A name of the other mode: `check_mode` refuses the directory.
                    _ => false,
                })
                .collect();
            stems.sort_by_key(|name| name.key());
            let first = SegmentName {
                base: pending.first,
                term: pending.term,
                index: pending.indexes.map(|(first, _)| first),
            };
            if stems.first() != Some(&first) {
                stems.insert(0, first);
            }
            let stems: Vec<String> = stems.iter().map(|name| name.stem()).collect();
            tracing::warn!(dir = %dir.display(), first = %pending.first, end = %pending.end,
                "completing a log cleaning's swap interrupted by a crash");
            complete_swap(disk, dir, &stems)
                .await
                .map_err(|e| io("complete compaction swap", dir.to_path_buf(), e))?;
            disk.remove(&intent_path)
                .await
                .map_err(|e| io("remove compaction intent", intent_path.clone(), e))?;
            relist = true;
        }
        Some(None) => {
            let detail = "the compaction intent file does not decode".to_string();
            return Err(Error::Offline(Rc::new(OfflineReason::corruption(
                intent_path,
                detail,
            ))));
        }
        None => {
            for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
                disk.remove(&dir.join(name))
                    .await
                    .map_err(|e| io("remove unfinished cleaned segment", dir.join(name), e))?;
                relist = true;
            }
        }
    }
    if relist {
        disk.sync_dir(dir)
            .await
            .map_err(|e| io("sync directory", dir.to_path_buf(), e))?;
    }
    let state = read_compaction_state(disk, dir)
        .await
        .map_err(|e| io("read compaction state", dir.to_path_buf(), e))?;
    Ok(CompactionAtOpen { state, relist })
}

/// Where a scan starts: a batch's position, its offset and (replicated logs) its ordinal in
/// the segment.
#[derive(Clone, Copy)]
struct Cursor {
    pos: u64,
    offset: Offset,
    ordinal: Option<u64>,
}

/// Why the batch at the cursor does not continue the segment, if it does not: its offset,
/// and its term (a replicated log's batches carry their segment's term exactly; a plain
/// log's at most it).
fn out_of_sequence(header: &batch::BatchHeader, at: Cursor, rules: ScanRules) -> Option<String> {
    let term = rules.term;
    // A compacted log's batches may start past the previous one's end (cleaned-out
    // offsets), never before it: a recycled file's stale batches carry older offsets.
    let offset_fits = if rules.gaps_allowed {
        header.base_offset >= at.offset
    } else {
        header.base_offset == at.offset
    };
    if !offset_fits {
        return Some(format!(
            "batch base offset {} where {} was expected",
            header.base_offset, at.offset
        ));
    }
    let term_fits = match at.ordinal {
        Some(_) => header.term == term,
        None => header.term <= term,
    };
    if !term_fits {
        return Some(format!(
            "batch term {} does not fit its segment's term {term}",
            header.term
        ));
    }
    None
}

/// Records a valid batch of `size` bytes at the cursor and moves the cursor past it.
fn advance(at: &mut Cursor, header: &batch::BatchHeader, index: &mut SparseIndex, interval: u64) {
    let max_ts = (!header.internal).then_some(header.max_timestamp);
    index.observe(at.offset, at.ordinal, at.pos, max_ts, interval);
    at.pos += header.size_bytes as u64;
    at.offset = header.next_offset();
    at.ordinal = at.ordinal.map(|ordinal| ordinal + 1);
}

/// Scans batches from the cursor to the end of the file, validating each and extending
/// `index`. Stops at the first batch that fails length, CRC, continuity or term.
async fn scan_segment<F: DmaFile>(
    file: &F,
    path: &Path,
    start: Cursor,
    file_bytes: u64,
    rules: ScanRules,
    index: &mut SparseIndex,
) -> Result<Scan> {
    let interval = rules.interval;
    let mut at = start;
    let mut scan = Scan {
        end_bytes: at.pos,
        next_offset: at.offset,
        next_ordinal: at.ordinal,
        max_timestamp: None,
        stopped: None,
    };
    let io = |e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(
            "scan segment",
            path.to_path_buf(),
            &e,
        )))
    };
    while at.pos < file_bytes {
        let pos = at.pos;
        let len = SCAN_READ_BYTES.min((file_bytes - pos) as usize);
        let buf = file.read_at(pos, len).await.map_err(io)?;
        let mut used = 0usize;
        while used < buf.len() {
            let rest = &buf[used..];
            let size = match batch::peek_size_bytes(rest) {
                Some(size) if rest.len() >= size => size,
                Some(size) if used == 0 && pos + (size as u64) <= file_bytes => {
                    // A batch larger than one read: read it whole.
                    let whole = file.read_at(pos, size).await.map_err(io)?;
                    return continue_with(file, path, whole, at, file_bytes, rules, index, scan)
                        .await;
                }
                Some(_) if pos + (used as u64) + (rest.len() as u64) < file_bytes && used > 0 => {
                    break
                }
                Some(_) => return Ok(stop(scan, at.pos, "batch runs past the end of the file")),
                None if rest.len() < batch::LENGTH_FIELD_END
                    && pos + (buf.len() as u64) < file_bytes =>
                {
                    break
                }
                None => return Ok(stop(scan, at.pos, "no valid batch length")),
            };
            let header = match batch::validate(&rest[..size]) {
                Ok(header) => header,
                Err(defect) => return Ok(stop(scan, at.pos, defect.describe())),
            };
            if let Some(why) = out_of_sequence(&header, at, rules) {
                return Ok(stop(scan, at.pos, &why));
            }
            advance(&mut at, &header, index, interval);
            used += size;
            scan.end_bytes = at.pos;
            scan.next_offset = at.offset;
            scan.next_ordinal = at.ordinal;
            if !header.internal {
                scan.max_timestamp = scan.max_timestamp.max(Some(header.max_timestamp));
            }
        }
        if used == 0 {
            return Ok(stop(scan, at.pos, "no progress"));
        }
    }
    Ok(scan)
}

/// Validates one whole batch read on its own, then resumes the scan after it.
#[allow(clippy::too_many_arguments)]
async fn continue_with<F: DmaFile>(
    file: &F,
    path: &Path,
    whole: Vec<u8>,
    at: Cursor,
    file_bytes: u64,
    rules: ScanRules,
    index: &mut SparseIndex,
    scan: Scan,
) -> Result<Scan> {
    let header = match batch::validate(&whole) {
        Ok(header) if out_of_sequence(&header, at, rules).is_none() => header,
        Ok(_) => return Ok(stop(scan, at.pos, "large batch out of sequence")),
        Err(defect) => return Ok(stop(scan, at.pos, defect.describe())),
    };
    let mut next = at;
    advance(&mut next, &header, index, rules.interval);
    let max_timestamp = if header.internal {
        scan.max_timestamp
    } else {
        scan.max_timestamp.max(Some(header.max_timestamp))
    };
    let rest = Box::pin(scan_segment(file, path, next, file_bytes, rules, index)).await?;
    Ok(Scan {
        max_timestamp: rest.max_timestamp.max(max_timestamp),
        ..rest
    })
}

fn stop(mut scan: Scan, pos: u64, why: &str) -> Scan {
    scan.stopped = Some((pos, why.to_string()));
    scan
}
