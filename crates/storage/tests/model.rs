//! Property test: random sequences of append / read / roll / retention / DeleteRecords /
//! restart, checked against an in-memory model of the log after every step.

mod common;

use common::{batch, read_all, Harness};
use proptest::prelude::*;
use shoal_model::Offset;
use shoal_storage::{validate_batch, Error, LogConfig, Wait};

#[derive(Clone, Debug)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { at_permille: u16, max_bytes: usize },
    RetainBytes { keep_permille: u16 },
    DeleteRecords { at_permille: u16 },
    Checkpoint,
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, prop_oneof![Just(10usize), Just(700), Just(5000)]).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (0u16..1000, 1usize..20_000).prop_map(|(at_permille, max_bytes)| Op::Read { at_permille, max_bytes }),
        1 => (100u16..1000).prop_map(|keep_permille| Op::RetainBytes { keep_permille }),
        1 => (0u16..1000).prop_map(|at_permille| Op::DeleteRecords { at_permille }),
        1 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// Bytes of a segment before the log rolls (the test's `segment.bytes`).
const SEGMENT_BYTES: u64 = 12_000;

/// The model: every batch (base offset, next offset, tag), the segments as the rules say they
/// are laid out, and the log start. It derives retention's outcome from the rules (roll when
/// a batch would pass `segment.bytes`; delete oldest segments while the rest stays at least
/// `retention.bytes`), never from the log under test.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, u64)>,
    /// (base offset, bytes) of each segment; the last is active. Empty until the first append.
    segments: Vec<(i64, u64)>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.1)
    }
    fn offset_at(&self, permille: u16) -> i64 {
        self.log_start + (self.end() - self.log_start) * i64::from(permille) / 1000
    }
    fn append(&mut self, tag: u64, records: usize, bytes: u64) {
        let base = self.end();
        match self.segments.last_mut() {
            Some((_, size)) if *size > 0 && *size + bytes > SEGMENT_BYTES => {
                self.segments.push((base, bytes))
            }
            Some((_, size)) => *size += bytes,
            None => self.segments.push((base, bytes)),
        }
        self.batches.push((base, base + records as i64, tag));
    }
    /// The segment that starts at `segments[i]` ends where the next starts (or at the end).
    fn segment_end(&self, i: usize) -> i64 {
        self.segments.get(i + 1).map_or(self.end(), |s| s.0)
    }
    fn retain_bytes(&mut self, keep: u64) {
        let mut size: u64 = self.segments.iter().map(|s| s.1).sum();
        let mut deleted = 0;
        for (i, &(_, bytes)) in self.segments.iter().enumerate() {
            if bytes == 0 || size - bytes < keep {
                break;
            }
            size -= bytes;
            deleted = i + 1;
        }
        if deleted == 0 {
            return;
        }
        let start = self.segment_end(deleted - 1);
        if deleted == self.segments.len() {
            // The active segment went too: a fresh, empty one starts at the end.
            self.segments.push((self.end(), 0));
        }
        self.log_start = self.log_start.max(start);
        self.drop_segments_below_start();
    }
    fn delete_records(&mut self, at: i64) {
        self.log_start = self.log_start.max(at);
        self.drop_segments_below_start();
    }
    fn drop_segments_below_start(&mut self) {
        while self.segments.len() > 1 && self.segment_end(0) <= self.log_start {
            let _ = self.segments.remove(0);
        }
    }
}

fn check(h: &mut Harness, log: &shoal_storage::Log<shoal_sim_disk::SimDisk>, model: &Model) {
    let offsets = log.offsets();
    assert_eq!(offsets.log_start.0, model.log_start);
    assert_eq!(offsets.log_end.0, model.end());
    let read = read_all(h, log, offsets.log_start);
    let live: Vec<_> = model
        .batches
        .iter()
        .filter(|b| b.1 > model.log_start)
        .collect();
    assert_eq!(read.len(), live.len());
    for ((base, bytes), (model_base, _, tag)) in read.iter().zip(live) {
        assert_eq!(base.0, *model_base);
        assert!(common::holds(bytes, *tag), "batch {tag} at {base}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::with_budgets(1 << 20, 16 * 1024);
        let config = LogConfig { segment_bytes_max: SEGMENT_BYTES, retention_ms: None, index_interval_bytes: 1024, ..LogConfig::default() };
        let mut log = h.open(config.clone()).expect("open");
        let mut model = Model::default();
        for (tag, op) in ops.into_iter().enumerate() {
            let tag = tag as u64;
            match op {
                Op::Append { records, value_bytes } => {
                    let bytes = batch(tag, records, value_bytes, 0);
                    let len = bytes.len() as u64;
                    let appended = h.run(log.append(bytes, Wait::Durable)).expect("append");
                    prop_assert_eq!(appended.base_offset.0, model.end());
                    model.append(tag, records, len);
                }
                Op::Read { at_permille, max_bytes } => {
                    let at = model.offset_at(at_permille);
                    let page = h.run(log.read(Offset(at), max_bytes)).expect("read");
                    if at < model.end() {
                        let first = validate_batch(&page.batches[0]).expect("valid");
                        prop_assert!(first.base_offset.0 <= at && first.next_offset().0 > at);
                        let total: usize = page.batches.iter().map(|b| b.len()).sum();
                        prop_assert!(page.batches.len() == 1 || total <= max_bytes + page.batches.last().map_or(0, |b| b.len()));
                    } else {
                        prop_assert!(page.batches.is_empty());
                    }
                    let beyond = h.run(log.read(Offset(model.end() + 1), 100));
                    let out_of_range = matches!(beyond, Err(Error::OffsetOutOfRange { .. }));
                    prop_assert!(out_of_range);
                }
                Op::RetainBytes { keep_permille } => {
                    let size: u64 = model.segments.iter().map(|s| s.1).sum();
                    let keep = size * u64::from(keep_permille) / 1000;
                    log.set_config(LogConfig { retention_bytes: Some(keep), ..config.clone() });
                    h.run(log.enforce_retention()).expect("retention");
                    log.set_config(config.clone());
                    model.retain_bytes(keep);
                    prop_assert_eq!(log.offsets().log_start.0, model.log_start);
                    prop_assert_eq!(log.segment_count(), model.segments.len().max(1));
                }
                Op::DeleteRecords { at_permille } => {
                    let at = model.offset_at(at_permille);
                    let start = h.run(log.delete_records(Offset(at))).expect("delete");
                    model.delete_records(at);
                    prop_assert_eq!(start.0, model.log_start);
                    prop_assert_eq!(log.segment_count(), model.segments.len().max(1));
                }
                Op::Checkpoint => h.run(log.checkpoint()).expect("checkpoint"),
                Op::Restart { clean } => {
                    if clean {
                        h.run(log.close()).expect("close");
                    }
                    drop(log);
                    h.kill_tasks();
                    log = h.open(config.clone()).expect("reopen");
                }
            }
            check(&mut h, &log, &model);
        }
    }
}
