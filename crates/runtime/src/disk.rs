//! [`shoal_io::Disk`] on glommio: O_DIRECT files driven by the executor's io_uring.

use std::io;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, OpenOptions};
use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;

use crate::error::to_io_error;

/// An aligned buffer allocated from the executor's registered I/O memory (falling back to an
/// aligned heap allocation once that pool is exhausted).
///
/// # Why the buffer is an `Rc` inside
///
/// [`DmaFile::write_at`] receives an `Rc<GlommioBuf>` (the storage engine keeps clones, e.g.
/// for its batch cache, while the write is in flight), but glommio's zero-copy shared write,
/// [`glommio::io::DmaFile::write_rc_at`], needs an `Rc<glommio::io::DmaBuffer>`. An
/// `Rc<Outer>` cannot be turned into an `Rc<Inner>` without copying, so the glommio buffer
/// lives in its own `Rc`: `write_at` clones that inner `Rc` (a refcount bump) and hands it to
/// io_uring. The trait is unchanged.
///
/// The price is that mutation needs the inner `Rc` to be unique: [`DmaBuf::as_bytes_mut`] and
/// [`DmaBuf::trim_to_size`] panic while a write of this buffer is in flight. That is a bug in
/// the caller anyway (the kernel is reading the memory), and it also covers a write future
/// that was dropped before completion: glommio keeps the buffer alive until the kernel is done
/// with it, and filling it again before then would corrupt the write.
#[derive(Debug)]
pub struct GlommioBuf(Rc<DmaBuffer>);

impl GlommioBuf {
    fn inner_mut(&mut self) -> &mut DmaBuffer {
        Rc::get_mut(&mut self.0)
            .expect("GlommioBuf mutated while a write of it is still in flight (buffer shared)")
    }
}

impl DmaBuf for GlommioBuf {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// # Panics
    ///
    /// If a write of this buffer is still in flight (see the type's documentation).
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.inner_mut().as_bytes_mut()
    }

    /// # Panics
    ///
    /// If `len > self.as_bytes().len()`, or a write of this buffer is still in flight.
    fn trim_to_size(&mut self, len: usize) {
        self.inner_mut().trim_to_size(len);
    }
}

/// An open O_DIRECT file. It belongs to the executor (thread) that opened it: it is `!Send`,
/// and every operation is submitted to that executor's io_uring.
#[derive(Debug)]
pub struct GlommioFile {
    inner: glommio::io::DmaFile,
    /// A second descriptor of the same file opened with `O_DSYNC`, for
    /// [`DmaFile::write_at_synced`]; opened on first use so files that never take durable
    /// writes (indexes, sealed segments) do not hold two descriptors.
    dsync: std::cell::RefCell<Option<Rc<glommio::io::DmaFile>>>,
    /// The file's entry in the test-only power-cut model (`power_cut.rs`).
    #[cfg(feature = "fault-switches")]
    tracked: Option<u64>,
}

impl GlommioFile {
    /// The `O_DSYNC` descriptor, opened on first use.
    async fn dsync_file(&self) -> io::Result<Rc<glommio::io::DmaFile>> {
        if let Some(file) = self.dsync.borrow().as_ref() {
            return Ok(file.clone());
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).custom_flags(libc_o_dsync());
        // Through the open descriptor, not the name: the file may have been renamed since
        // it was opened (an empty active segment takes a new term's name), and the second
        // descriptor must be of the same inode whatever its name is now.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.inner);
        let by_fd = format!("/proc/self/fd/{fd}");
        let file = Rc::new(opts.dma_open(&by_fd).await.map_err(to_io_error)?);
        *self.dsync.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// The O_DIRECT alignment the device requires (its logical block size, at least 512).
    /// Buffers from [`DmaFile::alloc_buf`] are aligned to [`DMA_ALIGNMENT_BYTES`], which is at
    /// least this on every device we support.
    pub fn device_alignment(&self) -> u64 {
        self.inner.alignment()
    }

    /// Completes a write that the kernel accepted only partially (`written < len`).
    ///
    /// Direct writes are short only in unusual cases (typically the file system filling up
    /// mid-write). The remainder is written from a fresh buffer, because glommio buffers cannot
    /// be sliced from the front. If the device is full this second write fails with the real
    /// errno (`ENOSPC`), which is what the caller needs to see.
    async fn finish_short_write(
        &self,
        buf: &GlommioBuf,
        pos: u64,
        written: usize,
    ) -> io::Result<usize> {
        let len = buf.0.len();
        let mut done = written;
        while done < len {
            if done == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "direct write made no progress",
                ));
            }
            if !(done as u64).is_multiple_of(self.inner.alignment()) {
                return Err(io::Error::other(format!(
                    "direct write at {pos} stopped at unaligned length {done} of {len}"
                )));
            }
            let rest = &buf.0.as_bytes()[done..];
            let mut tail = self.inner.alloc_dma_buffer(rest.len());
            tail.as_bytes_mut().copy_from_slice(rest);
            let n = self
                .inner
                .write_at(tail, pos + done as u64)
                .await
                .map_err(to_io_error)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "direct write made no progress",
                ));
            }
            done += n;
        }
        Ok(len)
    }
}

