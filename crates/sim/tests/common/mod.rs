//! What the simulation tests share: which seeds to run.

/// The seeds of a run: `SHOAL_SIM_SEED=s` replays one, `SHOAL_SIM_SEEDS=n` runs `0..n`, else
/// `0..default`.
pub(crate) fn seeds(default: u64) -> Vec<u64> {
    // RUST_LOG=raft=debug shows raft-rs's own log of a replayed seed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if let Ok(seed) = std::env::var("SHOAL_SIM_SEED") {
        return vec![seed.parse().expect("SHOAL_SIM_SEED is a number")];
    }
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    (0..count).collect()
}
