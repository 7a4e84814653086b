//! Fetch sessions (KIP-227): a consumer that fetches the same partitions again and again sends
//! only what changed (partitions whose fetch offset or limits moved, partitions to forget), and
//! the broker answers only the partitions that changed (new data, a moved high watermark or log
//! start, an error). With 1000 idle partitions a fetch then costs a few dozen bytes each way
//! instead of ~30 KiB.
//!
//! This is the state machine and the cache, free of any runtime. The server keeps one cache per
//! core: a connection is served on the core that accepted it for its whole life, so a client's
//! fetches meet the same cache until it reconnects; a session id names its core (`id % cores
//! == core`), so a reconnected client that lands on another core gets FETCH_SESSION_ID_NOT_FOUND
//! there and starts a new session with a full fetch, as the protocol provides for.
//!
//! The request's (session id, epoch) decide, as in Kafka's `FetchSessionCache.newContext`:
//! - epoch -1 (FINAL): a full fetch without a session; a session id given is closed.
//! - epoch 0 (INITIAL): a full fetch that opens a new session (if the cache has room or may
//!   evict); a session id given is closed first.
//! - epoch > 0: an incremental fetch of that session: unknown id: FETCH_SESSION_ID_NOT_FOUND;
//!   another epoch than the session's next: INVALID_FETCH_SESSION_EPOCH (both top-level errors,
//!   no partitions; the client starts over with a full fetch). Otherwise the request's
//!   partitions are added or updated, the forgotten ones removed, and every partition of the
//!   session is read; a session left empty is closed and answered as a sessionless fetch.
//!
//! Bounds: at most `slots_max` sessions per core (the broker's `fetch_sessions_max` split over
//! the cores: Kafka's `max.incremental.fetch.session.cache.slots`); a session holds at most the
//! partitions of one request (bounded by `request_bytes_max`). A new session takes the slot of
//! the least recently used one if that has been idle longer than `eviction_ms` (Kafka's
//! `min.incremental.fetch.session.eviction.ms`), else of the session with the fewest
//! partitions if the new one has more (a big session saves more); else it is not created and
//! the fetch is answered with session id 0 (the client keeps sending full fetches).
//!
//! Fairness: partitions that returned records move to the end of the session's order, so a
//! response-size limit does not starve the partitions after them (Kafka does the same).

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;

use crate::cluster::TopicPartition;

/// Epoch of a request that opens a session (Kafka `INITIAL_EPOCH`).
pub const EPOCH_INITIAL: i32 = 0;
/// Epoch of a request that wants no session (Kafka `FINAL_EPOCH`).
pub const EPOCH_FINAL: i32 = -1;
/// The "no session" id.
pub const SESSION_ID_NONE: i32 = 0;

/// What a request asks for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub tp: TopicPartition,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The client's leader epoch; negative: not given.
    pub current_leader_epoch: i32,
}

/// A partition of a session: what the client last asked for it, and what the broker last told
/// the client about it (a change is answered, no change is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPartition {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// Last high watermark answered; -1: never answered or last answered with an error, so
    /// the next answer includes the partition whatever it holds.
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
}

impl CachedPartition {
    pub fn from_request(requested: &Requested) -> CachedPartition {
        CachedPartition {
            fetch_offset: requested.fetch_offset,
            max_bytes: requested.max_bytes,
            current_leader_epoch: requested.current_leader_epoch,
            high_watermark: -1,
            log_start_offset: -1,
            last_stable_offset: -1,
        }
    }

