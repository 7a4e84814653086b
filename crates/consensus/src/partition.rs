//! A partition's Raft group member whose Raft log is the partition's own log
//! (`shoal_storage::Log` in replicated mode): each byte is written once. First step of the
//! plan in `PARTITION_GROUPS.md`; what is not built yet is listed there.
//!
//! ## How raft-rs sees the log
//! raft-rs keeps the entries it appended but the owner has not yet persisted in its own
//! `unstable` part and asks [`raft::Storage`] only about the stable ones. So the store reports
//! `stable_last` (the last entry of a handled `Ready` whose durability the log confirmed) as
//! the last index, while the log itself runs ahead (entries placed, not yet synced).
//!
//! ## Entries
//! - A **data** entry is a raft `EntryNormal` with a non-empty payload: the Kafka batch, its
//!   base offset and term stamped by the leader's log (`Log::propose`), stored byte for byte
//!   by every replica. The leader places it *before* handing it to raft-rs, so the bytes
//!   raft-rs sends are the stored ones; raft-rs must give it the index the log gave (asserted).
//! - Every other entry (the new leader's empty entry, configuration changes) is **internal**:
//!   stored as an internal batch (no Kafka offset) whose body is the protobuf of the raft
//!   `Entry` with index and term cleared (they are the stored batch's).
//!
//! ## Durability order (as the controller's `Replica`)
//! A `Ready`'s entries are placed, then waited for until durable (synced in Fsync mode,
//! written with `write.caching`), and its hard state is written (O_DSYNC, the `Wal` of this
//! crate with no entries) before the persisted messages (votes, append responses) are
//! returned for sending. The leader's own entries count for the commit only after that, so
//! its sync runs in parallel with the followers'. Each commit goes to `Log::advance_commit`:
//! the Kafka high watermark.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{GetEntriesContext, RaftState, RawNode, StateRole, StorageError};
use shoal_io::Disk;
use shoal_model::{Offset, RaftIndex, Term};
use shoal_storage::{Log, Wait};

use crate::error::{Error, Result};
use crate::wal::{Records, Wal};

/// Entries kept in memory for raft-rs's synchronous reads, at most (bytes of payload).
/// raft-rs reads above the applied index synchronously; older entries (a lagging follower's
/// catch-up) are answered `LogTemporarilyUnavailable` and read from the log.
pub const RECENT_ENTRIES_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Entry bytes in one append message at most (at least one entry is always sent).
pub const MESSAGE_ENTRIES_BYTES_MAX: u64 = 1024 * 1024;
/// Appends in flight to one follower at most, before it acknowledges.
pub const APPENDS_INFLIGHT_MAX: usize = 64;

#[derive(Debug, Default)]
struct Meta {
    hard_state: HardState,
    conf_state: ConfState,
    stable_last: u64,
    /// Contiguous entries ending at `stable_last`.
    recent: VecDeque<Entry>,
    recent_bytes: usize,
    /// Reads raft-rs asked for below `recent` while allowing them to come later:
    /// (low, high, max bytes, the context to hand back with `on_entries_fetched`).
    fetches_wanted: Vec<(u64, u64, u64, GetEntriesContext)>,
    /// Entries read for those, each run contiguous, waiting for raft-rs to ask again.
    fetched: VecDeque<Vec<Entry>>,
}

/// Runs of fetched entries kept for raft-rs's retry at most (one per follower catching up is
/// the normal case; each is at most one message's worth).
const FETCHED_RUNS_MAX: usize = 8;

impl Meta {
    fn recent_first(&self) -> u64 {
        self.stable_last + 1 - self.recent.len() as u64
    }

    fn push_recent(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.stable_last + 1,
            "recent entries are contiguous"
        );
        self.stable_last = entry.index;
        self.recent_bytes += entry.data.len();
        self.recent.push_back(entry);
        // Keep what is above the commit (raft-rs reads it synchronously when it becomes
        // leader) even past the budget: that is bounded by raft's uncommitted-size limit.
        while self.recent_bytes > RECENT_ENTRIES_BYTES_MAX
            && self
                .recent
                .front()
                .is_some_and(|e| e.index <= self.hard_state.commit)
        {
            let dropped = self.recent.pop_front().expect("checked");
            self.recent_bytes -= dropped.data.len();
        }
    }

    fn cut_from(&mut self, index: u64) {
        while self.recent.back().is_some_and(|e| e.index >= index) {
            let dropped = self.recent.pop_back().expect("checked");
            self.recent_bytes -= dropped.data.len();
        }
        self.stable_last = self.stable_last.min(index - 1);
    }
}

