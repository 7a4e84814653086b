//! A pass-through disk that notes when each fdatasync starts, so the benchmark can measure
//! fdatasync-to-ack: from the moment the covering sync is issued to the moment the appender
//! is told its batch is durable (the engine's overhead on top of the device's sync).

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use shoal_io::{Disk, DmaFile, OpenMode};
use shoal_runtime::{GlommioDisk, GlommioFile};

#[derive(Clone)]
pub(crate) struct TimedDisk {
    inner: GlommioDisk,
    /// Start of the most recent fdatasync on any file of this disk.
    pub(crate) last_sync_start: Rc<Cell<Instant>>,
}

impl TimedDisk {
    pub(crate) fn new() -> TimedDisk {
        TimedDisk {
            inner: GlommioDisk::new(),
            last_sync_start: Rc::new(Cell::new(Instant::now())),
        }
    }
}

pub(crate) struct TimedFile {
    inner: GlommioFile,
    last_sync_start: Rc<Cell<Instant>>,
}

impl DmaFile for TimedFile {
    type Buf = <GlommioFile as DmaFile>::Buf;

    fn alloc_buf(&self, len_bytes: usize) -> Self::Buf {
        self.inner.alloc_buf(len_bytes)
    }
    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        self.inner.write_at(buf, pos).await
    }
    async fn write_at_synced(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        // The durable write is this one operation: it is where fdatasync-to-ack starts.
        self.last_sync_start.set(Instant::now());
        self.inner.write_at_synced(buf, pos).await
    }
    async fn read_at(&self, pos: u64, len_bytes: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(pos, len_bytes).await
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.last_sync_start.set(Instant::now());
        self.inner.fdatasync().await
    }
    async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.truncate(len_bytes).await
    }
    async fn allocate(&self, len_bytes: u64, keep_size: bool) -> io::Result<()> {
        self.inner.allocate(len_bytes, keep_size).await
    }
    async fn size_bytes(&self) -> io::Result<u64> {
        self.inner.size_bytes().await
    }
    async fn close(self) -> io::Result<()> {
        self.inner.close().await
    }
}

impl Disk for TimedDisk {
    type File = TimedFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<TimedFile> {
        let inner = self.inner.open(path, mode).await?;
        Ok(TimedFile {
            inner,
            last_sync_start: self.last_sync_start.clone(),
        })
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to).await
    }
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir).await
    }
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir).await
    }
    fn free_bytes(&self, dir: &Path) -> io::Result<u64> {
        self.inner.free_bytes(dir)
    }
}
