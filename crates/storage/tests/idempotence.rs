//! Idempotent producers at the log: retries are answered with their original offsets and not
//! written twice, gaps and fenced epochs are refused, and the state survives restarts (rebuilt
//! from the snapshot and the batches after it, or from the batches alone).

mod common;

use common::{read_all, Harness};
use shoal_model::Offset;
use shoal_storage::{build_idempotent_batch, Error, LogConfig, Wait};

fn batch(id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("p{id}e{epoch}s{}", sequence + i as i32).into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build_idempotent_batch(&refs, id, epoch, sequence)
}

#[test]
fn retries_are_deduplicated_and_gaps_refused() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let first = h
        .run(log.append(batch(1, 0, 0, 3), Wait::Durable))
        .expect("append");
    let second = h
        .run(log.append(batch(1, 0, 3, 2), Wait::Durable))
        .expect("append");
    assert_eq!(
        (first.base_offset, second.base_offset),
        (Offset(0), Offset(3))
    );
    let retry = h
        .run(log.append(batch(1, 0, 0, 3), Wait::Durable))
        .expect("retry");
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (Offset(0), Offset(2)),
        "original offsets"
    );
    assert_eq!(
        log.offsets().log_end,
        Offset(5),
        "the retry was not written again"
    );
    let gap = h.run(log.append(batch(1, 0, 9, 1), Wait::Durable));
    assert!(
        matches!(
            gap,
            Err(Error::OutOfOrderSequence {
                expected: 5,
                received: 9
            })
        ),
        "{gap:?}"
    );
    let unknown = h.run(log.append(batch(2, 0, 4, 1), Wait::Durable));
    assert!(
        matches!(unknown, Err(Error::UnknownProducerId)),
        "{unknown:?}"
    );
    // A new epoch fences the old one and restarts sequences at 0.
    let _ = h
        .run(log.append(batch(1, 1, 0, 1), Wait::Durable))
        .expect("new epoch");
    let fenced = h.run(log.append(batch(1, 0, 5, 1), Wait::Durable));
    assert!(
        matches!(
            fenced,
            Err(Error::InvalidProducerEpoch {
                current: 1,
                received: 0
            })
        ),
        "{fenced:?}"
    );
    let producers = log.producers();
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (
            producers[0].producer_id,
            producers[0].epoch,
            producers[0].last_sequence
        ),
        (1, 1, 0)
    );
}

#[test]
fn producer_state_survives_crashes_with_and_without_a_snapshot() {
    for with_snapshot in [false, true] {
        let mut h = Harness::new();
        let log = h.open(LogConfig::default()).expect("open");
        for sequence in 0..10 {
            let _ = h
                .run(log.append(batch(7, 2, sequence, 1), Wait::Durable))
                .expect("append");
        }
        if with_snapshot {
            h.run(log.checkpoint())
                .expect("checkpoint writes the snapshot");
            let _ = h
                .run(log.append(batch(7, 2, 10, 1), Wait::Durable))
                .expect("after snapshot");
        }
        drop(log);
        h.kill_tasks();
        let log = h.open(LogConfig::default()).expect("reopen");
        let end = log.offsets().log_end;
        let last = if with_snapshot { 10 } else { 9 };
        // The last batch is still recognised as a duplicate after the restart.
        let retry = h
            .run(log.append(batch(7, 2, last, 1), Wait::Durable))
            .expect("retry");
        assert_eq!(
            retry.base_offset,
            Offset(i64::from(last)),
            "with_snapshot={with_snapshot}"
        );
        assert_eq!(log.offsets().log_end, end);
        let next = h
            .run(log.append(batch(7, 2, last + 1, 1), Wait::Durable))
            .expect("next");
        assert_eq!(next.base_offset, end);
        assert_eq!(read_all(&mut h, &log, Offset(0)).len() as i64, end.0 + 1);
    }
}
