//! Real-process crash test: the crash writer appends with the glommio DMA writer and is killed
//! with SIGKILL at random moments, several times over the same log. After each kill the log is
//! recovered in this process (on a glommio executor) and every acknowledged append is checked:
//! present at its offset with its contents, offsets dense from the start, nothing after a hole.
//! A kill -9 loses nothing the device accepted, so "written" acks (relaxed mode) must survive
//! as well as "synced" ones.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use shoal_model::Offset;
use shoal_storage::{validate_batch, Log};
use shoal_storage_crash_test::{config, context, executor_options, log_dir, needle, Ack};

fn run_cycles(relaxed: bool, cycles: u64, seed: u64) {
    let root = tempfile::tempdir_in("/var/tmp").expect("scratch dir on a real file system");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acks: BTreeMap<u64, Ack> = BTreeMap::new();
    for cycle in 0..cycles {
        let producers = rng.gen_range(1..9u64);
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(root.path())
            .arg(cycle.to_string())
            .arg(producers.to_string())
            .arg(if relaxed { "relaxed" } else { "fsync" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crash-writer");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| Ack::parse(&l))
                .collect::<Vec<_>>()
        });
        let run_ms = rng.gen_range(50..700);
        std::thread::sleep(Duration::from_millis(run_ms));
        // SIGKILL: no destructor, no flush, no goodbye.
        child.kill().expect("kill -9");
        let status = child.wait().expect("reap");
        assert!(
            !status.success(),
            "the writer must have been killed, not exited"
        );
        let cycle_acks = reader.join().expect("reader thread");
        assert!(
            !cycle_acks.is_empty() || run_ms < 100,
            "cycle {cycle}: writer acknowledged nothing in {run_ms} ms"
        );
        for ack in cycle_acks {
            let _ = acks.insert(ack.tag, ack);
        }
        verify(root.path(), relaxed, &acks, cycle);
    }
    assert!(
        acks.len() > 50,
        "too few acknowledged appends ({}) to mean anything",
        acks.len()
    );
}

fn verify(root: &std::path::Path, relaxed: bool, acks: &BTreeMap<u64, Ack>, cycle: u64) {
    let dir = log_dir(root);
    let checked = acks.len();
    let acks = acks.clone();
    let handle = executor_options("crash-verify")
        .spawn(move || async move {
            let started = Instant::now();
            let log = Log::open(context(), dir, config(relaxed))
                .await
                .expect("recovery");
            let recovery = started.elapsed();
            let offsets = log.offsets();
            let mut by_offset = BTreeMap::new();
            let mut next = offsets.log_start;
            loop {
                let page = log.read(next, 1 << 20).await.expect("read");
                if page.batches.is_empty() {
                    break;
                }
                for bytes in page.batches {
                    let header = validate_batch(&bytes).expect("valid batch");
                    assert_eq!(
                        header.base_offset, next,
                        "cycle {cycle}: hole or overlap at {next}"
                    );
                    next = header.next_offset();
                    let _ = by_offset.insert(header.base_offset.0, bytes);
                }
            }
            assert_eq!(
                next, offsets.log_end,
                "cycle {cycle}: everything recovered is readable"
            );
            for ack in acks.values() {
                let bytes = by_offset
                    .get(&ack.base_offset)
                    .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged {ack:?} lost"));
                let needle = needle(ack.tag);
                assert!(
                    bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "cycle {cycle}: offset {} holds another batch than {ack:?}",
                    ack.base_offset
                );
            }
            assert!(
                offsets.log_end
                    >= Offset(acks.values().map(|a| a.base_offset + 2).max().unwrap_or(0))
            );
            (offsets.log_end, recovery)
        })
        .expect("executor");
    let (end, recovery) = handle.join().expect("verify thread");
    eprintln!("cycle {cycle}: recovered {end} offsets in {recovery:?}, {checked} acks checked");
}

#[test]
fn kill9_during_fsync_appends_loses_no_acknowledged_append() {
    run_cycles(false, 6, 1);
}

#[test]
fn kill9_during_relaxed_appends_loses_no_written_append() {
    run_cycles(true, 6, 2);
}
