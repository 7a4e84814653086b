//! Failed writes and syncs take the partition offline; corruption of synced data is reported,
//! never skipped; a full disk is recoverable once space is freed.

mod common;

use common::{batch, dir, read_all, Harness};
use futures::future::join_all;
use shoal_model::Offset;
use shoal_sim_disk::CutMode;
use shoal_storage::{Error, LogConfig, OfflineKind, Wait};

const EIO: i32 = 5;

#[test]
fn a_failed_write_takes_the_log_offline_and_fails_every_waiter() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let _ = h
        .run(log.append(batch(0, 1, 100, 0), Wait::Durable))
        .expect("append");
    h.disk.fail_write(0, EIO);
    let appends = (1..5u64).map(|i| log.append(batch(i, 1, 100, 0), Wait::Durable));
    for result in h.run(join_all(appends)) {
        let Err(Error::Offline(reason)) = result else {
            panic!("expected offline, got {result:?}")
        };
        assert_eq!(reason.kind, OfflineKind::Io);
        assert!(reason.detail.contains("write"), "{reason}");
    }
    assert!(log.offline_reason().is_some());
    assert!(matches!(
        h.run(log.append(batch(9, 1, 10, 0), Wait::Durable)),
        Err(Error::Offline(_))
    ));
    assert!(matches!(
        h.run(log.read(Offset(0), 100)),
        Err(Error::Offline(_))
    ));
    // Nothing acknowledged was lost: reopening (recovery) serves the synced batch.
    h.kill_tasks();
    let log = h.open(LogConfig::default()).expect("reopen");
    assert_eq!(
        read_all(&mut h, &log, Offset(0)).len(),
        log.offsets().log_end.0 as usize
    );
    assert!(log.offsets().log_end >= Offset(1));
}

#[test]
fn a_failed_fsync_is_not_retried_and_nothing_is_acknowledged() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    h.disk.fail_sync(0, EIO);
    let result = h.run(log.append(batch(0, 1, 100, 0), Wait::Durable));
    let Err(Error::Offline(reason)) = result else {
        panic!("expected offline, got {result:?}")
    };
    assert!(reason.detail.contains("fdatasync"), "{reason}");
    let syncs = h.disk.stats().syncs;
    h.run(async { futures::future::ready(()).await });
    assert_eq!(h.disk.stats().syncs, syncs, "no retry after a failed fsync");
}

#[test]
fn disk_full_is_reported_and_recoverable_once_space_is_freed() {
    let mut h = Harness::new();
    let config = LogConfig::default();
    let log = h.open(config.clone()).expect("open");
    let mut acked = 0;
    h.disk.set_capacity_bytes(Some(200_000));
    loop {
        match h.run(log.append(batch(acked, 1, 5000, 0), Wait::Durable)) {
            Ok(_) => acked += 1,
            Err(Error::Offline(reason)) => {
                assert_eq!(reason.kind, OfflineKind::DiskFull, "{reason}");
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(acked < 1000, "capacity limit never hit");
    }
    h.disk.set_capacity_bytes(None);
    h.kill_tasks();
    let log = h.open(config).expect("reopen after freeing space");
    assert_eq!(
        log.offsets().log_end,
        Offset(acked as i64),
        "every acknowledged append kept"
    );
    let _ = h
        .run(log.append(batch(999, 1, 10, 0), Wait::Durable))
        .expect("writable again");
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_not_skipped() {
    let mut h = Harness::new();
    let config = LogConfig {
        segment_bytes_max: 10_000,
        ..LogConfig::default()
    };
    let log = h.open(config.clone()).expect("open");
    for i in 0..20u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1000, 0), Wait::Durable))
            .expect("append");
    }
    h.run(log.close()).expect("close");
    h.kill_tasks();
    let first = dir().join("00000000000000000000-0.log");
    h.disk.corrupt(&first, 3000).expect("corrupt");
    // The sealed segment's index is valid, so open succeeds; the damage surfaces on read.
    let log = h.open(config.clone()).expect("open");
    let result = h.run(log.read(Offset(0), 1 << 20));
    let Err(Error::Offline(reason)) = result else {
        panic!("expected offline, got {result:?}")
    };
    assert_eq!(reason.kind, OfflineKind::Corruption);
    // Without its index, recovery scans the sealed segment and refuses to open.
    h.kill_tasks();
    let index = dir().join("00000000000000000000-0.index");
    let disk = h.disk.clone();
    h.run(shoal_io::Disk::remove(&disk, &index))
        .expect("remove index");
    let Err(Error::Offline(reason)) = h.open(config) else {
        panic!("opened a corrupt log")
    };
    assert_eq!(reason.kind, OfflineKind::Corruption);
    assert!(reason.detail.contains("synced"), "{reason}");
}