    /// Whether an incremental response must include this partition, given what was read for
    /// it (Kafka's `CachedPartition.maybeUpdateResponseData`), and the cached view updated to
    /// what the client will know once it has the response.
    pub fn must_respond(&mut self, read: &ReadSummary) -> bool {
        let mut respond = read.records_bytes > 0;
        if read.error {
            // Answered with the error; forget what was said before so the first answer after
            // the error clears is sent.
            self.high_watermark = -1;
            return true;
        }
        if self.high_watermark != read.high_watermark {
            self.high_watermark = read.high_watermark;
            respond = true;
        }
        if self.log_start_offset != read.log_start_offset {
            self.log_start_offset = read.log_start_offset;
            respond = true;
        }
        if self.last_stable_offset != read.last_stable_offset {
            self.last_stable_offset = read.last_stable_offset;
            respond = true;
        }
        respond
    }
}

/// What a read of one partition gave, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    pub error: bool,
    pub records_bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
}

/// How to serve one fetch request.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Answer only this top-level error (and session id 0), no partitions.
    Error(ResponseError),
    /// Read the request's partitions; answer them all with session id 0.
    Sessionless,
    /// Read the request's partitions, answer them all, then try to open a session of them
    /// ([`FetchSessions::open`]).
    Full,
    /// Read every partition of the session (in this order); answer those that changed
    /// ([`CachedPartition::must_respond`]), then [`FetchSessions::answered`].
    Incremental {
        session_id: i32,
        partitions: Vec<(TopicPartition, CachedPartition)>,
    },
}

/// How requests were served, since the start (the server exports them as metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    pub full: u64,
    pub incremental: u64,
    pub sessionless: u64,
    pub errors: u64,
    pub opened: u64,
    pub evicted: u64,
    /// Full fetches that wanted a session and got none (no slot).
    pub refused: u64,
}

struct Session {
    /// The epoch the next request must carry.
    epoch_next: i32,
    last_used_ms: i64,
    partitions: IndexMap<TopicPartition, CachedPartition>,
}

/// The sessions of one core.
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    slots_max: usize,
    eviction_ms: i64,
    core: u32,
    cores: u32,
    rng: u64,
    counts: SessionCounts,
}

