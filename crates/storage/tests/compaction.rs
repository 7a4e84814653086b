//! Log compaction on the simulated disk: what a cleaning keeps, what readers see after it
//! (offset gaps), recovery with the compacted marker, failures before the commit point, and
//! crashes (process and power) at every poll of a cleaning. Replicated logs (the Raft log of a
//! partition group) too: a cleaning there keeps every entry with its index, term and offsets
//! (emptied batches stay), cleans only committed segments, and survives crashes the same way.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use common::{dir, Harness};
use futures::task::LocalSpawnExt;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_model::{Offset, RaftIndex, Term};
use shoal_sim_disk::{CutMode, SimDisk};
use shoal_storage::{
    validate_batch, Compacted, CompactionConfig, EntryKind, Error, Log, LogConfig, OffsetMap, Wait,
};

type TestLog = Log<SimDisk>;

/// One record as written or read: offset, key, value (`None`: a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

fn seeds() -> std::ops::Range<u64> {
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    0..count
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        compaction: Some(CompactionConfig::default()),
        ..LogConfig::default()
    }
}

/// A batch of keyed records as a client encodes it (`producer`: id and first sequence).
fn keyed_batch(
    records: &[(Vec<u8>, Option<Vec<u8>>)],
    ts_ms: i64,
    producer: Option<(i64, i32)>,
) -> Vec<u8> {
    let base_sequence = producer.map_or(-1, |(_, sequence)| sequence);
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |(id, _)| id),
            producer_epoch: if producer.is_some() { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: ts_ms,
            key: Some(Bytes::from(key.clone())),
            value: value.clone().map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encodes");
    out.to_vec()
}

/// Every visible record, in order, checking that offsets only grow (gaps allowed).
fn records_of(h: &mut Harness, log: &TestLog) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::new();
    let mut next = log.offsets().log_start;
    loop {
        let page = h.run(log.read(next, 64 * 1024)).expect("read");
        if page.batches.is_empty() {
            assert!(
                next >= page.high_watermark,
                "stopped at {next} below the high watermark"
            );
            return out;
        }
        for bytes in page.batches {
            let header = validate_batch(&bytes).expect("valid batch");
            assert!(header.next_offset() > next, "a read returned an old batch");
            next = header.next_offset();
            let mut raw = Bytes::copy_from_slice(&bytes);
            for set in RecordBatchDecoder::decode_all(&mut raw).expect("decodes") {
                for record in set.records {
                    assert!(
                        out.last().is_none_or(|last| last.offset < record.offset),
                        "offsets grow"
                    );
                    out.push(Rec {
                        offset: record.offset,
                        key: record.key.map(|k| k.to_vec()).unwrap_or_default(),
                        value: record.value.map(|v| v.to_vec()),
                    });
                }
            }
        }
    }
}

/// Appends `batches` random batches over `keys` keys (10% tombstones).
fn workload(h: &mut Harness, log: &TestLog, rng: &mut StdRng, batches: usize, keys: u8) {
    workload_over(h, log, rng, batches, 0..keys);
}

/// Appends `batches` random batches over the keys `keys` (10% tombstones).
fn workload_over(
    h: &mut Harness,
    log: &TestLog,
    rng: &mut StdRng,
    batches: usize,
    keys: std::ops::Range<u8>,
) {
    for _ in 0..batches {
        let count = rng.gen_range(1..8);
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..count)
            .map(|_| {
                let key = vec![b'k', rng.gen_range(keys.clone())];
                let value = (!rng.gen_bool(0.1)).then(|| {
                    format!("v{}", rng.gen::<u32>())
                        .into_bytes()
                        .repeat(rng.gen_range(1..6))
                });
                (key, value)
            })
            .collect();
        let ts = h.clock.0.get();
        h.clock.0.set(ts + 10);
        let batch = keyed_batch(&records, ts, None);
        h.run(log.append(batch, Wait::Durable)).expect("append");
    }
}

/// `after` is a valid compaction of `before`: a subset, offsets growing, and every key's
/// latest record still there (tombstones included: none has passed its horizon here).
fn assert_compaction_of(before: &[Rec], after: &[Rec], why: &str) {
    let by_offset: BTreeMap<i64, &Rec> = before.iter().map(|r| (r.offset, r)).collect();
    for rec in after {
        assert_eq!(
            by_offset.get(&rec.offset),
            Some(&rec),
            "{why}: a record not written"
        );
    }
    let kept: BTreeMap<i64, ()> = after.iter().map(|r| (r.offset, ())).collect();
    for latest in latest_by_key(before).values() {
        assert!(
            kept.contains_key(&latest.offset),
            "{why}: the latest record of a key went: {latest:?}"
        );
    }
}

