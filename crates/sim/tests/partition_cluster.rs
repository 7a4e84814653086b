//! One partition replicated on three `PartitionReplica`s (raft-rs over the partition's own
//! `shoal_storage::Log` in replicated mode), each on its own `SimDisk` and in its own
//! "process" (a `LocalPool` running its log's flusher), over the seeded faulty `SimNet`
//! (loss, duplication, delay and so reordering, partitions), with crashes (the process's pool
//! and replica dropped, `power_cut(.., CutMode::Adversarial)` on its disk) and restarts, all
//! drawn from one seed. A crash ends only that node's tasks: the others' flushers keep running.
//!
//! Checks, with the seed in every message:
//! 1. no acknowledged batch is lost: a batch counts as acknowledged when the leader that
//!    proposed it, still leading in the same term, has its high watermark past the batch's
//!    last offset (what a broker answers a producer on); after healing and settling, the final
//!    leader's log holds every acknowledged batch at its offsets, with its tag;
//! 2. no two different records are ever visible at one offset, on any node, at any time (every
//!    node's reads below its high watermark are compared with all reads before);
//! 3. a node's high watermark never goes back while it is up (after a restart it may start
//!    lower: counted, not failed);
//! 4. the visible offsets are dense: each batch starts where the previous one ended, from 0.
//!
//! `SHOAL_SIM_SEEDS=n` runs more seeds; `SHOAL_SIM_SEED=s` replays one.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use common::seeds;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_consensus::{Message, PartitionReplica};
use shoal_io::Clock;
use shoal_sim::{NetOptions, SimNet};
use shoal_sim_disk::{CutMode, SimDisk};
use shoal_storage::{
    build_batch, validate_batch, BatchCache, BufferPool, Log, LogConfig, LogContext,
};

const NODES: usize = 3;
const STEPS: u64 = 600;
const SETTLE_TICKS: u64 = 2_000;

struct FixedClock(Cell<i64>);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

/// One broker process: its disk survives a crash, the rest does not.
struct Node {
    id: u64,
    disk: SimDisk,
    /// The process's executor (its log's flusher runs on it); `None` while down.
    exec: Option<LocalPool>,
    replica: Option<PartitionReplica<SimDisk>>,
    /// Bumped at every restart, so a pending proposal of an older life is never acknowledged.
    life: u64,
    /// The high watermark last seen in this life.
    last_hw: Option<i64>,
    /// The high watermark when it last went down.
    hw_at_crash: i64,
    /// The next offset to read and compare (check 2) in this life.
    checked_to: i64,
}

impl Node {
    fn up(&self) -> bool {
        self.replica.is_some()
    }
}

/// A batch proposed on a leader, not yet acknowledged.
struct Pending {
    node: usize,
    life: u64,
    term: u64,
    tag: u64,
    base: i64,
    last: i64,
}

#[derive(Debug, Default)]
struct Stats {
    proposed: u64,
    acknowledged: u64,
    failed: u64,
    crashes: u64,
    restarts: u64,
    /// Restarts whose high watermark came back lower than before the crash (allowed).
    restarted_lower: u64,
    final_term: u64,
    final_hw: i64,
}

fn partition_dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn state_dir() -> PathBuf {
    PathBuf::from("/data/topic-0.raft")
}

const TAG_PREFIX: &[u8] = b"TAG[";

/// A batch of `records` records whose values are `TAG[<tag>:<i>]`.
fn batch(tag: u64, records: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("TAG[{tag:010}:{i:03}]").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build_batch(&refs, 1_700_000_000_000)
}

/// The (tag, record index) values of a stored (uncompressed) batch, in record order.
fn tags_of(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = bytes[at..]
        .windows(TAG_PREFIX.len())
        .position(|w| w == TAG_PREFIX)
    {
        let start = at + pos + TAG_PREFIX.len();
        let text = std::str::from_utf8(&bytes[start..start + 15]).expect("tag text");
        let tag = text[..10].parse().expect("tag number");
        let index = text[11..14].parse().expect("record number");
        out.push((tag, index));
        at = start + 15;
    }
    out
}

