//! One segment of a partition's log: a file of stored batches starting at `base`, with its
//! sparse indexes. Segment files are named `{base:020}-{term}.log` (Redpanda keeps the term in
//! the name too; a replica can then find where a term's data starts without reading).
//!
//! Owned by the core that owns the partition. Only the last segment of a log is active
//! (appended to); the others are sealed: synced, truncated to their data, indexes on disk.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;
use shoal_model::{Offset, Term, TimestampMs};

use crate::index::SparseIndex;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

pub(crate) struct Segment<F> {
    pub(crate) base: Offset,
    pub(crate) term: Term,
    pub(crate) file: Rc<F>,
    pub(crate) index: SparseIndex,
    /// Bytes of stored batches (the logical end; the file may be longer when pre-allocated).
    pub(crate) size_bytes: u64,
    /// The offset after the last batch.
    pub(crate) next_offset: Offset,
    pub(crate) max_timestamp: Option<TimestampMs>,
    /// The max timestamp of the segment's first batch: `segment.ms` ages are measured from it
    /// (Kafka's `rollingBasedTimestamp`), so they survive a restart. Read back at recovery.
    pub(crate) first_max_timestamp: Option<TimestampMs>,
    /// When the segment was created or recovered: the age of a segment whose first batch has
    /// no timestamp (-1), as in Kafka.
    pub(crate) created_ms: i64,
}

impl<F> Segment<F> {
    pub(crate) fn stem(&self) -> String {
        stem(self.base, self.term)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }
}

pub(crate) fn stem(base: Offset, term: Term) -> String {
    format!("{:020}-{}", base.0, term.0)
}

/// Parses `{base}-{term}.log` into (base, term).
pub(crate) fn parse_log_name(name: &str) -> Option<(Offset, Term)> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    let (base, term) = stem.split_once('-')?;
    if base.len() != 20 {
        return None;
    }
    Some((Offset(base.parse().ok()?), Term(term.parse().ok()?)))
}

pub(crate) fn path_of(dir: &Path, stem: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{stem}{suffix}"))
}

pub(crate) fn align_down(value: u64) -> u64 {
    value - value % DMA_ALIGNMENT_BYTES
}

pub(crate) fn align_up(value: u64) -> u64 {
    value.next_multiple_of(DMA_ALIGNMENT_BYTES)
}

/// Writes a small metadata file so that it is either absent, the old version, or complete:
/// write `name.tmp`, sync it, rename over `name`, sync the directory.
pub(crate) async fn write_small_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let file = disk.open(&tmp, OpenMode::CreateTruncate).await?;
    let len = align_up(contents.len() as u64) as usize;
    let mut buf = file.alloc_buf(len.max(DMA_ALIGNMENT_BYTES as usize));
    let bytes = buf.as_bytes_mut();
    bytes[..contents.len()].copy_from_slice(contents);
    bytes[contents.len()..].fill(0);
    let written = file.write_at(Rc::new(buf), 0).await?;
    if written < contents.len() {
        return Err(std::io::Error::other("short write of a metadata file"));
    }
    file.fdatasync().await?;
    file.close().await?;
    disk.rename(&tmp, &dir.join(name)).await?;
    disk.sync_dir(dir).await
}

/// Reads a whole small file, or `None` if it does not exist.
pub(crate) async fn read_small_file<D: Disk>(
    disk: &D,
    path: &Path,
) -> std::io::Result<Option<Vec<u8>>> {
    let file = match disk.open(path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let size = file.size_bytes().await?;
    let bytes = file.read_at(0, size as usize).await?;
    file.close().await?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = format!("{}{LOG_SUFFIX}", stem(Offset(1234), Term(3)));
        assert_eq!(name, "00000000000000001234-3.log");
        assert_eq!(parse_log_name(&name), Some((Offset(1234), Term(3))));
        assert_eq!(parse_log_name("1234-3.log"), None);
        assert_eq!(parse_log_name("00000000000000001234-3.index"), None);
    }
}
