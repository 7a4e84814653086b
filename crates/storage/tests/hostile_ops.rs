//! The storage API under hostile input, as the broker could call it: arbitrary and damaged
//! batches, offsets and terms at the edges, configs at Kafka's limits (`index.interval.bytes` 0
//! included), injected EIO and ENOSPC, power cuts and restarts in any order. No operation may
//! panic (a panic aborts the broker) or stall (the simulated disk completes I/O at once, so an
//! operation that never completes would hang a request forever), and while the log is usable
//! its offsets keep `log_start <= high_watermark <= log_end`. A log that goes offline is opened
//! again, as the broker does. (The cargo-fuzz target `fuzz/fuzz_targets/storage_ops.rs` runs
//! the same operations from fuzzer bytes, for longer runs than CI's.)

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::Harness;
use futures::task::LocalSpawnExt;
use proptest::prelude::*;
use shoal_model::{Offset, Term, TimestampMs};
use shoal_sim_disk::CutMode;
use shoal_storage::{Durability, LogConfig, Wait};

#[derive(Clone, Debug)]
enum Bytes {
    Valid {
        records: usize,
        value_bytes: usize,
    },
    Flipped {
        at: usize,
    },
    Garbage(Vec<u8>),
    Truncated {
        keep: usize,
    },
    Patched {
        at: usize,
        value: i64,
    },
    Idempotent {
        producer: i64,
        epoch: i16,
        sequence: i32,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Append(Bytes, bool),
    Read {
        offset: i64,
        max_bytes: usize,
    },
    DeleteRecords(i64),
    SetTerm(i32),
    Reconfigure {
        segment_bytes: u64,
        interval: u64,
        relaxed: bool,
        batch_max: usize,
        retention_bytes: Option<u64>,
        chunk_bytes: usize,
    },
    Retention,
    Checkpoint,
    Confirm,
    Sync,
    Timestamp(i64),
    MaxTimestamp,
    EpochEnd(i32),
    EpochOf(i64),
    FailWrite {
        after: u32,
        no_space: bool,
    },
    FailSync {
        after: u32,
    },
    Capacity(Option<u64>),
    Clock(i64),
    Crash {
        power: bool,
        seed: u64,
    },
}

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![6 => -3i64..300, 1 => Just(i64::MAX), 1 => Just(i64::MIN), 1 => Just(-1i64)]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => (1usize..6, 0usize..3000).prop_map(|(records, value_bytes)| Bytes::Valid { records, value_bytes }),
        // Larger than the whole buffer pool.
        1 => (1usize..3, 90_000usize..200_000).prop_map(|(records, value_bytes)| Bytes::Valid { records, value_bytes }),
        2 => (0usize..200).prop_map(|at| Bytes::Flipped { at }),
        2 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::Garbage),
        1 => (0usize..80).prop_map(|keep| Bytes::Truncated { keep }),
        2 => (prop_oneof![Just(0usize), Just(8), Just(12), Just(16), Just(23), Just(57)], any::<i64>())
            .prop_map(|(at, value)| Bytes::Patched { at, value }),
        2 => (-2i64..3, -1i16..3, -2i32..5).prop_map(|(producer, epoch, sequence)| Bytes::Idempotent { producer, epoch, sequence }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (bytes(), any::<bool>()).prop_map(|(b, durable)| Op::Append(b, durable)),
        3 => (offset(), 0usize..100_000).prop_map(|(offset, max_bytes)| Op::Read { offset, max_bytes }),
        1 => offset().prop_map(Op::DeleteRecords),
        1 => (-3i32..8).prop_map(Op::SetTerm),
        1 => (prop_oneof![Just(1u64 << 20), Just(8192u64), Just(64u64)], prop_oneof![Just(0u64), Just(1), Just(4096)],
              any::<bool>(), prop_oneof![Just(0usize), Just(100), Just(1 << 20)], proptest::option::of(0u64..20_000),
              prop_oneof![Just(4096usize), Just(1 << 20)])
            .prop_map(|(segment_bytes, interval, relaxed, batch_max, retention_bytes, chunk_bytes)| Op::Reconfigure { segment_bytes, interval, relaxed, batch_max, retention_bytes, chunk_bytes }),
        1 => Just(Op::Retention),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Confirm),
        1 => Just(Op::Sync),
        1 => prop_oneof![Just(-1i64), 0i64..10_000, Just(i64::MAX), Just(i64::MIN)].prop_map(Op::Timestamp),
        1 => Just(Op::MaxTimestamp),
        1 => prop_oneof![Just(-1i32), 0i32..8, Just(i32::MAX)].prop_map(Op::EpochEnd),
        1 => offset().prop_map(Op::EpochOf),
        1 => (0u32..4, any::<bool>()).prop_map(|(after, no_space)| Op::FailWrite { after, no_space }),
        1 => (0u32..4).prop_map(|after| Op::FailSync { after }),
        1 => proptest::option::of(0u64..400_000).prop_map(Op::Capacity),
        1 => prop_oneof![Just(1i64), Just(86_400_000), Just(-5_000)].prop_map(Op::Clock),
        1 => (any::<bool>(), any::<u64>()).prop_map(|(power, seed)| Op::Crash { power, seed }),
    ]
}