struct Sim {
    seed: u64,
    rng: StdRng,
    net: SimNet<Message>,
    nodes: Vec<Node>,
    voters: Vec<u64>,
    now: u64,
    next_tag: u64,
    /// Check 2: what was ever visible at each offset: (tag, record index).
    seen: BTreeMap<i64, (u64, u64)>,
    /// Check 1: acknowledged batches (tag, base offset, last offset).
    acknowledged: Vec<(u64, i64, i64)>,
    pending: Vec<Pending>,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let options = NetOptions {
            loss_percent: rng.gen_range(0..=15),
            duplicate_percent: rng.gen_range(0..=10),
            delay_ticks_min: 0,
            delay_ticks_max: rng.gen_range(0..=4),
        };
        let voters: Vec<u64> = (1..=NODES as u64).collect();
        let nodes = voters
            .iter()
            .map(|&id| Node {
                id,
                disk: SimDisk::new(),
                exec: None,
                replica: None,
                life: 0,
                last_hw: None,
                hw_at_crash: 0,
                checked_to: 0,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            net: SimNet::new(options),
            nodes,
            voters,
            now: 0,
            next_tag: 0,
            seen: BTreeMap::new(),
            acknowledged: Vec::new(),
            pending: Vec::new(),
            stats: Stats::default(),
        };
        for i in 0..NODES {
            sim.start(i);
        }
        sim
    }

    /// Starts node `i`'s process: a fresh pool, its log (flusher spawned on that pool), its
    /// replica.
    fn start(&mut self, i: usize) {
        let seed = self.seed;
        let voters = self.voters.clone();
        let node = &mut self.nodes[i];
        let mut exec = LocalPool::new();
        let ctx = LogContext {
            disk: Rc::new(node.disk.clone()),
            clock: Rc::new(FixedClock(Cell::new(1_700_000_000_000))),
            pool: BufferPool::new(8 << 20),
            cache: BatchCache::new(1 << 20),
        };
        let log = exec
            .run_until(Log::open_replicated(
                ctx,
                partition_dir(),
                LogConfig::default(),
            ))
            .unwrap_or_else(|e| panic!("seed {seed}: node {} log open: {e:?}", node.id));
        let flusher = log.clone();
        exec.spawner()
            .spawn_local(async move { flusher.run_flusher().await })
            .expect("spawn flusher");
        let replica = exec
            .run_until(PartitionReplica::open(
                Rc::new(node.disk.clone()),
                log,
                &state_dir(),
                node.id,
                voters,
            ))
            .unwrap_or_else(|e| panic!("seed {seed}: node {} replica open: {e:?}", node.id));
        node.life += 1;
        let hw = replica.log().offsets().high_watermark.0;
        if node.life > 1 && hw < node.hw_at_crash {
            self.stats.restarted_lower += 1;
        }
        node.last_hw = Some(hw);
        node.checked_to = replica.log().offsets().log_start.0;
        node.exec = Some(exec);
        node.replica = Some(replica);
    }