fn latest_by_key(records: &[Rec]) -> BTreeMap<Vec<u8>, Rec> {
    let mut latest = BTreeMap::new();
    for rec in records {
        let _ = latest.insert(rec.key.clone(), rec.clone());
    }
    latest
}

/// Below `clean_up_to`, only each key's latest record below it remains.
fn assert_clean_below(before: &[Rec], after: &[Rec], clean_up_to: Offset, why: &str) {
    let below: Vec<Rec> = before
        .iter()
        .filter(|r| r.offset < clean_up_to.0)
        .cloned()
        .collect();
    let latest = latest_by_key(&below);
    for rec in after.iter().filter(|r| r.offset < clean_up_to.0) {
        assert_eq!(
            latest.get(&rec.key).map(|l| l.offset),
            Some(rec.offset),
            "{why}: {rec:?} superseded"
        );
    }
}

fn compact(h: &mut Harness, log: &TestLog, map: &mut OffsetMap) -> Compacted {
    h.run(log.compact(map, &())).expect("compact")
}

fn files(h: &Harness) -> Vec<String> {
    let mut exec = futures::executor::LocalPool::new();
    let mut names = exec
        .run_until(shoal_io::Disk::list(&h.disk, &dir()))
        .expect("list");
    names.sort();
    names
}

fn crash(h: &mut Harness, log: TestLog, power: Option<(u64, CutMode)>) {
    drop(log);
    h.kill_tasks();
    h.disk.clear_faults();
    if let Some((seed, mode)) = power {
        h.disk.power_cut(seed, mode);
    }
}

#[test]
fn a_cleaning_keeps_the_latest_record_of_every_key_and_survives_a_restart() {
    let mut h = Harness::new();
    let log = h.open(config()).expect("open");
    let mut rng = StdRng::seed_from_u64(7);
    workload(&mut h, &log, &mut rng, 300, 20);
    let before = records_of(&mut h, &log);
    let segments_before = log.segment_count();
    assert!(segments_before > 5, "the workload rolls segments");
    let dirtiness = log.dirtiness().expect("a compacted log");
    assert!(dirtiness.due && dirtiness.clean_bytes == 0, "{dirtiness:?}");
    let mut map = OffsetMap::with_budget(64 * 1024);
    let Compacted::Cleaned(report) = compact(&mut h, &log, &mut map) else {
        panic!("a due log is cleaned");
    };
    assert_eq!(
        report.segments_before,
        segments_before - 1,
        "every sealed segment"
    );
    assert!(report.bytes_after < report.bytes_before / 3, "{report:?}");
    let after = records_of(&mut h, &log);
    assert_compaction_of(&before, &after, "cleaned");
    assert_clean_below(&before, &after, report.clean_up_to, "cleaned");
    assert!(
        after.len() < before.len() / 3,
        "{} of {}",
        after.len(),
        before.len()
    );
    // Nothing is dirty now, so the next cleaning has nothing to do.
    assert_eq!(compact(&mut h, &log, &mut map), Compacted::NothingDue);
    assert!(files(&h)
        .iter()
        .all(|n| !n.ends_with(".cleaned") && n != "pending_compaction"));
    // The log goes on; a clean restart and a power cut both give the cleaned log back.
    workload(&mut h, &log, &mut rng, 5, 20);
    let expected = records_of(&mut h, &log);
    h.run(log.close()).expect("close");
    let log = h.open(config()).expect("reopen");
    assert_eq!(records_of(&mut h, &log), expected);
    crash(&mut h, log, Some((1, CutMode::Adversarial)));
    let log = h.open(config()).expect("reopen after a power cut");
    assert_eq!(records_of(&mut h, &log), expected);
    // More dirty data is cleaned by a second cleaning, which merges the small cleaned
    // segments of one term into fewer.
    workload(&mut h, &log, &mut rng, 300, 20);
    let before = records_of(&mut h, &log);
    let segments = log.segment_count();
    let Compacted::Cleaned(report) = compact(&mut h, &log, &mut map) else {
        panic!("a second cleaning");
    };
    assert!(log.segment_count() < segments, "{report:?}");
    let after = records_of(&mut h, &log);
    assert_compaction_of(&before, &after, "second");
    assert_clean_below(&before, &after, report.clean_up_to, "second");
}

