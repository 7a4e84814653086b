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

/// The model: (base offset, next offset, tag) of every batch, and the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, u64)>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.1)
    }
    fn offset_at(&self, permille: u16) -> i64 {
        self.log_start + (self.end() - self.log_start) * i64::from(permille) / 1000
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
        let needle = format!("{tag}:0:");
        assert!(bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::with_budgets(1 << 20, 16 * 1024);
        let config = LogConfig { segment_bytes_max: 12_000, retention_ms: None, index_interval_bytes: 1024, ..LogConfig::default() };
        let mut log = h.open(config.clone()).expect("open");
        let mut model = Model::default();
        for (tag, op) in ops.into_iter().enumerate() {
            let tag = tag as u64;
            match op {
                Op::Append { records, value_bytes } => {
                    let appended = h.run(log.append(batch(tag, records, value_bytes, 0), Wait::Durable)).expect("append");
                    prop_assert_eq!(appended.base_offset.0, model.end());
                    model.batches.push((model.end(), model.end() + records as i64, tag));
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
                    let keep = log.size_bytes() * u64::from(keep_permille) / 1000;
                    log.set_config(LogConfig { retention_bytes: Some(keep), ..config.clone() });
                    h.run(log.enforce_retention()).expect("retention");
                    log.set_config(config.clone());
                    let start = log.offsets().log_start.0;
                    prop_assert!(start >= model.log_start);
                    prop_assert!(model.batches.iter().any(|b| b.0 == start) || start == model.end() || start == model.log_start);
                    model.log_start = start;
                }
                Op::DeleteRecords { at_permille } => {
                    let at = model.offset_at(at_permille);
                    let start = h.run(log.delete_records(Offset(at))).expect("delete");
                    model.log_start = model.log_start.max(at);
                    prop_assert_eq!(start.0, model.log_start);
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
