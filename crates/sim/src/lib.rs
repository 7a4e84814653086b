//! Deterministic simulation of a Shoal cluster's consensus: Raft replicas
//! (`shoal_consensus::Replica`, voters and learners) on simulated disks
//! (`shoal_sim_disk::SimDisk`, which loses unsynced writes and tears the last one) over a
//! simulated network (`net::SimNet`: loss, duplication, delay, reordering, partitions), with
//! crashes, power cuts and restarts, all drawn from one seed. A failing run names its seed;
//! the same seed replays it exactly.
//!
//! Dev-only: nothing in the broker depends on this crate.

pub mod net;
pub mod raft_cluster;

pub use net::{NetOptions, SimNet};
pub use raft_cluster::{block_on, run, FaultOptions, Outcome, StateMachine, Violation};
