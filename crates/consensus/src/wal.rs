//! The durable Raft log of one group: `raft.wal` (hard state, conf state and entries) and
//! `raft.snap` (the latest snapshot), in the group's directory.
//!
//! Why not the partition log of `shoal-storage`: that log has no suffix truncation yet, and
//! Raft must be able to overwrite an uncommitted suffix. The controller's log is small (one
//! entry per metadata change, compacted into snapshots), so it is kept whole in memory and
//! written here; partition groups move onto the partition log when it learns to truncate
//! (the replication issue).
//!
//! ## Format
//! Every write starts on a fresh 4 KiB block (the O_DIRECT unit) and is one `O_DSYNC` write
//! (`write_at_synced`), issued only after the previous one completed. So at most the last write
//! can be torn by a power cut. A write is:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `WAL_MAGIC` |
//! | 2 | format version (1) |
//! | 2 | zero |
//! | 4 | payload length |
//! | 4 | CRC32C of the payload |
//! | 8 | sequence number of the write in this file (1, 2, ...) |
//! | 4 | CRC32C of the 24 bytes above |
//! | 4 | zero |
//! | n | payload: records `kind: u8, len: u32, protobuf bytes` |
//! | .. | zeros up to the next 4 KiB block |
//!
//! Record kinds: hard state, conf state, entry. An entry with index `i` replaces every entry at
//! or above `i` (that is how an overwritten uncommitted suffix is recorded: append-only).
//!
//! ## Recovery
//! Writes are read in order. The first write that does not check out ends the log: if no valid
//! write with a later sequence number follows it, it was the torn last write (never
//! acknowledged, since acknowledgement waits for the write) and the file is cut there.
//! Otherwise synced data is damaged and opening fails with `Error::Corrupt`: nothing is
//! silently dropped.
//!
//! ## Compaction
//! `rewrite` writes the snapshot to `raft.snap.tmp`, renames it over `raft.snap`, then writes the
//! remaining state as a new `raft.wal.tmp` and renames it over `raft.wal` (each file synced,
//! then its directory). A crash between the two renames leaves the new snapshot with the old
//! log; recovery skips the entries the snapshot covers.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;

use crate::error::{Error, Result};

pub(crate) const WAL_FILE: &str = "raft.wal";
pub(crate) const SNAPSHOT_FILE: &str = "raft.snap";
const WAL_MAGIC: u32 = 0x5348_5257; // "SHRW"
const SNAPSHOT_MAGIC: u32 = 0x5348_5253; // "SHRS"
const FORMAT_VERSION: u16 = 1;
const WRITE_HEADER_BYTES: usize = 32;
const SNAPSHOT_HEADER_BYTES: usize = 16;
const RECORD_HEADER_BYTES: usize = 5;

/// The largest log or snapshot file read into memory at open. The owner compacts far below
/// this (see `Replica::compact`); a file above it means something went wrong, and opening
/// fails instead of exhausting memory.
pub const WAL_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

const KIND_HARD_STATE: u8 = 1;
const KIND_CONF_STATE: u8 = 2;
const KIND_ENTRY: u8 = 3;

/// What one write of the log holds.
#[derive(Default)]
pub(crate) struct Records<'a> {
    pub(crate) hard_state: Option<&'a HardState>,
    pub(crate) conf_state: Option<&'a ConfState>,
    pub(crate) entries: &'a [Entry],
}

impl Records<'_> {
    fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.conf_state.is_none() && self.entries.is_empty()
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(hs) = self.hard_state {
            push_record(&mut out, KIND_HARD_STATE, &encode_pb(hs)?);
        }
        if let Some(cs) = self.conf_state {
            push_record(&mut out, KIND_CONF_STATE, &encode_pb(cs)?);
        }
        for entry in self.entries {
            push_record(&mut out, KIND_ENTRY, &encode_pb(entry)?);
        }
        Ok(out)
    }
}

/// The state read back at open.
#[derive(Default, Debug)]
pub(crate) struct Recovered {
    pub(crate) hard_state: HardState,
    pub(crate) conf_state: Option<ConfState>,
    pub(crate) snapshot: Snapshot,
    pub(crate) entries: Vec<Entry>,
}

/// The open log of one group. Owned by the task that drives the group; not shared.
pub(crate) struct Wal<D: Disk> {
    disk: Rc<D>,
    dir: PathBuf,
    file: Option<D::File>,
    pos_next: u64,
    sequence_next: u64,
    /// Set once a write failed: the file's state is unknown, so nothing more is written.
    failed: bool,
    bytes_written: u64,
}