impl DmaFile for GlommioFile {
    type Buf = GlommioBuf;

    /// # Panics
    ///
    /// If `len_bytes` is zero or not a multiple of [`DMA_ALIGNMENT_BYTES`].
    fn alloc_buf(&self, len_bytes: usize) -> GlommioBuf {
        assert!(
            len_bytes > 0 && (len_bytes as u64).is_multiple_of(DMA_ALIGNMENT_BYTES),
            "DMA buffer length {len_bytes} must be a positive multiple of {DMA_ALIGNMENT_BYTES}"
        );
        GlommioBuf(Rc::new(self.inner.alloc_dma_buffer(len_bytes)))
    }

    /// Zero-copy: io_uring reads straight from the buffer (see [`GlommioBuf`]). A short write
    /// is completed before returning, so `Ok(n)` always has `n == buf.as_bytes().len()`.
    async fn write_at(&self, buf: Rc<GlommioBuf>, pos: u64) -> io::Result<usize> {
        let len = buf.0.len();
        #[cfg(feature = "fault-switches")]
        let ticket = crate::power_cut::issuing(self.tracked, pos, len as u64);
        let written = self
            .inner
            .write_rc_at(Rc::clone(&buf.0), pos)
            .await
            .map_err(to_io_error)?;
        let done = if written >= len {
            written
        } else {
            self.finish_short_write(&buf, pos, written).await?
        };
        #[cfg(feature = "fault-switches")]
        crate::power_cut::written(self.tracked, ticket).await;
        Ok(done)
    }

    /// An `O_DSYNC` write through the second descriptor: one io_uring operation that returns
    /// once the data (and the size change, if any) is durable. A short write (rare: the file
    /// system filling up) is finished with ordinary writes followed by an `fdatasync`.
    async fn write_at_synced(&self, buf: Rc<GlommioBuf>, pos: u64) -> io::Result<usize> {
        let len = buf.0.len();
        #[cfg(feature = "fault-switches")]
        let (issued, ticket) = (
            crate::power_cut::sync_issued(),
            crate::power_cut::issuing(self.tracked, pos, len as u64),
        );
        let file = self.dsync_file().await?;
        let written = file
            .write_rc_at(Rc::clone(&buf.0), pos)
            .await
            .map_err(to_io_error)?;
        let done = if written >= len {
            written
        } else {
            let done = self.finish_short_write(&buf, pos, written).await?;
            self.inner.fdatasync().await.map_err(to_io_error)?;
            done
        };
        #[cfg(feature = "fault-switches")]
        crate::power_cut::synced(self.tracked, issued, Some(ticket)).await;
        Ok(done)
    }