#[test]
fn a_read_inside_a_cleaned_gap_gets_the_next_batch() {
    let mut h = Harness::new();
    let log = h
        .open(LogConfig {
            segment_bytes_max: 512,
            ..config()
        })
        .expect("open");
    // Key a written over and over, then b: the a's of early segments all go.
    for i in 0..40 {
        let key = if i < 30 {
            b"a".to_vec()
        } else {
            vec![b'b', i as u8]
        };
        let batch = keyed_batch(&[(key, Some(vec![b'x'; 100]))], 1_700_000_000_000 + i, None);
        h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    let mut map = OffsetMap::with_budget(64 * 1024);
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    let after = records_of(&mut h, &log);
    let first = after[0].offset;
    assert!(first > 0, "offset 0 was cleaned out");
    for from in [0, first - 1, 5] {
        let page = h.run(log.read(Offset(from), 1)).expect("read");
        let header = validate_batch(&page.batches[0]).expect("a batch");
        assert!(
            header.base_offset.0 > from && header.base_offset.0 <= first.max(from + 1) + 30,
            "{from}"
        );
    }
    // Restarted, recovery accepts the gaps (the compacted marker) and serves the same.
    h.run(log.close()).expect("close");
    let log = h
        .open(LogConfig {
            segment_bytes_max: 512,
            ..config()
        })
        .expect("reopen");
    assert_eq!(records_of(&mut h, &log), after);
}

#[test]
fn a_tombstone_outlives_one_cleaning_by_delete_retention_ms() {
    let mut h = Harness::new();
    let retention_ms = 60_000;
    let cfg = LogConfig {
        segment_bytes_max: 1024,
        compaction: Some(CompactionConfig {
            delete_retention_ms: retention_ms,
            // Each round's new data is a small share of the log: clean whatever is dirty.
            min_cleanable_dirty_ratio: 0.0,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    };
    let log = h.open(cfg.clone()).expect("open");
    let append = |h: &mut Harness, key: &[u8], value: Option<&[u8]>| {
        let ts = h.clock.0.get();
        let batch = keyed_batch(&[(key.to_vec(), value.map(|v| v.to_vec()))], ts, None);
        h.run(log.append(batch, Wait::Durable)).expect("append");
    };
    append(&mut h, b"gone", Some(&[b'v'; 300]));
    append(&mut h, b"gone", None);
    for i in 0..20u8 {
        append(&mut h, &[b'f', i], Some(&[b'v'; 200]));
    }
    let mut map = OffsetMap::with_budget(64 * 1024);
    let outcome = compact(&mut h, &log, &mut map);
    assert!(
        matches!(outcome, Compacted::Cleaned(_)),
        "{outcome:?} {:?}",
        log.dirtiness()
    );
    let tombstone = |h: &mut Harness| {
        records_of(h, &log)
            .iter()
            .filter(|r| r.key == b"gone")
            .map(|r| r.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tombstone(&mut h),
        vec![None],
        "the value went, the tombstone stays"
    );
    // Before the horizon a cleaning keeps it; after it, the next cleaning drops it.
    h.clock.0.set(h.clock.0.get() + retention_ms - 1000);
    for i in 0..20u8 {
        append(&mut h, &[b'g', i], Some(&[b'v'; 200]));
    }
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    assert_eq!(tombstone(&mut h), vec![None], "kept before its horizon");
    h.clock.0.set(h.clock.0.get() + 2000);
    for i in 0..20u8 {
        append(&mut h, &[b'h', i], Some(&[b'v'; 200]));
    }
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    assert_eq!(
        tombstone(&mut h),
        Vec::<Option<Vec<u8>>>::new(),
        "dropped past its horizon"
    );
}

#[test]
fn an_idempotent_producers_last_batch_survives_empty_and_its_state_rebuilds() {
    let mut h = Harness::new();
    let cfg = LogConfig {
        segment_bytes_max: 1024,
        ..config()
    };
    let log = h.open(cfg.clone()).expect("open");
    for sequence in 0..12 {
        let ts = h.clock.0.get();
        let batch = keyed_batch(
            &[(b"p".to_vec(), Some(vec![b'v'; 200]))],
            ts,
            Some((42, sequence)),
        );
        h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    // Another writer supersedes key p, so the producer's batches are all emptied.
    for i in 0..12u8 {
        let ts = h.clock.0.get();
        let key = if i == 0 { b"p".to_vec() } else { vec![b'o', i] };
        let batch = keyed_batch(&[(key, Some(vec![b'w'; 200]))], ts, None);
        h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    let mut map = OffsetMap::with_budget(64 * 1024);
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    let mut producer_batches = Vec::new();
    let mut next = Offset(0);
    loop {
        let page = h.run(log.read(next, 1 << 20)).expect("read");
        if page.batches.is_empty() {
            break;
        }
        for bytes in page.batches {
            let header = validate_batch(&bytes).expect("valid");
            next = header.next_offset();
            if header.producer_id == 42 {
                producer_batches.push((header.base_sequence, bytes.len()));
            }
        }
    }
    assert_eq!(
        producer_batches.len(),
        1,
        "only the producer's last batch: {producer_batches:?}"
    );
    assert_eq!(producer_batches[0].0, 11, "its last sequence");
    // Rebuilt from the log alone (no snapshot), the producer goes on at its next sequence.
    h.run(log.close()).expect("close");
    let disk = h.disk.clone();
    let _ = h.run(shoal_io::Disk::remove(
        &disk,
        &dir().join("producer_state.snapshot"),
    ));
    let log = h.open(cfg).expect("reopen");
    let ts = h.clock.0.get();
    let retry = keyed_batch(&[(b"p".to_vec(), Some(vec![b'v'; 10]))], ts, Some((42, 11)));
    let first = h
        .run(log.append(retry, Wait::Durable))
        .expect("a retry of the last batch");
    let next_batch = keyed_batch(&[(b"p".to_vec(), Some(vec![b'v'; 10]))], ts, Some((42, 12)));
    let second = h
        .run(log.append(next_batch, Wait::Durable))
        .expect("the next sequence");
    assert!(second.base_offset > first.base_offset);
}

#[test]
fn a_map_too_small_for_one_batch_is_reported_and_a_small_map_makes_progress() {
    let mut h = Harness::new();
    let log = h
        .open(LogConfig {
            segment_bytes_max: 2048,
            ..config()
        })
        .expect("open");
    // 120 keys, 40 per batch, each written every third batch: a map of ~90 keys covers two
    // batches per cleaning.
    for round in 0..9u8 {
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..40u8)
            .map(|k| (vec![b'k', (round % 3) * 40 + k], Some(vec![round; 20])))
            .collect();
        let ts = h.clock.0.get();
        h.run(log.append(keyed_batch(&records, ts, None), Wait::Durable))
            .expect("append");
    }
    let before = records_of(&mut h, &log);
    let mut tiny = OffsetMap::with_budget(0);
    assert!(tiny.capacity() < 40);
    assert!(matches!(
        compact(&mut h, &log, &mut tiny),
        Compacted::MapTooSmall { .. }
    ));
    assert_eq!(records_of(&mut h, &log), before, "nothing changed");
    // A map of one batch's keys cleans a little per cleaning and gets there.
    let mut small = OffsetMap::with_budget(50 * 24 * 2);
    let mut cleanings = 0;
    while let Compacted::Cleaned(report) = compact(&mut h, &log, &mut small) {
        cleanings += 1;
        assert!(cleanings < 20, "{report:?}");
    }
    assert!(cleanings >= 2, "{cleanings}");
    let after = records_of(&mut h, &log);
    assert_compaction_of(&before, &after, "small map");
}

#[test]
fn a_failed_write_of_the_cleaned_copy_leaves_the_log_as_it_was_and_online() {
    let mut h = Harness::new();
    let log = h.open(config()).expect("open");
    let mut rng = StdRng::seed_from_u64(3);
    workload(&mut h, &log, &mut rng, 200, 10);
    let before = records_of(&mut h, &log);
    h.disk.fail_write(0, 5); // EIO on the next write: the cleaned copy's
    let mut map = OffsetMap::with_budget(64 * 1024);
    let result = h.run(log.compact(&mut map, &()));
    assert!(
        matches!(result, Err(Error::CompactionFailed { .. })),
        "{result:?}"
    );
    h.disk.clear_faults();
    assert!(log.offline_reason().is_none(), "still online");
    assert_eq!(records_of(&mut h, &log), before);
    assert!(
        files(&h).iter().all(|n| !n.ends_with(".cleaned")),
        "{:?}",
        files(&h)
    );
    // The next cleaning succeeds.
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    assert_compaction_of(
        &before,
        &records_of(&mut h, &log),
        "retried by the next cleaning",
    );
}

/// Polls the inner future at most `polls` times, then stays pending without a waker: the
/// task freezes between two of its I/O operations, which is where a crash can hit it.
struct PollBudget<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Rc<RefCell<usize>>,
    budget: usize,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for PollBudget<F> {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if *self.polls.borrow() >= self.budget {
            return std::task::Poll::Pending;
        }
        *self.polls.borrow_mut() += 1;
        self.inner.as_mut().poll(cx)
    }
}

/// Runs a cleaning of `log` for at most `budget` polls; returns (polls used, finished).
fn run_cleaning(h: &mut Harness, log: &TestLog, budget: usize) -> (usize, bool) {
    run_cleaning_expecting(h, log, budget, true)
}

/// As [`run_cleaning`]; `must_clean`: the cleaning must find something to clean.
fn run_cleaning_expecting(
    h: &mut Harness,
    log: &TestLog,
    budget: usize,
    must_clean: bool,
) -> (usize, bool) {
    let done: Rc<RefCell<bool>> = Rc::default();
    let polls: Rc<RefCell<usize>> = Rc::default();
    let (task_log, out) = (log.clone(), done.clone());
    let task = PollBudget {
        inner: Box::pin(async move {
            let mut map = OffsetMap::with_budget(64 * 1024);
            let result = task_log.compact(&mut map, &()).await;
            assert!(
                matches!(result, Ok(Compacted::Cleaned(_)))
                    || !must_clean && matches!(result, Ok(Compacted::NothingDue)),
                "{result:?}"
            );
            *out.borrow_mut() = true;
        }),
        polls: polls.clone(),
        budget,
    };
    h.exec.spawner().spawn_local(task).expect("spawn");
    h.exec.run_until_stalled();
    let used = *polls.borrow();
    let finished = *done.borrow();
    (used, finished)
}

/// A log cleaned once and written again: the next cleaning merges cleaned segments, so its
/// swaps replace several segments at once.
fn prepare(h: &mut Harness, log: &TestLog, seed: u64, batches: usize, keys: u8) {
    let mut rng = StdRng::seed_from_u64(seed);
    workload(h, log, &mut rng, batches, keys);
    let (_, finished) = run_cleaning(h, log, usize::MAX);
    assert!(finished, "seed {seed}: the first cleaning");
    // Half the keys are not written again: their latest records stay in cleaned segments,
    // which the next cleaning merges.
    workload_over(h, log, &mut rng, batches, keys / 2..keys + keys / 2);
}

/// How a crash test's crash ends: the process only, or a power cut tearing the last write, or
/// an adversarial one.
fn crash_mode(rng: &mut StdRng, seed: u64) -> Option<(u64, CutMode)> {
    match rng.gen_range(0..3) {
        0 => None,
        1 => Some((seed, CutMode::TearLast)),
        _ => Some((seed, CutMode::Adversarial)),
    }
}

/// What recovery from a crash during a cleaning must leave: a valid compaction of `before`,
/// the cleaning's own result if it had returned (`finished`), and no cleaned file or intent.
/// Returns the outcome's slot: 0 unchanged, 1 partly or wholly cleaned, 2 returned.
fn recovered_outcome(
    h: &Harness,
    before: &[Rec],
    after: &[Rec],
    cleaned_in_memory: &[Rec],
    finished: bool,
    why: &str,
) -> usize {
    assert_compaction_of(before, after, why);
    if finished {
        assert_eq!(
            after, cleaned_in_memory,
            "{why}: a returned cleaning is durable"
        );
    }
    let leftovers: Vec<String> = files(h)
        .into_iter()
        .filter(|n| n.ends_with(".cleaned") || n == "pending_compaction")
        .collect();
    assert!(leftovers.is_empty(), "{why}: {leftovers:?}");
    match (finished, after == before) {
        (true, _) => 2,
        (false, true) => 0,
        (false, false) => 1,
    }
}

#[test]
fn a_crash_at_any_poll_of_a_cleaning_leaves_the_old_log_or_a_valid_compaction() {
    let mut outcomes = [0usize; 3]; // unchanged, partly or wholly cleaned, returned
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc1ea);
        let batches = rng.gen_range(40..120);
        let keys = rng.gen_range(3..30);
        // The polls a whole cleaning takes, measured on the same workload.
        let total = {
            let mut h = Harness::new();
            let log = h.open(config()).expect("open");
            prepare(&mut h, &log, seed, batches, keys);
            let (used, finished) = run_cleaning(&mut h, &log, usize::MAX);
            assert!(finished, "seed {seed}");
            used
        };
        let mut h = Harness::new();
        let log = h.open(config()).expect("open");
        prepare(&mut h, &log, seed, batches, keys);
        let before = records_of(&mut h, &log);
        let budget = rng.gen_range(0..=total);
        let (_, finished) = run_cleaning(&mut h, &log, budget);
        let cleaned_in_memory = records_of(&mut h, &log);
        let mode = crash_mode(&mut rng, seed);
        crash(&mut h, log, mode);
        let why = format!("seed {seed}: {budget} of {total} polls, finished {finished}, {mode:?}");
        let log = h
            .open(config())
            .unwrap_or_else(|e| panic!("{why}: recovery failed: {e}"));
        let after = records_of(&mut h, &log);
        outcomes[recovered_outcome(&h, &before, &after, &cleaned_in_memory, finished, &why)] += 1;
        // The log goes on, and another power cut changes nothing synced.
        workload(&mut h, &log, &mut rng, 3, keys);
        let expected = records_of(&mut h, &log);
        crash(&mut h, log, Some((seed + 1, CutMode::Adversarial)));
        let log = h
            .open(config())
            .unwrap_or_else(|e| panic!("{why}: second recovery: {e}"));
        assert_eq!(
            records_of(&mut h, &log),
            expected,
            "{why}: after a second cut"
        );
        // And a later cleaning completes the job.
        let mut map = OffsetMap::with_budget(64 * 1024);
        let _ = h.run(log.compact(&mut map, &())).expect("a later cleaning");
        assert_compaction_of(&expected, &records_of(&mut h, &log), &why);
    }
    println!("crashes during a cleaning: {outcomes:?} (unchanged, partly cleaned, returned)");
    assert!(
        seeds().count() < 50 || outcomes.iter().all(|&n| n > 0),
        "{outcomes:?}"
    );
}

#[test]
fn max_compaction_lag_rolls_the_active_segment_and_makes_the_log_overdue() {
    let mut h = Harness::new();
    let lag_ms = 60_000;
    let cfg = LogConfig {
        compaction: Some(CompactionConfig {
            max_compaction_lag_ms: lag_ms,
            // A ratio no log reaches: only the lag makes it due.
            min_cleanable_dirty_ratio: 1.0,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    };
    let log = h.open(cfg).expect("open");
    for i in 0..10u8 {
        let ts = h.clock.0.get();
        let batch = keyed_batch(&[(vec![b'k', i % 2], Some(vec![i; 100]))], ts, None);
        h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    // Everything is in the active segment (segment.bytes is 1 GiB): nothing to clean.
    assert!(
        !h.run(log.roll_if_compaction_overdue()).expect("roll"),
        "not old enough yet"
    );
    assert!(log.dirtiness().is_none_or(|d| !d.due));
    h.clock.0.set(h.clock.0.get() + lag_ms + 1);
    assert!(
        h.run(log.roll_if_compaction_overdue()).expect("roll"),
        "past the lag"
    );
    assert_eq!(log.segment_count(), 2);
    let dirtiness = log.dirtiness().expect("compacted");
    assert!(dirtiness.overdue && dirtiness.due, "{dirtiness:?}");
    let mut map = OffsetMap::with_budget(64 * 1024);
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::Cleaned(_)
    ));
    let keys: Vec<Vec<u8>> = records_of(&mut h, &log)
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        keys,
        vec![vec![b'k', 0], vec![b'k', 1]],
        "the latest of each key"
    );
    // An empty active segment is not rolled again.
    h.clock.0.set(h.clock.0.get() + lag_ms + 1);
    assert!(!h.run(log.roll_if_compaction_overdue()).expect("roll"));
}

// ---- replicated logs ------------------------------------------------------------------------

/// A replicated log's entries as Raft sees them: (index, term, kind, base offset, next
/// offset). A cleaning must leave this exactly as it was.
type Shape = Vec<(u64, i32, EntryKind, i64, i64)>;

fn shape_of(h: &mut Harness, log: &TestLog) -> Shape {
    let (first, last) = (log.first_index(), log.last_index());
    h.run(log.entries(first, last.plus(1), usize::MAX))
        .expect("entries")
        .iter()
        .map(|e| {
            let header = validate_batch(&e.bytes).expect("a valid entry");
            assert_eq!(header.term, e.term, "an entry keeps its term in its batch");
            (
                e.index.0,
                e.term.0,
                e.kind,
                header.base_offset.0,
                header.next_offset().0,
            )
        })
        .collect()
}

/// A leader's log: term 1 and its empty entry, `batches` keyed batches over `keys` keys,
/// a new term (and its empty entry) every 40 batches, each proposal committed.
fn replicated_workload(
    h: &mut Harness,
    log: &TestLog,
    rng: &mut StdRng,
    batches: usize,
    keys: std::ops::Range<u8>,
) {
    for i in 0..batches {
        if i % 40 == 0 {
            let term = Term(log.term_of(log.last_index()).map_or(0, |t| t.0) + 1);
            h.run(log.set_term(term)).expect("term");
            let _ = h
                .run(log.propose_internal(b"", Wait::Durable))
                .expect("empty entry");
        }
        let count = rng.gen_range(1..6);
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..count)
            .map(|_| {
                let key = vec![b'k', rng.gen_range(keys.clone())];
                let value =
                    (!rng.gen_bool(0.1)).then(|| format!("v{}", rng.gen::<u32>()).into_bytes());
                (key, value)
            })
            .collect();
        let ts = h.clock.0.get();
        h.clock.0.set(ts + 10);
        let _ = h
            .run(log.propose(keyed_batch(&records, ts, None), Wait::Durable))
            .expect("propose");
        let _ = h.run(log.advance_commit(log.last_index())).expect("commit");
    }
}

fn replicated_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        index_interval_bytes: 300,
        compaction: Some(CompactionConfig::default()),
        ..LogConfig::default()
    }
}