impl<D: Disk> Wal<D> {
    pub(crate) async fn open(disk: Rc<D>, dir: &Path) -> Result<(Wal<D>, Recovered)> {
        let dir = dir.to_path_buf();
        disk.create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&dir, "create_dir_all", e))?;
        let names = disk
            .list(&dir)
            .await
            .map_err(|e| io_error(&dir, "list", e))?;
        for name in [tmp_name(WAL_FILE), tmp_name(SNAPSHOT_FILE)] {
            let path = dir.join(&name);
            if names.contains(&name) {
                disk.remove(&path)
                    .await
                    .map_err(|e| io_error(&path, "remove", e))?;
            }
        }
        let mut recovered = Recovered {
            snapshot: read_snapshot(disk.as_ref(), &dir, &names).await?,
            ..Recovered::default()
        };
        let path = dir.join(WAL_FILE);
        let file = disk
            .open(&path, OpenMode::CreateOrOpen)
            .await
            .map_err(|e| io_error(&path, "open", e))?;
        if !names.iter().any(|n| n == WAL_FILE) {
            // A new file's name must be durable before anything written to it counts.
            disk.sync_dir(&dir)
                .await
                .map_err(|e| io_error(&dir, "sync_dir", e))?;
        }
        let bytes = read_whole(&file, &path).await?;
        let scan = scan_writes(&bytes, &path)?;
        if scan.valid_end < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), torn_at = scan.valid_end,
                "cutting off a torn last write of the raft log (never acknowledged)");
            file.truncate(scan.valid_end)
                .await
                .map_err(|e| io_error(&path, "truncate", e))?;
            file.fdatasync()
                .await
                .map_err(|e| io_error(&path, "fdatasync", e))?;
        }
        replay(&mut recovered, &scan.payloads, &path)?;
        let wal = Wal {
            disk,
            dir,
            file: Some(file),
            pos_next: scan.valid_end,
            sequence_next: scan.sequence_last + 1,
            failed: false,
            bytes_written: scan.valid_end,
        };
        Ok((wal, recovered))
    }

    /// Bytes in the log file: the owner compacts when this grows.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes_written
    }

    /// Appends the records in one write and returns once it is **synced** (O_DSYNC).
    pub(crate) async fn append(&mut self, records: &Records<'_>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(WAL_FILE);
        if self.failed {
            return Err(failed_before(&path));
        }
        let payload = records.encode()?;
        let file = self.file.as_ref().ok_or_else(|| failed_before(&path))?;
        let buf = write_buffer(file, &payload, self.sequence_next);
        let len = buf.as_bytes().len() as u64;
        assert!(self.pos_next.is_multiple_of(DMA_ALIGNMENT_BYTES));
        if let Err(source) = file.write_at_synced(Rc::new(buf), self.pos_next).await {
            self.failed = true;
            return Err(io_error(&path, "write", source));
        }
        self.pos_next += len;
        self.sequence_next += 1;
        self.bytes_written = self.pos_next;
        Ok(())
    }

    /// Replaces the snapshot and the log: afterwards the files hold `snapshot` and, as the
    /// log, `hard_state`, `conf_state` and `entries` (all after the snapshot's index).
    /// Returns once both files and their names are synced.
    pub(crate) async fn rewrite(
        &mut self,
        snapshot: &Snapshot,
        records: &Records<'_>,
    ) -> Result<()> {
        let wal_path = self.dir.join(WAL_FILE);
        if self.failed {
            return Err(failed_before(&wal_path));
        }
        self.failed = true; // until the rewrite completed: the old handle is closed below
        let snapshot_index = snapshot.get_metadata().index;
        assert!(records.entries.iter().all(|e| e.index > snapshot_index));
        self.replace_file(SNAPSHOT_FILE, &snapshot_image(snapshot)?)
            .await?;

        if let Some(old) = self.file.take() {
            old.close()
                .await
                .map_err(|e| io_error(&wal_path, "close", e))?;
        }
        let payload = records.encode()?;
        let tmp = self.dir.join(tmp_name(WAL_FILE));
        let file = self
            .disk
            .open(&tmp, OpenMode::CreateTruncate)
            .await
            .map_err(|e| io_error(&tmp, "open", e))?;
        let buf = write_buffer(&file, &payload, 1);
        let len = buf.as_bytes().len() as u64;
        file.write_at_synced(Rc::new(buf), 0)
            .await
            .map_err(|e| io_error(&tmp, "write", e))?;
        self.disk
            .rename(&tmp, &wal_path)
            .await
            .map_err(|e| io_error(&wal_path, "rename", e))?;
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(|e| io_error(&self.dir, "sync_dir", e))?;
        self.file = Some(file);
        self.pos_next = len;
        self.sequence_next = 2;
        self.bytes_written = len;
        self.failed = false;
        Ok(())
    }

    /// Writes `image` as `name` atomically: temporary file, synced write, rename, synced
    /// directory.
    async fn replace_file(&self, name: &str, image: &[u8]) -> Result<()> {
        let tmp = self.dir.join(tmp_name(name));
        let file = self
            .disk
            .open(&tmp, OpenMode::CreateTruncate)
            .await
            .map_err(|e| io_error(&tmp, "open", e))?;
        let len_aligned = align_up(image.len() as u64) as usize;
        let mut buf = file.alloc_buf(len_aligned.max(DMA_ALIGNMENT_BYTES as usize));
        let bytes = buf.as_bytes_mut();
        bytes.fill(0);
        bytes[..image.len()].copy_from_slice(image);
        file.write_at_synced(Rc::new(buf), 0)
            .await
            .map_err(|e| io_error(&tmp, "write", e))?;
        file.close().await.map_err(|e| io_error(&tmp, "close", e))?;
        let path = self.dir.join(name);
        self.disk
            .rename(&tmp, &path)
            .await
            .map_err(|e| io_error(&path, "rename", e))?;
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(|e| io_error(&self.dir, "sync_dir", e))
    }
}

