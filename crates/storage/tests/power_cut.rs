//! Simulated power cuts: a workload of concurrent appends, rolls, DeleteRecords and
//! checkpoints is cut at a random point; the disk keeps only what was synced and tears the
//! last (or, adversarially, every) un-synced write per 512-byte sector. After recovery:
//! - every append acknowledged as synced is readable at its offset with its contents;
//! - offsets are dense and monotonic from the log start, nothing after a hole is served;
//! - no batch that was never sent appears;
//! - the log accepts appends again and survives a second restart.
//!
//! A process crash (kill -9, nothing lost by the disk) must additionally keep every append
//! acknowledged as written.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::{batch, read_all, Harness};
use futures::task::LocalSpawnExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_model::Offset;
use shoal_sim_disk::CutMode;
use shoal_storage::{Durability, Fallocation, Guarantee, LogConfig, Wait};

/// tag → (base offset, guarantee) for every acknowledged append.
type Acks = Rc<RefCell<BTreeMap<u64, (Offset, Guarantee)>>>;

fn random_config(rng: &mut StdRng) -> LogConfig {
    let durability = if rng.gen_bool(0.7) {
        Durability::Fsync
    } else {
        Durability::Relaxed {
            flush_messages: rng.gen_range(1..20),
            flush_ms: 1000,
        }
    };
    let fallocation = [
        Fallocation::None,
        Fallocation::FallocateAhead,
        Fallocation::ExtendAhead,
    ][rng.gen_range(0..3)];
    LogConfig {
        segment_bytes_max: rng.gen_range(6_000..60_000),
        durability,
        fallocation,
        fallocation_step_bytes_max: 64 * 1024,
        recycled_segments_max: rng.gen_range(0..3),
        write_chunk_bytes: [4096, 16 * 1024, 64 * 1024][rng.gen_range(0..3)],
        index_interval_bytes: 2048,
        retention_ms: None,
        ..LogConfig::default()
    }
}

enum Crash {
    Power(CutMode),
    Process,
}

fn run_seed(seed: u64, crash: Crash) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = Harness::with_budgets(256 * 1024, 64 * 1024);
    let config = random_config(&mut rng);
    let log = h.open(config.clone()).expect("open");
    let acks: Acks = Rc::default();
    // The largest log start a completed DeleteRecords returned: it must survive any crash.
    let acked_start: Rc<std::cell::Cell<Offset>> = Rc::default();
    let producers = rng.gen_range(1..6u64);
    for producer in 0..producers {
        let (log, acks, acked_start) = (log.clone(), acks.clone(), acked_start.clone());
        let mut prng = StdRng::seed_from_u64(seed * 31 + producer);
        let task = async move {
            for i in 0..40u64 {
                let tag = producer * 1000 + i;
                let records = prng.gen_range(1..4);
                let value_bytes = [10, 300, 2500, 9000][prng.gen_range(0..4)];
                let Ok(appended) = log
                    .append(batch(tag, records, value_bytes, i as i64), Wait::Durable)
                    .await
                else {
                    return;
                };
                let _ = acks
                    .borrow_mut()
                    .insert(tag, (appended.base_offset, appended.guarantee));
                if prng.gen_bool(0.05) {
                    let _ = log.sync().await;
                }
                if prng.gen_bool(0.03) {
                    let _ = log.checkpoint().await;
                }
                if prng.gen_bool(0.02) {
                    let target = Offset(log.offsets().high_watermark.0 / 2);
                    if let Ok(start) = log.delete_records(target).await {
                        acked_start.set(acked_start.get().max(start));
                    }
                }
            }
        };
        h.exec.spawner().spawn_local(task).expect("spawn");
    }
    let steps = rng.gen_range(0..600);
    for _ in 0..steps {
        if !h.exec.try_run_one() {
            break;
        }
    }
    drop(log);
    h.kill_tasks();
    let mode = match crash {
        Crash::Power(mode) => {
            h.disk.power_cut(seed, mode);
            Some(mode)
        }
        Crash::Process => None,
    };
    let log = h
        .open(config.clone())
        .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let offsets = log.offsets();
    assert!(
        offsets.log_start >= acked_start.get(),
        "seed {seed}: a completed DeleteRecords to {} came back at {}",
        acked_start.get(),
        offsets.log_start
    );
    assert_eq!(
        offsets.high_watermark, offsets.log_end,
        "seed {seed}: recovered tail is synced"
    );
    let read = read_all(&mut h, &log, offsets.log_start);
    // DeleteRecords may put the log start inside a batch; that batch is still served whole.
    let mut expected = read.first().map_or(offsets.log_start, |(base, _)| *base);
    assert!(expected <= offsets.log_start, "seed {seed}");
    let mut by_offset = BTreeMap::new();
    for (base, bytes) in &read {
        assert_eq!(
            *base, expected,
            "seed {seed}: hole or overlap at {expected}"
        );
        let header = shoal_storage::validate_batch(bytes).expect("valid");
        expected = header.next_offset();
        let _ = by_offset.insert(*base, bytes.clone());
    }
    assert_eq!(expected, offsets.log_end, "seed {seed}");
    for (tag, (base, guarantee)) in acks.borrow().iter() {
        let must_survive = match mode {
            Some(_) => *guarantee == Guarantee::Synced,
            None => *guarantee >= Guarantee::Written,
        };
        if !must_survive || *base < offsets.log_start {
            continue;
        }
        let bytes = by_offset
            .get(base)
            .unwrap_or_else(|| panic!("seed {seed}: acknowledged tag {tag} at {base} lost"));
        assert!(
            common::holds(bytes, *tag),
            "seed {seed}: offset {base} holds another batch"
        );
    }
    // Every served batch was really sent: its tag is one a producer used.
    for bytes in by_offset.values() {
        assert!(
            common::first_record_tags(bytes)
                .iter()
                .any(|tag| tag / 1000 < producers && tag % 1000 < 40),
            "seed {seed}: garbage served"
        );
    }
    // The recovered log takes appends and survives a clean restart.
    let appended = h
        .run(log.append(batch(99_999, 1, 100, 0), Wait::Durable))
        .expect("append after recovery");
    assert_eq!(appended.base_offset, offsets.log_end);
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let log = h
        .open(config)
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after a clean close failed: {e}"));
    assert_eq!(
        log.offsets().log_end,
        appended.last_offset.plus(1),
        "seed {seed}"
    );
}

fn seeds() -> std::ops::Range<u64> {
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let first = std::env::var("SHOAL_SIM_SEED_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    first..first + count
}

#[test]
fn power_cut_tearing_the_last_write_keeps_every_synced_append() {
    for seed in seeds() {
        run_seed(seed, Crash::Power(CutMode::TearLast));
    }
}

#[test]
fn power_cut_tearing_every_unsynced_write_keeps_every_synced_append() {
    for seed in seeds() {
        run_seed(seed, Crash::Power(CutMode::Adversarial));
    }
}

#[test]
fn process_crash_keeps_every_written_append() {
    for seed in seeds() {
        run_seed(seed, Crash::Process);
    }
}