    /// Reads the aligned range covering `[pos, pos + len_bytes)` into DMA memory and copies the
    /// requested part out. Stops early only at end of file.
    async fn read_at(&self, pos: u64, len_bytes: usize) -> io::Result<Vec<u8>> {
        if len_bytes == 0 {
            return Ok(Vec::new());
        }
        let end = pos
            .checked_add(len_bytes as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read range overflows"))?;
        let alignment = self.inner.alignment();
        let end_aligned = self.inner.align_up(end);
        let mut cur = self.inner.align_down(pos);
        let mut out = Vec::with_capacity(len_bytes);
        // glommio's own unaligned `read_at` can return bytes past end of file when the file
        // ends inside the last block read (it clamps to the requested size, not to what the
        // kernel returned), so align here and clamp to what was actually read.
        while cur < end_aligned {
            let want = usize::try_from(end_aligned - cur)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "read too large"))?;
            let got = self
                .inner
                .read_at_aligned(cur, want)
                .await
                .map_err(to_io_error)?;
            let got_end = cur + got.len() as u64;
            let from = pos.max(cur);
            let to = end.min(got_end);
            if from < to {
                // Both offsets are within `got`, whose length is a usize.
                let (a, b) = ((from - cur) as usize, (to - cur) as usize);
                out.extend_from_slice(&got[a..b]);
            }
            // A direct read is short at end of file (an unaligned or empty result). An aligned
            // short read is not proof of EOF, so keep reading; the next read then returns 0.
            if got.is_empty() || !(got.len() as u64).is_multiple_of(alignment) {
                break;
            }
            cur = got_end;
        }
        Ok(out)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        #[cfg(feature = "fault-switches")]
        let issued = crate::power_cut::sync_issued();
        self.inner.fdatasync().await.map_err(to_io_error)?;
        #[cfg(feature = "fault-switches")]
        crate::power_cut::synced(self.tracked, issued, None).await;
        Ok(())
    }

    /// `ftruncate`, run on glommio's blocking thread pool. Not synced: the new size survives a
    /// power loss only after a later [`DmaFile::fdatasync`] (for growth) or fsync.
    async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.truncate(len_bytes).await.map_err(to_io_error)?;
        #[cfg(feature = "fault-switches")]
        crate::power_cut::truncated(self.tracked, len_bytes);
        Ok(())
    }

    /// `fallocate(0..len_bytes)` through io_uring (`FALLOC_FL_KEEP_SIZE` when `keep_size`).
    /// `len_bytes == 0` is a no-op (fallocate rejects an empty range).
    async fn allocate(&self, len_bytes: u64, keep_size: bool) -> io::Result<()> {
        if len_bytes == 0 {
            return Ok(());
        }
        self.inner
            .pre_allocate(len_bytes, keep_size)
            .await
            .map_err(to_io_error)
    }

    async fn size_bytes(&self) -> io::Result<u64> {
        self.inner.file_size().await.map_err(to_io_error)
    }

    async fn close(self) -> io::Result<()> {
        self.inner.close().await.map_err(to_io_error)
    }
}

/// The local file system, accessed through the current thread's glommio executor.
///
/// Stateless; every method must be called from inside a glommio `LocalExecutor` (glommio
/// panics otherwise). Files it opens belong to that executor.
///
/// Per-batch operations (writes, reads, fdatasync) go through io_uring. Metadata operations,
/// which happen at segment roll, retention and startup, run on glommio's blocking thread pool
/// (`rename`, `remove`, `truncate`, `list`, `create_dir_all`, `sync_dir`) so they never stall
/// the reactor; only [`Disk::free_bytes`] (a `statvfs`, which does no disk I/O) runs inline.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioDisk;

impl GlommioDisk {
    pub fn new() -> Self {
        Self
    }
}

/// Runs `f` on the executor's blocking thread pool.
async fn blocking<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    /// Opens read+write with O_DIRECT (glommio falls back to buffered I/O only on tmpfs, which
    /// has no O_DIRECT; never the case for a data directory).
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<GlommioFile> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                opts.create(true);
            }
            OpenMode::CreateTruncate => {
                opts.create(true).truncate(true);
            }
        }
        iopoll_probe::prime(path).await;
        let inner = opts.dma_open(path).await.map_err(to_io_error)?;
        Ok(GlommioFile {
            inner,
            dsync: std::cell::RefCell::new(None),
            #[cfg(feature = "fault-switches")]
            tracked: crate::power_cut::track(path),
        })
    }

    /// `unlink`. Durable only after [`Disk::sync_dir`] on the parent.
    async fn remove(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(to_io_error)
    }

    /// `rename` (atomic, replaces `to`). Durable only after [`Disk::sync_dir`] on the parent(s).
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(to_io_error)
    }

    /// Entry names sorted bytewise. A name that is not UTF-8 is an `InvalidData` error: the
    /// engine names all its files, so such an entry is foreign and must be looked at.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name().into_string().map_err(|name| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("non-UTF-8 file name {name:?} in {}", dir.display()),
                    )
                })?;
                names.push(name);
            }
            names.sort_unstable();
            Ok(names)
        })
        .await
    }

    /// `mkdir -p`. Durable only after [`Disk::sync_dir`] on each new directory's parent.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::create_dir_all(dir)).await
    }

    /// `open(O_RDONLY)` of the directory + `fsync`, on the blocking thread. This is a full fsync rather than glommio's
    /// `Directory::sync` (an fdatasync): an fdatasync on a directory is not documented to
    /// persist its entries on every file system.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::File::open(dir)?.sync_all()).await
    }

    /// Bytes available to unprivileged users (`f_bavail * f_frsize`), the conservative figure
    /// `df` reports; root-reserved blocks are not counted.
    fn free_bytes(&self, dir: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// Size and free space of the file system holding `dir`, as (total bytes, bytes available
/// to unprivileged users): one `statvfs`, no disk I/O.
pub fn file_system_space(dir: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(dir)?;
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize),
        st.f_bavail.saturating_mul(st.f_frsize),
    ))
}