/// The bytes of `raft.snap`: header (magic, version, length, CRC32C) and the snapshot.
fn snapshot_image(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let body = encode_pb(snapshot)?;
    let mut image = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
    image.extend_from_slice(&SNAPSHOT_MAGIC.to_be_bytes());
    image.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    image.extend_from_slice(&0u16.to_be_bytes());
    image.extend_from_slice(&(body.len() as u32).to_be_bytes());
    image.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    image.extend_from_slice(&body);
    Ok(image)
}

fn failed_before(path: &Path) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        op: "write",
        source: std::io::Error::other("an earlier write of this log failed; the group must reopen"),
    }
}

fn tmp_name(name: &str) -> String {
    format!("{name}.tmp")
}

fn align_up(len: u64) -> u64 {
    len.div_ceil(DMA_ALIGNMENT_BYTES) * DMA_ALIGNMENT_BYTES
}

fn io_error(path: &Path, op: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn encode_pb(message: &impl protobuf::Message) -> Result<Vec<u8>> {
    message
        .write_to_bytes()
        .map_err(|e| Error::Invalid(format!("protobuf encode: {e}")))
}

fn push_record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// One write: header, payload, zeros to the block end (the buffer comes with stale bytes).
fn write_buffer<F: DmaFile>(file: &F, payload: &[u8], sequence: u64) -> F::Buf {
    let len = align_up((WRITE_HEADER_BYTES + payload.len()) as u64) as usize;
    let mut buf = file.alloc_buf(len);
    let bytes = buf.as_bytes_mut();
    bytes.fill(0);
    bytes[0..4].copy_from_slice(&WAL_MAGIC.to_be_bytes());
    bytes[4..6].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    bytes[8..12].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes[12..16].copy_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    bytes[16..24].copy_from_slice(&sequence.to_be_bytes());
    let header_crc = crc32c::crc32c(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&header_crc.to_be_bytes());
    bytes[WRITE_HEADER_BYTES..WRITE_HEADER_BYTES + payload.len()].copy_from_slice(payload);
    // Paired with the checks in `parse_write`.
    debug_assert_eq!(parse_write(bytes).map(|w| w.sequence), Some(sequence));
    buf
}

async fn read_whole<F: DmaFile>(file: &F, path: &Path) -> Result<Vec<u8>> {
    let len = file
        .size_bytes()
        .await
        .map_err(|e| io_error(path, "size", e))?;
    if len > WAL_FILE_BYTES_MAX {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            len_bytes: len,
            max_bytes: WAL_FILE_BYTES_MAX,
        });
    }
    let bytes = file
        .read_at(0, len as usize)
        .await
        .map_err(|e| io_error(path, "read", e))?;
    if (bytes.len() as u64) < len {
        return Err(io_error(
            path,
            "read",
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        ));
    }
    Ok(bytes)
}