/// Reopens a replicated log and commits what it holds (every entry was synced and committed
/// before: a restarted node learns the commit index from its leader).
fn reopen_replicated(h: &mut Harness, why: &str) -> TestLog {
    let log = h
        .open_replicated(replicated_config())
        .unwrap_or_else(|e| panic!("{why}: recovery failed: {e}"));
    let _ = h
        .run(log.advance_commit(log.last_index()))
        .expect("commit after open");
    log
}

#[test]
fn a_replicated_cleaning_keeps_every_entry_in_place_and_the_latest_record_of_every_key() {
    // A cache of 0 bytes sends every entries() read to the disk.
    for cache_bytes in [0, 1 << 20] {
        let mut h = Harness::with_budgets(8 << 20, cache_bytes);
        let log = h.open_replicated(replicated_config()).expect("open");
        let mut rng = StdRng::seed_from_u64(11);
        replicated_workload(&mut h, &log, &mut rng, 200, 0..12);
        let shape = shape_of(&mut h, &log);
        let before = records_of(&mut h, &log);
        let segments = log.segment_count();
        let mut map = OffsetMap::with_budget(64 * 1024);
        let report = match compact(&mut h, &log, &mut map) {
            Compacted::Cleaned(report) => report,
            other => panic!("expected a cleaning, got {other:?}"),
        };
        assert!(report.bytes_after < report.bytes_before, "{report:?}");
        assert!(log.segment_count() <= segments);
        let after = records_of(&mut h, &log);
        assert_compaction_of(&before, &after, "after the cleaning");
        assert_clean_below(&before, &after, report.clean_up_to, "after the cleaning");
        assert!(after.len() < before.len(), "something was cleaned");
        assert_eq!(shape_of(&mut h, &log), shape, "every entry where it was");
        for index in [RaftIndex(1), RaftIndex(2), log.last_index()] {
            assert_eq!(
                log.term_of(index),
                Some(Term(shape[index.0 as usize - 1].1)),
                "term of {index:?}"
            );
        }
        // The log goes on: a new leader's proposals and a follower's catch-up read from the
        // cleaned segments.
        replicated_workload(&mut h, &log, &mut rng, 10, 0..12);
        let grown = shape_of(&mut h, &log);
        assert_eq!(&grown[..shape.len()], &shape[..]);
        let expected = records_of(&mut h, &log);
        let mut follower_h = Harness::with_budgets(8 << 20, cache_bytes);
        let follower = follower_h
            .open_replicated(replicated_config())
            .expect("open follower");
        let entries = h
            .run(log.entries(RaftIndex(1), log.last_index().plus(1), usize::MAX))
            .expect("entries");
        let sent: Vec<(Term, Vec<u8>)> =
            entries.iter().map(|e| (e.term, e.bytes.to_vec())).collect();
        let _ = follower_h
            .run(follower.append_entries(RaftIndex(1), sent, Wait::Durable))
            .expect("a follower takes the cleaned entries");
        let _ = follower_h
            .run(follower.advance_commit(follower.last_index()))
            .expect("commit");
        assert_eq!(records_of(&mut follower_h, &follower), expected);
        // And a restart reads it all back.
        crash(&mut h, log, None);
        let log = reopen_replicated(&mut h, "restart");
        assert_eq!(shape_of(&mut h, &log), grown, "after a restart");
        assert_eq!(records_of(&mut h, &log), expected, "after a restart");
        // A second cleaning merges cleaned segments of one term into one (their names and
        // ordinals change): every entry stays where it was.
        replicated_workload(&mut h, &log, &mut rng, 200, 6..18);
        let (shape, before) = (shape_of(&mut h, &log), records_of(&mut h, &log));
        let segments = log.segment_count();
        assert!(matches!(
            compact(&mut h, &log, &mut map),
            Compacted::Cleaned(_)
        ));
        assert!(log.segment_count() < segments, "cleaned segments merged");
        assert_eq!(shape_of(&mut h, &log), shape, "after merging");
        assert_compaction_of(&before, &records_of(&mut h, &log), "after merging");
        crash(&mut h, log, None);
        let log = reopen_replicated(&mut h, "restart after merging");
        assert_eq!(shape_of(&mut h, &log), shape, "after merging and a restart");
    }
}

