//! Segment roll: seal the active segment and start a new one.
//!
//! A roll is a barrier: the old segment's data is written and synced, the file is truncated to
//! its data (dropping pre-allocated or recycled blocks past it) and synced again, and its index
//! files are written, before the first byte goes to the new segment. Recovery can therefore
//! treat every sealed segment as fully synced and scan only the last one for a torn tail.

use std::rc::Rc;

use shoal_io::{Disk, DmaFile, OpenMode};
use shoal_model::{Offset, RaftIndex, Term, TimestampMs};

use crate::error::{Error, OfflineReason, Result};
use crate::index::{self, IndexCheckpoint, SparseIndex};
use crate::log::Log;
use crate::segment::{
    path_of, stem, write_small_file, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::writer::Writer;

pub(crate) const RECYCLE_DIR: &str = "recycle";

impl<D: Disk> Log<D> {
    /// Rolls if appending `len` bytes would pass `segment.bytes`, or the active segment is
    /// older than `segment.ms` (less its jitter) by the incoming batch's max timestamp.
    /// Called with the placement permit held.
    pub(crate) async fn roll_if_due(&self, len: usize, incoming_max_ts: TimestampMs) -> Result<()> {
        let due = {
            let config = self.inner.config.borrow();
            let state = self.inner.state.borrow();
            let active = state.active();
            let too_big = active.size_bytes + len as u64 > config.segment_bytes_max;
            let age_ms = match active.first_max_timestamp {
                Some(first) if first.0 >= 0 => incoming_max_ts.0.saturating_sub(first.0),
                _ => self.inner.clock.now_ms() - active.created_ms,
            };
            let too_old = config.segment_ms_max.is_some_and(|max| {
                let jitter = roll_jitter_ms(active.base, config.segment_jitter_ms, max);
                age_ms >= (max - jitter) as i64
            });
            !active.is_empty() && (too_big || too_old)
        };
        if due {
            self.roll().await?;
        }
        Ok(())
    }

    /// Seals the active segment and opens a new one at the log end, in the same term.
    pub(crate) async fn roll(&self) -> Result<()> {
        let term = self.inner.state.borrow().term;
        self.roll_into(term).await
    }

    /// Seals the active segment and opens a new one at the log end for `term`, which becomes
    /// the log's term once the new segment exists. Called with the placement permit held.
    pub(crate) async fn roll_into(&self, term: Term) -> Result<()> {
        let log_end = self.offsets().log_end;
        // Everything placed written and synced, and no write queued or in flight: a confirm
        // write (`confirm_synced`) may be queued although everything is synced already, and
        // it must land before the segment is sealed at its size.
        self.drain_writes().await?;
        debug_assert_eq!(self.offsets().log_end, log_end, "placement is held");
        self.seal_active().await?;
        let index = self.next_segment_index();
        let (segment, allocated_bytes) = self.create_segment(log_end, term, index).await?;
        let mut state = self.inner.state.borrow_mut();
        state.term = term;
        assert!(
            state.active().key() < segment.key(),
            "a new segment sorts after the active one"
        );
        let previous = state.segments.insert(segment.key(), segment);
        assert!(
            previous.is_none(),
            "a new segment starts past every existing one"
        );
        state.writer = Writer::resume(0, &[], allocated_bytes);
        state.stats.rolls += 1;
        Ok(())
    }

    /// The Raft index a segment created now starts at: the log's next (replicated logs).
    pub(crate) fn next_segment_index(&self) -> Option<RaftIndex> {
        let state = self.inner.state.borrow();
        state.raft.as_ref().map(|_| RaftIndex(state.next_index))
    }

    /// Truncates the active segment to its data, syncs, and writes its index files.
    pub(crate) async fn seal_active(&self) -> Result<()> {
        let (file, size, stem_name, checkpoint, index) = {
            let state = self.inner.state.borrow();
            assert!(state.writer.queued.is_empty() && state.writer.open.is_none());
            assert_eq!(state.writer.synced_bytes, state.writer.appended_bytes);
            let active = state.active();
            let checkpoint = IndexCheckpoint {
                covered_bytes: active.size_bytes,
                next_offset: active.next_offset,
                max_timestamp: active.max_timestamp.unwrap_or(TimestampMs(-1)),
                batches: if active.first_index.is_some() {
                    active.batches
                } else {
                    0
                },
            };
            (
                active.file.clone(),
                active.size_bytes,
                active.stem(),
                checkpoint,
                active.index.clone(),
            )
        };
        let path = path_of(&self.inner.dir, &stem_name, LOG_SUFFIX);
        let truncated = async {
            file.truncate(size).await?;
            file.fdatasync().await
        };
        if let Err(error) = truncated.await {
            return Err(self.offline_io("seal segment", path, &error));
        }
        self.write_index_files(&stem_name, &index, checkpoint).await
    }

    pub(crate) async fn write_index_files(
        &self,
        stem_name: &str,
        index: &SparseIndex,
        checkpoint: IndexCheckpoint,
    ) -> Result<()> {
        // One encoding holds both tables; the two files keep Kafka's familiar layout and let
        // each be rebuilt alone. The time index file repeats the offsets it needs.
        let offsets_only = SparseIndex {
            times: Vec::new(),
            ..index.clone()
        };
        let times_only = SparseIndex {
            offsets: Vec::new(),
            ordinals: Vec::new(),
            ..index.clone()
        };
        for (suffix, table) in [
            (INDEX_SUFFIX, offsets_only),
            (TIME_INDEX_SUFFIX, times_only),
        ] {
            let name = format!("{stem_name}{suffix}");
            let bytes = index::encode(&table, checkpoint, self.inner.replicated);
            if let Err(error) =
                write_small_file(&*self.inner.disk, &self.inner.dir, &name, &bytes).await
            {
                return Err(self.offline_io("write index", self.inner.dir.join(name), &error));
            }
        }
        Ok(())
    }

    /// Creates (or takes from the recycle directory) the file for a segment starting at `base`
    /// (and, in a replicated log, at Raft index `index`). Returns the segment and how many
    /// bytes its file already holds (a recycled file).
    pub(crate) async fn create_segment(
        &self,
        base: Offset,
        term: Term,
        index: Option<RaftIndex>,
    ) -> Result<(Segment<D::File>, u64)> {
        assert_eq!(
            index.is_some(),
            self.inner.replicated,
            "named as the log's mode says"
        );
        let stem_name = stem(base, term, index);
        let path = path_of(&self.inner.dir, &stem_name, LOG_SUFFIX);
        let disk = &*self.inner.disk;
        let opened = async {
            let recycled = self.take_recycled().await?;
            let file = match recycled {
                Some(from) => {
                    disk.rename(&from, &path).await?;
                    disk.open(&path, OpenMode::Existing).await?
                }
                None => disk.open(&path, OpenMode::CreateTruncate).await?,
            };
            // The new name must survive a power loss before any data in it is acknowledged.
            disk.sync_dir(&self.inner.dir).await?;
            let allocated = file.size_bytes().await?;
            Ok::<_, std::io::Error>((file, allocated))
        };
        let (file, allocated) = opened
            .await
            .map_err(|e| self.offline_io("create segment", path, &e))?;
        let segment = Segment {
            base,
            term,
            first_index: index,
            batches: 0,
            file: Rc::new(file),
            index: SparseIndex::default(),
            size_bytes: 0,
            next_offset: base,
            max_timestamp: None,
            first_max_timestamp: None,
            created_ms: self.inner.clock.now_ms(),
        };
        Ok((segment, allocated))
    }

    async fn take_recycled(&self) -> std::io::Result<Option<std::path::PathBuf>> {
        if self.inner.config.borrow().recycled_segments_max == 0 {
            return Ok(None);
        }
        let dir = self.inner.dir.join(RECYCLE_DIR);
        let names = match self.inner.disk.list(&dir).await {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(names.into_iter().min().map(|name| dir.join(name)))
    }

    pub(crate) fn offline_io(
        &self,
        op: &str,
        path: std::path::PathBuf,
        error: &std::io::Error,
    ) -> Error {
        self.go_offline(OfflineReason::from_io(op, path, error));
        Error::Offline(self.offline_reason().expect("just set"))
    }
}

/// How much earlier than `segment.ms` the segment at `base` rolls: an amount below
/// `min(jitter_ms, segment_ms)`, fixed per segment. Kafka draws it at random once per segment;
/// a hash of the base offset spreads rolls the same way with no randomness in the log.
fn roll_jitter_ms(base: Offset, jitter_ms: u64, segment_ms: u64) -> u64 {
    let bound = jitter_ms.min(segment_ms);
    if bound == 0 {
        return 0;
    }
    // splitmix64 of the base offset.
    let mut z = (base.0 as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % bound
}
