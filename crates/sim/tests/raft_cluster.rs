//! Three Raft replicas under hostile faults, from many seeds: agreement, no acknowledged
//! proposal lost, convergence (see `shoal_sim::raft_cluster`).
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

#[test]
fn hostile_faults_lose_nothing_acknowledged() {
    let mut total = shoal_sim::Outcome::default();
    for seed in seeds(60) {
        match run::<Digest>(seed, FaultOptions::hostile(), payload) {
            Ok(outcome) => {
                total.acknowledged += outcome.acknowledged;
                total.crashes += outcome.crashes;
                total.crashes_mid_advance += outcome.crashes_mid_advance;
                total.partitions += outcome.partitions;
                total.power_losses_all += outcome.power_losses_all;
                total.leader_changes += outcome.leader_changes;
                total.snapshots_installed += outcome.snapshots_installed;
                total.compactions += outcome.compactions;
            }
            Err(violation) => panic!(
                "seed {seed}: {violation:?}\nreplay: SHOAL_SIM_SEED={seed} cargo test -p shoal-sim \
                 --release --test raft_cluster"
            ),
        }
    }
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