/// The `raft::Storage` of a partition group: the partition's log plus the small state kept
/// beside it. One clone lives in the `RawNode`, one in the [`PartitionReplica`].
pub struct PartitionStore<D: Disk> {
    log: Log<D>,
    meta: Rc<RefCell<Meta>>,
}

impl<D: Disk> Clone for PartitionStore<D> {
    fn clone(&self) -> Self {
        PartitionStore {
            log: self.log.clone(),
            meta: self.meta.clone(),
        }
    }
}

fn to_term(term: u64) -> Result<Term> {
    i32::try_from(term)
        .map(Term)
        .map_err(|_| Error::Invalid(format!("raft term {term} beyond Kafka's leader epochs")))
}

fn from_term(term: Term) -> u64 {
    u64::try_from(term.0).unwrap_or(0)
}

/// Whether a raft entry is a Kafka batch (see the module documentation).
fn is_data(entry: &Entry) -> bool {
    entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty()
}

/// The stored form of an internal entry: the raft entry without index and term.
fn internal_payload(entry: &Entry) -> Result<Vec<u8>> {
    let mut bare = entry.clone();
    bare.index = 0;
    bare.term = 0;
    bare.write_to_bytes()
        .map_err(|e| Error::Invalid(format!("protobuf encode: {e}")))
}

/// A stored entry as raft-rs sees it.
fn to_raft(stored: &shoal_storage::StoredEntry) -> Result<Entry> {
    let mut entry = match stored.kind {
        shoal_storage::EntryKind::Data => {
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryNormal);
            e.data = stored.bytes.clone();
            e
        }
        shoal_storage::EntryKind::Internal => {
            Entry::parse_from_bytes(shoal_storage::batch_body(&stored.bytes))
                .map_err(|e| Error::BadEntry(format!("internal entry {}: {e}", stored.index.0)))?
        }
    };
    entry.index = stored.index.0;
    entry.term = from_term(stored.term);
    Ok(entry)
}

impl<D: Disk> PartitionStore<D> {
    /// Reads entries `[lo, hi)` from the log (for a fetch raft-rs asked for).
    pub async fn read_entries(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        let stored = self
            .log
            .entries(RaftIndex(lo), RaftIndex(hi), max_bytes)
            .await?;
        stored.iter().map(to_raft).collect()
    }

    /// The reads raft-rs was answered `LogTemporarilyUnavailable` for since the last call.
    pub fn take_fetches_wanted(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.meta.borrow_mut().fetches_wanted)
            .into_iter()
            .map(|(low, high, _, _)| (low, high))
            .collect()
    }

    /// Fetched entries from `low` (below `high`, within `max_size`), if a fetch brought them.
    fn take_fetched(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let mut meta = self.meta.borrow_mut();
        let at = meta
            .fetched
            .iter()
            .position(|run| run.first().is_some_and(|e| e.index == low))?;
        let run = meta.fetched.remove(at)?;
        let mut out: Vec<Entry> = run.into_iter().take_while(|e| e.index < high).collect();
        raft::util::limit_size(&mut out, max_size);
        Some(out)
    }
}

