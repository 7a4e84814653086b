//! A simulated disk for storage tests.
//!
//! It implements [`shoal_io::Disk`] with the failure model Shoal promises to survive:
//! - A write is visible to reads at once but is only *written*: [`SimDisk::power_cut`] loses it
//!   unless a later `fdatasync` of the same file completed. The last un-synced write of each
//!   file is torn at 512-byte sector granularity (each sector all old or all new); with
//!   [`CutMode::Adversarial`] every un-synced write is torn that way, in any combination.
//! - File names created, renamed or removed are durable only after `sync_dir` of their directory.
//! - Faults on demand: fail the n-th next write or sync with an errno, a capacity limit
//!   (ENOSPC), and damage to synced bytes (bit rot) to check corruption is reported.
//! - O_DIRECT rules are asserted: write positions and lengths are multiples of 4 KiB. Fresh
//!   buffers are filled with garbage, as reused DMA memory would be, so code that writes bytes it
//!   did not initialise is caught by recovery checks.
//!
//! Every operation yields once to the executor, so concurrent appends interleave as they would
//! against a real device.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::{DMA_ALIGNMENT_BYTES, SECTOR_BYTES};

const ENOSPC: i32 = 28;
const ENOENT: i32 = 2;

/// How a power cut treats un-synced writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Un-synced writes are lost except the last one per file, which is torn per sector.
    TearLast,
    /// Every un-synced write keeps a random subset of its sectors.
    Adversarial,
}

#[derive(Clone, Default)]
pub struct SimDisk {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_inode: u64,
    capacity_bytes: Option<u64>,
    /// (operations to let through first, errno) for writes and syncs.
    fail_write: Option<(u32, i32)>,
    fail_sync: Option<(u32, i32)>,
    /// A disk whose volatile cache ignores flushes: syncs succeed and do nothing.
    syncs_ignored: bool,
    stats: SimStats,
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct Dir {
    current: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

/// Operation counts, for tests that check group commit and I/O patterns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub writes: u64,
    pub syncs: u64,
    pub bytes_written: u64,
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().ok_or_else(|| os_error(ENOENT))?.to_path_buf();
    let name = path
        .file_name()
        .ok_or_else(|| os_error(ENOENT))?
        .to_string_lossy()
        .into_owned();
    Ok((parent, name))
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// Limits the total bytes of all files; writes and allocations past it fail with ENOSPC.
    pub fn set_capacity_bytes(&self, capacity: Option<u64>) {
        self.state.borrow_mut().capacity_bytes = capacity;
    }

    /// The `after`-th next write (0 = the next one) fails with `errno`, once.
    pub fn fail_write(&self, after: u32, errno: i32) {
        self.state.borrow_mut().fail_write = Some((after, errno));
    }

    /// The `after`-th next fdatasync fails with `errno`, once.
    pub fn fail_sync(&self, after: u32, errno: i32) {
        self.state.borrow_mut().fail_sync = Some((after, errno));
    }

    /// Makes every later `fdatasync` (and the sync of `write_at_synced`) succeed without making
    /// anything durable, as a drive that acknowledges cache flushes it does not do. For tests
    /// that show a checker catches the loss that follows.
    pub fn ignore_syncs(&self, ignored: bool) {
        self.state.borrow_mut().syncs_ignored = ignored;
    }

    /// Disarms pending write and sync failures (a crash ends the process they were set for).
    pub fn clear_faults(&self) {
        let mut state = self.state.borrow_mut();
        state.fail_write = None;
        state.fail_sync = None;
    }

    /// Flips a bit of a file's byte, in both its visible and its durable contents.
    pub fn corrupt(&self, path: &Path, pos: u64) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = state.lookup(path)?;
        let file = state
            .inodes
            .get_mut(&inode)
            .ok_or_else(|| os_error(ENOENT))?;
        for bytes in [&mut file.current, &mut file.durable] {
            if let Some(byte) = bytes.get_mut(pos as usize) {
                *byte ^= 0x40;
            }
        }
        Ok(())
    }