    /// Kills node `i`'s process (its tasks, flusher included, go with its pool) and cuts its
    /// disk's power: unsynced writes are lost or torn.
    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.hw_at_crash = node.last_hw.unwrap_or(0);
        node.replica = None;
        node.exec = None;
        node.last_hw = None;
        node.disk.power_cut(
            self.seed.wrapping_mul(1_000_003) ^ self.stats.crashes,
            CutMode::Adversarial,
        );
        self.net.drop_node(i);
        self.stats.crashes += 1;
    }

    /// Drains node `i`'s Ready and sends what it produced.
    fn advance(&mut self, i: usize) {
        let seed = self.seed;
        let node = &mut self.nodes[i];
        let (Some(exec), Some(replica)) = (node.exec.as_mut(), node.replica.as_mut()) else {
            return;
        };
        let mut out = Vec::new();
        let progress = exec
            .run_until(replica.advance(&mut |early| out.extend(early)))
            .unwrap_or_else(|e| panic!("seed {seed}: node {} advance: {e:?}", node.id));
        exec.run_until_stalled();
        out.extend(progress.messages);
        for m in out {
            let to = (m.to - 1) as usize;
            self.net.send(&mut self.rng, self.now, i, to, m);
        }
    }

    fn leader(&self) -> Option<usize> {
        // Several may think they lead (an old one in a minority); take the highest term.
        (0..NODES)
            .filter(|&i| {
                self.nodes[i]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.is_leader())
            })
            .max_by_key(|&i| self.nodes[i].replica.as_ref().map_or(0, |r| r.term()))
    }

    fn propose(&mut self, i: usize) {
        self.advance(i); // the new leader's empty entry goes into the log first
        let seed = self.seed;
        let tag = self.next_tag;
        let records = self.rng.gen_range(1..=4);
        let node = &mut self.nodes[i];
        let (Some(exec), Some(replica)) = (node.exec.as_mut(), node.replica.as_mut()) else {
            return;
        };
        if !replica.is_leader() {
            return;
        }
        self.next_tag += 1;
        self.stats.proposed += 1;
        let term = replica.term();
        match exec.run_until(replica.propose(batch(tag, records))) {
            Ok((Some(_), appended)) => self.pending.push(Pending {
                node: i,
                life: node.life,
                term,
                tag,
                base: appended.last_offset.0 - records as i64 + 1,
                last: appended.last_offset.0,
            }),
            Ok((None, _)) => panic!("seed {seed}: tag {tag}: a plain batch taken for a retry"),
            Err(e) => {
                // Dropped by raft-rs (leadership lost meanwhile): the client retries elsewhere.
                tracing::debug!(seed, tag, "proposal refused: {e:?}");
                self.stats.failed += 1;
            }
        }
        self.advance(i);
    }

    /// Moves pending proposals to acknowledged (their leader, same life and term, has its high
    /// watermark past them) or failed (that leader is gone).
    fn acknowledge(&mut self) {
        let nodes = &self.nodes;
        let mut kept = Vec::new();
        for p in self.pending.drain(..) {
            let node = &nodes[p.node];
            let leading = node.life == p.life
                && node
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.is_leader() && r.term() == p.term);
            if !leading {
                self.stats.failed += 1;
                continue;
            }
            let replica = node.replica.as_ref().expect("checked");
            if replica.log().offsets().high_watermark.0 > p.last {
                self.acknowledged.push((p.tag, p.base, p.last));
                self.stats.acknowledged += 1;
            } else {
                kept.push(p);
            }
        }
        self.pending = kept;
    }

    /// Checks 2, 3 and 4 on node `i`: reads what became visible since the last look.
    fn check_node(&mut self, i: usize) {
        let seed = self.seed;
        let node = &mut self.nodes[i];
        let (Some(exec), Some(replica)) = (node.exec.as_mut(), node.replica.as_ref()) else {
            return;
        };
        let log = replica.log().clone();
        let offsets = log.offsets();
        let hw = offsets.high_watermark.0;
        if let Some(last) = node.last_hw {
            assert!(
                hw >= last,
                "seed {seed}: check 3: node {} high watermark went back from {last} to {hw} \
                 while up (step {})",
                node.id,
                self.now
            );
        }
        node.last_hw = Some(hw);
        assert_eq!(
            offsets.log_start.0, 0,
            "seed {seed}: node {} log start moved (no retention here)",
            node.id
        );
        let mut next = node.checked_to;
        while next < hw {
            let read = exec
                .run_until(log.read(shoal_model::Offset(next), 1 << 20))
                .unwrap_or_else(|e| panic!("seed {seed}: node {} read at {next}: {e:?}", node.id));
            assert!(
                !read.batches.is_empty(),
                "seed {seed}: check 4: node {} has nothing at {next} below its high watermark {hw}",
                node.id
            );
            for bytes in &read.batches {
                let header = validate_batch(bytes).unwrap_or_else(|d| {
                    panic!(
                        "seed {seed}: node {} invalid batch at {next}: {d:?}",
                        node.id
                    )
                });
                if header.base_offset.0 >= hw {
                    break;
                }
                assert!(
                    !header.internal,
                    "seed {seed}: node {}: read returned an internal entry at {next}",
                    node.id
                );
                assert_eq!(
                    header.base_offset.0, next,
                    "seed {seed}: check 4: node {} offsets not dense: a batch at {} after {next}",
                    node.id, header.base_offset.0
                );
                let tags = tags_of(bytes);
                assert_eq!(
                    tags.len() as i64,
                    header.offset_count,
                    "seed {seed}: node {} batch at {next}: records vs offsets",
                    node.id
                );
                for (k, &(tag, index)) in tags.iter().enumerate() {
                    let offset = next + k as i64;
                    let before = *self.seen.entry(offset).or_insert((tag, index));
                    assert_eq!(
                        before,
                        (tag, index),
                        "seed {seed}: check 2: node {} shows (tag, record) {:?} at offset {offset}, \
                         seen before as {before:?} (step {})",
                        node.id,
                        (tag, index),
                        self.now
                    );
                }
                next = header.next_offset().0;
            }
        }
        node.checked_to = next.max(node.checked_to);
    }

    /// One tick of simulated time with faults drawn from the seed.
    fn step(&mut self, faults: bool, proposals: bool) {
        self.now += 1;
        if faults {
            let roll = self.rng.gen_range(0..1000);
            let down = self.nodes.iter().filter(|n| !n.up()).count();
            if roll < 10 && down < 2 {
                let i = self.rng.gen_range(0..NODES);
                if self.nodes[i].up() {
                    self.crash(i);
                }
            } else if roll < 40 && down > 0 {
                let i = self.rng.gen_range(0..NODES);
                if !self.nodes[i].up() {
                    self.start(i);
                    self.stats.restarts += 1;
                }
            } else if roll < 45 {
                let alone = self.rng.gen_range(0..NODES);
                let rest: Vec<usize> = (0..NODES).filter(|&i| i != alone).collect();
                self.net.partition(&[vec![alone], rest]);
            } else if roll < 60 {
                self.net.heal();
            }
        }
        for (_, to, m) in self.net.deliver(self.now) {
            let seed = self.seed;
            if let Some(replica) = self.nodes[to].replica.as_mut() {
                replica
                    .step(m)
                    .unwrap_or_else(|e| panic!("seed {seed}: node {} step: {e:?}", to + 1));
            }
        }
        for i in 0..NODES {
            let tick = !faults || self.rng.gen_range(0..10) < 9;
            if let Some(replica) = self.nodes[i].replica.as_mut() {
                if tick {
                    let _ = replica.tick();
                }
            }
            self.advance(i);
        }
        if proposals && self.rng.gen_range(0..100) < 40 {
            if let Some(i) = self.leader() {
                self.propose(i);
            }
        }
        self.acknowledge();
        for i in 0..NODES {
            self.check_node(i);
        }
    }

    /// Heals everything, restarts every node that is down, and runs until one leader has
    /// committed its whole log and every node shows the same high watermark.
    fn settle(&mut self) -> usize {
        self.net.heal();
        self.net.set_options(NetOptions {
            loss_percent: 0,
            duplicate_percent: 0,
            delay_ticks_min: 0,
            delay_ticks_max: 1,
        });
        for i in 0..NODES {
            if !self.nodes[i].up() {
                self.start(i);
                self.stats.restarts += 1;
            }
        }
        for _ in 0..SETTLE_TICKS {
            self.step(false, false);
            if let Some(i) = self.leader() {
                let log = self.nodes[i].replica.as_ref().expect("up").log();
                let offsets = log.offsets();
                let all_same = self.nodes.iter().all(|n| {
                    n.replica
                        .as_ref()
                        .is_some_and(|r| r.log().offsets().high_watermark == offsets.high_watermark)
                });
                if offsets.high_watermark == offsets.log_end && all_same {
                    return i;
                }
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let r = n.replica.as_ref().expect("up");
                format!(
                    "node {}: leader {} term {} commit {} last index {} offsets {:?}",
                    n.id,
                    r.is_leader(),
                    r.term(),
                    r.commit_index(),
                    r.log().last_index().0,
                    r.log().offsets()
                )
            })
            .collect();
        panic!(
            "seed {}: the healed group did not settle in {SETTLE_TICKS} ticks:\n{}",
            self.seed,
            states.join("\n")
        );
    }

    /// Check 1 on the settled leader `i`, reading its whole visible log again.
    fn check_acknowledged(&mut self, i: usize) {
        let seed = self.seed;
        let node = &mut self.nodes[i];
        let exec = node.exec.as_mut().expect("up");
        let log = node.replica.as_ref().expect("up").log().clone();
        let hw = log.offsets().high_watermark.0;
        self.stats.final_hw = hw;
        let mut at: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        let mut next = log.offsets().log_start.0;
        while next < hw {
            let read = exec
                .run_until(log.read(shoal_model::Offset(next), 1 << 20))
                .unwrap_or_else(|e| panic!("seed {seed}: final read at {next}: {e:?}"));
            assert!(
                !read.batches.is_empty(),
                "seed {seed}: check 4: final leader has nothing at {next} below {hw}"
            );
            for bytes in &read.batches {
                let header = validate_batch(bytes).expect("valid batch");
                if header.base_offset.0 >= hw {
                    break;
                }
                assert_eq!(
                    header.base_offset.0, next,
                    "seed {seed}: check 4: final leader's offsets not dense"
                );
                for (k, tag) in tags_of(bytes).into_iter().enumerate() {
                    let _ = at.insert(next + k as i64, tag);
                }
                next = header.next_offset().0;
            }
        }
        for &(tag, base, last) in &self.acknowledged {
            for offset in base..=last {
                let want = (tag, (offset - base) as u64);
                assert_eq!(
                    at.get(&offset),
                    Some(&want),
                    "seed {seed}: check 1: acknowledged batch tag {tag} (offsets {base}..={last}) \
                     lost at offset {offset} on the final leader (node {}, high watermark {hw})",
                    node.id
                );
            }
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step(true, true);
    }
    let leader = sim.settle();
    sim.check_acknowledged(leader);
    // Every node, now settled, re-read from its start against everything seen.
    for i in 0..NODES {
        sim.nodes[i].checked_to = 0;
        sim.check_node(i);
    }
    sim.stats.final_term = sim.nodes[leader].replica.as_ref().expect("up").term();
    sim.stats
}

#[test]
fn a_partition_on_three_replicas_keeps_every_acknowledged_batch_under_faults() {
    let seeds = seeds(20);
    let many = seeds.len() >= 10;
    let mut total = Stats::default();
    for seed in seeds {
        let stats = run(seed);
        eprintln!("seed {seed}: {stats:?}");
        total.proposed += stats.proposed;
        total.acknowledged += stats.acknowledged;
        total.failed += stats.failed;
        total.crashes += stats.crashes;
        total.restarts += stats.restarts;
        total.restarted_lower += stats.restarted_lower;
    }
    eprintln!("total: {total:?}");
    if many {
        assert!(total.acknowledged > 0, "some batches were acknowledged");
        assert!(total.crashes > 0, "some nodes crashed");
    }
}