/// Reads `raft.snap` if `names` (the directory's listing) has it.
async fn read_snapshot<D: Disk>(disk: &D, dir: &Path, names: &[String]) -> Result<Snapshot> {
    if !names.iter().any(|n| n == SNAPSHOT_FILE) {
        return Ok(Snapshot::default());
    }
    let path = dir.join(SNAPSHOT_FILE);
    let file = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(|e| io_error(&path, "open", e))?;
    let bytes = read_whole(&file, &path).await?;
    file.close()
        .await
        .map_err(|e| io_error(&path, "close", e))?;
    // The snapshot file is only ever renamed into place after a synced write, so any defect
    // is corruption, never a torn write.
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.clone(),
        pos: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES || be_u32(&bytes[0..4]) != SNAPSHOT_MAGIC {
        return Err(corrupt("bad snapshot header"));
    }
    if be_u16(&bytes[4..6]) != FORMAT_VERSION {
        return Err(corrupt("unknown snapshot format version"));
    }
    let len = be_u32(&bytes[8..12]) as usize;
    let body = bytes
        .get(SNAPSHOT_HEADER_BYTES..SNAPSHOT_HEADER_BYTES + len)
        .ok_or_else(|| corrupt("snapshot shorter than its header says"))?;
    if crc32c::crc32c(body) != be_u32(&bytes[12..16]) {
        return Err(corrupt("snapshot CRC mismatch"));
    }
    Snapshot::parse_from_bytes(body).map_err(|e| corrupt(&format!("snapshot protobuf: {e}")))
}

struct Scan {
    payloads: Vec<(u64, Vec<u8>)>,
    valid_end: u64,
    sequence_last: u64,
}

struct ParsedWrite<'a> {
    sequence: u64,
    payload: &'a [u8],
    len_bytes: usize,
}

/// Checks one write at the start of `bytes`.
fn parse_write(bytes: &[u8]) -> Option<ParsedWrite<'_>> {
    let header = bytes.get(..WRITE_HEADER_BYTES)?;
    if be_u32(&header[0..4]) != WAL_MAGIC || be_u16(&header[4..6]) != FORMAT_VERSION {
        return None;
    }
    if crc32c::crc32c(&header[0..24]) != be_u32(&header[24..28]) {
        return None;
    }
    let len = be_u32(&header[8..12]) as usize;
    let payload = bytes.get(WRITE_HEADER_BYTES..WRITE_HEADER_BYTES + len)?;
    if crc32c::crc32c(payload) != be_u32(&header[12..16]) {
        return None;
    }
    Some(ParsedWrite {
        sequence: be_u64(&header[16..24]),
        payload,
        len_bytes: align_up((WRITE_HEADER_BYTES + len) as u64) as usize,
    })
}

fn scan_writes(bytes: &[u8], path: &Path) -> Result<Scan> {
    let mut scan = Scan {
        payloads: Vec::new(),
        valid_end: 0,
        sequence_last: 0,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        match parse_write(&bytes[pos..]) {
            Some(write) if write.sequence == scan.sequence_last + 1 => {
                scan.payloads.push((pos as u64, write.payload.to_vec()));
                scan.sequence_last = write.sequence;
                pos += write.len_bytes;
                scan.valid_end = pos as u64;
            }
            _ => break,
        }
    }
    // Anything valid after the first bad write means the bad one was not the last write.
    let block = DMA_ALIGNMENT_BYTES as usize;
    let mut probe = pos.div_ceil(block) * block;
    while probe < bytes.len() {
        if let Some(write) = parse_write(&bytes[probe..]) {
            if write.sequence > scan.sequence_last {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    pos: pos as u64,
                    reason: format!(
                        "write {} is damaged but write {} after it is intact",
                        scan.sequence_last + 1,
                        write.sequence
                    ),
                });
            }
        }
        probe += block;
    }
    Ok(scan)
}

