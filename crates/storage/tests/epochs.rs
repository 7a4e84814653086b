//! Leader epochs (terms): kept in the log's state across config changes and restarts, a new
//! term starts its own segment, and the epoch history answers as Kafka's epoch cache does.

mod common;

use common::{batch, read_all, segment_files, Harness};
use shoal_model::{Offset, Term};
use shoal_storage::{validate_batch, Error, LogConfig, Wait};

fn terms_of(h: &mut Harness, log: &shoal_storage::Log<shoal_sim_disk::SimDisk>) -> Vec<i32> {
    read_all(h, log, Offset(0))
        .iter()
        .map(|(_, bytes)| validate_batch(bytes).expect("valid").term.0)
        .collect()
}

#[test]
fn a_config_change_keeps_the_term() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    h.run(log.set_term(Term(3))).expect("new term");
    let _ = h
        .run(log.append(batch(1, 2, 10, 0), Wait::Durable))
        .expect("append");
    // AlterConfigs rebuilds the config from topic configs: the term must not go back to 0.
    h.run(log.reconfigure(LogConfig::default()))
        .expect("reconfigure");
    log.set_config(LogConfig::default());
    let _ = h
        .run(log.append(batch(2, 2, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(log.term(), Term(3));
    assert_eq!(terms_of(&mut h, &log), vec![3, 3]);
}

#[test]
fn a_new_term_starts_a_segment_and_survives_restart() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    let _ = h
        .run(log.append(batch(1, 3, 10, 0), Wait::Durable))
        .expect("append");
    h.run(log.set_term(Term(2))).expect("term 2");
    let _ = h
        .run(log.append(batch(2, 2, 10, 0), Wait::Durable))
        .expect("append");
    h.run(log.set_term(Term(5))).expect("term 5");
    let _ = h
        .run(log.append(batch(3, 1, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(
        segment_files(&h.disk, &common::dir()),
        vec![
            "00000000000000000000-0.log",
            "00000000000000000003-2.log",
            "00000000000000000005-5.log"
        ]
    );
    assert_eq!(
        log.epochs(),
        vec![
            (Term(0), Offset(0)),
            (Term(2), Offset(3)),
            (Term(5), Offset(5))
        ]
    );
    assert_eq!(terms_of(&mut h, &log), vec![0, 2, 5]);
    // A crash (no clean close): recovery finds the term in the active segment's name.
    drop(log);
    h.kill_tasks();
    let log = h.open(LogConfig::default()).expect("reopen");
    assert_eq!(log.term(), Term(5));
    assert_eq!(log.epoch_of(Offset(4)), Some(Term(2)));
    assert_eq!(log.epoch_of(Offset(6)), None, "past the log end");
    let appended = h
        .run(log.append(batch(4, 1, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(appended.base_offset, Offset(6));
    assert_eq!(terms_of(&mut h, &log), vec![0, 2, 5, 5]);
}

#[test]
fn a_new_term_on_an_empty_segment_renames_it() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    h.run(log.checkpoint())
        .expect("checkpoint writes index files of the empty segment");
    h.run(log.set_term(Term(4))).expect("term 4");
    assert_eq!(
        segment_files(&h.disk, &common::dir()),
        vec!["00000000000000000000-4.log"]
    );
    drop(log);
    h.kill_tasks();
    let log = h.open(LogConfig::default()).expect("reopen");
    assert_eq!(log.term(), Term(4));
    let _ = h
        .run(log.append(batch(1, 1, 10, 0), Wait::Durable))
        .expect("append");
    assert_eq!(terms_of(&mut h, &log), vec![4]);
}

#[test]
fn terms_only_grow() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    h.run(log.set_term(Term(3))).expect("term 3");
    h.run(log.set_term(Term(3)))
        .expect("the same term is a no-op");
    let stale = h.run(log.set_term(Term(2)));
    assert!(matches!(
        stale,
        Err(Error::StaleTerm {
            current: Term(3),
            requested: Term(2)
        })
    ));
}

#[test]
fn epoch_end_offsets_follow_kafkas_epoch_cache() {
    let mut h = Harness::new();
    let log = h.open(LogConfig::default()).expect("open");
    h.run(log.set_term(Term(2))).expect("term 2");
    let _ = h
        .run(log.append(batch(1, 3, 10, 0), Wait::Durable))
        .expect("append");
    h.run(log.set_term(Term(4))).expect("term 4");
    let _ = h
        .run(log.append(batch(2, 2, 10, 0), Wait::Durable))
        .expect("append");
    h.run(log.set_term(Term(6))).expect("term 6");
    let _ = h
        .run(log.append(batch(3, 1, 10, 0), Wait::Durable))
        .expect("append");
    // History: epoch 2 from 0, 4 from 3, 6 from 5; log end 6.
    assert_eq!(
        log.epoch_end_offset(Term(6)),
        (Term(6), Offset(6)),
        "latest: log end"
    );
    assert_eq!(log.epoch_end_offset(Term(4)), (Term(4), Offset(5)));
    assert_eq!(log.epoch_end_offset(Term(2)), (Term(2), Offset(3)));
    // Between epochs: the largest epoch below, ending where the next one starts.
    assert_eq!(log.epoch_end_offset(Term(5)), (Term(4), Offset(5)));
    // Older than the history: the requested epoch, ending where the oldest known one starts.
    assert_eq!(log.epoch_end_offset(Term(1)), (Term(1), Offset(0)));
    // Newer than the latest, or undefined: no answer.
    assert_eq!(log.epoch_end_offset(Term(7)), (Term(-1), Offset(-1)));
    assert_eq!(log.epoch_end_offset(Term(-1)), (Term(-1), Offset(-1)));
}
