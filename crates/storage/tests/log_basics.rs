//! Append, read, group commit, durability modes, roll, retention, DeleteRecords.

mod common;

use common::{batch, dir, read_all, segment_files, Harness};
use futures::future::join_all;
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Durability, Error, Fallocation, Guarantee, LogConfig, Wait};

#[test]
fn appends_get_dense_offsets_and_read_back_identically() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let count = 1 + (i as usize % 5);
        let appended = h
            .run(log.append(batch(i, count, 100, 1000), Wait::Durable))
            .expect("append");
        assert_eq!(
            appended.guarantee,
            Guarantee::Synced,
            "fsync mode acknowledges after sync"
        );
        assert_eq!(
            appended.last_offset.0 - appended.base_offset.0 + 1,
            count as i64
        );
        sent.push(appended.base_offset);
    }
    let offsets = log.offsets();
    assert_eq!(offsets.log_end, offsets.high_watermark);
    let read = read_all(&mut h, &log, Offset(0));
    assert_eq!(read.iter().map(|(o, _)| *o).collect::<Vec<_>>(), sent);
    // Reading from the middle of a batch returns that whole batch first.
    let page = h.run(log.read(Offset(sent[3].0 + 1), 1)).expect("read");
    assert_eq!(
        page.batches.len(),
        1,
        "at least one batch even over max_bytes"
    );
}

#[test]
fn corrupt_and_oversized_client_batches_are_rejected_and_nothing_is_written() {
    let mut h = Harness::new();
    let log = h
        .open(LogConfig {
            batch_bytes_max: 10_000,
            ..LogConfig::default()
        })
        .expect("open");
    let mut damaged = batch(1, 3, 50, 0);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(matches!(
        h.run(log.append(damaged, Wait::Durable)),
        Err(Error::CorruptBatch(_))
    ));
    let big = batch(2, 1, 20_000, 0);
    assert!(matches!(
        h.run(log.append(big, Wait::Durable)),
        Err(Error::BatchTooLarge { .. })
    ));
    let mut two = batch(3, 1, 10, 0);
    two.extend_from_slice(&batch(4, 1, 10, 0));
    assert!(matches!(
        h.run(log.append(two, Wait::Durable)),
        Err(Error::CorruptBatch(_))
    ));
    assert_eq!(log.offsets().log_end, Offset(0));
}

#[test]
fn concurrent_appends_share_syncs() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let syncs_before = h.disk.stats().syncs;
    let appends = (0..32u64).map(|i| log.append(batch(i, 1, 4000, 0), Wait::Durable));
    let results = h.run(join_all(appends));
    let mut bases: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("append").base_offset.0)
        .collect();
    bases.sort_unstable();
    assert_eq!(bases, (0..32).collect::<Vec<_>>());
    let syncs = h.disk.stats().syncs - syncs_before;
    assert!(
        syncs <= 3,
        "32 concurrent appends took {syncs} syncs; group commit should need 1-2"
    );
    assert_eq!(log.stats().syncs, syncs);
}

#[test]
fn relaxed_mode_acknowledges_after_the_write_and_syncs_by_count() {
    let mut h = Harness::new();
    let relaxed = Durability::Relaxed {
        flush_messages: 10,
        flush_ms: 1000,
    };
    let log = h
        .open(LogConfig {
            durability: relaxed,
            ..LogConfig::default()
        })
        .expect("open");
    let syncs_before = h.disk.stats().syncs;
    for i in 0..9u64 {
        let appended = h
            .run(log.append(batch(i, 1, 10, 0), Wait::Durable))
            .expect("append");
        assert_eq!(appended.guarantee, Guarantee::Written);
    }
    assert_eq!(
        h.disk.stats().syncs,
        syncs_before,
        "no sync before flush.messages"
    );
    assert_eq!(
        log.offsets().high_watermark,
        Offset(9),
        "written data is visible in relaxed mode"
    );
    let _ = h
        .run(log.append(batch(9, 1, 10, 0), Wait::Durable))
        .expect("append");
    // The 10th batch reaches flush.messages: the flusher syncs on its own (nobody calls
    // sync()), so a power cut now keeps all ten.
    h.exec.run_until_stalled();
    assert_eq!(
        h.disk.stats().syncs,
        syncs_before + 1,
        "one sync for ten batches"
    );
    drop(log);
    h.kill_tasks();
    h.disk.power_cut(7, shoal_sim_disk::CutMode::Adversarial);
    let log = h
        .open(LogConfig {
            durability: relaxed,
            ..LogConfig::default()
        })
        .expect("reopen");
    assert_eq!(
        log.offsets().log_end,
        Offset(10),
        "the count-triggered sync covered all"
    );
}

