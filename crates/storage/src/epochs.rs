//! Leader epochs (Raft terms) of a log: the current one, changing it, and the epoch history
//! Kafka's OffsetForLeaderEpoch and ListOffsets answer from.
//!
//! The term is part of the log's state (`State::term`), never of its configuration. Every
//! batch is stamped with the term current when it was placed, and a change of term starts a
//! new segment named with the new term, so each segment holds the batches of exactly one term
//! (recovery refuses a batch whose term is newer than its segment's). The epoch history is
//! therefore derived from the segment names, with no separate epoch file to keep in step:
//! the first segment of each term gives the term's start offset. Retention removes old
//! segments and, with them, the epochs wholly below the log start, as Kafka's
//! `LeaderEpochFileCache.truncateFromStart` does. A suffix truncation (`truncate.rs`) removes
//! the segments above its cut and, with them, the epochs wholly above it (Kafka's
//! `truncateFromEnd`); the log's current term keeps a segment at the cut.

use shoal_io::Disk;
use shoal_model::{Offset, Term};

use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment::{path_of, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

/// Kafka's UNDEFINED_EPOCH.
const UNDEFINED_EPOCH: Term = Term(-1);

impl<D: Disk> Log<D> {
    /// The current leader epoch: the term the next append is stamped with.
    pub fn term(&self) -> Term {
        self.inner.state.borrow().term
    }

    /// Starts leader epoch `term`: later appends are stamped with it and go to a new segment
    /// named with it (a non-empty active segment is rolled; an empty one is renamed, which is
    /// atomic, so a crash leaves either name and never a log without an active segment).
    /// Terms only grow: an older term is refused with [`Error::StaleTerm`].
    pub async fn set_term(&self, term: Term) -> Result<()> {
        let _permit = self.inner.placement.acquire(1).await;
        let (current, empty) = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            (state.term, state.active().is_empty())
        };
        if term == current {
            return Ok(());
        }
        if term < current {
            return Err(Error::StaleTerm {
                current,
                requested: term,
            });
        }
        if empty {
            self.rename_active(term).await?;
        } else {
            self.roll_into(term).await?;
        }
        let state = self.inner.state.borrow();
        assert_eq!(state.term, term);
        assert_eq!(
            state.active().term,
            term,
            "the new term has its own segment"
        );
        Ok(())
    }

    /// Gives the (empty) active segment the name of `term`.
    pub(crate) async fn rename_active(&self, term: Term) -> Result<()> {
        let (old_stem, base, index) = {
            let state = self.inner.state.borrow();
            let active = state.active();
            assert!(active.is_empty());
            (active.stem(), active.base, active.first_index)
        };
        let new_stem = crate::segment::stem(base, term, index);
        let dir = &self.inner.dir;
        let disk = &*self.inner.disk;
        let renamed = async {
            disk.rename(
                &path_of(dir, &old_stem, LOG_SUFFIX),
                &path_of(dir, &new_stem, LOG_SUFFIX),
            )
            .await?;
            // Index files of the old name (an empty segment's checkpoint) describe nothing.
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                match disk.remove(&path_of(dir, &old_stem, suffix)).await {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error)
                    }
                    _ => {}
                }
            }
            disk.sync_dir(dir).await
        };
        if let Err(error) = renamed.await {
            let path = path_of(dir, &new_stem, LOG_SUFFIX);
            return Err(self.offline_io("rename segment for a new term", path, &error));
        }
        let mut state = self.inner.state.borrow_mut();
        state.active_mut().term = term;
        state.term = term;
        Ok(())
    }

    /// The epoch history: (term, first offset of that term), oldest first, one entry per term.
    /// The first entry covers the log start (its data may begin earlier).
    pub fn epochs(&self) -> Vec<(Term, Offset)> {
        let state = self.inner.state.borrow();
        let mut out: Vec<(Term, Offset)> = Vec::new();
        for segment in state.segments.values() {
            if out.last().is_none_or(|&(term, _)| term != segment.term) {
                assert!(
                    out.last().is_none_or(|&(term, _)| term < segment.term),
                    "segment terms never decrease"
                );
                out.push((segment.term, segment.base));
            }
        }
        out
    }

    /// The epoch of the batch holding `offset`, if the log holds it.
    pub fn epoch_of(&self, offset: Offset) -> Option<Term> {
        let state = self.inner.state.borrow();
        if offset < state.log_start || offset >= state.log_end {
            return None;
        }
        state
            .segments
            .range(..=crate::segment::SegmentKey::up_to(offset))
            .next_back()
            .map(|(_, segment)| segment.term)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch at or below `requested`
    /// and the offset where the next epoch starts (the log end for the current epoch).
    /// `(-1, -1)` for an undefined or unknown newer epoch; for an epoch older than the whole
    /// history, the requested epoch and the start of the oldest known one.
    pub fn epoch_end_offset(&self, requested: Term) -> (Term, Offset) {
        const UNDEFINED: (Term, Offset) = (UNDEFINED_EPOCH, Offset(-1));
        if requested == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        let epochs = self.epochs();
        let log_end = self.inner.state.borrow().log_end;
        if epochs.last().is_some_and(|&(term, _)| term == requested) {
            return (requested, log_end);
        }
        let Some(higher) = epochs.iter().position(|&(term, _)| term > requested) else {
            return UNDEFINED;
        };
        let next_start = epochs[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => (epochs[floor].0, next_start),
            None => (requested, next_start),
        }
    }
}