fn replay(state: &mut Recovered, payloads: &[(u64, Vec<u8>)], path: &Path) -> Result<()> {
    let snapshot_index = state.snapshot.get_metadata().index;
    for (pos, payload) in payloads {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            pos: *pos,
            reason,
        };
        let mut rest = payload.as_slice();
        while !rest.is_empty() {
            if rest.len() < RECORD_HEADER_BYTES {
                return Err(corrupt("record header cut short".into()));
            }
            let kind = rest[0];
            let len = be_u32(&rest[1..5]) as usize;
            let body = rest
                .get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len)
                .ok_or_else(|| corrupt("record longer than its write".into()))?;
            rest = &rest[RECORD_HEADER_BYTES + len..];
            let bad = |e: protobuf::ProtobufError| corrupt(format!("record protobuf: {e}"));
            match kind {
                KIND_HARD_STATE => {
                    state.hard_state = HardState::parse_from_bytes(body).map_err(bad)?
                }
                KIND_CONF_STATE => {
                    state.conf_state = Some(ConfState::parse_from_bytes(body).map_err(bad)?)
                }
                KIND_ENTRY => {
                    let entry = Entry::parse_from_bytes(body).map_err(bad)?;
                    if entry.index <= snapshot_index {
                        continue;
                    }
                    let first = state
                        .entries
                        .first()
                        .map_or(snapshot_index + 1, |e| e.index);
                    let keep = entry.index.saturating_sub(first) as usize;
                    if keep > state.entries.len() {
                        return Err(corrupt(format!("entry {} leaves a gap", entry.index)));
                    }
                    state.entries.truncate(keep);
                    state.entries.push(entry);
                }
                other => return Err(corrupt(format!("unknown record kind {other}"))),
            }
        }
    }
    // A crash between the two renames of `rewrite` after installing a leader's snapshot
    // leaves the old log, whose entries past the snapshot may be of another history (an
    // unreplicated suffix of an older term). Terms never decrease along a log, so the first
    // entry past the snapshot with an older term than the snapshot's starts that other
    // history: it and everything after it go (raft's log matching would replace them anyway;
    // this keeps a log whose terms go back from ever being served).
    let snapshot_term = state.snapshot.get_metadata().term;
    if let Some(stale) = state.entries.iter().position(|e| e.term < snapshot_term) {
        state.entries.truncate(stale);
    }
    // The snapshot was taken at an applied (so committed) index.
    let meta = state.snapshot.get_metadata();
    state.hard_state.commit = state.hard_state.commit.max(meta.index);
    state.hard_state.term = state.hard_state.term.max(meta.term);
    let last_index = state.entries.last().map_or(meta.index, |e| e.index);
    state.hard_state.commit = state.hard_state.commit.min(last_index);
    Ok(())
}

