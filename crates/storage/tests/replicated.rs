//! The replicated mode of `Log` (the Raft log of a partition group). The tests check:
//! - propose, propose_internal, append_entries and entries round trip, byte for byte, from
//!   the cache and from the disk; internal entries take no offset and are never read by Kafka
//!   readers;
//! - every refusal of append_entries, and that a refused call changes nothing;
//! - terms start segments named `{offset}-{term}-{index}`, the term cache answers from them;
//! - advance_commit bounds reads, never goes back and never passes the written end;
//! - truncate_entries_from at an internal entry that shares its offset with the next data
//!   batch, across segments and terms, and crashes at every step of it (old or new log,
//!   never a mix);
//! - power cuts over seeds: every synced entry comes back with its index, term and bytes;
//! - recovery of ordinals, and a damaged ordinal is reported;
//! - the wrong mode is refused; a follower's producer state lets it lead.
//!
//! Seeds: `SHOAL_SIM_SEEDS` (default 100) and `SHOAL_SIM_SEED_FIRST`.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::{batch, dir, read_all, segment_files, Harness};
use futures::task::LocalSpawnExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_model::{Offset, RaftIndex, Term};
use shoal_sim_disk::{CutMode, SimDisk};
use shoal_storage::{
    batch_body, build_idempotent_batch, validate_batch, BatchDefect, Durability, EntriesRefused,
    EntryKind, Error, Fallocation, Guarantee, Log, LogConfig, OfflineKind, StoredEntry, Wait,
};

type TestLog = Log<SimDisk>;

