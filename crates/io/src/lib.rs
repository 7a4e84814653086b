//! I/O traits the storage engine is written against.
//!
//! The storage crate never names a runtime. It is generic over [`Disk`], so the same log code
//! runs on glommio's O_DIRECT/io_uring files in production (`shoal-runtime`) and on a simulated
//! disk in tests (`shoal-sim-disk`) that loses un-synced writes and tears the last one.
//!
//! Futures returned here are `!Send`: a file belongs to the core that opened it.
//!
//! Durability vocabulary used by every implementation:
//! - **written**: [`DmaFile::write_at`] resolved `Ok`. The device has the bytes (DMA done), but
//!   they may sit in a volatile device cache: they survive a process crash, not a power loss.
//! - **synced**: a later [`DmaFile::fdatasync`] resolved `Ok`. The bytes survive a power loss.
//!
//! An `Err` from `write_at` or `fdatasync` must never be retried on the same file: the kernel
//! may already have dropped the dirty state, so a retry that succeeds proves nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A buffer that satisfies O_DIRECT alignment (address and length multiples of
/// [`shoal_model::constants::DMA_ALIGNMENT_BYTES`]).
pub trait DmaBuf: 'static {
    fn as_bytes(&self) -> &[u8];
    fn as_bytes_mut(&mut self) -> &mut [u8];
    /// Shrinks the buffer to `len` bytes (destructive, as in glommio).
    fn trim_to_size(&mut self, len: usize);
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing.
    Existing,
    /// Create the file if missing; keep its contents if present.
    CreateOrOpen,
    /// Create the file, truncating it if present.
    CreateTruncate,
}

/// One open file doing direct (uncached) I/O.
pub trait DmaFile: 'static {
    type Buf: DmaBuf;

    /// Allocates an aligned buffer for [`DmaFile::write_at`]. `len_bytes` must be a multiple of
    /// the DMA alignment. Callers account for the memory in their own budget (see the storage
    /// crate's buffer pool) before calling this.
    fn alloc_buf(&self, len_bytes: usize) -> Self::Buf;

    /// Writes the whole buffer at `pos` (aligned). On `Ok` the bytes are **written**, not synced.
    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize>;

    /// Writes the whole buffer at `pos` and makes *this write* **synced** in one operation
    /// (an `O_DSYNC` write: data plus the metadata needed to read it back, e.g. a new file
    /// size). Earlier writes that were only written are not guaranteed to be covered; callers
    /// that have such writes call [`DmaFile::fdatasync`] instead. One operation instead of a
    /// write and an `fdatasync` saves a completion round trip per durable write.
    async fn write_at_synced(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        let written = self.write_at(buf, pos).await?;
        self.fdatasync().await?;
        Ok(written)
    }

    /// Reads up to `len_bytes` from `pos` (any alignment). Short only at end of file.
    async fn read_at(&self, pos: u64, len_bytes: usize) -> io::Result<Vec<u8>>;

    /// Makes every write that completed before this call **synced**.
    async fn fdatasync(&self) -> io::Result<()>;

    /// Sets the file length. Shrinking drops the blocks past `len_bytes`.
    async fn truncate(&self, len_bytes: u64) -> io::Result<()>;

    /// Reserves blocks up to `len_bytes` (fallocate). With `keep_size` the visible size stays;
    /// without it the file grows (reads of the new range return zeros).
    async fn allocate(&self, len_bytes: u64, keep_size: bool) -> io::Result<()>;

    /// The file's visible size in bytes.
    async fn size_bytes(&self) -> io::Result<u64>;

    /// Closes the file. Does not sync.
    async fn close(self) -> io::Result<()>;
}

/// A directory tree of DMA files on one file system.
pub trait Disk: 'static {
    type File: DmaFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Lists the names (not paths) of the entries of `dir`.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `dir` survive a power loss.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Free bytes on the file system holding `dir` (statvfs), for adaptive fallocation.
    fn free_bytes(&self, dir: &Path) -> io::Result<u64>;
}

/// A source of time. Storage never reads the system clock itself, so tests control time.
pub trait Clock: 'static {
    /// Wall-clock milliseconds since the Unix epoch (record timestamps, retention).
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Joins a directory and a file name (a small helper so call sites stay short).
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
