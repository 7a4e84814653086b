//! Test-only (feature `fault-switches`): a simulated power cut of a real broker process, for
//! the fault suite (`tests/chaos`). Every file the broker opens through [`GlommioDisk`] is
//! tracked: the ranges written (or in flight) since its last completed sync. [`cut_and_exit`] stops every
//! completion from reaching the broker (a write or sync that finishes after the cut never
//! returns, so nothing built on it can be acknowledged), zeroes each file's unsynced ranges
//! above the end of what it had synced, syncs that, and kills the process with SIGKILL.
//!
//! What the model loses is what a power cut may lose on a device that keeps each 4 KiB block
//! old or new: every write, completed or in flight, not covered by a completed `fdatasync` or
//! `O_DSYNC` write (an in-flight write may still land after the zeroing: also a state a cut
//! may leave, and never one that lost an acknowledgement, which needs a completion), from
//! the end of the file's synced extent on (a block below it was rewritten with the same
//! prefix, so keeping its new version is one of the states a cut may leave). What it does not
//! model: directory entries (a create, rename or unlink whose directory was not synced
//! survives), files written outside `GlommioDisk` (std::fs), and torn sectors inside a block.
//!
//! A process-wide mutex guards the table: this code exists only in test builds, and the
//! lock is taken once per completed write, never on a path a release broker runs.
//!
//! [`GlommioDisk`]: crate::GlommioDisk

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

struct Tracked {
    /// A plain (not O_DIRECT) descriptor of the same inode, opened with the file, so the cut
    /// can write it whatever became of the broker's descriptor or the file's name.
    fd: OwnedFd,
    /// Writes no completed sync covers yet: in flight, or completed (with the sequence number
    /// of their completion).
    unsynced: Vec<Unsynced>,
    /// The end of the highest range a completed sync covered.
    synced_end: u64,
}

struct Unsynced {
    start: u64,
    end: u64,
    ticket: u64,
    completed: Option<u64>,
}

#[derive(Default)]
struct Table {
    cut: bool,
    next_id: u64,
    /// Incremented at every completed write: a sync covers the writes completed before it
    /// was issued, i.e. those with a lower sequence number.
    next_seq: u64,
    next_ticket: u64,
    files: HashMap<u64, Tracked>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut guard = TABLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.get_or_insert_with(Table::default))
}

/// Starts tracking a file just opened at `path`; `None` when the second descriptor cannot be
/// opened (the file is then treated as always synced, and a warning says so).
pub(crate) fn track(path: &Path) -> Option<u64> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => Some(with(|t| {
            t.next_id += 1;
            let id = t.next_id;
            t.files.insert(
                id,
                Tracked {
                    fd: file.into(),
                    unsynced: Vec::new(),
                    synced_end: 0,
                },
            );
            id
        })),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "power-cut model cannot track this file");
            None
        }
    }
}

/// Stops here forever once the cut began: the operation's completion never reaches the broker.
async fn stop_if_cut(cut: bool) {
    if cut {
        std::future::pending::<()>().await;
    }
}

/// The sequence a sync issued now will cover up to (exclusive).
pub(crate) fn sync_issued() -> u64 {
    with(|t| t.next_seq)
}

/// A write of `[pos, pos + len)` is about to be issued: until a sync covers it, a cut may lose
/// it, even while it is still in flight. Returns its ticket for [`written`].
pub(crate) fn issuing(id: Option<u64>, pos: u64, len: u64) -> u64 {
    with(|t| {
        t.next_ticket += 1;
        let ticket = t.next_ticket;
        if let Some(file) = id.and_then(|id| t.files.get_mut(&id)) {
            file.unsynced.push(Unsynced {
                start: pos,
                end: pos + len,
                ticket,
                completed: None,
            });
        }
        ticket
    })
}

/// The write of `ticket` completed (not synced).
pub(crate) async fn written(id: Option<u64>, ticket: u64) {
    let cut = with(|t| {
        if !t.cut {
            let seq = t.next_seq;
            t.next_seq += 1;
            if let Some(file) = id.and_then(|id| t.files.get_mut(&id)) {
                if let Some(w) = file.unsynced.iter_mut().find(|w| w.ticket == ticket) {
                    w.completed = Some(seq);
                }
            }
        }
        t.cut
    });
    stop_if_cut(cut).await;
}

/// A sync issued at `issued` (see [`sync_issued`]) completed: it covers the writes completed
/// before it was issued. `own` is the ticket of an `O_DSYNC` write, durable itself.
pub(crate) async fn synced(id: Option<u64>, issued: u64, own: Option<u64>) {
    let cut = with(|t| {
        if !t.cut {
            if let Some(file) = id.and_then(|id| t.files.get_mut(&id)) {
                let mut end = file.synced_end;
                file.unsynced.retain(|w| {
                    let covered =
                        w.completed.is_some_and(|seq| seq < issued) || Some(w.ticket) == own;
                    if covered {
                        end = end.max(w.end);
                    }
                    !covered
                });
                file.synced_end = end;
            }
        }
        t.cut
    });
    stop_if_cut(cut).await;
}

/// The file was cut to `len` bytes.
pub(crate) fn truncated(id: Option<u64>, len: u64) {
    with(|t| {
        if let Some(file) = id.and_then(|id| t.files.get_mut(&id)) {
            file.unsynced.retain(|w| w.start < len);
            for w in &mut file.unsynced {
                w.end = w.end.min(len);
            }
            file.synced_end = file.synced_end.min(len);
        }
    });
}

/// The simulated power cut: see the module documentation. Never returns.
pub fn cut_and_exit() -> ! {
    let (files, zeroed_bytes) = with(|t| {
        t.cut = true;
        let mut zeroed = 0u64;
        let zeros = vec![0u8; 1 << 16];
        for file in t.files.values() {
            for &Unsynced { start, end, .. } in &file.unsynced {
                let mut pos = start.max(file.synced_end);
                while pos < end {
                    let n = ((end - pos) as usize).min(zeros.len());
                    match rustix::io::pwrite(&file.fd, &zeros[..n], pos) {
                        Ok(0) | Err(_) => break,
                        Ok(done) => {
                            pos += done as u64;
                            zeroed += done as u64;
                        }
                    }
                }
            }
            let _ = rustix::fs::fsync(&file.fd);
        }
        (t.files.len(), zeroed)
    });
    tracing::warn!(
        files,
        zeroed_bytes,
        "POWER CUT (fault switch): unsynced writes zeroed, killing the process"
    );
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; this is only reached if sending it failed.
    std::process::abort()
}