#[test]
fn a_replicated_cleaning_leaves_uncommitted_segments_alone() {
    let mut h = Harness::new();
    let log = h.open_replicated(replicated_config()).expect("open");
    h.run(log.set_term(Term(1))).expect("term");
    let _ = h
        .run(log.propose_internal(b"", Wait::Durable))
        .expect("empty entry");
    // Sealed segments, all above the commit index: nothing may be cleaned.
    for i in 0..60u8 {
        let ts = h.clock.0.get();
        let batch = keyed_batch(&[(vec![b'k', i % 3], Some(vec![i; 200]))], ts, None);
        let _ = h.run(log.propose(batch, Wait::Durable)).expect("propose");
    }
    assert!(log.segment_count() > 3);
    let mut map = OffsetMap::with_budget(64 * 1024);
    assert!(
        log.dirtiness().is_none_or(|d| !d.due),
        "nothing committed yet"
    );
    assert!(matches!(
        compact(&mut h, &log, &mut map),
        Compacted::NothingDue
    ));
    // Half committed: only segments wholly at or below the commit index are cleaned.
    let half = RaftIndex(log.last_index().0 / 2);
    let _ = h.run(log.advance_commit(half)).expect("commit");
    let shape = shape_of(&mut h, &log);
    let above: Vec<_> = h
        .run(log.entries(half.plus(1), log.last_index().plus(1), usize::MAX))
        .expect("entries")
        .iter()
        .map(|e| e.bytes.to_vec())
        .collect();
    let report = match compact(&mut h, &log, &mut map) {
        Compacted::Cleaned(report) => report,
        other => panic!("expected a cleaning, got {other:?}"),
    };
    assert!(
        report.clean_up_to <= log.offsets().high_watermark,
        "{report:?}"
    );
    assert_eq!(shape_of(&mut h, &log), shape);
    let above_after: Vec<_> = h
        .run(log.entries(half.plus(1), log.last_index().plus(1), usize::MAX))
        .expect("entries")
        .iter()
        .map(|e| e.bytes.to_vec())
        .collect();
    assert_eq!(
        above_after, above,
        "uncommitted entries are byte for byte as they were"
    );
}