#[test]
fn corruption_below_the_checkpoint_in_the_active_segment_is_reported() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    for i in 0..10u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1000, 0), Wait::Durable))
            .expect("append");
    }
    h.run(log.checkpoint()).expect("checkpoint");
    for i in 10..12u64 {
        let _ = h
            .run(log.append(batch(i, 1, 1000, 0), Wait::Durable))
            .expect("append");
    }
    h.kill_tasks();
    let active = dir().join("00000000000000000000-0.log");
    // Damage the last checkpointed batch (it lies before the checkpoint's synced position
    // but after the last index entry, so the recovery scan reaches it).
    h.disk.corrupt(&active, 9 * 1078 + 100).expect("corrupt");
    let Err(Error::Offline(reason)) = h.open(LogConfig::default()) else {
        panic!("opened a corrupt log")
    };
    assert_eq!(reason.kind, OfflineKind::Corruption);
}

#[test]
fn a_torn_tail_is_truncated_and_later_appends_replace_it() {
    for seed in 0..50 {
        let mut h = Harness::new();
        let log = h.open(LogConfig::default()).expect("open");
        let _ = h
            .run(log.append(batch(0, 1, 3000, 0), Wait::Durable))
            .expect("append");
        // Acks=0 appends: written maybe, never synced.
        for i in 1..4u64 {
            let _ = h
                .run(log.append(batch(i, 1, 3000, 0), Wait::Buffered))
                .expect("append");
        }
        h.kill_tasks();
        h.disk.power_cut(seed, CutMode::Adversarial);
        let log = h.open(LogConfig::default()).expect("reopen");
        let end = log.offsets().log_end;
        assert!(
            end >= Offset(1) && end <= Offset(4),
            "seed {seed}: end {end}"
        );
        let _ = h
            .run(log.append(batch(7, 1, 3000, 0), Wait::Durable))
            .expect("append");
        h.kill_tasks();
        let log = h.open(LogConfig::default()).expect("reopen");
        assert_eq!(
            read_all(&mut h, &log, Offset(0)).len() as i64,
            end.0 + 1,
            "seed {seed}"
        );
    }
}

/// Appends `count` one-record batches of 1000-byte values, each acknowledged as synced.
fn synced_batches(h: &mut Harness, log: &shoal_storage::Log<shoal_sim_disk::SimDisk>, count: u64) {
    for i in 0..count {
        let appended = h
            .run(log.append(batch(i, 1, 1000, 0), Wait::Durable))
            .expect("append");
        assert_eq!(appended.guarantee, shoal_storage::Guarantee::Synced);
    }
}

#[test]
fn corruption_of_synced_data_after_the_last_checkpoint_is_reported() {
    // No index checkpoint at all: what recovery knows of the synced extent comes from the sync
    // trailers the writes carry. Batch 5 of 12 was acknowledged as synced and a later write
    // followed it, so damage to it is corruption, not a torn tail to truncate.
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    synced_batches(&mut h, &log, 12);
    drop(log);
    h.kill_tasks();
    let active = dir().join("00000000000000000000-0.log");
    h.disk.corrupt(&active, 5 * 1078 + 300).expect("corrupt");
    let Err(Error::Offline(reason)) = h.open(LogConfig::default()) else {
        panic!("recovery truncated acknowledged data instead of reporting the corruption")
    };
    assert_eq!(reason.kind, OfflineKind::Corruption);
    assert!(reason.detail.contains("synced"), "{}", reason.detail);
}

