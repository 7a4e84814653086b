//! Three Raft replicas under hostile faults, from many seeds: agreement, no acknowledged
//! proposal lost, convergence (see `shoal_sim::raft_cluster`); and three voters with two
//! learners, as the controller group runs with brokers that are not seed nodes.
//!
//! `SHOAL_SIM_SEEDS=n` runs more seeds; `SHOAL_SIM_SEED=s` replays one.

mod common;

use common::seeds;
use shoal_sim::{run, FaultOptions, StateMachine};

/// A log of applied (index, payload) pairs, folded into a digest; the snapshot is the digest
/// and the count, so restoring from a snapshot is checked by the digests agreeing later.
#[derive(Default)]
struct Digest {
    applied: u64,
    digest: u64,
}

impl StateMachine for Digest {
    fn apply(&mut self, index: u64, data: &[u8]) {
        self.applied += 1;
        let mut h = self.digest ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.digest = h;
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = self.applied.to_be_bytes().to_vec();
        out.extend_from_slice(&self.digest.to_be_bytes());
        out
    }

    fn restore(bytes: &[u8]) -> Digest {
        assert_eq!(bytes.len(), 16, "snapshot of this machine is 16 bytes");
        let mut a = [0u8; 8];
        let mut d = [0u8; 8];
        a.copy_from_slice(&bytes[..8]);
        d.copy_from_slice(&bytes[8..]);
        Digest {
            applied: u64::from_be_bytes(a),
            digest: u64::from_be_bytes(d),
        }
    }

    fn digest(&self) -> u64 {
        self.digest ^ self.applied
    }
}

fn payload(rng: &mut rand::rngs::StdRng, _: &Digest) -> Option<Vec<u8>> {
    use rand::Rng;
    let len = rng.gen_range(0..600);
    Some((0..len).map(|_| rng.gen()).collect())
}

/// Runs `options` over the default seeds (`seeds(count)`), panicking with a replay command
/// (`--test raft_cluster <test>`) at the first violation; `each` sees every outcome. Returns
/// the summed outcome and whether many seeds ran (a replay of one seed need not show every
/// kind of fault).
fn over_seeds(
    test: &str,
    count: u64,
    options: FaultOptions,
    mut each: impl FnMut(&shoal_sim::Outcome),
) -> (shoal_sim::Outcome, bool) {
    let mut total = shoal_sim::Outcome::default();
    let seeds = seeds(count);
    let many = seeds.len() >= 10;
    for seed in seeds {
        match run::<Digest>(seed, options, payload) {
            Ok(outcome) => {
                each(&outcome);
                total.add(&outcome);
            }
            Err(violation) => panic!(
                "seed {seed}: {violation:?}\nreplay: SHOAL_SIM_SEED={seed} cargo test -p shoal-sim \
                 --release --test raft_cluster {test}"
            ),
        }
    }
    (total, many)
}

#[test]
fn hostile_faults_lose_nothing_acknowledged() {
    let (total, _) = over_seeds("hostile_faults", 60, FaultOptions::hostile(), |_| {});
    println!("{total:?}");
    // The faults must actually have happened, or the run proves nothing.
    assert!(total.acknowledged > 0 && total.crashes > 0 && total.crashes_mid_advance > 0);
    assert!(total.partitions > 0 && total.leader_changes > 0 && total.compactions > 0);
    assert!(
        total.power_losses_all > 0,
        "no site-wide power loss happened"
    );
    assert!(
        total.snapshots_installed > 0,
        "no follower caught up from a snapshot"
    );
}

#[test]
fn five_replicas_with_process_crashes() {
    let options = FaultOptions {
        replicas: 5,
        power_cut: false,
        ..FaultOptions::hostile()
    };
    for seed in seeds(15) {
        if let Err(violation) = run::<Digest>(seed, options, payload) {
            panic!("seed {seed}: {violation:?}");
        }
    }
}

/// The checks can fail: with drives that acknowledge syncs they do not do, site-wide power
/// losses erase acknowledged proposals (or make replicas disagree), and the simulation says so.
#[test]
fn lying_disks_are_caught() {
    let options = FaultOptions {
        disks_ignore_syncs: true,
        power_loss_all_per_mille: 3,
        ..FaultOptions::hostile()
    };
    let mut caught = 0;
    let seeds = 0..40u64;
    for seed in seeds.clone() {
        let result = std::panic::catch_unwind(|| run::<Digest>(seed, options, payload));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(shoal_sim::Violation::AcknowledgedLost { .. }))
            | Ok(Err(shoal_sim::Violation::Disagreement { .. })) => caught += 1,
            // Recovery refusing a log whose earlier writes are damaged while later ones are
            // intact: the loss is reported at open, not papered over.
            Ok(Err(shoal_sim::Violation::ReplicaFailed { error, .. }))
                if error.contains("corrupt") =>
            {
                caught += 1
            }
            // raft-rs's own assertions (e.g. a commit index beyond the log) count too: the
            // loss was detected, not silently accepted.
            Err(_) => caught += 1,
            Ok(Err(_)) => {}
        }
    }
    assert!(
        caught >= 30,
        "only {caught} of {} seeds caught a lying disk",
        seeds.count()
    );
}