    /// The names in `dir` that would survive a power cut now.
    pub fn durable_names(&self, dir: &Path) -> Vec<String> {
        let state = self.state.borrow();
        state
            .dirs
            .get(dir)
            .map(|d| d.durable.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Simulates a power cut: every file falls back to what was synced, plus torn un-synced
    /// writes as `mode` says; every directory falls back to its synced names. Handles opened
    /// before the cut must not be used afterwards.
    pub fn power_cut(&self, seed: u64, mode: CutMode) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = self.state.borrow_mut();
        let mut inodes: Vec<u64> = state.inodes.keys().copied().collect();
        inodes.sort_unstable();
        for id in inodes {
            let file = state.inodes.get_mut(&id).expect("listed above");
            let mut survived = file.durable.clone();
            let writes = std::mem::take(&mut file.unsynced);
            let torn: Vec<&(u64, Vec<u8>)> = match mode {
                CutMode::TearLast => writes.last().into_iter().collect(),
                CutMode::Adversarial => writes.iter().collect(),
            };
            for (pos, data) in torn {
                tear_into(&mut survived, *pos, data, &mut rng);
            }
            file.current = survived.clone();
            file.durable = survived;
        }
        for dir in state.dirs.values_mut() {
            dir.current = dir.durable.clone();
        }
        state.collect_garbage();
    }

    /// A process crash (kill -9): nothing is lost, un-synced writes stay visible.
    pub fn process_crash(&self) {}
}

/// Applies each 512-byte sector of a write with probability 1/2.
fn tear_into(bytes: &mut Vec<u8>, pos: u64, data: &[u8], rng: &mut StdRng) {
    let sector = SECTOR_BYTES as usize;
    for (i, chunk) in data.chunks(sector).enumerate() {
        if rng.gen_bool(0.5) {
            let at = pos as usize + i * sector;
            if bytes.len() < at + chunk.len() {
                bytes.resize(at + chunk.len(), 0);
            }
            bytes[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }
}

impl State {
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.current.get(&name))
            .copied()
            .ok_or_else(|| os_error(ENOENT))
    }

    fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|f| f.current.len().max(f.durable.len()) as u64)
            .sum()
    }

    fn check_space(&self, inode: u64, new_len: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        let old_len = self
            .inodes
            .get(&inode)
            .map_or(0, |f| f.current.len() as u64);
        if new_len > old_len && self.used_bytes() + (new_len - old_len) > capacity {
            return Err(os_error(ENOSPC));
        }
        Ok(())
    }

    fn collect_garbage(&mut self) {
        let live: std::collections::HashSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.current.values().chain(d.durable.values()))
            .copied()
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
    }

    fn take_fault(slot: &mut Option<(u32, i32)>) -> Option<i32> {
        match slot {
            Some((0, errno)) => {
                let errno = *errno;
                *slot = None;
                Some(errno)
            }
            Some((after, _)) => {
                *after -= 1;
                None
            }
            None => None,
        }
    }
}

/// Yields to the executor once, so other tasks run between I/O submissions and completions.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_once() -> YieldOnce {
    YieldOnce(false)
}

pub struct SimBuf(Vec<u8>);

impl DmaBuf for SimBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn trim_to_size(&mut self, len: usize) {
        assert!(len <= self.0.len());
        self.0.truncate(len);
    }
}

pub struct SimFile {
    disk: SimDisk,
    inode: u64,
}

impl DmaFile for SimFile {
    type Buf = SimBuf;

    fn alloc_buf(&self, len_bytes: usize) -> SimBuf {
        assert!(
            len_bytes > 0 && (len_bytes as u64).is_multiple_of(DMA_ALIGNMENT_BYTES),
            "unaligned DMA buffer"
        );
        // Garbage, as reused DMA memory would hold.
        SimBuf(vec![0xA5; len_bytes])
    }