#[test]
fn a_confirmed_last_write_is_protected_too() {
    // The last write's own data is covered by the trailer of the write after it; on a quiet
    // partition that is the confirm write, which the broker issues every second.
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    synced_batches(&mut h, &log, 3);
    h.run(log.confirm_synced()).expect("confirm");
    h.exec.run_until_stalled();
    h.run(log.confirm_synced())
        .expect("a second confirm finds nothing to do");
    drop(log);
    h.kill_tasks();
    let active = dir().join("00000000000000000000-0.log");
    h.disk
        .corrupt(&active, 2 * 1078 + 300)
        .expect("corrupt the last batch");
    let Err(Error::Offline(reason)) = h.open(LogConfig::default()) else {
        panic!("recovery truncated the confirmed last write")
    };
    assert_eq!(reason.kind, OfflineKind::Corruption);
}

#[test]
fn a_torn_last_write_is_still_truncated_with_trailers() {
    // The trailer claims only what was synced before its write was issued, so a write that
    // tore (never acknowledged) is a tail to truncate, not corruption.
    for seed in 0..100 {
        let mut h = Harness::new();
        let log = h.open(LogConfig::default()).expect("open");
        synced_batches(&mut h, &log, 4);
        for i in 4..8u64 {
            let _ = h
                .run(log.append(batch(i, 1, 3000, 0), Wait::Buffered))
                .expect("append");
        }
        drop(log);
        h.kill_tasks();
        h.disk.power_cut(seed, CutMode::TearLast);
        let log = h
            .open(LogConfig::default())
            .unwrap_or_else(|e| panic!("seed {seed}: a torn tail reported as {e}"));
        assert!(
            log.offsets().log_end >= Offset(4),
            "seed {seed}: synced batches lost"
        );
    }
}

#[test]
fn relaxed_data_deleted_past_the_synced_end_and_lost_at_a_power_cut_reopens_empty() {
    // Relaxed mode lets DeleteRecords move the log start up to the written end. A power cut
    // may then lose the unsynced batches below that start: allowed by the relaxed contract,
    // and those batches were deleted anyway. The log comes back empty at the start, not
    // offline as if synced data were damaged.
    let config = LogConfig {
        durability: shoal_storage::Durability::Relaxed {
            flush_messages: u64::MAX,
            flush_ms: 1000,
        },
        ..LogConfig::default()
    };
    let mut emptied = 0;
    for seed in 0..40 {
        let mut h = Harness::new();
        let log = h.open(config.clone()).expect("open");
        for i in 0..10u64 {
            let _ = h
                .run(log.append(batch(i, 1, 1000, 0), Wait::Durable))
                .expect("append");
        }
        let start = h
            .run(log.delete_records(Offset(8)))
            .expect("delete records");
        assert_eq!(start, Offset(8));
        drop(log);
        h.kill_tasks();
        h.disk.power_cut(seed, CutMode::Adversarial);
        let log = h
            .open(config.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let offsets = log.offsets();
        assert_eq!(offsets.log_start, Offset(8), "seed {seed}");
        assert!(offsets.log_end >= Offset(8), "seed {seed}: {offsets:?}");
        emptied += usize::from(offsets.log_end == Offset(8));
        let appended = h
            .run(log.append(batch(10, 1, 100, 0), Wait::Durable))
            .expect("append");
        assert_eq!(appended.base_offset, offsets.log_end, "seed {seed}");
    }
    assert!(emptied > 0, "no seed lost the data below the start");
}

#[test]
fn a_batch_larger_than_the_buffer_pool_is_refused_not_an_abort() {
    // 256 KiB of DMA write budget; the topic allows 1 MiB batches. The batch cannot fit in any
    // write chunk, so it must be refused as too large instead of tripping an invariant.
    let mut h = Harness::with_budgets(256 * 1024, 64 * 1024);
    let log = h.open(LogConfig::default()).expect("open");
    let refused = h.run(log.append(batch(1, 1, 300 * 1024, 0), Wait::Durable));
    let Err(Error::BatchTooLarge { limit_bytes, .. }) = refused else {
        panic!("expected BatchTooLarge, got {refused:?}")
    };
    assert!(
        limit_bytes < 256 * 1024,
        "the limit names what fits: {limit_bytes}"
    );
    // The log is unharmed and takes what fits.
    let appended = h
        .run(log.append(batch(2, 1, 100 * 1024, 0), Wait::Durable))
        .expect("append");
    assert_eq!(appended.base_offset, Offset(0));
}
