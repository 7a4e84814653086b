//! The in-memory mirror of a group's durable log, read by raft-rs through `raft::Storage`.
//!
//! The mirror is changed only by `Replica` (on the group's owner core), and only together
//! with a write of the same change to the `Wal`: entries are mirrored before their write is
//! issued (raft-rs reads them back to send to followers at once), but nothing that depends on
//! them being durable (votes, acknowledgements, `persisted_messages`) leaves before the write
//! completed. Borrows are short and never held across an `.await`.

use std::cell::RefCell;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

#[derive(Default, Debug)]
pub(crate) struct Mem {
    pub(crate) hard_state: HardState,
    pub(crate) conf_state: ConfState,
    /// The latest snapshot (metadata and state-machine data); index 0 if none was taken.
    pub(crate) snapshot: Snapshot,
    /// Entries after the snapshot's index, contiguous.
    pub(crate) entries: Vec<Entry>,
}

impl Mem {
    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |e| e.index)
    }

    /// Appends `entries`, replacing any at or above the first one's index (an uncommitted
    /// suffix the new leader overwrote).
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index >= self.first_index() && first.index <= self.last_index() + 1,
            "append of {} outside {}..={}",
            first.index,
            self.first_index(),
            self.last_index() + 1
        );
        assert!(
            first.index > self.hard_state.commit,
            "raft overwrote committed entry {} (commit {})",
            first.index,
            self.hard_state.commit
        );
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        debug_assert!(self
            .entries
            .windows(2)
            .all(|w| w[1].index == w[0].index + 1));
    }

    /// Drops entries up to and including `index` (they are in the snapshot now).
    pub(crate) fn compact_to(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index >= self.snapshot.get_metadata().index);
        let drop = index.saturating_sub(self.first_index() - 1) as usize;
        let drop = drop.min(self.entries.len());
        let _ = self.entries.drain(..drop);
        self.snapshot = snapshot;
        assert!(self.entries.first().is_none_or(|e| e.index == index + 1));
    }

    /// Replaces everything with a snapshot received from the leader.
    pub(crate) fn install(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.hard_state.commit = meta.index;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }

    pub(crate) fn term(&self, index: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        if index < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let slot = (index - self.first_index()) as usize;
        self.entries
            .get(slot)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }
}

/// Shared handle on the mirror: one clone inside the `RawNode`, one in the `Replica`.
#[derive(Clone, Default)]
pub(crate) struct Store(pub(crate) Rc<RefCell<Mem>>);

impl raft::Storage for Store {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let mem = self.0.borrow();
        Ok(RaftState::new(
            mem.hard_state.clone(),
            mem.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let mem = self.0.borrow();
        if low < mem.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= mem.last_index() + 1,
            "raft asked for entries up to {high}, last is {}",
            mem.last_index()
        );
        let lo = (low - mem.first_index()) as usize;
        let hi = (high - mem.first_index()) as usize;
        let mut entries = mem.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.0.borrow().term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mem = self.0.borrow();
        if mem.snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(mem.snapshot.clone())
    }
}