    async fn write_at(&self, buf: Rc<SimBuf>, pos: u64) -> io::Result<usize> {
        let data = buf.as_bytes();
        assert!(
            pos.is_multiple_of(DMA_ALIGNMENT_BYTES),
            "O_DIRECT write at unaligned position {pos}"
        );
        assert!(
            (data.len() as u64).is_multiple_of(DMA_ALIGNMENT_BYTES),
            "O_DIRECT write of unaligned length"
        );
        yield_once().await;
        let mut state = self.disk.state.borrow_mut();
        if let Some(errno) = State::take_fault(&mut state.fail_write) {
            return Err(os_error(errno));
        }
        let end = pos + data.len() as u64;
        state.check_space(self.inode, end)?;
        state.stats.writes += 1;
        state.stats.bytes_written += data.len() as u64;
        let file = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        if file.current.len() < end as usize {
            file.current.resize(end as usize, 0);
        }
        file.current[pos as usize..end as usize].copy_from_slice(data);
        file.unsynced.push((pos, data.to_vec()));
        Ok(data.len())
    }

    async fn read_at(&self, pos: u64, len_bytes: usize) -> io::Result<Vec<u8>> {
        yield_once().await;
        let state = self.disk.state.borrow();
        let file = state
            .inodes
            .get(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        let start = (pos as usize).min(file.current.len());
        let end = (start + len_bytes).min(file.current.len());
        Ok(file.current[start..end].to_vec())
    }

    async fn fdatasync(&self) -> io::Result<()> {
        yield_once().await;
        let mut state = self.disk.state.borrow_mut();
        if let Some(errno) = State::take_fault(&mut state.fail_sync) {
            return Err(os_error(errno));
        }
        state.stats.syncs += 1;
        if state.syncs_ignored {
            return Ok(());
        }
        let file = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        file.durable = file.current.clone();
        file.unsynced.clear();
        Ok(())
    }

    async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.check_space(self.inode, len_bytes)?;
        let file = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        file.current.resize(len_bytes as usize, 0);
        Ok(())
    }