#[test]
fn a_crash_at_any_poll_of_a_replicated_cleaning_leaves_every_entry_and_a_valid_log() {
    let mut outcomes = [0usize; 3]; // unchanged, partly or wholly cleaned, returned
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7e11);
        let batches = rng.gen_range(40..160);
        let keys = rng.gen_range(3..30);
        let prepare = |h: &mut Harness, log: &TestLog| {
            let mut rng = StdRng::seed_from_u64(seed);
            replicated_workload(h, log, &mut rng, batches, 0..keys);
            let (_, _) = run_cleaning_expecting(h, log, usize::MAX, false);
            replicated_workload(h, log, &mut rng, batches, keys / 2..keys + keys / 2);
        };
        let total = {
            let mut h = Harness::new();
            let log = h.open_replicated(replicated_config()).expect("open");
            prepare(&mut h, &log);
            let (used, finished) = run_cleaning_expecting(&mut h, &log, usize::MAX, false);
            assert!(finished, "seed {seed}");
            used
        };
        let mut h = Harness::new();
        let log = h.open_replicated(replicated_config()).expect("open");
        prepare(&mut h, &log);
        let shape = shape_of(&mut h, &log);
        let before = records_of(&mut h, &log);
        // Now and then the whole cleaning, else a crash somewhere inside it.
        let budget = if rng.gen_bool(0.1) {
            total
        } else {
            rng.gen_range(0..total.max(1))
        };
        let (_, finished) = run_cleaning_expecting(&mut h, &log, budget, false);
        let cleaned_in_memory = records_of(&mut h, &log);
        let mode = crash_mode(&mut rng, seed);
        crash(&mut h, log, mode);
        let why = format!("seed {seed}: {budget} of {total} polls, finished {finished}, {mode:?}");
        let log = reopen_replicated(&mut h, &why);
        assert_eq!(
            shape_of(&mut h, &log),
            shape,
            "{why}: every entry where it was"
        );
        let after = records_of(&mut h, &log);
        outcomes[recovered_outcome(&h, &before, &after, &cleaned_in_memory, finished, &why)] += 1;
        // The log goes on, and a later cleaning completes the job.
        replicated_workload(&mut h, &log, &mut rng, 3, 0..keys);
        let shape = shape_of(&mut h, &log);
        let expected = records_of(&mut h, &log);
        let mut map = OffsetMap::with_budget(64 * 1024);
        let _ = h.run(log.compact(&mut map, &())).expect("a later cleaning");
        assert_eq!(
            shape_of(&mut h, &log),
            shape,
            "{why}: after a later cleaning"
        );
        assert_compaction_of(&expected, &records_of(&mut h, &log), &why);
    }
    println!(
        "crashes during a replicated cleaning: {outcomes:?} (unchanged, partly cleaned, returned)"
    );
    assert!(
        seeds().count() < 50 || outcomes.iter().all(|&n| n > 0),
        "{outcomes:?}"
    );
}
