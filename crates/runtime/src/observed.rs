//! A pass-through [`GlommioDisk`] that reports the latency of every durable operation
//! (`write_at_synced` and `fdatasync`) to an observer: the broker feeds its fsync latency
//! histogram from it, the storage benchmark its fdatasync-to-ack measurement.
//!
//! The observer is an `Rc` closure: like the files, it belongs to the core that opened them.

use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use shoal_io::{Disk, DmaFile, OpenMode};

use crate::{GlommioDisk, GlommioFile};

/// Called with (start, end) of each durable operation, after it completed (or failed).
pub type DurableIoObserver = Rc<dyn Fn(Instant, Instant)>;

#[derive(Clone)]
pub struct ObservedDisk {
    inner: GlommioDisk,
    observer: DurableIoObserver,
}

impl ObservedDisk {
    pub fn new(observer: DurableIoObserver) -> ObservedDisk {
        ObservedDisk {
            inner: GlommioDisk::new(),
            observer,
        }
    }
}

pub struct ObservedFile {
    inner: GlommioFile,
    observer: DurableIoObserver,
}

impl DmaFile for ObservedFile {
    type Buf = <GlommioFile as DmaFile>::Buf;

    fn alloc_buf(&self, len_bytes: usize) -> Self::Buf {
        self.inner.alloc_buf(len_bytes)
    }
    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        self.inner.write_at(buf, pos).await
    }
    async fn write_at_synced(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        let started = Instant::now();
        let result = self.inner.write_at_synced(buf, pos).await;
        (self.observer)(started, Instant::now());
        result
    }
    async fn read_at(&self, pos: u64, len_bytes: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(pos, len_bytes).await
    }
    async fn fdatasync(&self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.fdatasync().await;
        (self.observer)(started, Instant::now());
        result
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

impl Disk for ObservedDisk {
    type File = ObservedFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<ObservedFile> {
        let inner = self.inner.open(path, mode).await?;
        Ok(ObservedFile {
            inner,
            observer: self.observer.clone(),
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