fn seeds() -> std::ops::Range<u64> {
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let first = std::env::var("SHOAL_SIM_SEED_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    first..first + count
}

/// Small segments (a few entries each) and a sparse index entry every other batch or so.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1_000,
        index_interval_bytes: 600,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Every entry of the log, first to last.
fn all_entries(h: &mut Harness, log: &TestLog) -> Vec<StoredEntry> {
    let (first, last) = (log.first_index(), log.last_index());
    h.run(log.entries(first, last.plus(1), usize::MAX))
        .expect("entries")
}

/// An entry as a follower receives it: its term and the stored bytes.
fn as_sent(entries: &[StoredEntry]) -> Vec<(Term, Vec<u8>)> {
    entries.iter().map(|e| (e.term, e.bytes.to_vec())).collect()
}

/// (index, term, kind, bytes) of each entry, to compare logs.
fn summary(entries: &[StoredEntry]) -> Vec<(u64, i32, EntryKind, Vec<u8>)> {
    entries
        .iter()
        .map(|e| (e.index.0, e.term.0, e.kind, e.bytes.to_vec()))
        .collect()
}

fn crash(h: &mut Harness, log: TestLog, power: Option<(u64, CutMode)>) {
    drop(log);
    h.kill_tasks();
    h.disk.clear_faults();
    if let Some((seed, mode)) = power {
        h.disk.power_cut(seed, mode);
    }
}

fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> EntriesRefused {
    match result {
        Err(Error::EntriesRefused { refused, .. }) => refused,
        other => panic!("expected EntriesRefused, got {other:?}"),
    }
}

/// A leader's log of two terms: term 1 opens with its empty entry, then three data batches;
/// term 2 with its empty entry, a configuration change, then two data batches.
fn leader_workload(h: &mut Harness, log: &TestLog) {
    h.run(log.set_term(Term(1))).expect("term");
    let _ = h
        .run(log.propose_internal(b"", Wait::Durable))
        .expect("empty");
    for tag in 0..3 {
        let bytes = batch(tag, 1 + tag as usize, 200, 1_000 + tag as i64);
        let _ = h.run(log.propose(bytes, Wait::Durable)).expect("propose");
    }
    h.run(log.set_term(Term(2))).expect("term");
    let _ = h
        .run(log.propose_internal(b"", Wait::Durable))
        .expect("empty");
    let _ = h
        .run(log.propose_internal(b"conf: add node 3", Wait::Durable))
        .expect("conf change");
    for tag in 3..5 {
        let bytes = batch(tag, 2, 200, 2_000);
        let _ = h.run(log.propose(bytes, Wait::Durable)).expect("propose");
    }
}

#[test]
fn propose_and_append_entries_round_trip_and_internal_entries_take_no_offset() {
    // A cache of 0 bytes sends every entries() read to the disk.
    for cache_bytes in [0, 1 << 20] {
        let mut leader_h = Harness::with_budgets(8 << 20, cache_bytes);
        let leader = leader_h.open_replicated(small_segments()).expect("open");
        assert_eq!(
            (leader.first_index(), leader.last_index()),
            (RaftIndex(1), RaftIndex(0))
        );
        assert_eq!(
            leader.term_of(RaftIndex(0)),
            Some(Term(0)),
            "raft-rs's empty prefix"
        );
        leader_workload(&mut leader_h, &leader);
        let entries = all_entries(&mut leader_h, &leader);
        let kinds: Vec<(u64, i32, EntryKind, i64)> = entries
            .iter()
            .map(|e| {
                let header = validate_batch(&e.bytes).expect("valid");
                assert_eq!(header.term, e.term, "the term is stamped");
                (e.index.0, e.term.0, e.kind, header.base_offset.0)
            })
            .collect();
        use EntryKind::{Data, Internal};
        assert_eq!(
            kinds,
            vec![
                (1, 1, Internal, 0),
                (2, 1, Data, 0),
                (3, 1, Data, 1),
                (4, 1, Data, 3),
                (5, 2, Internal, 6),
                (6, 2, Internal, 6),
                (7, 2, Data, 6),
                (8, 2, Data, 8),
            ],
            "cache {cache_bytes}"
        );
        assert_eq!(batch_body(&entries[5].bytes), b"conf: add node 3");
        assert_eq!(leader.offsets().log_end, Offset(10));
        // raft-rs semantics: at least one entry, even past max_bytes.
        let one = leader_h
            .run(leader.entries(RaftIndex(2), RaftIndex(9), 1))
            .expect("entries");
        assert_eq!(summary(&one), summary(&entries[1..2]));
        let budget = entries[1].bytes.len() + entries[2].bytes.len();
        let two = leader_h
            .run(leader.entries(RaftIndex(2), RaftIndex(9), budget))
            .expect("entries");
        assert_eq!(summary(&two), summary(&entries[1..3]));
        assert!(leader_h
            .run(leader.entries(RaftIndex(4), RaftIndex(4), 100))
            .expect("empty range")
            .is_empty());

        // A follower stores the leader's bytes unchanged.
        let mut follower_h = Harness::with_budgets(8 << 20, cache_bytes);
        let follower = follower_h.open_replicated(small_segments()).expect("open");
        let appended = follower_h
            .run(follower.append_entries(RaftIndex(1), as_sent(&entries[..4]), Wait::Durable))
            .expect("append entries");
        assert_eq!(appended.last_index, RaftIndex(4));
        assert_eq!(appended.guarantee, Guarantee::Synced);
        let appended = follower_h
            .run(follower.append_entries(RaftIndex(5), as_sent(&entries[4..]), Wait::Durable))
            .expect("append entries");
        assert_eq!(
            (appended.last_index, appended.log_end),
            (RaftIndex(8), Offset(10))
        );
        let stored = all_entries(&mut follower_h, &follower);
        assert_eq!(summary(&stored), summary(&entries));
        assert_eq!(follower.term_starts(), leader.term_starts());
        assert_eq!(
            follower.term_starts(),
            vec![
                (Term(1), RaftIndex(1), Offset(0)),
                (Term(2), RaftIndex(5), Offset(6))
            ]
        );
        for index in 0..=9 {
            let index = RaftIndex(index);
            assert_eq!(follower.term_of(index), leader.term_of(index), "{index}");
        }
        assert_eq!(follower.term_of(RaftIndex(9)), None);

        // Nothing is served before the commit, then only committed data, never an internal
        // entry.
        assert!(read_all(&mut follower_h, &follower, Offset(0)).is_empty());
        assert_eq!(follower.offsets().high_watermark, Offset(0));
        let hw = follower_h
            .run(follower.advance_commit(RaftIndex(5)))
            .expect("commit");
        assert_eq!(hw, Offset(6), "after the last data entry at or below 5");
        let read = read_all(&mut follower_h, &follower, Offset(0));
        let bases: Vec<i64> = read.iter().map(|(base, _)| base.0).collect();
        assert_eq!(bases, vec![0, 1, 3]);
        let hw = follower_h
            .run(follower.advance_commit(RaftIndex(8)))
            .expect("commit");
        assert_eq!(hw, Offset(10));
        let read = read_all(&mut follower_h, &follower, Offset(0));
        assert_eq!(read.len(), 5, "five data batches, no internal entry");
        assert!(read
            .iter()
            .all(|(_, bytes)| !validate_batch(bytes).expect("valid").internal));
        // Reading at the offset an internal entry shares gives the data batch.
        let page = follower_h.run(follower.read(Offset(6), 1)).expect("read");
        assert!(common::holds(&page.batches[0], 3));

        // A restart recovers the same entries, indexes and terms; nothing is served until
        // Raft says what is committed.
        let _ = follower_h.run(follower.sync()).expect("sync");
        crash(&mut follower_h, follower, Some((7, CutMode::Adversarial)));
        let follower = follower_h
            .open_replicated(small_segments())
            .expect("reopen");
        assert_eq!(
            summary(&all_entries(&mut follower_h, &follower)),
            summary(&entries)
        );
        assert_eq!(follower.offsets().high_watermark, Offset(0));
        assert_eq!(follower.offsets().log_end, Offset(10));
        assert_eq!(follower.term(), Term(2));
        let hw = follower_h
            .run(follower.advance_commit(RaftIndex(6)))
            .expect("commit after a restart: read from the disk");
        assert_eq!(hw, Offset(6));
    }
}

/// A follower holding the first four entries of the leader workload.
fn follower_of_four() -> (Harness, TestLog, Vec<StoredEntry>) {
    let mut leader_h = Harness::new();
    let leader = leader_h.open_replicated(small_segments()).expect("open");
    leader_workload(&mut leader_h, &leader);
    let entries = all_entries(&mut leader_h, &leader);
    let mut h = Harness::new();
    let log = h.open_replicated(small_segments()).expect("open");
    let _ = h
        .run(log.append_entries(RaftIndex(1), as_sent(&entries[..4]), Wait::Durable))
        .expect("append");
    (h, log, entries)
}

fn set_base_offset(bytes: &mut [u8], offset: i64) {
    bytes[..8].copy_from_slice(&offset.to_be_bytes());
}

fn set_epoch(bytes: &mut [u8], term: i32) {
    bytes[12..16].copy_from_slice(&term.to_be_bytes());
}

#[test]
fn every_refusal_of_append_entries_changes_nothing() {
    let (mut h, log, entries) = follower_of_four();
    let before = summary(&all_entries(&mut h, &log));
    let offsets = log.offsets();
    let (names, stats) = (segment_files(&h.disk, &dir()), h.disk.stats());
    let good = as_sent(&entries[4..5]);
    let next = RaftIndex(5);
    let mut refused = Vec::new();
    let mut attempt = |h: &mut Harness, first: RaftIndex, sent: Vec<(Term, Vec<u8>)>| {
        refused.push(refusal(h.run(log.append_entries(
            first,
            sent,
            Wait::Durable,
        ))));
    };
    // Not the next index: a gap, and an overlap.
    attempt(&mut h, RaftIndex(6), good.clone());
    attempt(&mut h, RaftIndex(4), good.clone());
    // A term below the last entry's (term 1): a term-0 batch.
    let mut old = good.clone();
    old[0].0 = Term(0);
    set_epoch(&mut old[0].1, 0);
    attempt(&mut h, next, old);
    // Terms going back within one call.
    let mut back = as_sent(&entries[4..8]);
    back[1].0 = Term(1);
    set_epoch(&mut back[1].1, 1);
    attempt(&mut h, next, back);
    // A batch whose leader epoch is not its entry's term.
    let mut mismatch = good.clone();
    mismatch[0].0 = Term(3);
    attempt(&mut h, next, mismatch);
    // Offsets: a gap, an overlap, and a gap in the second entry of a call.
    for base in [7, 5] {
        let mut gap = good.clone();
        set_base_offset(&mut gap[0].1, base);
        attempt(&mut h, next, gap);
    }
    let mut later_gap = as_sent(&entries[4..8]);
    set_base_offset(&mut later_gap[3].1, 9);
    attempt(&mut h, next, later_gap);
    // Damaged bytes: a CRC-covered bit, a cut batch, trailing bytes.
    let mut damaged = good.clone();
    let at = damaged[0].1.len() - 1;
    damaged[0].1[at] ^= 0x40;
    attempt(&mut h, next, damaged);
    let mut short = good.clone();
    let _ = short[0].1.pop();
    attempt(&mut h, next, short);
    let mut long = good.clone();
    long[0].1.push(0);
    attempt(&mut h, next, long);
    // Larger than the log takes.
    let mut config = small_segments();
    config.batch_bytes_max = 100;
    log.set_config(config);
    attempt(&mut h, next, as_sent(&entries[6..7]));
    log.set_config(small_segments());

    use EntriesRefused as R;
    let kinds: Vec<&str> = refused
        .iter()
        .map(|r| match r {
            R::NotContiguous { last_index } => {
                assert_eq!(*last_index, RaftIndex(4));
                "not contiguous"
            }
            R::TermWentBack { .. } => "term went back",
            R::TermMismatch { .. } => "term mismatch",
            R::OffsetGap {
                index, expected, ..
            } => {
                let continues = [(RaftIndex(5), Offset(6)), (RaftIndex(8), Offset(8))];
                assert!(continues.contains(&(*index, *expected)), "{r:?}");
                "offset gap"
            }
            R::Corrupt { defect, .. } => match defect {
                BatchDefect::CrcMismatch => "crc",
                BatchDefect::Truncated => "truncated",
                BatchDefect::LengthOutOfRange => "length",
                _ => "other defect",
            },
            R::TooLarge { .. } => "too large",
            other => panic!("unexpected refusal {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "not contiguous",
            "not contiguous",
            "term went back",
            "term went back",
            "term mismatch",
            "offset gap",
            "offset gap",
            "offset gap",
            "crc",
            "truncated",
            "length",
            "too large",
        ]
    );
    if let R::OffsetGap { index, .. } = refused[7] {
        assert_eq!(index, RaftIndex(8), "the refusal names the entry");
    }
    h.exec.run_until_stalled();
    assert_eq!(
        summary(&all_entries(&mut h, &log)),
        before,
        "entries unchanged"
    );
    assert_eq!(log.offsets(), offsets);
    assert_eq!(
        segment_files(&h.disk, &dir()),
        names,
        "no segment for a refused term"
    );
    assert_eq!(h.disk.stats(), stats, "nothing written");
    assert!(
        log.offline_reason().is_none(),
        "a refusal is no storage failure"
    );
    // The right entries still go in.
    let appended = h
        .run(log.append_entries(next, as_sent(&entries[4..]), Wait::Durable))
        .expect("append");
    assert_eq!(appended.last_index, RaftIndex(8));
}

#[test]
fn terms_start_segments_named_with_their_first_index() {
    let mut h = Harness::new();
    let log = h.open_replicated(LogConfig::default()).expect("open");
    assert_eq!(
        segment_files(&h.disk, &dir()),
        vec!["00000000000000000000-0-00000000000000000001.log"]
    );
    // Term 1: data. Term 2: only a new leader's empty entry (a segment that ends where it
    // starts). Term 3: the empty segment a leader opens is renamed by a follower's entry of
    // term 4 (it had none yet).
    h.run(log.set_term(Term(1))).expect("term");
    let _ = h
        .run(log.propose(batch(1, 3, 10, 0), Wait::Durable))
        .expect("propose");
    h.run(log.set_term(Term(2))).expect("term");
    let _ = h
        .run(log.propose_internal(b"", Wait::Durable))
        .expect("empty");
    h.run(log.set_term(Term(3))).expect("term");
    let mut other_h = Harness::new();
    let other = other_h.open_replicated(LogConfig::default()).expect("open");
    let copied = as_sent(&all_entries(&mut h, &log));
    let _ = other_h
        .run(other.append_entries(RaftIndex(1), copied, Wait::Durable))
        .expect("copy");
    // The new leader of term 4 (it followed term 2's leader first).
    other_h.run(other.set_term(Term(4))).expect("term");
    let _ = other_h
        .run(other.propose(batch(2, 1, 10, 0), Wait::Durable))
        .expect("propose");
    let sent = as_sent(&all_entries(&mut other_h, &other)[2..]);
    let _ = h
        .run(log.append_entries(RaftIndex(3), sent, Wait::Durable))
        .expect("follow term 4");
    assert_eq!(
        segment_files(&h.disk, &dir()),
        vec![
            "00000000000000000000-0-00000000000000000001.log",
            "00000000000000000000-1-00000000000000000001.log",
            "00000000000000000003-2-00000000000000000002.log",
            "00000000000000000003-4-00000000000000000003.log",
        ]
        .into_iter()
        .skip(1)
        .collect::<Vec<_>>(),
        "term 0's empty segment was renamed for term 1; term 3's for term 4"
    );
    assert_eq!(
        log.term_starts(),
        vec![
            (Term(1), RaftIndex(1), Offset(0)),
            (Term(2), RaftIndex(2), Offset(3)),
            (Term(4), RaftIndex(3), Offset(3)),
        ]
    );
    assert_eq!(log.term(), Term(4));
    let terms: Vec<Option<Term>> = (0..5).map(|i| log.term_of(RaftIndex(i))).collect();
    assert_eq!(
        terms,
        vec![
            Some(Term(0)),
            Some(Term(1)),
            Some(Term(2)),
            Some(Term(4)),
            None
        ]
    );
    // Two segments share base offset 3: a read at 3 finds the data in the later one.
    let _ = h.run(log.advance_commit(RaftIndex(3))).expect("commit");
    let page = h.run(log.read(Offset(3), 1)).expect("read");
    assert!(common::holds(&page.batches[0], 2));
    let expected = summary(&all_entries(&mut h, &log));
    crash(&mut h, log, Some((3, CutMode::TearLast)));
    let log = h.open_replicated(LogConfig::default()).expect("reopen");
    assert_eq!(summary(&all_entries(&mut h, &log)), expected);
    assert_eq!(log.term(), Term(4));
    assert_eq!(log.last_index(), RaftIndex(3));
}

#[test]
fn advance_commit_bounds_reads_never_goes_back_and_never_passes_the_written_end() {
    let mut h = Harness::new();
    let log = h.open_replicated(LogConfig::default()).expect("open");
    h.run(log.set_term(Term(1))).expect("term");
    for tag in 0..4 {
        let _ = h
            .run(log.propose(batch(tag, 2, 10, 0), Wait::Durable))
            .expect("propose");
    }
    assert_eq!(log.offsets().high_watermark, Offset(0));
    assert_eq!(log.offsets().log_end, Offset(8));
    assert_eq!(
        h.run(log.advance_commit(RaftIndex(2))).expect("commit"),
        Offset(4)
    );
    // Lower or equal: nothing moves.
    assert_eq!(
        h.run(log.advance_commit(RaftIndex(1))).expect("commit"),
        Offset(4)
    );
    assert_eq!(
        h.run(log.advance_commit(RaftIndex(2))).expect("commit"),
        Offset(4)
    );
    assert_eq!(log.committed_index(), RaftIndex(2));
    // Past the last index: refused, nothing moves.
    assert_eq!(
        refusal(h.run(log.advance_commit(RaftIndex(5)))),
        EntriesRefused::AboveLastIndex {
            last_index: RaftIndex(4)
        }
    );
    assert_eq!(log.offsets().high_watermark, Offset(4));
    // A reader waiting above the high watermark is woken by a commit.
    let woken: Rc<RefCell<bool>> = Rc::default();
    let (waiter, flag) = (log.clone(), woken.clone());
    h.exec
        .spawner()
        .spawn_local(async move {
            waiter.wait_for_high_watermark_above(Offset(5)).await;
            *flag.borrow_mut() = true;
        })
        .expect("spawn");
    h.exec.run_until_stalled();
    assert!(!*woken.borrow());
    // Entries placed but not yet written: the commit waits for the writes.
    let future = log.propose(batch(9, 1, 10, 0), Wait::Buffered);
    let proposed = futures::executor::block_on(future).expect("buffered");
    let index = proposed.entry.expect("a new entry").index;
    assert_eq!(index, RaftIndex(5));
    assert_eq!(
        log.written_last_index(),
        RaftIndex(4),
        "the flusher has not run"
    );
    let hw = futures::executor::block_on(log.advance_commit(index)).expect("commit");
    assert_eq!(hw, Offset(8), "bounded by the written end");
    assert_eq!(log.committed_index(), RaftIndex(5));
    h.exec.run_until_stalled();
    assert_eq!(log.written_last_index(), RaftIndex(5));
    assert_eq!(
        log.offsets().high_watermark,
        Offset(9),
        "applied once written"
    );
    assert!(*woken.borrow());
    let read = read_all(&mut h, &log, Offset(0));
    assert_eq!(read.len(), 5);
    // A cut at or below the commit is refused.
    assert_eq!(
        refusal(h.run(log.truncate_entries_from(RaftIndex(5)))),
        EntriesRefused::Committed {
            committed: RaftIndex(5)
        }
    );
}

#[test]
fn many_recent_entries_and_a_restart_translate_the_same_commit() {
    let mut h = Harness::new();
    let log = h.open_replicated(small_segments()).expect("open");
    h.run(log.set_term(Term(1))).expect("term");
    // More entries than the log keeps in memory, some internal, committed in steps.
    let mut expected_hw = BTreeMap::new();
    for i in 0..1_500u64 {
        let proposed = if i % 7 == 0 {
            h.run(log.propose_internal(b"x", Wait::Durable))
        } else {
            h.run(log.propose(batch(i, 1, 10, 0), Wait::Durable))
        }
        .expect("propose");
        let index = proposed.entry.expect("new").index.0;
        let _ = expected_hw.insert(index, proposed.appended.last_offset.plus(1));
        if i % 300 == 299 {
            let hw = h.run(log.advance_commit(RaftIndex(index))).expect("commit");
            assert_eq!(hw, expected_hw[&index]);
        }
    }
    let _ = h.run(log.sync()).expect("sync");
    h.run(log.checkpoint()).expect("checkpoint");
    crash(&mut h, log, None);
    let log = h.open_replicated(small_segments()).expect("reopen");
    assert_eq!(log.last_index(), RaftIndex(1_500));
    // Old entries are translated through the sparse index on disk.
    for index in [1u64, 2, 8, 700, 1_499] {
        let hw = h.run(log.advance_commit(RaftIndex(index))).expect("commit");
        assert_eq!(hw, expected_hw[&index], "index {index}");
    }
}

#[test]
fn the_wrong_mode_is_refused_and_plain_logs_refuse_bit_15() {
    let mut h = Harness::new();
    let plain = h.open(LogConfig::default()).expect("open");
    let _ = h
        .run(plain.append(batch(1, 1, 10, 0), Wait::Durable))
        .expect("append");
    // A client batch with attribute bit 15: refused, nothing stored.
    let mut internal = shoal_storage::build_internal_batch(b"forged");
    assert!(matches!(
        h.run(plain.append(internal.clone(), Wait::Durable)),
        Err(Error::InvalidBatch(BatchDefect::InternalAttribute))
    ));
    let mut flagged = batch(2, 1, 10, 0);
    flagged[21] |= 0x80;
    let crc = crc32c::crc32c(&flagged[21..]);
    flagged[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        h.run(plain.append(flagged.clone(), Wait::Durable)),
        Err(Error::InvalidBatch(BatchDefect::InternalAttribute))
    ));
    assert_eq!(plain.offsets().log_end, Offset(1));
    assert!(matches!(
        h.run(plain.propose(batch(3, 1, 10, 0), Wait::Durable)),
        Err(Error::WrongMode {
            replicated: false,
            ..
        })
    ));
    assert!(matches!(
        h.run(plain.truncate_entries_from(RaftIndex(1))),
        Err(Error::WrongMode { .. })
    ));
    assert_eq!(plain.term_of(RaftIndex(0)), None);
    h.run(plain.close()).expect("close");
    h.kill_tasks();
    let names = h.disk.durable_names(&dir());
    assert!(matches!(
        h.open_replicated(LogConfig::default()),
        Err(Error::ModeMismatch {
            on_disk_replicated: false,
            ..
        })
    ));
    assert_eq!(h.disk.durable_names(&dir()), names, "nothing changed");

    let mut h = Harness::new();
    let log = h.open_replicated(LogConfig::default()).expect("open");
    assert!(matches!(
        h.run(log.append(batch(1, 1, 10, 0), Wait::Durable)),
        Err(Error::WrongMode {
            replicated: true,
            ..
        })
    ));
    assert!(matches!(
        h.run(log.truncate_suffix(Offset(0))),
        Err(Error::WrongMode {
            replicated: true,
            ..
        })
    ));
    // propose refuses a client batch with bit 15 as append does.
    assert!(matches!(
        h.run(log.propose(flagged, Wait::Durable)),
        Err(Error::InvalidBatch(BatchDefect::InternalAttribute))
    ));
    internal[0] = 0;
    assert!(matches!(
        h.run(log.propose(internal, Wait::Durable)),
        Err(Error::InvalidBatch(BatchDefect::InternalAttribute))
    ));
    assert_eq!(log.last_index(), RaftIndex(0));
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let names = h.disk.durable_names(&dir());
    assert!(matches!(
        h.open(LogConfig::default()),
        Err(Error::ModeMismatch {
            on_disk_replicated: true,
            ..
        })
    ));
    assert_eq!(h.disk.durable_names(&dir()), names, "nothing changed");
}

#[test]
fn a_segment_whose_name_breaks_the_index_sequence_is_reported() {
    let mut h = Harness::new();
    let log = h.open_replicated(small_segments()).expect("open");
    leader_workload(&mut h, &log);
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let names = segment_files(&h.disk, &dir());
    assert!(names.len() >= 3, "{names:?}");
    // The second segment claims to start one index later than it does.
    let victim = &names[1];
    let (stem, _) = victim.rsplit_once('-').expect("a replicated name");
    let index: u64 = victim[stem.len() + 1..victim.len() - 4]
        .parse()
        .expect("index");
    let renamed = format!("{stem}-{:020}.log", index + 1);
    let mut exec = futures::executor::LocalPool::new();
    exec.run_until(async {
        let disk = &h.disk;
        shoal_io::Disk::rename(disk, &dir().join(victim), &dir().join(&renamed))
            .await
            .expect("rename");
        shoal_io::Disk::sync_dir(disk, &dir()).await.expect("sync");
    });
    match h.open_replicated(small_segments()) {
        Err(Error::Offline(reason)) => {
            assert_eq!(reason.kind, OfflineKind::Corruption);
            assert!(reason.detail.contains("index"), "{reason}");
        }
        other => panic!("expected offline, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_follower_keeps_producer_state_and_can_lead_with_it() {
    let mut leader_h = Harness::new();
    let leader = leader_h
        .open_replicated(LogConfig::default())
        .expect("open");
    leader_h.run(leader.set_term(Term(1))).expect("term");
    let idempotent = |sequence: i32| {
        let values: [&[u8]; 2] = [b"a", b"b"];
        build_idempotent_batch(&values, 42, 0, sequence)
    };
    for sequence in [0, 2, 4] {
        let _ = leader_h
            .run(leader.propose(idempotent(sequence), Wait::Durable))
            .expect("propose");
    }
    // The leader answers a retry with the original offsets, and appends nothing.
    let retry = leader_h
        .run(leader.propose(idempotent(2), Wait::Durable))
        .expect("retry");
    assert_eq!((retry.entry, retry.appended.base_offset), (None, Offset(2)));
    assert_eq!(leader.last_index(), RaftIndex(3));
    let entries = all_entries(&mut leader_h, &leader);

    let mut h = Harness::new();
    let follower = h.open_replicated(LogConfig::default()).expect("open");
    // A follower takes a batch whatever its sequence (here a gap the leader accepted after
    // a producer-state expiry, say).
    let mut sent = as_sent(&entries);
    let gap = {
        let values: [&[u8]; 1] = [b"c"];
        let mut bytes = build_idempotent_batch(&values, 42, 0, 9);
        set_base_offset(&mut bytes, 6);
        set_epoch(&mut bytes, 1);
        bytes
    };
    sent.push((Term(1), gap));
    let _ = h
        .run(follower.append_entries(RaftIndex(1), sent, Wait::Durable))
        .expect("append");
    let check = |h: &mut Harness, log: &TestLog| {
        let producers = log.producers();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].last_sequence, 9);
        // Leading now: a retry of the last batch is a duplicate, the next one is appended.
        h.run(log.set_term(Term(2))).expect("lead");
        let values: [&[u8]; 1] = [b"c"];
        let retry = h
            .run(log.propose(build_idempotent_batch(&values, 42, 0, 9), Wait::Durable))
            .expect("retry");
        assert_eq!((retry.entry, retry.appended.base_offset), (None, Offset(6)));
        let next = h
            .run(log.propose(build_idempotent_batch(&values, 42, 0, 10), Wait::Durable))
            .expect("next");
        assert_eq!(
            next.entry.map(|e| (e.index, e.term)),
            Some((RaftIndex(5), Term(2)))
        );
        assert!(matches!(
            h.run(log.propose(build_idempotent_batch(&values, 42, 0, 20), Wait::Durable)),
            Err(Error::OutOfOrderSequence { .. })
        ));
    };
    check(&mut h, &follower);
    // And after a restart (state rebuilt from the log, uncommitted entries included).
    let mut h2 = Harness::new();
    let follower2 = h2.open_replicated(LogConfig::default()).expect("open");
    let mut sent = as_sent(&entries);
    let mut gap = as_sent(&all_entries(&mut h, &follower)[3..4]);
    sent.append(&mut gap);
    let _ = h2
        .run(follower2.append_entries(RaftIndex(1), sent, Wait::Durable))
        .expect("append");
    crash(&mut h2, follower2, Some((1, CutMode::Adversarial)));
    let follower2 = h2.open_replicated(LogConfig::default()).expect("reopen");
    check(&mut h2, &follower2);
}

#[test]
fn retention_removes_only_committed_segments_and_moves_the_first_index() {
    let config = LogConfig {
        retention_bytes: Some(1),
        ..small_segments()
    };
    let mut h = Harness::new();
    let log = h.open_replicated(config.clone()).expect("open");
    leader_workload(&mut h, &log);
    let segments = log.segment_count();
    assert!(segments >= 4, "{segments}");
    // Nothing committed: nothing goes.
    h.run(log.enforce_retention()).expect("retention");
    assert_eq!(log.segment_count(), segments);
    assert_eq!(log.first_index(), RaftIndex(1));
    // Committed up to 4: the segments wholly at or below it go.
    let _ = h.run(log.advance_commit(RaftIndex(4))).expect("commit");
    h.run(log.enforce_retention()).expect("retention");
    let first = log.first_index();
    assert!(first > RaftIndex(1) && first <= RaftIndex(5), "{first}");
    assert_eq!(
        log.term_of(RaftIndex(first.0 - 1)),
        Some(Term(1)),
        "the removed entry's term"
    );
    let entries = all_entries(&mut h, &log);
    assert_eq!(entries[0].index, first);
    assert!(matches!(
        refusal(h.run(log.entries(RaftIndex(1), RaftIndex(3), 100))),
        EntriesRefused::Compacted { .. }
    ));
    assert!(log.last_index() == RaftIndex(8));
    let expected = summary(&entries);
    crash(&mut h, log, None);
    let log = h.open_replicated(config).expect("reopen");
    assert_eq!(log.first_index(), first);
    assert_eq!(summary(&all_entries(&mut h, &log)), expected);
}

// ---- Suffix cuts by Raft index ----

#[test]
fn a_cut_at_an_internal_entry_sharing_its_offset_with_the_next_data_batch() {
    for cache_bytes in [0, 1 << 20] {
        let (mut h, log, entries) = {
            let mut leader_h = Harness::new();
            let leader = leader_h.open_replicated(small_segments()).expect("open");
            leader_workload(&mut leader_h, &leader);
            let entries = all_entries(&mut leader_h, &leader);
            let mut h = Harness::with_budgets(8 << 20, cache_bytes);
            let log = h.open_replicated(small_segments()).expect("open");
            let _ = h
                .run(log.append_entries(RaftIndex(1), as_sent(&entries), Wait::Durable))
                .expect("append");
            (h, log, entries)
        };
        let _ = h.run(log.advance_commit(RaftIndex(3))).expect("commit");
        // Entry 6 (the configuration change) and entry 7 (data) both have base offset 6: a
        // cut by offset could not tell them apart.
        let shared = |e: &StoredEntry| validate_batch(&e.bytes).expect("valid").base_offset;
        assert_eq!(shared(&entries[5]), shared(&entries[6]));
        let truncated = h
            .run(log.truncate_entries_from(RaftIndex(6)))
            .expect("truncate");
        assert_eq!(
            (truncated.log_end, truncated.previous_log_end),
            (Offset(6), Offset(10))
        );
        assert_eq!(log.last_index(), RaftIndex(5));
        assert_eq!(
            (log.written_last_index(), log.synced_last_index()),
            (RaftIndex(5), RaftIndex(5))
        );
        assert_eq!(summary(&all_entries(&mut h, &log)), summary(&entries[..5]));
        assert_eq!(log.term(), Term(2), "the cut segment's term");
        assert_eq!(
            log.offsets().high_watermark,
            Offset(3),
            "committed data stays"
        );
        // A new leader's entries (term 3) continue at index 6, offset 6.
        let mut other_h = Harness::new();
        let other = other_h.open_replicated(small_segments()).expect("open");
        let _ = other_h
            .run(other.append_entries(RaftIndex(1), as_sent(&entries[..5]), Wait::Durable))
            .expect("copy");
        other_h.run(other.set_term(Term(3))).expect("term");
        let _ = other_h
            .run(other.propose_internal(b"", Wait::Durable))
            .expect("empty");
        let _ = other_h
            .run(other.propose(batch(50, 1, 10, 0), Wait::Durable))
            .expect("propose");
        let new_entries = all_entries(&mut other_h, &other);
        let _ = h
            .run(log.append_entries(RaftIndex(6), as_sent(&new_entries[5..]), Wait::Durable))
            .expect("append after the cut");
        let _ = h.run(log.advance_commit(RaftIndex(7))).expect("commit");
        let tags: Vec<u64> = read_all(&mut h, &log, Offset(0))
            .iter()
            .map(|(_, bytes)| common::first_record_tags(bytes)[0])
            .collect();
        assert_eq!(
            tags,
            vec![0, 1, 2, 50],
            "the cut data batch is gone from the cache too"
        );
        let expected = summary(&new_entries);
        assert_eq!(summary(&all_entries(&mut h, &log)), expected);
        crash(&mut h, log, Some((5, CutMode::Adversarial)));
        let log = h.open_replicated(small_segments()).expect("reopen");
        assert_eq!(summary(&all_entries(&mut h, &log)), expected);
        assert_eq!(log.term_starts(), other.term_starts());

        // Across segments and terms: everything after entry 1.
        let truncated = h
            .run(log.truncate_entries_from(RaftIndex(2)))
            .expect("truncate");
        assert!(truncated.segments_deleted >= 2, "{truncated:?}");
        assert_eq!(
            (log.last_index(), log.offsets().log_end),
            (RaftIndex(1), Offset(0))
        );
        assert_eq!(log.term(), Term(1));
        assert_eq!(log.term_starts(), vec![(Term(1), RaftIndex(1), Offset(0))]);
        assert_eq!(log.term_of(RaftIndex(2)), None);
        // And everything: the log is empty at index 1, and takes an older term's entry (the
        // term before the first is 0).
        let _ = h
            .run(log.truncate_entries_from(RaftIndex(1)))
            .expect("truncate");
        assert_eq!(log.last_index(), RaftIndex(0));
        let mut first = as_sent(&entries[1..2]);
        first[0].0 = Term(0);
        set_epoch(&mut first[0].1, 0);
        let _ = h
            .run(log.append_entries(RaftIndex(1), first, Wait::Durable))
            .expect("an entry of term 0 into the emptied log");
        assert_eq!(log.term_of(RaftIndex(1)), Some(Term(0)));
        crash(&mut h, log, Some((6, CutMode::TearLast)));
        let log = h.open_replicated(small_segments()).expect("reopen");
        assert_eq!(log.last_index(), RaftIndex(1));
        assert_eq!(log.term_starts(), vec![(Term(0), RaftIndex(1), Offset(0))]);
    }
}

#[test]
fn cuts_outside_the_uncommitted_suffix_are_refused_and_change_nothing() {
    let (mut h, log, _) = follower_of_four();
    let _ = h.run(log.advance_commit(RaftIndex(2))).expect("commit");
    let before = summary(&all_entries(&mut h, &log));
    assert_eq!(
        refusal(h.run(log.truncate_entries_from(RaftIndex(2)))),
        EntriesRefused::Committed {
            committed: RaftIndex(2)
        }
    );
    assert_eq!(
        refusal(h.run(log.truncate_entries_from(RaftIndex(6)))),
        EntriesRefused::AboveLastIndex {
            last_index: RaftIndex(4)
        }
    );
    let stats = h.disk.stats();
    let truncated = h
        .run(log.truncate_entries_from(RaftIndex(5)))
        .expect("at the end: nothing");
    assert_eq!(
        (truncated.bytes_removed, truncated.segments_deleted),
        (0, 0)
    );
    assert_eq!(h.disk.stats(), stats, "no I/O");
    assert_eq!(summary(&all_entries(&mut h, &log)), before);
    assert!(matches!(
        refusal(h.run(log.entries(RaftIndex(0), RaftIndex(2), 10))),
        EntriesRefused::Compacted { .. }
    ));
    assert!(matches!(
        refusal(h.run(log.entries(RaftIndex(1), RaftIndex(6), 10))),
        EntriesRefused::AboveLastIndex { .. }
    ));
}

fn random_config(rng: &mut StdRng) -> LogConfig {
    let durability = if rng.gen_bool(0.6) {
        Durability::Fsync
    } else {
        Durability::Relaxed {
            flush_messages: rng.gen_range(1..20),
            flush_ms: 1000,
        }
    };
    LogConfig {
        segment_bytes_max: rng.gen_range(2_000..20_000),
        durability,
        fallocation: [
            Fallocation::None,
            Fallocation::FallocateAhead,
            Fallocation::ExtendAhead,
        ][rng.gen_range(0..3)],
        fallocation_step_bytes_max: 64 * 1024,
        recycled_segments_max: rng.gen_range(0..3),
        write_chunk_bytes: [4096, 16 * 1024][rng.gen_range(0..2)],
        index_interval_bytes: [0, 1024, 4096][rng.gen_range(0..3)],
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A leader's random workload: terms that grow, data and internal entries of random sizes.
fn random_entries(h: &mut Harness, log: &TestLog, rng: &mut StdRng, tag_from: u64) {
    for i in 0..rng.gen_range(5..40u64) {
        match rng.gen_range(0..10) {
            0 => {
                let term = Term(log.term().0 + rng.gen_range(1..3));
                h.run(log.set_term(term)).expect("term");
                let _ = h
                    .run(log.propose_internal(b"", Wait::Durable))
                    .expect("empty");
            }
            1 | 2 => {
                let payload = vec![b'c'; rng.gen_range(0..600)];
                let _ = h
                    .run(log.propose_internal(&payload, Wait::Durable))
                    .expect("internal");
            }
            _ => {
                let records = rng.gen_range(1..4);
                let value_bytes = [10, 400, 3000][rng.gen_range(0..3)];
                let bytes = batch(tag_from + i, records, value_bytes, i as i64);
                let _ = h.run(log.propose(bytes, Wait::Durable)).expect("propose");
            }
        }
    }
}

/// Polls the inner future at most `polls` times, then stays pending without a waker: the task
/// freezes between two of its I/O operations, which is where a crash can hit it.
struct PollBudget<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: usize,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for PollBudget<F> {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.polls == 0 {
            return std::task::Poll::Pending;
        }
        self.polls -= 1;
        self.inner.as_mut().poll(cx)
    }
}

/// Polls a cut gets at most: most crashes land inside it, some after it returned.
const POLLS_MAX: usize = 45;

fn crash_mode(rng: &mut StdRng, seed: u64) -> Option<(u64, CutMode)> {
    match rng.gen_range(0..3) {
        0 => None,
        1 => Some((seed, CutMode::TearLast)),
        _ => Some((seed, CutMode::Adversarial)),
    }
}

#[test]
fn a_crash_at_any_point_of_an_entry_cut_opens_the_old_log_or_the_new_one() {
    // Interrupted and opened at the old end, interrupted and finished at open, returned.
    let mut outcomes = [0usize; 3];
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc0de);
        let mut h = Harness::with_budgets(256 * 1024, rng.gen_range(0..2) * 64 * 1024);
        let config = random_config(&mut rng);
        let log = h.open_replicated(config.clone()).expect("open");
        h.run(log.set_term(Term(1))).expect("term");
        random_entries(&mut h, &log, &mut rng, 0);
        let _ = h.run(log.sync()).expect("sync");
        if rng.gen_bool(0.5) {
            h.run(log.checkpoint()).expect("checkpoint");
        }
        let last = log.last_index().0;
        let committed = rng.gen_range(0..last);
        let _ = h
            .run(log.advance_commit(RaftIndex(committed)))
            .expect("commit");
        let from = rng.gen_range(committed + 1..=last + 1);
        let old = summary(&all_entries(&mut h, &log));
        let new = old[..from as usize - 1].to_vec();
        let done: Rc<RefCell<Option<bool>>> = Rc::default();
        let (task_log, out) = (log.clone(), done.clone());
        let polls = rng.gen_range(0..POLLS_MAX);
        let cut = PollBudget {
            inner: Box::pin(async move {
                let result = task_log.truncate_entries_from(RaftIndex(from)).await;
                *out.borrow_mut() = Some(result.is_ok());
            }),
            polls,
        };
        h.exec.spawner().spawn_local(cut).expect("spawn");
        h.exec.run_until_stalled();
        let returned = *done.borrow() == Some(true);
        let mode = crash_mode(&mut rng, seed);
        crash(&mut h, log, mode);
        let why = format!("seed {seed}: cut {from} of {last}, {polls} polls, {mode:?}");
        let log = h
            .open_replicated(config.clone())
            .unwrap_or_else(|e| panic!("{why}: recovery failed: {e}"));
        let now = summary(&all_entries(&mut h, &log));
        if returned {
            assert_eq!(now, new, "{why}: a cut entry came back");
        } else {
            assert!(
                now == old || now == new,
                "{why}: neither log: {} entries",
                now.len()
            );
        }
        assert_eq!(
            log.offsets().high_watermark,
            Offset(0),
            "{why}: nothing served yet"
        );
        for entry in &now {
            assert_eq!(
                log.term_of(RaftIndex(entry.0)),
                Some(Term(entry.1)),
                "{why}"
            );
        }
        match (returned, now == new && now != old) {
            (true, _) => outcomes[2] += 1,
            (false, true) => outcomes[1] += 1,
            (false, false) => outcomes[0] += 1,
        }
        // The log goes on: a new leader's entries after it, synced, survive a power cut.
        h.run(log.set_term(Term(log.term().0 + 5))).expect("term");
        random_entries(&mut h, &log, &mut rng, 1000);
        let _ = h.run(log.sync()).expect("sync");
        let expected = summary(&all_entries(&mut h, &log));
        crash(&mut h, log, Some((seed + 1, CutMode::Adversarial)));
        let log = h
            .open_replicated(config)
            .unwrap_or_else(|e| panic!("{why}: second recovery failed: {e}"));
        assert_eq!(
            summary(&all_entries(&mut h, &log)),
            expected,
            "{why}: second cut"
        );
        let hw = h.run(log.advance_commit(log.last_index())).expect("commit");
        assert_eq!(hw, log.offsets().log_end, "{why}");
    }
    println!(
        "crashes during entry cuts: {} opened at the old log, {} finished at open, {} after it \
         returned",
        outcomes[0], outcomes[1], outcomes[2]
    );
    assert!(
        seeds().count() < 50 || outcomes.iter().all(|&n| n > 0),
        "{outcomes:?}"
    );
}

