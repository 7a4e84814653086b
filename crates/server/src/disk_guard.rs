//! Room for what must keep working when partitions fill the data disk.
//!
//! A ballast file (`<data_dir>/ballast`, Redpanda's idea and path) holds `disk_reserve_bytes` of real
//! blocks while the disk has room. The first "no space" anywhere (a partition's write or
//! sync, an offset commit, a metadata write) releases it: that room is then left to metadata
//! changes (DeleteTopics is how an operator frees space), offset commits, and the recovery of
//! partitions that went offline, while every core refuses new data appends with
//! KAFKA_STORAGE_ERROR (the guard's flag is one atomic read per append). Reads go on. Once free
//! space is back above the reserve plus a margin (DeleteTopics, DeleteRecords, retention, or
//! an operator), core 0 takes the ballast again and appends resume, without a restart.
//!
//! Shared by every core: a flag and the ballast's path; the ballast is only touched by the
//! core that observed the event (release) or by core 0 (re-arm), through blocking calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The same file `rpk-tune`'s ballast tuner checks (Redpanda's layout); the broker manages it,
/// releasing it on a full disk by itself instead of waiting for an operator to delete it.
pub(crate) const BALLAST_FILE: &str = rpk_tune::tuners::ballast_file::BALLAST_NAME;

pub(crate) struct DiskGuard {
    full: AtomicBool,
    ballast: PathBuf,
    data_dir: PathBuf,
    reserve_bytes: u64,
    /// Times the reserve was released (a metric).
    releases: AtomicU64,
}

impl DiskGuard {
    /// Takes the ballast: `configured` bytes, at most an eighth of the file system (0: none).
    /// Blocking; runs once at startup, before the cores.
    pub(crate) fn arm(data_dir: &Path, configured: u64) -> anyhow::Result<DiskGuard> {
        let (total, _) = shoal_runtime::file_system_space(data_dir)
            .map_err(|e| anyhow::anyhow!("statvfs {}: {e}", data_dir.display()))?;
        let reserve_bytes = configured.min(total / 8);
        let ballast = data_dir.join(BALLAST_FILE);
        let guard = DiskGuard {
            full: AtomicBool::new(false),
            ballast,
            data_dir: data_dir.to_path_buf(),
            reserve_bytes,
            releases: AtomicU64::new(0),
        };
        if reserve_bytes == 0 {
            shoal_runtime::release_file(&guard.ballast)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", guard.ballast.display()))?;
            return Ok(guard);
        }
        if let Err(error) = shoal_runtime::reserve_file(&guard.ballast, reserve_bytes) {
            // A broker restarted on a full disk starts with the reserve released (its
            // partitions come up readable; appends wait for space), rather than not at all.
            tracing::warn!(%error, reserve_bytes, "cannot take the disk reserve: starting as full");
            let _ = shoal_runtime::release_file(&guard.ballast);
            guard.full.store(true, Ordering::Release);
        }
        tracing::info!(reserve_bytes, path = %guard.ballast.display(), "disk reserve held");
        Ok(guard)
    }

    /// Whether data appends are refused (the reserve is released).
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    pub(crate) fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }

    /// The data disk is full: refuse data appends and hand the reserve to metadata, offsets
    /// and recovery. Only the first caller releases it; the call returns once it is released.
    pub(crate) async fn disk_full(&self) {
        if self.full.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.releases.fetch_add(1, Ordering::Relaxed);
        let ballast = self.ballast.clone();
        let released = glommio::executor()
            .spawn_blocking(move || shoal_runtime::release_file(&ballast))
            .await;
        match released {
            Ok(()) => tracing::error!(
                reserve_bytes = self.reserve_bytes,
                "data disk full: reserve released for metadata and offsets; produce refused \
                 until space is freed (delete topics or records)"
            ),
            Err(error) => tracing::error!(%error, "data disk full: releasing the reserve failed"),
        }
    }

    /// If the disk has room again (the reserve plus a margin of half of it), takes the ballast
    /// back and lets appends resume. Core 0 calls this every second while full.
    pub(crate) async fn try_rearm(&self) -> bool {
        if !self.is_full() {
            return true;
        }
        let free = shoal_runtime::file_system_space(&self.data_dir).map_or(0, |(_, free)| free);
        let needed = self.reserve_bytes + self.reserve_bytes / 2 + MARGIN_BYTES_MIN;
        if free < needed {
            return false;
        }
        let (ballast, reserve) = (self.ballast.clone(), self.reserve_bytes);
        let taken = glommio::executor()
            .spawn_blocking(move || shoal_runtime::reserve_file(&ballast, reserve))
            .await;
        if let Err(error) = taken {
            tracing::warn!(%error, "disk has room again, but taking the reserve failed; still full");
            let ballast = self.ballast.clone();
            let _ = glommio::executor()
                .spawn_blocking(move || shoal_runtime::release_file(&ballast))
                .await;
            return false;
        }
        self.full.store(false, Ordering::Release);
        tracing::warn!(
            free_bytes = free,
            "data disk has room again: reserve held, produce resumes"
        );
        true
    }
}

/// Free space needed beyond the reserve before appends resume, however small the reserve.
const MARGIN_BYTES_MIN: u64 = 8 << 20;