/// Three voters and two learners that open at random times during the faults and take all of
/// them (crashes mid-write, power cuts, partitions): every learner is added, never leads or
/// votes, applies every acknowledged proposal, and ends with the voters' state.
#[test]
fn learners_under_hostile_faults_apply_everything() {
    let mut late_starts = 0;
    let options = FaultOptions::hostile_with_learners();
    let (total, many) = over_seeds("learners_under_hostile_faults", 60, options, |outcome| {
        if outcome.learner_last_start > 600 {
            late_starts += 1;
        }
    });
    println!("{total:?}, {late_starts} runs with a learner opened after tick 600");
    assert!(total.acknowledged > 0 && total.conf_changes_applied > 0);
    if many {
        assert!(total.learner_crashes > 0 && total.crashes_mid_advance > 0);
        assert!(total.partitions > 0 && total.power_losses_all > 0);
        assert!(
            total.learner_snapshots_installed > 0,
            "no learner caught up from a snapshot"
        );
        assert!(late_starts > 0, "no learner opened late");
    }
}

/// Learners that open at once and then fall behind (crashes, partitions) catch up through
/// the log itself: nothing compacts but the configuration changes.
#[test]
fn learners_catch_up_through_a_long_log() {
    let options = FaultOptions {
        compact_every_entries: 1_000_000,
        learners_start_by: 0,
        ..FaultOptions::hostile_with_learners()
    };
    let (total, many) = over_seeds("learners_catch_up", 30, options, |_| {});
    println!("{total:?}");
    if many {
        assert!(total.learner_crashes > 0);
        assert!(
            total.learner_catch_up_max >= 50,
            "no learner caught up through a long stretch of log"
        );
    }
}

/// Crashes in the middle of compactions too (every configuration change compacts), so some
/// land between the renames of the new snapshot and the new log. The reopened replica must
/// keep the configuration its snapshot names: the old log's conf-state record predates the
/// learners the snapshot covers, and a replica that takes it has forgotten a learner for
/// good (MembershipWrong: applied past a learner's addition, its `learners()` lack it; 110 of
/// 1000 seeds before `Replica::open` took the snapshot's configuration).
#[test]
fn crash_mid_compaction_keeps_the_learners() {
    let options = FaultOptions {
        crash_mid_compact_per_mille: 200,
        ..FaultOptions::hostile_with_learners()
    };
    let (total, many) = over_seeds("crash_mid_compaction", 100, options, |_| {});
    println!("{total:?}");
    if many {
        assert!(
            total.crashes_mid_compact > 0,
            "no crash landed mid-compaction"
        );
    }
}

/// The learner checks can fail: a replica that opens as a learner but that the leader never
/// adds gets nothing, and every run reports that it did not converge.
#[test]
fn a_learner_nobody_adds_never_converges() {
    let options = FaultOptions {
        add_learners: false,
        ..FaultOptions::hostile_with_learners()
    };
    for seed in 0..10u64 {
        match run::<Digest>(seed, options, payload) {
            Err(shoal_sim::Violation::NoConvergence { detail }) => {
                // The voters agree among themselves; only the learners are missing.
                assert!(detail.contains("learners []"), "seed {seed}: {detail}");
            }
            other => panic!("seed {seed}: expected NoConvergence, got {other:?}"),
        }
    }
}

/// Why the owner compacts when a configuration change applies: without it the leader's
/// latest snapshot predates the learners' addition (here they open when the faults stop, so
/// nothing is proposed after they join and no later compaction names them), raft-rs on a
/// learner refuses a snapshot whose configuration lacks it, and the learner never catches up
/// though every voter names it. The simulation reports that as no convergence.
#[test]
fn snapshots_that_omit_a_learner_stall_it() {
    let options = FaultOptions {
        compact_on_conf_change: false,
        learners_start_by: 1_000_000,
        ..FaultOptions::hostile_with_learners()
    };
    let mut stalled = 0;
    let seeds = 0..20u64;
    for seed in seeds.clone() {
        match run::<Digest>(seed, options, payload) {
            Ok(_) => {}
            Err(shoal_sim::Violation::NoConvergence { detail }) => {
                assert!(detail.contains("learners [4, 5]"), "seed {seed}: {detail}");
                stalled += 1;
            }
            Err(violation) => panic!("seed {seed}: {violation:?}"),
        }
    }
    println!(
        "{stalled} of {} seeds stalled a learner",
        seeds.clone().count()
    );
    assert!(
        stalled >= 15,
        "only {stalled} of {} seeds stalled a learner",
        seeds.count()
    );
    // The same runs with the compaction converge.
    for seed in 0..5u64 {
        let options = FaultOptions {
            compact_on_conf_change: true,
            ..options
        };
        if let Err(violation) = run::<Digest>(seed, options, payload) {
            panic!("seed {seed}: {violation:?}");
        }
    }
}