// ---- Power cuts ----

/// What a test knows of an entry it proposed: its term, base offset, the bytes it sent and
/// the guarantee it was answered with.
type Acked = Rc<RefCell<BTreeMap<u64, (Term, Offset, Vec<u8>, Guarantee)>>>;

fn run_power_cut_seed(seed: u64, mode: Option<CutMode>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9a11);
    let mut h = Harness::with_budgets(256 * 1024, rng.gen_range(0..2) * 64 * 1024);
    let config = random_config(&mut rng);
    let log = h.open_replicated(config.clone()).expect("open");
    h.run(log.set_term(Term(1))).expect("term");
    let acked: Acked = Rc::default();
    let proposers = rng.gen_range(1..4u64);
    for proposer in 0..proposers {
        let (log, acked) = (log.clone(), acked.clone());
        let mut prng = StdRng::seed_from_u64(seed * 31 + proposer);
        let task = async move {
            for i in 0..30u64 {
                let tag = proposer * 1000 + i;
                let (sent, proposed) = if prng.gen_bool(0.2) {
                    let payload = format!("#{tag}:0: internal").into_bytes();
                    let bytes = shoal_storage::build_internal_batch(&payload);
                    (bytes, log.propose_internal(&payload, Wait::Durable).await)
                } else {
                    let bytes = batch(
                        tag,
                        prng.gen_range(1..4),
                        [10, 300, 2500][prng.gen_range(0..3)],
                        0,
                    );
                    (bytes.clone(), log.propose(bytes, Wait::Durable).await)
                };
                let Ok(proposed) = proposed else { return };
                let entry = proposed.entry.expect("not idempotent: always new");
                let answer = (
                    entry.term,
                    proposed.appended.base_offset,
                    sent,
                    proposed.appended.guarantee,
                );
                let _ = acked.borrow_mut().insert(entry.index.0, answer);
                if prng.gen_bool(0.05) {
                    let _ = log.sync().await;
                }
                if prng.gen_bool(0.05) {
                    let _ = log.checkpoint().await;
                }
                if prng.gen_bool(0.05) {
                    let _ = log.set_term(Term(log.term().0 + 1)).await;
                }
                if prng.gen_bool(0.03) {
                    let _ = log.confirm_synced().await;
                }
            }
        };
        h.exec.spawner().spawn_local(task).expect("spawn");
    }
    let steps = rng.gen_range(0..500);
    for _ in 0..steps {
        if !h.exec.try_run_one() {
            break;
        }
    }
    drop(log);
    h.kill_tasks();
    if let Some(mode) = mode {
        h.disk.power_cut(seed, mode);
    }
    let why = format!("seed {seed} {mode:?}");
    let log = h
        .open_replicated(config.clone())
        .unwrap_or_else(|e| panic!("{why}: recovery failed: {e}"));
    let entries = all_entries(&mut h, &log);
    // Dense indexes from 1, offsets continuing, terms never going back, each entry's term
    // the one its segment names.
    let mut next_offset = Offset(0);
    let mut term = Term(0);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index.0, i as u64 + 1, "{why}: dense indexes");
        let header = validate_batch(&entry.bytes).expect("valid");
        assert_eq!(header.base_offset, next_offset, "{why}: offsets continue");
        assert!(entry.term >= term, "{why}: terms never go back");
        assert_eq!(log.term_of(entry.index), Some(entry.term), "{why}");
        next_offset = header.next_offset();
        term = entry.term;
    }
    assert_eq!(log.offsets().log_end, next_offset, "{why}");
    for (index, (term, base, sent, guarantee)) in acked.borrow().iter() {
        let must_survive = match mode {
            Some(_) => *guarantee == Guarantee::Synced,
            None => *guarantee >= Guarantee::Written,
        };
        let Some(entry) = entries.get(*index as usize - 1) else {
            assert!(!must_survive, "{why}: acknowledged entry {index} lost");
            continue;
        };
        if !must_survive {
            continue;
        }
        assert_eq!(
            (entry.index.0, entry.term),
            (*index, *term),
            "{why}: entry {index}"
        );
        let header = validate_batch(&entry.bytes).expect("valid");
        assert_eq!(header.base_offset, *base, "{why}: entry {index}'s offset");
        // The bytes the proposer sent, as stamped (offset and epoch are not CRC-covered).
        assert_eq!(entry.bytes.len(), sent.len(), "{why}: entry {index}");
        assert_eq!(
            entry.bytes[21..],
            sent[21..],
            "{why}: entry {index}'s bytes"
        );
    }
    // Every recovered entry was really proposed.
    for entry in &entries {
        let tags = common::first_record_tags(&entry.bytes);
        assert!(
            tags.iter()
                .any(|tag| tag / 1000 < proposers && tag % 1000 < 30),
            "{why}: garbage at {}",
            entry.index
        );
    }
    // The recovered log takes entries and survives a clean restart.
    let last = log.last_index();
    let proposed = h
        .run(log.propose(batch(99_999, 1, 10, 0), Wait::Durable))
        .expect("propose after recovery");
    assert_eq!(proposed.entry.map(|e| e.index), Some(last.plus(1)), "{why}");
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let log = h
        .open_replicated(config)
        .unwrap_or_else(|e| panic!("{why}: reopen after a clean close failed: {e}"));
    assert_eq!(log.last_index(), last.plus(1), "{why}");
}