/// Kafka's `FetchMetadata.nextEpoch`: wraps to 1, never back to the special 0 and -1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    /// `core` of `cores`: session ids are `core` modulo `cores`. `seed` starts the id
    /// generator (ids are not secrets: anyone on the listener could fetch anyway).
    pub fn new(slots_max: usize, eviction_ms: i64, core: u32, cores: u32, seed: u64) -> Self {
        assert!(cores > 0 && core < cores, "core {core} of {cores}");
        FetchSessions {
            sessions: HashMap::new(),
            slots_max,
            eviction_ms,
            core,
            cores,
            rng: seed | 1,
            counts: SessionCounts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// The partitions of a session, in its order (tests and diagnostics).
    pub fn partitions(&self, session_id: i32) -> Option<Vec<TopicPartition>> {
        self.sessions
            .get(&session_id)
            .map(|s| s.partitions.keys().cloned().collect())
    }

    /// Decides how to serve a request (Fetch v7+; older versions are always sessionless) and
    /// applies its changes to the session.
    pub fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: &[Requested],
        forgotten: &[TopicPartition],
        now_ms: i64,
    ) -> Plan {
        if epoch == EPOCH_FINAL || epoch == EPOCH_INITIAL {
            if session_id != SESSION_ID_NONE {
                let _ = self.sessions.remove(&session_id);
            }
            return if epoch == EPOCH_FINAL {
                self.counts.sessionless += 1;
                Plan::Sessionless
            } else {
                self.counts.full += 1;
                Plan::Full
            };
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.counts.errors += 1;
            return Plan::Error(ResponseError::FetchSessionIdNotFound);
        };
        if epoch != session.epoch_next {
            self.counts.errors += 1;
            return Plan::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        for wanted in requested {
            match session.partitions.get_mut(&wanted.tp) {
                Some(cached) => {
                    cached.fetch_offset = wanted.fetch_offset;
                    cached.max_bytes = wanted.max_bytes;
                    cached.current_leader_epoch = wanted.current_leader_epoch;
                }
                None => {
                    let _ = session
                        .partitions
                        .insert(wanted.tp.clone(), CachedPartition::from_request(wanted));
                }
            }
        }
        if !forgotten.is_empty() {
            let forgotten: HashSet<&TopicPartition> = forgotten.iter().collect();
            session.partitions.retain(|tp, _| !forgotten.contains(tp));
        }
        if session.partitions.is_empty() {
            let _ = self.sessions.remove(&session_id);
            self.counts.sessionless += 1;
            return Plan::Sessionless;
        }
        session.epoch_next = next_epoch(epoch);
        session.last_used_ms = now_ms;
        self.counts.incremental += 1;
        Plan::Incremental {
            session_id,
            partitions: session
                .partitions
                .iter()
                .map(|(tp, cached)| (tp.clone(), cached.clone()))
                .collect(),
        }
    }

    /// After a full fetch was answered: opens a session of its partitions, each with what the
    /// response told the client. Returns the session id for the response, or 0 when there is
    /// no slot (or nothing to keep).
    pub fn open(&mut self, partitions: Vec<(TopicPartition, CachedPartition)>, now_ms: i64) -> i32 {
        if partitions.is_empty() || !self.make_room(partitions.len(), now_ms) {
            self.counts.refused += 1;
            return SESSION_ID_NONE;
        }
        let session_id = self.new_id();
        let session = Session {
            epoch_next: next_epoch(EPOCH_INITIAL),
            last_used_ms: now_ms,
            partitions: partitions.into_iter().collect(),
        };
        let _ = self.sessions.insert(session_id, session);
        self.counts.opened += 1;
        assert!(self.sessions.len() <= self.slots_max);
        session_id
    }

    /// After an incremental fetch was answered: stores what the response told the client of
    /// each partition and moves the partitions that returned records to the end. The session
    /// may have gone meanwhile (evicted, closed), and a later request may have changed it:
    /// only the answered fields of partitions still there are written.
    pub fn answered(
        &mut self,
        session_id: i32,
        answered: Vec<(TopicPartition, CachedPartition)>,
        had_records: &[TopicPartition],
    ) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        for (tp, view) in answered {
            if let Some(cached) = session.partitions.get_mut(&tp) {
                cached.high_watermark = view.high_watermark;
                cached.log_start_offset = view.log_start_offset;
                cached.last_stable_offset = view.last_stable_offset;
            }
        }
        for tp in had_records {
            if let Some((tp, cached)) = session.partitions.shift_remove_entry(tp) {
                let _ = session.partitions.insert(tp, cached);
            }
        }
    }

    /// Frees a slot for a session of `size` partitions if the cache is full; false: none.
    fn make_room(&mut self, size: usize, now_ms: i64) -> bool {
        if self.sessions.len() < self.slots_max {
            return true;
        }
        let stale = self
            .sessions
            .iter()
            .min_by_key(|(id, s)| (s.last_used_ms, **id))
            .filter(|(_, s)| now_ms - s.last_used_ms > self.eviction_ms)
            .map(|(id, _)| *id);
        let victim = stale.or_else(|| {
            self.sessions
                .iter()
                .min_by_key(|(id, s)| (s.partitions.len(), **id))
                .filter(|(_, s)| s.partitions.len() < size)
                .map(|(id, _)| *id)
        });
        match victim {
            Some(id) => {
                let _ = self.sessions.remove(&id);
                self.counts.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// A fresh positive id, `core` modulo `cores`, not in use here.
    fn new_id(&mut self) -> i32 {
        let per_core = (i32::MAX as u32) / self.cores;
        loop {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let slot = (self.rng >> 33) as u32 % per_core;
            let id = (slot * self.cores + self.core) as i32;
            if id != SESSION_ID_NONE && !self.sessions.contains_key(&id) {
                assert!(id > 0 && id as u32 % self.cores == self.core);
                return id;
            }
        }
    }
}
