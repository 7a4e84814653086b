//! A plain (not replicated) log's files, byte for byte. A deterministic workload (appends of
//! plain and idempotent batches, rolls, a new term, a suffix truncation, DeleteRecords,
//! checkpoints, a clean close) leaves a partition directory whose every file name, size and
//! CRC32C is pinned below. The table was taken from the code before the replicated mode
//! existed, so a change to a plain log's names or formats (segment names, index files, sync
//! trailers, intents, snapshots) fails here. The directory then opens and reads the same.

mod common;

use common::{batch, dir, read_all, Harness};
use futures::executor::LocalPool;
use shoal_io::{Disk, DmaFile, OpenMode};
use shoal_model::{Offset, Term};
use shoal_sim_disk::SimDisk;
use shoal_storage::{build_idempotent_batch, Fallocation, LogConfig, Wait};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 6_000,
        index_interval_bytes: 1_000,
        fallocation: Fallocation::None,
        recycled_segments_max: 0,
        retention_ms: None,
        segment_ms_max: None,
        ..LogConfig::default()
    }
}

/// (name, size, CRC32C) of every file under `dir` (one level of subdirectories), sorted.
fn files(disk: &SimDisk) -> Vec<(String, u64, u32)> {
    let mut exec = LocalPool::new();
    exec.run_until(async {
        let mut out = Vec::new();
        let mut dirs = vec![(dir(), String::new())];
        while let Some((path, prefix)) = dirs.pop() {
            for name in disk.list(&path).await.expect("list") {
                let full = path.join(&name);
                match disk.open(&full, OpenMode::Existing).await {
                    Ok(file) => {
                        let size = file.size_bytes().await.expect("size");
                        let bytes = file.read_at(0, size as usize).await.expect("read");
                        out.push((format!("{prefix}{name}"), size, crc32c::crc32c(&bytes)));
                    }
                    Err(_) => dirs.push((full, format!("{prefix}{name}/"))),
                }
            }
        }
        out.sort();
        out
    })
}

#[test]
fn a_plain_log_writes_the_same_files_as_before_the_replicated_mode() {
    let mut h = Harness::new();
    let log = h.open(config()).expect("open");
    for tag in 0..12u64 {
        let bytes = batch(tag, 1 + tag as usize % 3, 300, 1_000 + tag as i64);
        let _ = h.run(log.append(bytes, Wait::Durable)).expect("append");
    }
    h.run(log.set_term(Term(3))).expect("term");
    for sequence in 0..4 {
        let values: [&[u8]; 2] = [b"idempotent-a", b"idempotent-b"];
        let bytes = build_idempotent_batch(&values, 77, 0, sequence * 2);
        let _ = h.run(log.append(bytes, Wait::Durable)).expect("append");
    }
    h.run(log.checkpoint()).expect("checkpoint");
    let cut = log.offsets().log_end;
    for tag in 20..24u64 {
        let _ = h
            .run(log.append(batch(tag, 2, 200, 5_000), Wait::Durable))
            .expect("append");
    }
    let _ = h.run(log.truncate_suffix(cut)).expect("truncate");
    for tag in 30..34u64 {
        let _ = h
            .run(log.append(batch(tag, 1, 700, 6_000), Wait::Durable))
            .expect("append");
    }
    let _ = h
        .run(log.delete_records(Offset(16)))
        .expect("delete records");
    h.run(log.confirm_synced()).expect("confirm");
    h.exec.run_until_stalled();
    let read_before = read_all(&mut h, &log, log.offsets().log_start);
    h.run(log.close()).expect("close");
    h.kill_tasks();

    let found = files(&h.disk);
    for (name, size, crc) in &found {
        println!("(\"{name}\", {size}, {crc:#010x}),");
    }
    let expected: &[(&str, u64, u32)] = &EXPECTED;
    let expected: Vec<(String, u64, u32)> = expected
        .iter()
        .map(|&(name, size, crc)| (name.to_string(), size, crc))
        .collect();
    assert_eq!(found, expected, "a plain log's files changed");

    let log = h.open(config()).expect("reopen");
    let read_after = read_all(&mut h, &log, log.offsets().log_start);
    assert_eq!(read_after, read_before, "the directory reads the same");
    // Recovery cuts the active segment back to its data (its sync trailer goes) and changes
    // nothing else.
    let mut reopened = expected;
    reopened[4] = ("00000000000000000024-3.log".to_string(), 3476, 0x750b_bad3);
    assert_eq!(
        files(&h.disk),
        reopened,
        "opening changed more than the tail"
    );
}

const EXPECTED: [(&str, u64, u32); 8] = [
    ("00000000000000000015-0.index", 4096, 0x95eb9ce4),
    ("00000000000000000015-0.log", 3025, 0x249fa5b0),
    ("00000000000000000015-0.timeindex", 4096, 0x86d8b0bd),
    ("00000000000000000024-3.index", 4096, 0x58f3cf73),
    ("00000000000000000024-3.log", 4096, 0xaefdfa03),
    ("00000000000000000024-3.timeindex", 4096, 0x612680f2),
    ("log_start_offset", 4096, 0xf629d948),
    ("producer_state.snapshot", 4096, 0xb7718787),
];