/// Creates (or grows) `path` to `len_bytes` of allocated blocks, synced with its directory
/// entry: space the file system will not hand to anyone else until the file is removed
/// (blocking; for the broker's disk-space ballast, at startup and when space comes back).
pub fn reserve_file(path: &Path, len_bytes: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if len_bytes > 0 {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len_bytes)?;
    }
    file.sync_all()?;
    sync_parent(path)
}

/// Removes `path` (missing is fine) and syncs its directory (blocking).
pub fn release_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    sync_parent(path)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Works around a false positive in glommio 0.9's io_uring polling (IOPOLL) detection.
///
/// The first time a thread opens a `DmaFile` on a block device, glommio decides whether to
/// drive that device's I/O through its IOPOLL ring by reading the first block of *that file*
/// on the polled ring: an `EOPNOTSUPP` means "no polling". When that file is empty (a freshly
/// created segment) the read ends at EOF without reaching the device, so the probe succeeds,
/// glommio caches "pollable" for the device on this thread, and from then on every read of
/// every file on the device fails with `EOPNOTSUPP` (seen on virtio-blk, which has no poll
/// queues).
///
/// So before the first open on each device, per thread, we let glommio probe a file that has
/// data: an anonymous `O_TMPFILE` in the target directory (never visible in listings, gone on
/// close or crash) holding one block, reopened through `/proc/self/fd`.
mod iopoll_probe {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};

    use rustix::fs::{Mode, OFlags, CWD};

    use super::blocking;
    use crate::error::to_io_error;

    const PROBE_BYTES: usize = 4096;

    thread_local! {
        /// `st_dev` of the file systems already probed on this thread (glommio's cache is
        /// per thread too).
        static PROBED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    }

    /// Ensures glommio has probed the device holding `path` with a non-empty file. Failures
    /// are logged and otherwise ignored: the open that follows reports its own errors.
    pub(super) async fn prime(path: &Path) {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let Ok(st) = rustix::fs::stat(dir) else {
            return; // the open will fail with the real error
        };
        if PROBED.with(|p| p.borrow().contains(&st.st_dev)) {
            return;
        }
        if let Err(error) = probe(dir.to_path_buf()).await {
            tracing::warn!(
                dir = %dir.display(),
                %error,
                "could not pre-probe io_uring polling support; glommio will probe on first open"
            );
        }
        PROBED.with(|p| p.borrow_mut().insert(st.st_dev));
    }

    async fn probe(dir: PathBuf) -> io::Result<()> {
        let file = blocking(move || -> io::Result<std::fs::File> {
            let fd = rustix::fs::openat(
                CWD,
                &dir,
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut file = std::fs::File::from(fd);
            file.write_all(&[0xA5; PROBE_BYTES])?;
            Ok(file)
        })
        .await?;
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let probed = glommio::io::OpenOptions::new()
            .read(true)
            .dma_open(&proc_path)
            .await
            .map_err(to_io_error)?;
        probed.close().await.map_err(to_io_error)?;
        drop(file);
        Ok(())
    }
}

/// `O_DSYNC` on Linux (all architectures we build for use the asm-generic value).
const fn libc_o_dsync() -> i32 {
    0o10000
}