#[test]
fn power_cut_tearing_the_last_write_keeps_every_synced_entry() {
    for seed in seeds() {
        run_power_cut_seed(seed, Some(CutMode::TearLast));
    }
}

#[test]
fn power_cut_tearing_every_unsynced_write_keeps_every_synced_entry() {
    for seed in seeds() {
        run_power_cut_seed(seed, Some(CutMode::Adversarial));
    }
}

#[test]
fn process_crash_keeps_every_written_entry() {
    for seed in seeds() {
        run_power_cut_seed(seed, None);
    }
}

#[test]
fn a_follower_power_cut_keeps_every_synced_entry() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf011);
        let mut leader_h = Harness::new();
        let leader = leader_h
            .open_replicated(LogConfig::default())
            .expect("open");
        leader_h.run(leader.set_term(Term(1))).expect("term");
        random_entries(&mut leader_h, &leader, &mut rng, 0);
        let sent = all_entries(&mut leader_h, &leader);
        let mut h = Harness::with_budgets(256 * 1024, rng.gen_range(0..2) * 64 * 1024);
        let config = random_config(&mut rng);
        let log = h.open_replicated(config.clone()).expect("open");
        let synced: Rc<RefCell<u64>> = Rc::default();
        let (task_log, out, chunks) = (log.clone(), synced.clone(), sent.clone());
        let mut prng = StdRng::seed_from_u64(seed);
        let task = async move {
            let mut next = 0usize;
            while next < chunks.len() {
                let count = prng.gen_range(1..5).min(chunks.len() - next);
                let first = chunks[next].index;
                let batch = as_sent(&chunks[next..next + count]);
                let Ok(appended) = task_log.append_entries(first, batch, Wait::Durable).await
                else {
                    return;
                };
                next += count;
                if appended.guarantee == Guarantee::Synced {
                    *out.borrow_mut() = appended.last_index.0;
                }
                if prng.gen_bool(0.2) {
                    if let Ok(last) = task_log.sync().await.map(|_| task_log.synced_last_index()) {
                        *out.borrow_mut() = last.0;
                    }
                }
            }
        };
        h.exec.spawner().spawn_local(task).expect("spawn");
        for _ in 0..rng.gen_range(0..300) {
            if !h.exec.try_run_one() {
                break;
            }
        }
        let mode = [CutMode::TearLast, CutMode::Adversarial][rng.gen_range(0..2)];
        crash(&mut h, log, Some((seed, mode)));
        let log = h
            .open_replicated(config)
            .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
        let now = summary(&all_entries(&mut h, &log));
        let synced = *synced.borrow() as usize;
        assert!(now.len() >= synced, "seed {seed}: synced entries lost");
        assert_eq!(
            now,
            summary(&sent[..now.len()]),
            "seed {seed}: a prefix of the leader's"
        );
    }
}