    async fn allocate(&self, len_bytes: u64, keep_size: bool) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.check_space(self.inode, len_bytes)?;
        let file = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        if !keep_size && file.current.len() < len_bytes as usize {
            file.current.resize(len_bytes as usize, 0);
        }
        Ok(())
    }

    async fn size_bytes(&self) -> io::Result<u64> {
        let state = self.disk.state.borrow();
        let file = state
            .inodes
            .get(&self.inode)
            .ok_or_else(|| os_error(ENOENT))?;
        Ok(file.current.len() as u64)
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        yield_once().await;
        let mut state = self.state.borrow_mut();
        let (dir, name) = split(path)?;
        let existing = state
            .dirs
            .get(&dir)
            .ok_or_else(|| os_error(ENOENT))?
            .current
            .get(&name)
            .copied();
        let inode = match (existing, mode) {
            (Some(inode), OpenMode::CreateTruncate) => {
                state
                    .inodes
                    .get_mut(&inode)
                    .expect("named inodes exist")
                    .current
                    .clear();
                inode
            }
            (Some(inode), _) => inode,
            (None, OpenMode::Existing) => return Err(os_error(ENOENT)),
            (None, _) => {
                state.next_inode += 1;
                let inode = state.next_inode;
                let _ = state.inodes.insert(inode, Inode::default());
                let _ = state
                    .dirs
                    .get_mut(&dir)
                    .expect("checked")
                    .current
                    .insert(name, inode);
                inode
            }
        };
        Ok(SimFile {
            disk: self.clone(),
            inode,
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        // Directory changes are separate steps a crash can fall between, as opens are.
        yield_once().await;
        let mut state = self.state.borrow_mut();
        let (dir, name) = split(path)?;
        let dir = state.dirs.get_mut(&dir).ok_or_else(|| os_error(ENOENT))?;
        dir.current
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| os_error(ENOENT))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        yield_once().await;
        let mut state = self.state.borrow_mut();
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if !state.dirs.contains_key(&to_dir) {
            return Err(os_error(ENOENT));
        }
        let inode = state
            .dirs
            .get_mut(&from_dir)
            .and_then(|d| d.current.remove(&from_name))
            .ok_or_else(|| os_error(ENOENT))?;
        let _ = state
            .dirs
            .get_mut(&to_dir)
            .expect("checked")
            .current
            .insert(to_name, inode);
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        let dir = state.dirs.get(dir).ok_or_else(|| os_error(ENOENT))?;
        Ok(dir.current.keys().cloned().collect())
    }

    /// Directories themselves are durable at once (a simplification: Shoal creates them once,
    /// at partition creation, before any data is acknowledged).
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        for ancestor in dir.ancestors() {
            let _ = state.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        yield_once().await;
        let mut state = self.state.borrow_mut();
        let entry = state.dirs.get_mut(dir).ok_or_else(|| os_error(ENOENT))?;
        entry.durable = entry.current.clone();
        state.collect_garbage();
        Ok(())
    }

    fn free_bytes(&self, _dir: &Path) -> io::Result<u64> {
        let state = self.state.borrow();
        Ok(state
            .capacity_bytes
            .map_or(u64::MAX / 2, |c| c.saturating_sub(state.used_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite_block_on as block_on;

    // A tiny single-threaded block_on, so this crate needs no executor dependency.
    fn futures_lite_block_on<F: Future>(future: F) -> F::Output {
        use std::task::{RawWaker, RawWakerVTable, Waker};
        fn noop(_: *const ()) {}
        fn clone(p: *const ()) -> RawWaker {
            RawWaker::new(p, &VTABLE)
        }
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        #[allow(unsafe_code)]
        // SAFETY: the vtable's functions ignore the data pointer, so any pointer is valid.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    fn block(fill: u8) -> Rc<SimBuf> {
        Rc::new(SimBuf(vec![fill; 4096]))
    }

    #[test]
    fn unsynced_writes_and_names_are_lost_synced_ones_kept() {
        let disk = SimDisk::new();
        block_on(async {
            disk.create_dir_all(Path::new("/d")).await.expect("dir");
            let file = disk
                .open(Path::new("/d/a"), OpenMode::CreateTruncate)
                .await
                .expect("open");
            disk.sync_dir(Path::new("/d")).await.expect("sync dir");
            file.write_at(block(1), 0).await.expect("write");
            file.fdatasync().await.expect("sync");
            file.write_at(block(2), 4096).await.expect("write");
            file.write_at(block(3), 8192).await.expect("write");
            let _ = disk
                .open(Path::new("/d/b"), OpenMode::CreateTruncate)
                .await
                .expect("open");
        });
        disk.power_cut(7, CutMode::TearLast);
        block_on(async {
            assert_eq!(
                disk.list(Path::new("/d")).await.expect("list"),
                vec!["a".to_string()]
            );
            let file = disk
                .open(Path::new("/d/a"), OpenMode::Existing)
                .await
                .expect("open");
            let bytes = file.read_at(0, 3 * 4096).await.expect("read");
            assert!(bytes[..4096].iter().all(|&b| b == 1), "synced block kept");
            assert!(bytes.len() <= 3 * 4096);
            // The write of 2s was not the last: it is gone entirely (zeros or absent).
            assert!(bytes
                .get(4096..8192)
                .is_none_or(|s| s.iter().all(|&b| b == 0)));
            // The last write is torn per sector: each sector is all 3s or all 0s.
            if let Some(last) = bytes.get(8192..) {
                for sector in last.chunks(512) {
                    assert!(sector.iter().all(|&b| b == 3) || sector.iter().all(|&b| b == 0));
                }
            }
        });
    }

    #[test]
    fn faults_fire_once_at_the_chosen_operation() {
        let disk = SimDisk::new();
        block_on(async {
            disk.create_dir_all(Path::new("/d")).await.expect("dir");
            let file = disk
                .open(Path::new("/d/a"), OpenMode::CreateTruncate)
                .await
                .expect("open");
            disk.fail_write(1, 5);
            file.write_at(block(1), 0)
                .await
                .expect("first write passes");
            let error = file
                .write_at(block(1), 4096)
                .await
                .expect_err("second fails");
            assert_eq!(error.raw_os_error(), Some(5));
            file.write_at(block(1), 4096)
                .await
                .expect("fault fired once");
            disk.set_capacity_bytes(Some(8192));
            let error = file.write_at(block(1), 8192).await.expect_err("full");
            assert_eq!(error.raw_os_error(), Some(ENOSPC));
        });
    }
}
