//! One segment of a partition's log: a file of stored batches starting at `base`, with its
//! sparse indexes. Segment files are named `{base:020}-{term}.log` (Redpanda keeps the term in
//! the name too; a replica can then find where a term's data starts without reading). A
//! replicated log's segments are named `{base:020}-{term}-{index:020}.log`, where `index` is
//! the Raft index of the segment's first batch: the names are then the term cache (term ->
//! first index, first offset) and give every batch its index (the first plus the batches
//! before it in the segment).
//!
//! Owned by the core that owns the partition. Only the last segment of a log is active
//! (appended to); the others are sealed: synced, truncated to their data, indexes on disk.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::index::SparseIndex;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Where a segment sits in the log's segment map. A plain log's segments are ordered by base
/// offset alone (index 0). In a replicated log several segments may share a base offset
/// (internal entries take none: a term whose only entry is a new leader's empty entry leaves
/// a segment that ends where it starts), so the first Raft index breaks the tie; both grow
/// along the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentKey {
    pub(crate) base: Offset,
    pub(crate) index: u64,
}

impl SegmentKey {
    /// The bound below which every segment starting at or before `offset` sorts.
    pub(crate) fn up_to(offset: Offset) -> SegmentKey {
        SegmentKey {
            base: offset,
            index: u64::MAX,
        }
    }
}

/// What a segment file's name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    pub(crate) base: Offset,
    pub(crate) term: Term,
    /// The Raft index of the first batch: only in a replicated log's names.
    pub(crate) index: Option<RaftIndex>,
}

impl SegmentName {
    pub(crate) fn key(&self) -> SegmentKey {
        SegmentKey {
            base: self.base,
            index: self.index.map_or(0, |index| index.0),
        }
    }

    pub(crate) fn stem(&self) -> String {
        stem(self.base, self.term, self.index)
    }
}

pub(crate) struct Segment<F> {
    pub(crate) base: Offset,
    pub(crate) term: Term,
    /// The Raft index of the first batch (replicated logs; `None` in a plain log, which
    /// counts no indexes).
    pub(crate) first_index: Option<RaftIndex>,
    /// Batches stored (internal entries included). Kept for replicated logs, where it gives
    /// the next segment's first index; not tracked in a plain log (0).
    pub(crate) batches: u64,
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
        self.name().stem()
    }

    pub(crate) fn name(&self) -> SegmentName {
        SegmentName {
            base: self.base,
            term: self.term,
            index: self.first_index,
        }
    }

    pub(crate) fn key(&self) -> SegmentKey {
        self.name().key()
    }

    /// The Raft index after the segment's last batch (replicated logs).
    pub(crate) fn next_index(&self) -> Option<RaftIndex> {
        self.first_index.map(|first| first.plus(self.batches))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }
}

pub(crate) fn stem(base: Offset, term: Term, index: Option<RaftIndex>) -> String {
    match index {
        None => format!("{:020}-{}", base.0, term.0),
        Some(index) => format!("{:020}-{}-{:020}", base.0, term.0, index.0),
    }
}

/// Parses `{base}-{term}.log` or `{base}-{term}-{index}.log`.
pub(crate) fn parse_log_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    let (base, rest) = stem.split_once('-')?;
    if base.len() != 20 {
        return None;
    }
    let base = Offset(base.parse().ok()?);
    // A replicated name ends in a 20-digit index; a plain one's term may itself be negative.
    let (term, index) = match rest.rsplit_once('-') {
        Some((term, index)) if index.len() == 20 && !term.is_empty() => {
            (term, Some(RaftIndex(index.parse().ok()?)))
        }
        _ => (rest, None),
    };
    Some(SegmentName {
        base,
        term: Term(term.parse().ok()?),
        index,
    })
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

/// A small file holding one offset: `magic`, the offset (big-endian), CRC32C of both.
pub(crate) fn encode_offset_file(magic: &[u8; 4], offset: Offset) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&offset.0.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The offset of a file written by [`encode_offset_file`] with `magic` (trailing padding
/// ignored), or `None` if it is another file or damaged.
pub(crate) fn decode_offset_file(magic: &[u8; 4], bytes: &[u8]) -> Option<Offset> {
    if bytes.len() < 16 || &bytes[..4] != magic {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[12..16].try_into().ok()?);
    (crc == crc32c::crc32c(&bytes[..12])).then(|| {
        Offset(i64::from_be_bytes(
            bytes[4..12].try_into().unwrap_or([0; 8]),
        ))
    })
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
        let name = format!("{}{LOG_SUFFIX}", stem(Offset(1234), Term(3), None));
        assert_eq!(name, "00000000000000001234-3.log");
        let plain = SegmentName {
            base: Offset(1234),
            term: Term(3),
            index: None,
        };
        assert_eq!(parse_log_name(&name), Some(plain));
        assert_eq!(parse_log_name("1234-3.log"), None);
        assert_eq!(parse_log_name("00000000000000001234-3.index"), None);
        let replicated = SegmentName {
            index: Some(RaftIndex(77)),
            ..plain
        };
        let name = format!("{}{LOG_SUFFIX}", replicated.stem());
        assert_eq!(name, "00000000000000001234-3-00000000000000000077.log");
        assert_eq!(parse_log_name(&name), Some(replicated));
        assert_eq!(parse_log_name("00000000000000001234-3-77.log"), None);
        assert_eq!(
            parse_log_name("00000000000000001234--1.log").map(|n| n.term),
            Some(Term(-1))
        );
        // Keys order a replicated log's segments that share a base offset by index.
        let later = SegmentName {
            term: Term(4),
            index: Some(RaftIndex(78)),
            ..plain
        };
        assert!(replicated.key() < later.key());
        assert!(later.key() < SegmentKey::up_to(Offset(1234)));
    }
}