fn be_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use shoal_sim_disk::{CutMode, SimDisk};

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn dir() -> PathBuf {
        PathBuf::from("/g")
    }

    fn open(disk: &Rc<SimDisk>) -> Result<(Wal<SimDisk>, Recovered)> {
        block_on(Wal::open(disk.clone(), &dir()))
    }

    fn indexes(r: &Recovered) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn a_later_entry_replaces_the_suffix_it_overwrites() {
        let disk = Rc::new(SimDisk::new());
        let (mut wal, _) = open(&disk).expect("open");
        let first = [entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")];
        block_on(wal.append(&Records {
            entries: &first,
            ..Records::default()
        }))
        .expect("append");
        let hs = HardState {
            term: 2,
            vote: 3,
            ..HardState::default()
        };
        let second = [entry(2, 2, b"x")];
        let records = Records {
            hard_state: Some(&hs),
            entries: &second,
            ..Records::default()
        };
        block_on(wal.append(&records)).expect("append");
        disk.power_cut(1, CutMode::Adversarial);
        let (_, recovered) = open(&disk).expect("reopen");
        assert_eq!(indexes(&recovered), vec![(1, 1), (2, 2)]);
        assert_eq!(
            (recovered.hard_state.term, recovered.hard_state.vote),
            (2, 3)
        );
    }

    #[test]
    fn a_torn_last_write_is_cut_off_and_appends_continue_there() {
        for seed in 0..50 {
            let disk = Rc::new(SimDisk::new());
            let (mut wal, _) = open(&disk).expect("open");
            let first = [entry(1, 1, &[7u8; 3000])];
            block_on(wal.append(&Records {
                entries: &first,
                ..Records::default()
            }))
            .expect("append");
            // The second write is cut mid-way: its sync never completed.
            disk.fail_sync(0, libc_eio());
            let big = [entry(2, 1, &[9u8; 9000])];
            assert!(block_on(wal.append(&Records {
                entries: &big,
                ..Records::default()
            }))
            .is_err());
            disk.clear_faults();
            disk.power_cut(seed, CutMode::Adversarial);
            let (mut wal, recovered) = open(&disk).expect("a torn last write is not corruption");
            assert_eq!(indexes(&recovered), vec![(1, 1)], "seed {seed}");
            let next = [entry(2, 1, b"again")];
            block_on(wal.append(&Records {
                entries: &next,
                ..Records::default()
            }))
            .expect("append");
            disk.power_cut(seed, CutMode::Adversarial);
            let (_, recovered) = open(&disk).expect("reopen");
            assert_eq!(indexes(&recovered), vec![(1, 1), (2, 1)], "seed {seed}");
        }
    }

    #[test]
    fn damage_before_an_intact_write_is_reported() {
        let disk = Rc::new(SimDisk::new());
        let (mut wal, _) = open(&disk).expect("open");
        for i in 1..=3 {
            let e = [entry(i, 1, b"payload")];
            block_on(wal.append(&Records {
                entries: &e,
                ..Records::default()
            }))
            .expect("append");
        }
        // A bit flip inside the second write's payload (block 1, past the 32-byte header;
        // block 0 holds the first write).
        disk.corrupt(&dir().join(WAL_FILE), DMA_ALIGNMENT_BYTES + 40)
            .expect("corrupt");
        match open(&disk) {
            Err(Error::Corrupt { pos, .. }) => assert_eq!(pos, DMA_ALIGNMENT_BYTES),
            other => panic!(
                "expected corruption, got {:?}",
                other.map(|(_, r)| indexes(&r))
            ),
        }
    }

    #[test]
    fn rewrite_keeps_what_the_snapshot_does_not_cover_across_a_cut() {
        let disk = Rc::new(SimDisk::new());
        let (mut wal, _) = open(&disk).expect("open");
        let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1, b"e")).collect();
        block_on(wal.append(&Records {
            entries: &entries,
            ..Records::default()
        }))
        .expect("append");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 3;
        snapshot.mut_metadata().term = 1;
        snapshot.set_data(b"state".to_vec().into());
        let hs = HardState {
            term: 1,
            commit: 4,
            ..HardState::default()
        };
        let rest = &entries[3..];
        let records = Records {
            hard_state: Some(&hs),
            entries: rest,
            ..Records::default()
        };
        block_on(wal.rewrite(&snapshot, &records)).expect("rewrite");
        disk.power_cut(3, CutMode::Adversarial);
        let (_, recovered) = open(&disk).expect("reopen");
        assert_eq!(recovered.snapshot.get_metadata().index, 3);
        assert_eq!(&recovered.snapshot.data[..], b"state");
        assert_eq!(indexes(&recovered), vec![(4, 1), (5, 1)]);
        assert_eq!(recovered.hard_state.commit, 4);
    }

    /// A log of entries 1..=`entries` in term 1, then a snapshot at (index, term) renamed into
    /// place without the log's rewrite (a crash between the two renames of `rewrite`), then a
    /// power cut (seed `cut_seed`); returns what recovery opens.
    fn old_log_under_a_new_snapshot(
        entries: u64,
        (index, term): (u64, u64),
        cut_seed: u64,
    ) -> Recovered {
        let disk = Rc::new(SimDisk::new());
        let (mut wal, _) = open(&disk).expect("open");
        let entries: Vec<Entry> = (1..=entries).map(|i| entry(i, 1, b"old")).collect();
        block_on(wal.append(&Records {
            entries: &entries,
            ..Records::default()
        }))
        .expect("append");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        let image = snapshot_image(&snapshot).expect("encode");
        block_on(wal.replace_file(SNAPSHOT_FILE, &image)).expect("snap");
        disk.power_cut(cut_seed, CutMode::Adversarial);
        let (_, recovered) = open(&disk).expect("reopen");
        recovered
    }

    #[test]
    fn a_leaders_snapshot_with_the_old_log_drops_the_old_history_past_it() {
        // An unreplicated suffix of term 1 up to index 6, then a snapshot of the leader of
        // term 3 at index 4 lands, and the process dies before the log is replaced.
        let recovered = old_log_under_a_new_snapshot(6, (4, 3), 5);
        assert_eq!(
            indexes(&recovered),
            vec![],
            "entries 5-6 of term 1 cannot follow term 3"
        );
        assert_eq!(recovered.hard_state.commit, 4);
        assert_eq!(recovered.hard_state.term, 3);
    }

    #[test]
    fn a_snapshot_with_the_old_log_skips_what_the_snapshot_covers() {
        // As if the process died between the snapshot's rename and the log's.
        let recovered = old_log_under_a_new_snapshot(5, (4, 1), 4);
        assert_eq!(indexes(&recovered), vec![(5, 1)]);
        assert_eq!(
            recovered.hard_state.commit, 4,
            "the snapshot's index is committed"
        );
    }

    fn libc_eio() -> i32 {
        5
    }
}