#[test]
fn leaving_relaxed_mode_syncs_first_so_the_high_watermark_never_moves_back() {
    let mut h = Harness::new();
    let relaxed = Durability::Relaxed {
        flush_messages: u64::MAX,
        flush_ms: 1000,
    };
    let log = h
        .open(LogConfig {
            durability: relaxed,
            ..LogConfig::default()
        })
        .expect("open");
    for i in 0..5u64 {
        let _ = h
            .run(log.append(batch(i, 1, 10, 0), Wait::Durable))
            .expect("append");
    }
    assert_eq!(log.offsets().high_watermark, Offset(5));
    let syncs_before = h.disk.stats().syncs;
    h.run(log.reconfigure(LogConfig::default()))
        .expect("reconfigure");
    assert_eq!(log.config().durability, Durability::Fsync);
    assert_eq!(
        log.offsets().high_watermark,
        Offset(5),
        "what readers saw stays visible"
    );
    assert!(
        h.disk.stats().syncs > syncs_before,
        "written data was synced"
    );
    let appended = h
        .run(log.append(batch(5, 1, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(appended.guarantee, Guarantee::Synced);
    // And back: relaxed again needs no sync.
    h.run(log.reconfigure(LogConfig {
        durability: relaxed,
        ..LogConfig::default()
    }))
    .expect("reconfigure");
    let appended = h
        .run(log.append(batch(6, 1, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(appended.guarantee, Guarantee::Written);
}

#[test]
fn acks_zero_returns_before_the_write_and_the_flusher_still_persists() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let appended = h
        .run(log.append(batch(1, 2, 10, 0), Wait::Buffered))
        .expect("append");
    assert_eq!(appended.guarantee, Guarantee::Buffered);
    let synced = h.run(log.sync()).expect("sync");
    assert_eq!(synced, Offset(2));
}

#[test]
fn segments_roll_by_size_and_age_and_reads_cross_them() {
    let mut h = Harness::with_budgets(8 << 20, 4096);
    let config = LogConfig {
        segment_bytes_max: 20_000,
        segment_ms_max: Some(60_000),
        ..LogConfig::default()
    };
    let log = h.open(config).expect("open");
    let now = h.clock.0.get();
    for i in 0..40u64 {
        let _ = h
            .run(log.append(batch(i, 2, 1000, now), Wait::Durable))
            .expect("append");
    }
    let by_size = log.segment_count();
    assert!(
        by_size >= 4,
        "40 x ~2 KiB batches over 20 KB segments: got {by_size}"
    );
    // The age is the incoming batch's timestamp minus the segment's first batch's (Kafka).
    h.clock.0.set(now + 61_000);
    let _ = h
        .run(log.append(batch(99, 1, 10, now + 61_000), Wait::Durable))
        .expect("append");
    assert_eq!(log.segment_count(), by_size + 1, "an old segment rolls");
    // A tiny cache forces reads through the segments and their indexes.
    let read = read_all(&mut h, &log, Offset(0));
    assert_eq!(read.len(), 41);
    assert_eq!(segment_files(&h.disk, &dir()).len(), by_size + 1);
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments() {
    let mut h = Harness::new();
    let config = LogConfig {
        segment_bytes_max: 10_000,
        retention_ms: None,
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    let now = h.clock.0.get();
    for i in 0..30u64 {
        let ts = now - 10_000_000 + i as i64 * 100_000;
        let _ = h
            .run(log.append(batch(i, 1, 2000, ts), Wait::Durable))
            .expect("append");
    }
    let segments = log.segment_count();
    let size = log.size_bytes();
    log.set_config(LogConfig {
        retention_bytes: Some(size / 2),
        ..config.clone()
    });
    h.run(log.enforce_retention()).expect("retention");
    assert!(log.size_bytes() <= size / 2 + 10_000 && log.size_bytes() >= size / 2 - 10_000);
    let start = log.offsets().log_start;
    assert!(start > Offset(0));
    assert!(matches!(
        h.run(log.read(Offset(0), 1000)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        read_all(&mut h, &log, start).first().map(|(o, _)| *o),
        Some(start)
    );
    // Time: everything older than 1.5 M ms goes; the active segment always stays.
    log.set_config(LogConfig {
        retention_ms: Some(1_500_000),
        ..config
    });
    h.run(log.enforce_retention()).expect("retention");
    assert!(log.segment_count() < segments);
    assert!(log.segment_count() >= 1);
    let _ = h
        .run(log.append(batch(100, 1, 10, now), Wait::Durable))
        .expect("append after retention");
}

#[test]
fn delete_records_moves_the_log_start_and_survives_restart() {
    let mut h = Harness::new();
    let config = LogConfig {
        segment_bytes_max: 8_000,
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    for i in 0..20u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1500, 0), Wait::Durable))
            .expect("append");
    }
    assert!(matches!(
        h.run(log.delete_records(Offset(21))),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let start = h
        .run(log.delete_records(Offset(13)))
        .expect("delete records");
    assert_eq!(start, Offset(13));
    assert!(log.stats().segments_deleted > 0);
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let log = h.open(config).expect("reopen");
    assert_eq!(log.offsets().log_start, Offset(13));
    assert_eq!(read_all(&mut h, &log, Offset(13)).len(), 7);
}

#[test]
fn timestamp_lookup_finds_the_first_batch_at_or_after() {
    let mut h = Harness::with_budgets(8 << 20, 4096);
    let log = h
        .open(LogConfig {
            segment_bytes_max: 6_000,
            ..LogConfig::default()
        })
        .expect("open");
    for i in 0..30i64 {
        let _ = h
            .run(log.append(batch(i as u64, 1, 500, 1000 + i * 10), Wait::Durable))
            .expect("append");
    }
    let found = h
        .run(log.offset_for_timestamp(TimestampMs(1155)))
        .expect("lookup");
    assert_eq!(found, Some((Offset(16), TimestampMs(1160))));
    assert_eq!(
        h.run(log.offset_for_timestamp(TimestampMs(0)))
            .expect("lookup"),
        Some((Offset(0), TimestampMs(1000)))
    );
    assert_eq!(
        h.run(log.offset_for_timestamp(TimestampMs(5000)))
            .expect("lookup"),
        None
    );
}

#[test]
fn timestamp_lookup_after_a_restart_finds_a_max_set_after_the_last_index_entry() {
    // Batch 1 raises the max timestamp to 100 without an index entry of its own (entries are
    // 4 KiB apart). After a restart, entries of later batches must still record 100 as the
    // running max, or a lookup of 80 starts past batch 1 and misses it.
    let mut h = Harness::new();
    let config = LogConfig {
        index_interval_bytes: 4096,
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    let value = vec![b'x'; 1000];
    for ts in [10i64, 100] {
        let batch = shoal_storage::build_timed_batch(&[(&value, ts)]);
        let _ = h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    drop(log);
    h.kill_tasks();
    let log = h.open(config).expect("reopen");
    for _ in 0..12 {
        let batch = shoal_storage::build_timed_batch(&[(&value, 50)]);
        let _ = h.run(log.append(batch, Wait::Durable)).expect("append");
    }
    let found = h
        .run(log.offset_for_timestamp(TimestampMs(80)))
        .expect("lookup");
    assert_eq!(found, Some((Offset(1), TimestampMs(100))));
}

#[test]
fn a_small_buffer_pool_applies_backpressure_without_losing_order() {
    // Room for two 64 KiB chunks: 16 concurrent 40 KB appends must wait for each other.
    let mut h = Harness::with_budgets(128 * 1024, 1 << 20);
    let config = LogConfig {
        write_chunk_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let log = h.open(config).expect("open");
    let appends = (0..16u64).map(|i| log.append(batch(i, 1, 40_000, 0), Wait::Durable));
    let results = h.run(join_all(appends));
    let bases: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("append").base_offset.0)
        .collect();
    assert_eq!(
        bases,
        (0..16).collect::<Vec<_>>(),
        "placement keeps arrival order"
    );
    assert_eq!(h.pool.used_bytes(), 0, "every lease returned");
    let read = read_all(&mut h, &log, Offset(0));
    for (i, (_, bytes)) in read.iter().enumerate() {
        assert!(common::holds(bytes, i as u64), "batch {i} in order");
    }
}

#[test]
fn fallocation_policies_store_the_same_log() {
    for policy in [
        Fallocation::None,
        Fallocation::FallocateAhead,
        Fallocation::ExtendAhead,
    ] {
        let mut h = Harness::new();
        let config = LogConfig {
            fallocation: policy,
            segment_bytes_max: 50_000,
            ..LogConfig::default()
        };
        let log = h.open(config.clone()).expect("open");
        for i in 0..30u64 {
            let _ = h
                .run(log.append(batch(i, 1, 3000, 0), Wait::Durable))
                .expect("append");
        }
        h.kill_tasks();
        let log = h.open(config).expect("reopen");
        assert_eq!(log.offsets().log_end, Offset(30), "{policy:?}");
        assert_eq!(read_all(&mut h, &log, Offset(0)).len(), 30, "{policy:?}");
    }
}

#[test]
fn recycled_segment_files_are_reused_and_old_data_is_never_served() {
    let mut h = Harness::new();
    let config = LogConfig {
        segment_bytes_max: 8_000,
        recycled_segments_max: 2,
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    for i in 0..20u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1500, 0), Wait::Durable))
            .expect("append");
    }
    let _ = h.run(log.delete_records(Offset(15))).expect("delete");
    for i in 20..40u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1500, 0), Wait::Durable))
            .expect("append");
    }
    // Crash without close: the active segment may be a recycled file full of older batches.
    h.kill_tasks();
    let log = h.open(config).expect("reopen");
    assert_eq!(log.offsets().log_end, Offset(40));
    let read = read_all(&mut h, &log, Offset(15));
    assert_eq!(read.first().map(|(o, _)| *o), Some(Offset(15)));
    assert_eq!(read.len(), 25);
}

#[test]
fn a_quiet_partition_loses_expired_data_even_across_a_restart() {
    // A partition that stops receiving data never rolls its active segment by itself; retention
    // must still delete what expired, after a restart too (as Kafka's retention does: it rolls a
    // fresh segment and deletes the expired one).
    let mut h = Harness::new();
    let config = LogConfig {
        retention_ms: Some(3_600_000),
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    let now = h.clock.0.get();
    for i in 0..5u64 {
        let _ = h
            .run(log.append(batch(i, 2, 500, now), Wait::Durable))
            .expect("append");
    }
    h.run(log.enforce_retention()).expect("retention");
    assert_eq!(log.offsets().log_start, Offset(0), "nothing expired yet");
    drop(log);
    h.kill_tasks();
    let log = h.open(config).expect("reopen");
    h.clock.0.set(now + 2 * 3_600_000);
    h.run(log.enforce_retention()).expect("retention");
    let offsets = log.offsets();
    assert_eq!(offsets.log_start, Offset(10), "expired data is gone");
    assert_eq!(offsets.log_end, Offset(10), "offsets continue");
    assert_eq!(log.size_bytes(), 0);
    assert!(matches!(
        h.run(log.read(Offset(0), 1000)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let appended = h
        .run(log.append(batch(9, 1, 10, now + 2 * 3_600_000), Wait::Durable))
        .expect("append after retention");
    assert_eq!(appended.base_offset, Offset(10));
}

#[test]
fn a_segments_age_survives_a_restart() {
    // segment.ms is measured from the segment's first batch timestamp, so a restart in the
    // middle does not start the age again.
    let mut h = Harness::new();
    let config = LogConfig {
        segment_ms_max: Some(60_000),
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    let start = h.clock.0.get();
    let _ = h
        .run(log.append(batch(1, 1, 10, start), Wait::Durable))
        .expect("append");
    h.clock.0.set(start + 50_000);
    drop(log);
    h.kill_tasks();
    let log = h.open(config).expect("reopen");
    h.clock.0.set(start + 61_000);
    let _ = h
        .run(log.append(batch(2, 1, 10, start + 61_000), Wait::Durable))
        .expect("append");
    assert_eq!(
        log.segment_count(),
        2,
        "61 s after its first batch the segment rolled"
    );
}

#[test]
fn a_roll_right_after_a_confirm_write_was_queued_waits_for_it() {
    // `confirm_synced` (the broker's once-a-second call on quiet partitions) queues a write
    // for the flusher and returns. A roll (here a new term; by age or size as well) that runs
    // before the flusher took it must wait for that write instead of sealing a segment with
    // a write still to land in it (it tripped the seal's assertion, aborting the broker).
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    for i in 0..3u64 {
        let _ = h
            .run(log.append(batch(i, 1, 100, 0), Wait::Durable))
            .expect("append");
    }
    h.run(log.confirm_synced()).expect("confirm queued");
    h.run(log.set_term(shoal_model::Term(1)))
        .expect("roll into term 1");
    let _ = h
        .run(log.append(batch(3, 1, 100, 0), Wait::Durable))
        .expect("append in the new term");
    assert_eq!(log.segment_count(), 2);
    assert_eq!(read_all(&mut h, &log, Offset(0)).len(), 4);
    // And the sealed segment reads back whole after a restart.
    drop(log);
    h.kill_tasks();
    let log = h.open(LogConfig::default()).expect("reopen");
    assert_eq!(read_all(&mut h, &log, Offset(0)).len(), 4);
}