fn build(b: &Bytes, tag: u64) -> Vec<u8> {
    let valid = || common::batch(tag, 2, 100, 5);
    let fix_crc = |mut bytes: Vec<u8>| {
        if bytes.len() >= 21 {
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        bytes
    };
    match b {
        Bytes::Valid {
            records,
            value_bytes,
        } => common::batch(tag, *records, *value_bytes, tag as i64),
        Bytes::Flipped { at } => {
            let mut bytes = valid();
            let at = at % bytes.len();
            bytes[at] ^= 0x5a;
            bytes
        }
        Bytes::Garbage(bytes) => bytes.clone(),
        Bytes::Truncated { keep } => {
            let bytes = valid();
            bytes[..(*keep).min(bytes.len())].to_vec()
        }
        Bytes::Patched { at, value } => {
            let mut bytes = valid();
            let width = if matches!(at, 0) { 8 } else { 4 };
            let raw = value.to_be_bytes();
            bytes[*at..*at + width].copy_from_slice(&raw[8 - width..]);
            fix_crc(bytes)
        }
        Bytes::Idempotent {
            producer,
            epoch,
            sequence,
        } => shoal_storage::build_idempotent_batch(&[b"x"], *producer, *epoch, *sequence),
    }
}

/// Runs `future` on the harness: it must complete without outside help (no stall).
fn finish<T: 'static>(
    h: &mut Harness,
    what: &Op,
    future: impl std::future::Future<Output = T> + 'static,
) -> T {
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let out = slot.clone();
    h.exec
        .spawner()
        .spawn_local(async move {
            *out.borrow_mut() = Some(future.await);
        })
        .expect("spawn");
    h.exec.run_until_stalled();
    let result = slot.borrow_mut().take();
    result.unwrap_or_else(|| panic!("{what:?} never completed"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn no_input_or_io_outcome_panics_or_stalls(ops in proptest::collection::vec(op(), 1..50)) {
        let mut h = Harness::with_budgets(96 * 1024, 16 * 1024);
        let mut config = LogConfig { segment_bytes_max: 8192, write_chunk_bytes: 4096, fallocation_step_bytes_max: 16 * 1024, ..LogConfig::default() };
        let mut log = h.open(config.clone()).ok();
        for (tag, op) in ops.iter().enumerate() {
            let tag = tag as u64;
            let Some(log_now) = log.clone() else {
                // Offline at open (e.g. disk full): clear the faults and try again.
                h.disk.set_capacity_bytes(None);
                h.kill_tasks();
                log = h.open(config.clone()).ok();
                continue;
            };
            match op {
                Op::Append(b, durable) => {
                    let wait = if *durable { Wait::Durable } else { Wait::Buffered };
                    let batch = build(b, tag);
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.append(batch, wait).await } });
                }
                Op::Read { offset, max_bytes } => {
                    let (o, m) = (*offset, *max_bytes);
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.read(Offset(o), m).await } });
                }
                Op::DeleteRecords(at) => {
                    let at = *at;
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.delete_records(Offset(at)).await } });
                }
                Op::SetTerm(term) => {
                    let term = *term;
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.set_term(Term(term)).await } });
                }
                Op::Reconfigure { segment_bytes, interval, relaxed, batch_max, retention_bytes, chunk_bytes } => {
                    config = LogConfig {
                        segment_bytes_max: *segment_bytes,
                        index_interval_bytes: *interval,
                        durability: if *relaxed { Durability::Relaxed { flush_messages: 3, flush_ms: 1000 } } else { Durability::Fsync },
                        batch_bytes_max: *batch_max,
                        retention_bytes: *retention_bytes,
                        write_chunk_bytes: *chunk_bytes,
                        ..config.clone()
                    };
                    let next = config.clone();
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.reconfigure(next).await } });
                }
                Op::Retention => { let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.enforce_retention().await } }); }
                Op::Checkpoint => { let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.checkpoint().await } }); }
                Op::Confirm => { let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.confirm_synced().await } }); }
                Op::Sync => { let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.sync().await } }); }
                Op::Timestamp(ts) => {
                    let ts = *ts;
                    let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.offset_for_timestamp(TimestampMs(ts)).await } });
                }
                Op::MaxTimestamp => { let _ = finish(&mut h, op, { let l = log_now.clone(); async move { l.max_timestamp().await } }); }
                Op::EpochEnd(term) => { let _ = log_now.epoch_end_offset(Term(*term)); let _ = log_now.epochs(); }
                Op::EpochOf(offset) => { let _ = log_now.epoch_of(Offset(*offset)); }
                Op::FailWrite { after, no_space } => h.disk.fail_write(*after, if *no_space { 28 } else { 5 }),
                Op::FailSync { after } => h.disk.fail_sync(*after, 5),
                Op::Capacity(bytes) => h.disk.set_capacity_bytes(*bytes),
                Op::Clock(delta) => h.clock.0.set(h.clock.0.get() + delta),
                Op::Crash { power, seed } => {
                    drop(log_now);
                    drop(log.take());
                    h.kill_tasks();
                    if *power {
                        h.disk.power_cut(*seed, CutMode::Adversarial);
                    }
                    // Faults armed before the crash belong to the old process.
                    h.disk.clear_faults();
                    log = h.open(config.clone()).ok();
                    continue;
                }
            }
            if log_now.offline_reason().is_none() {
                let o = log_now.offsets();
                prop_assert!(o.log_start <= o.high_watermark && o.high_watermark <= o.log_end, "{o:?} after {op:?}");
            } else {
                // The broker reopens a log that went offline (recovery runs again).
                drop(log_now);
                drop(log.take());
                h.kill_tasks();
                log = h.open(config.clone()).ok();
            }
        }
    }
}
