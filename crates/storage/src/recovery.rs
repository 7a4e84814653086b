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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use shoal_io::{Clock, Disk, DmaFile, OpenMode};
use shoal_model::{Offset, Term, TimestampMs};

use crate::batch;
use crate::cache::BatchCache;
use crate::config::LogConfig;
use crate::error::{Error, OfflineReason, Result};
use crate::index::{self, IndexCheckpoint, SparseIndex};
use crate::log::{Inner, Log, LogStats, State};
use crate::pool::BufferPool;
use crate::retention::{decode_log_start, LOG_START_FILE};
use crate::roll::RECYCLE_DIR;
use crate::segment::{
    align_down, parse_log_name, path_of, read_small_file, stem, Segment, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX, TMP_SUFFIX,
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
    max_timestamp: Option<TimestampMs>,
    /// The first invalid batch (position, why), if the scan stopped before the file's end.
    stopped: Option<(u64, String)>,
}

const SCAN_READ_BYTES: usize = 1024 * 1024;

impl<D: Disk> Log<D> {
    /// Opens (creating if needed) the log in `dir`, recovering it as described in the module
    /// documentation. `Err(Error::Offline)` carries the reason a damaged log cannot be served.
    pub async fn open(ctx: LogContext<D>, dir: PathBuf, config: LogConfig) -> Result<Log<D>> {
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
        let lso_path = dir.join(LOG_START_FILE);
        let lso_bytes = read_small_file(&*disk, &lso_path)
            .await
            .map_err(|e| io("read log start", &lso_path, e))?;
        let log_start_saved = lso_bytes.as_deref().and_then(decode_log_start);
        let mut bases: Vec<(Offset, Term)> =
            names.iter().filter_map(|n| parse_log_name(n)).collect();
        bases.sort();
        let pending = read_pending_truncation(&*disk, &dir).await?;
        if let Some(pending) = pending {
            bases = drop_segments_above(&*disk, &dir, bases, pending.from).await?;
        }

        let now_ms = ctx.clock.now_ms();
        let mut segments = BTreeMap::new();
        let mut expected_next: Option<Offset> = None;
        let last_index = bases.len().checked_sub(1);
        let mut tail = None;
        for (i, &(base, term)) in bases.iter().enumerate() {
            if let Some(expected) = expected_next {
                if base != expected {
                    let path = path_of(&dir, &stem(base, term), LOG_SUFFIX);
                    let detail =
                        format!("segment starts at {base} but the previous one ends at {expected}");
                    return Err(Error::Offline(Rc::new(OfflineReason::corruption(
                        path, detail,
                    ))));
                }
            }
            let is_last = Some(i) == last_index;
            let (segment, tail_bytes) =
                recover_segment(&*disk, &dir, base, term, is_last, now_ms).await?;
            expected_next = Some(segment.next_offset);
            if is_last {
                tail = Some(tail_bytes);
            }
            let _ = segments.insert(base, segment);
        }
        let recovered_end = segments.values().next_back().map(|s| s.next_offset);
        let relaxed = matches!(config.durability, crate::config::Durability::Relaxed { .. });
        if let (Some(start), Some(end)) = (log_start_saved, recovered_end) {
            if start > end && relaxed {
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
        let log = Log::assemble(ctx, dir, config, segments, log_start_saved, tail).await?;
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
        mut segments: BTreeMap<Offset, Segment<D::File>>,
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
            state: RefCell::new(State {
                segments: BTreeMap::new(),
                writer: Writer::resume(0, &[], 0),
                log_start: Offset(0),
                log_end: Offset(0),
                term: Term(0),
                written_next: Offset(0),
                synced_next: Offset(0),
                batches_unsynced: 0,
                sync_requested: false,
                writes_in_flight: 0,
                truncations: 0,
                offline: None,
                closed: false,
                producers: Default::default(),
                stats: LogStats::default(),
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
                let (segment, allocated) = log.create_segment(base, Term(0)).await?;
                let _ = segments.insert(base, segment);
                (Vec::new(), allocated)
            }
        };
        let first_base = *segments.keys().next().expect("at least one segment");
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
        drop(state);
        Ok(log)
    }
}

/// Recovers one segment. Returns it and, for the last segment, the bytes of its partial tail
/// block and how many bytes the file holds (for the writer).
async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    base: Offset,
    term: Term,
    is_last: bool,
    now_ms: i64,
) -> Result<(Segment<D::File>, (Vec<u8>, u64))> {
    let stem_name = stem(base, term);
    let path = path_of(dir, &stem_name, LOG_SUFFIX);
    let io = |op: &str, e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(op, path.clone(), &e)))
    };
    let file = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(|e| io("open segment", e))?;
    let file_bytes = file.size_bytes().await.map_err(|e| io("stat segment", e))?;
    let saved = load_index(disk, dir, &stem_name).await;
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
            },
        ),
    };
    if !is_last && checkpoint.covered_bytes == file_bytes && checkpoint.covered_bytes > 0 {
        let max_timestamp = (checkpoint.max_timestamp.0 >= 0).then_some(checkpoint.max_timestamp);
        let segment = Segment {
            base,
            term,
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
    let (start_offset, start_pos) = index.last_offset_entry().unwrap_or((base, 0));
    let interval = shoal_model::constants::INDEX_INTERVAL_BYTES_DEFAULT;
    let scan = scan_segment(
        &file,
        &path,
        start_pos,
        start_offset,
        file_bytes,
        term,
        &mut index,
        interval,
    )
    .await?;
    if let Some((pos, why)) = &scan.stopped {
        // Bytes below this were synced: all of a sealed segment; for the active one, what the
        // last index checkpoint or the newest sync trailer (`trailer.rs`) recorded.
        let synced_bytes = if is_last {
            let trailer = synced_extent_after(&file, &path, *pos, file_bytes, base, term).await?;
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
    base: Offset,
    term: Term,
) -> Result<Option<u64>> {
    let io = |e: std::io::Error| {
        Error::Offline(Rc::new(OfflineReason::from_io(
            "read sync trailer",
            path.to_path_buf(),
            &e,
        )))
    };
    let here = TRAILER_BYTES.min((file_bytes - pos) as usize);
    let bytes = file.read_at(pos, here).await.map_err(io)?;
    if let Some(extent) = trailer::synced_extent_in(&bytes, pos, base, term) {
        return Ok(Some(extent));
    }
    let mut best = None;
    let mut at = pos;
    while at < file_bytes {
        let len = SCAN_READ_BYTES.min((file_bytes - at) as usize);
        let bytes = file.read_at(at, len).await.map_err(io)?;
        best = best.max(trailer::synced_extent_in(&bytes, at, base, term));
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

/// Removes the segments an interrupted truncation deletes whole (base above `from`) and
/// syncs the directory; returns the others.
async fn drop_segments_above<D: Disk>(
    disk: &D,
    dir: &Path,
    bases: Vec<(Offset, Term)>,
    from: Offset,
) -> Result<Vec<(Offset, Term)>> {
    let (kept, doomed): (Vec<_>, Vec<_>) = bases.into_iter().partition(|&(base, _)| base <= from);
    if doomed.is_empty() {
        return Ok(kept);
    }
    for &(base, term) in doomed.iter().rev() {
        let stem_name = stem(base, term);
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
) -> Option<(SparseIndex, IndexCheckpoint)> {
    let offsets = read_small_file(disk, &path_of(dir, stem_name, INDEX_SUFFIX))
        .await
        .ok()??;
    let (mut index, checkpoint) = index::decode(&offsets)?;
    // A damaged time index only costs timestamp lookups their head start.
    let times = read_small_file(disk, &path_of(dir, stem_name, TIME_INDEX_SUFFIX))
        .await
        .ok()
        .flatten();
    if let Some((time_index, time_checkpoint)) = times.as_deref().and_then(index::decode) {
        if time_checkpoint == checkpoint {
            index.times = time_index.times;
        }
    }
    Some((index, checkpoint))
}

/// Scans batches from `pos` (where `offset` starts) to the end of the file, validating each and
/// extending `index`. Stops at the first batch that fails length, CRC, continuity or term.
#[allow(clippy::too_many_arguments)]
async fn scan_segment<F: DmaFile>(
    file: &F,
    path: &Path,
    mut pos: u64,
    mut offset: Offset,
    file_bytes: u64,
    term: Term,
    index: &mut SparseIndex,
    interval: u64,
) -> Result<Scan> {
    let mut scan = Scan {
        end_bytes: pos,
        next_offset: offset,
        max_timestamp: None,
        stopped: None,
    };
    while pos < file_bytes {
        let len = SCAN_READ_BYTES.min((file_bytes - pos) as usize);
        let buf = file.read_at(pos, len).await.map_err(|e| {
            Error::Offline(Rc::new(OfflineReason::from_io(
                "scan segment",
                path.to_path_buf(),
                &e,
            )))
        })?;
        let mut at = 0usize;
        while at < buf.len() {
            let rest = &buf[at..];
            let size = match batch::peek_size_bytes(rest) {
                Some(size) if rest.len() >= size => size,
                Some(size) if at == 0 && pos + (size as u64) <= file_bytes => {
                    // A batch larger than one read: read it whole.
                    let whole = file.read_at(pos, size).await.map_err(|e| {
                        Error::Offline(Rc::new(OfflineReason::from_io(
                            "scan segment",
                            path.to_path_buf(),
                            &e,
                        )))
                    })?;
                    return continue_with(
                        file, path, whole, pos, offset, file_bytes, term, index, interval, scan,
                    )
                    .await;
                }
                Some(_) if pos + (at as u64) + (rest.len() as u64) < file_bytes && at > 0 => break,
                Some(_) => {
                    return Ok(stop(
                        scan,
                        pos + at as u64,
                        "batch runs past the end of the file",
                    ))
                }
                None if rest.len() < batch::LENGTH_FIELD_END
                    && pos + (buf.len() as u64) < file_bytes =>
                {
                    break
                }
                None => return Ok(stop(scan, pos + at as u64, "no valid batch length")),
            };
            let header = match batch::validate(&rest[..size]) {
                Ok(header) => header,
                Err(defect) => return Ok(stop(scan, pos + at as u64, defect.describe())),
            };
            if header.base_offset != offset {
                let why = format!(
                    "batch base offset {} where {offset} was expected",
                    header.base_offset
                );
                return Ok(stop(scan, pos + at as u64, &why));
            }
            if header.term > term {
                return Ok(stop(
                    scan,
                    pos + at as u64,
                    "batch term newer than its segment",
                ));
            }
            index.observe(offset, pos + at as u64, header.max_timestamp, interval);
            offset = header.next_offset();
            at += size;
            scan.end_bytes = pos + at as u64;
            scan.next_offset = offset;
            scan.max_timestamp = scan.max_timestamp.max(Some(header.max_timestamp));
        }
        if at == 0 {
            return Ok(stop(scan, pos, "no progress"));
        }
        pos += at as u64;
    }
    Ok(scan)
}

/// Validates one whole batch read on its own, then resumes the scan after it.
#[allow(clippy::too_many_arguments)]
async fn continue_with<F: DmaFile>(
    file: &F,
    path: &Path,
    whole: Vec<u8>,
    pos: u64,
    offset: Offset,
    file_bytes: u64,
    term: Term,
    index: &mut SparseIndex,
    interval: u64,
    scan: Scan,
) -> Result<Scan> {
    let header = match batch::validate(&whole) {
        Ok(header) if header.base_offset == offset && header.term <= term => header,
        Ok(_) => return Ok(stop(scan, pos, "large batch out of sequence")),
        Err(defect) => return Ok(stop(scan, pos, defect.describe())),
    };
    index.observe(offset, pos, header.max_timestamp, interval);
    let end = pos + header.size_bytes as u64;
    let max_timestamp = scan.max_timestamp.max(Some(header.max_timestamp));
    let rest = Box::pin(scan_segment(
        file,
        path,
        end,
        header.next_offset(),
        file_bytes,
        term,
        index,
        interval,
    ))
    .await?;
    Ok(Scan {
        max_timestamp: rest.max_timestamp.max(max_timestamp),
        ..rest
    })
}

fn stop(mut scan: Scan, pos: u64, why: &str) -> Scan {
    scan.stopped = Some((pos, why.to_string()));
    scan
}