impl<D: Disk> raft::Storage for PartitionStore<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let meta = self.meta.borrow();
        Ok(RaftState::new(
            meta.hard_state.clone(),
            meta.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.log.first_index().0;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let meta = self.meta.borrow_mut();
        assert!(
            high <= meta.stable_last + 1,
            "raft asked for entries up to {high}, stable last is {}",
            meta.stable_last
        );
        let max_size = max_size.into();
        if low >= meta.recent_first() {
            let lo = (low - meta.recent_first()) as usize;
            let hi = (high - meta.recent_first()) as usize;
            let mut out: Vec<Entry> = meta.recent.range(lo..hi).cloned().collect();
            raft::util::limit_size(&mut out, max_size);
            return Ok(out);
        }
        drop(meta);
        if let Some(out) = self.take_fetched(low, high, max_size) {
            return Ok(out);
        }
        let mut meta = self.meta.borrow_mut();
        if context.can_async() {
            let max = max_size.unwrap_or(u64::MAX);
            meta.fetches_wanted.push((low, high, max, context));
            return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        }
        Err(raft::Error::Store(StorageError::Unavailable))
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index > self.meta.borrow().stable_last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.log.term_of(RaftIndex(index)) {
            Some(term) => Ok(from_term(term)),
            None if index + 1 < self.log.first_index().0 => {
                Err(raft::Error::Store(StorageError::Compacted))
            }
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.first_index().0)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.meta.borrow().stable_last)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // A follower below the leader's first index needs a metadata-only snapshot and a
        // storage call that restarts its log there: not built (PARTITION_GROUPS.md). raft-rs
        // retries later; the follower stays behind, which the metrics will show.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// What one [`PartitionReplica::advance`] produced.
#[derive(Debug, Default)]
pub struct PartitionProgress {
    /// To send, in order, to the peers they name.
    pub messages: Vec<Message>,
    /// The Kafka high watermark after this round's commits.
    pub high_watermark: Option<Offset>,
}

/// One member of a partition's Raft group, owned by the partition's core.
pub struct PartitionReplica<D: Disk> {
    raw: RawNode<PartitionStore<D>>,
    store: PartitionStore<D>,
    wal: Wal<D>,
}

impl<D: Disk> PartitionReplica<D> {
    /// Opens the member: `log` is the partition's log (opened in replicated mode, its
    /// flusher running), `state_dir` holds the hard state and configuration (created with
    /// `voters` on first start).
    pub async fn open(
        disk: Rc<D>,
        log: Log<D>,
        state_dir: &Path,
        id: u64,
        voters: Vec<u64>,
    ) -> Result<PartitionReplica<D>> {
        assert!(id != 0, "raft ids start at 1");
        let (mut wal, recovered) = Wal::open(disk, state_dir).await?;
        if !recovered.entries.is_empty() {
            return Err(Error::BadEntry(format!(
                "{}: a partition group's state file holds entries (they live in the log)",
                state_dir.display()
            )));
        }
        let conf_state = match recovered.conf_state {
            Some(conf_state) => conf_state,
            None => {
                if !voters.contains(&id) {
                    return Err(Error::Invalid(format!(
                        "replica {id} is not among the voters {voters:?}"
                    )));
                }
                let conf_state = ConfState::from((voters, Vec::new()));
                wal.append(&Records {
                    conf_state: Some(&conf_state),
                    ..Records::default()
                })
                .await?;
                conf_state
            }
        };
        let mut hard_state = recovered.hard_state;
        // Never ahead of the log: the commit is written lazily, the log may have lost an
        // unsynced tail (write.caching) since.
        let last = log.last_index().0;
        hard_state.commit = hard_state.commit.min(last);
        let meta = Meta {
            hard_state,
            conf_state,
            // Recovery synced what it kept: all of it is stable.
            stable_last: last,
            ..Meta::default()
        };
        let store = PartitionStore {
            log,
            meta: Rc::new(RefCell::new(meta)),
        };
        // raft-rs reads the entries above the commit synchronously when it campaigns or
        // leads: load them now (bounded by raft's uncommitted limit in normal operation).
        let commit = store.meta.borrow().hard_state.commit;
        let first = (commit + 1).max(store.log.first_index().0);
        if first <= last {
            let entries = store.read_entries(first, last + 1, usize::MAX).await?;
            let mut meta = store.meta.borrow_mut();
            meta.stable_last = first - 1;
            for entry in entries {
                meta.push_recent(entry);
            }
            assert_eq!(
                meta.stable_last, last,
                "every entry above the commit was read"
            );
        }
        let config = raft::Config {
            id,
            applied: commit,
            pre_vote: true,
            check_quorum: true,
            // Several batches per append (raft-rs's default of 0 sends one entry each);
            // bounded so a catching-up follower gets frames of at most a few MiB.
            max_size_per_msg: MESSAGE_ENTRIES_BYTES_MAX,
            max_inflight_msgs: APPENDS_INFLIGHT_MAX,
            ..raft::Config::default()
        };
        let logger = crate::logger::logger(id);
        let raw = RawNode::new(&config, store.clone(), &logger)?;
        Ok(PartitionReplica { raw, store, wal })
    }

    pub fn log(&self) -> &Log<D> {
        &self.store.log
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    pub fn tick(&mut self) -> bool {
        self.raw.tick()
    }

    pub fn step(&mut self, message: Message) -> Result<()> {
        Ok(self.raw.step(message)?)
    }

    /// The leader this member knows of (raft id; 0 for none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// The raft ids of the voters.
    pub fn voters(&self) -> Vec<u64> {
        self.raw.raft.prs().conf().voters().ids().iter().collect()
    }

    /// Leader only: each voter's raft id, the last index it is known to hold, and whether it
    /// was heard from within the last election timeout (raft-rs's `recent_active`).
    pub fn followers(&self) -> Vec<(u64, u64, bool)> {
        self.raw
            .raft
            .prs()
            .iter()
            .map(|(&id, pr)| (id, pr.matched, pr.recent_active))
            .collect()
    }

    /// The last index raft-rs holds (placed in the log or about to be).
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Leader only: hands leadership to `id` (raft-rs's leader transfer: `id` is brought up to
    /// date, then told to campaign at once; proposals are refused meanwhile).
    pub fn transfer_leader(&mut self, id: u64) {
        self.raw.transfer_leader(id);
    }

    /// Tells raft-rs a message to `id` could not be sent (it probes again instead of
    /// streaming appends into the void).
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Leader only: places a producer's batch in the log (offsets and term stamped,
    /// idempotent dedup) and proposes it. Returns the entry's index (`None` for an
    /// idempotent retry answered with the original offsets: nothing new to replicate) and
    /// the log's answer. The caller calls [`advance`](Self::advance) first if one is due:
    /// the internal entries raft-rs appended (a new leader's empty entry) must be in the log
    /// before this one.
    pub async fn propose(
        &mut self,
        batch: Vec<u8>,
    ) -> Result<(Option<RaftIndex>, shoal_storage::Appended)> {
        if !self.is_leader() {
            return Err(Error::Invalid("not the leader".into()));
        }
        let term = to_term(self.term())?;
        if self.store.log.term() != term {
            self.store.log.set_term(term).await?;
        }
        let expected = self.raw.raft.raft_log.last_index() + 1;
        assert_eq!(
            self.store.log.last_index().0 + 1,
            expected,
            "the log holds exactly raft's entries before a proposal"
        );
        let proposed = self.store.log.propose(batch, Wait::Buffered).await?;
        let Some(entry) = proposed.entry else {
            return Ok((None, proposed.appended));
        };
        assert_eq!(entry.index.0, expected, "the log gave raft's next index");
        let stored = self
            .store
            .log
            .entries(entry.index, RaftIndex(entry.index.0 + 1), usize::MAX)
            .await?;
        let data = stored
            .first()
            .map(|s| s.bytes.clone())
            .ok_or_else(|| Error::BadEntry(format!("entry {} not readable", entry.index.0)))?;
        if let Err(error) = self.raw.propose(Vec::new(), data.to_vec()) {
            // Dropped (leadership lost meanwhile): the placed batch must go again.
            self.store.log.truncate_entries_from(entry.index).await?;
            return Err(error.into());
        }
        assert_eq!(self.raw.raft.raft_log.last_index(), entry.index.0);
        Ok((Some(entry.index), proposed.appended))
    }

    /// Reads the older entries raft-rs asked for (a lagging follower's catch-up, below the
    /// entries kept in memory) from the log, and tells raft-rs they are there: its retry
    /// takes them, and the next [`advance`](Self::advance) sends them. Returns whether it
    /// read anything. Memory: at most `FETCHED_RUNS_MAX` runs of one message's worth each.
    pub async fn fetch_wanted(&mut self) -> Result<bool> {
        let wanted = std::mem::take(&mut self.store.meta.borrow_mut().fetches_wanted);
        let mut any = false;
        for (low, high, max_bytes, context) in wanted {
            let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
            let entries = self.store.read_entries(low, high, max_bytes).await?;
            if entries.is_empty() {
                continue;
            }
            {
                let mut meta = self.store.meta.borrow_mut();
                if meta.fetched.len() >= FETCHED_RUNS_MAX {
                    let _ = meta.fetched.pop_front();
                }
                meta.fetched.push_back(entries);
            }
            self.raw.on_entries_fetched(context);
            any = true;
        }
        Ok(any)
    }

    /// Drains raft's `Ready` (see the module documentation for the order). `send_early`
    /// gets the messages that need not wait for this round's writes (a leader's appends to
    /// its followers) before the log is waited for, so the leader's sync runs in parallel
    /// with the followers'; the others come back in the progress.
    pub async fn advance(
        &mut self,
        send_early: &mut dyn FnMut(Vec<Message>),
    ) -> Result<PartitionProgress> {
        let mut progress = PartitionProgress::default();
        if !self.raw.has_ready() {
            return Ok(progress);
        }
        let mut ready = self.raw.ready();
        let early = ready.take_messages();
        if !early.is_empty() {
            send_early(early);
        }
        if !ready.snapshot().is_empty() {
            return Err(Error::Invalid(
                "snapshots of partition groups are not built yet".into(),
            ));
        }
        let committed = ready.take_committed_entries();
        self.persist_entries(&ready.take_entries()).await?;
        if let Some(hs) = ready.hs().cloned() {
            let before = self.store.meta.borrow().hard_state.clone();
            self.store.meta.borrow_mut().hard_state = hs.clone();
            // Term and vote must be durable before the messages that depend on them; the
            // commit alone is re-learned after a restart and is written with the next one.
            if hs.term != before.term || hs.vote != before.vote {
                self.wal
                    .append(&Records {
                        hard_state: Some(&hs),
                        ..Records::default()
                    })
                    .await?;
            }
        }
        progress.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.meta.borrow_mut().hard_state.commit = commit;
        }
        progress.messages.extend(light.take_messages());
        let mut last_committed = committed.last().map(|e| e.index);
        if let Some(e) = light.take_committed_entries().last() {
            last_committed = Some(e.index);
        }
        if let Some(index) = last_committed {
            progress.high_watermark = Some(self.store.log.advance_commit(RaftIndex(index)).await?);
            self.raw.advance_apply_to(index);
        }
        Ok(progress)
    }

    /// Places the entries of a Ready the log does not hold yet and waits until they are
    /// durable; an entry at an index the log holds with another term replaces the suffix
    /// from there (the new leader overwrote it; never at or below the commit).
    async fn persist_entries(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let log = self.store.log.clone();
        let mut fresh = Vec::new();
        let mut first_fresh = None;
        for entry in entries {
            let placed = entry.index <= log.last_index().0 && fresh.is_empty();
            if placed {
                let same = log.term_of(RaftIndex(entry.index)) == Some(to_term(entry.term)?);
                if same {
                    continue; // the leader's own proposal, placed before raft-rs saw it
                }
                log.truncate_entries_from(RaftIndex(entry.index)).await?;
                self.store.meta.borrow_mut().cut_from(entry.index);
            }
            first_fresh.get_or_insert(entry.index);
            let term = to_term(entry.term)?;
            let bytes = if is_data(entry) {
                entry.data.to_vec()
            } else {
                shoal_storage::build_internal_batch(&internal_payload(entry)?)
            };
            fresh.push((term, bytes));
        }
        if let Some(first) = first_fresh {
            // Internal batches take the next offset; data batches carry the leader's.
            let mut next = log.offsets().log_end;
            for (term, bytes) in &mut fresh {
                let header = shoal_storage::validate_batch(bytes)
                    .map_err(|d| Error::BadEntry(format!("entry batch: {}", d.describe())))?;
                if header.internal {
                    shoal_storage::stamp_batch(bytes, next, *term);
                } else {
                    next = header.next_offset();
                }
            }
            log.append_entries(RaftIndex(first), fresh, Wait::Buffered)
                .await?;
        }
        log.wait_entry_durable(RaftIndex(last.index)).await?;
        let mut meta = self.store.meta.borrow_mut();
        let from = meta.stable_last + 1;
        for entry in entries.iter().filter(|e| e.index >= from) {
            meta.push_recent(entry.clone());
        }
        Ok(())
    }
}
