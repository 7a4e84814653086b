//! Partition groups over the partition log (`PartitionReplica` on `shoal_storage::Log` in
//! replicated mode), on simulated disks with messages passed by hand: one voter, and three
//! voters through a leader change with an uncommitted suffix overwritten.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use shoal_consensus::{Message, PartitionReplica};
use shoal_io::Clock;
use shoal_model::{Offset, RaftIndex};
use shoal_sim_disk::SimDisk;
use shoal_storage::{
    build_batch, validate_batch, BatchCache, BufferPool, Log, LogConfig, LogContext,
};

#[derive(Default)]
struct TestClock(Cell<i64>);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

struct Node {
    id: u64,
    disk: SimDisk,
    replica: Option<PartitionReplica<SimDisk>>,
    /// Messages for this node not yet stepped (a node that is down loses them).
    inbox: Vec<Message>,
    up: bool,
}

fn partition_dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn state_dir() -> PathBuf {
    PathBuf::from("/data/topic-0.raft")
}

fn open(
    exec: &mut LocalPool,
    disk: &SimDisk,
    id: u64,
    voters: &[u64],
) -> PartitionReplica<SimDisk> {
    let ctx = LogContext {
        disk: Rc::new(disk.clone()),
        clock: Rc::new(TestClock(Cell::new(1_700_000_000_000))),
        pool: BufferPool::new(8 << 20),
        cache: BatchCache::new(1 << 20),
    };
    let log = exec
        .run_until(Log::open_replicated(
            ctx,
            partition_dir(),
            LogConfig::default(),
        ))
        .expect("open log");
    let flusher = log.clone();
    exec.spawner()
        .spawn_local(async move { flusher.run_flusher().await })
        .expect("spawn flusher");
    exec.run_until(PartitionReplica::open(
        Rc::new(disk.clone()),
        log,
        &state_dir(),
        id,
        voters.to_vec(),
    ))
    .expect("open replica")
}

fn batch(tag: u64, records: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("#{tag}:{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build_batch(&refs, 1_700_000_000_000)
}

/// Every stored data batch of `log` below its high watermark: (base offset, records).
fn visible(exec: &mut LocalPool, log: &Log<SimDisk>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = log.offsets().log_start;
    let hw = log.offsets().high_watermark;
    while next < hw {
        let read = exec.run_until(log.read(next, 1 << 20)).expect("read");
        assert!(!read.batches.is_empty(), "nothing at {next} below {hw}");
        for bytes in &read.batches {
            let header = validate_batch(bytes).expect("valid batch");
            assert!(!header.internal, "Fetch never returns internal entries");
            out.push((header.base_offset.0, header.offset_count));
            next = header.next_offset();
        }
    }
    out
}

struct Cluster {
    exec: LocalPool,
    nodes: Vec<Node>,
    voters: Vec<u64>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let mut exec = LocalPool::new();
        let voters: Vec<u64> = (1..=n).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let disk = SimDisk::new();
                let replica = open(&mut exec, &disk, id, &voters);
                Node {
                    id,
                    disk,
                    replica: Some(replica),
                    inbox: Vec::new(),
                    up: true,
                }
            })
            .collect();
        Cluster {
            exec,
            nodes,
            voters,
        }
    }

    fn node(&mut self, id: u64) -> &mut PartitionReplica<SimDisk> {
        self.nodes[(id - 1) as usize]
            .replica
            .as_mut()
            .expect("node is up")
    }

    /// Advances every up node and delivers messages until nothing moves.
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].up {
                    self.nodes[i].inbox.clear();
                    continue;
                }
                let inbox = std::mem::take(&mut self.nodes[i].inbox);
                let replica = self.nodes[i].replica.as_mut().expect("up");
                for m in inbox {
                    moved = true;
                    replica.step(m).expect("step");
                }
                // A lagging follower's entries below those kept in memory come from the log.
                if self.exec.run_until(replica.fetch_wanted()).expect("fetch") {
                    moved = true;
                }
                let mut out = Vec::new();
                let progress = self
                    .exec
                    .run_until(replica.advance(&mut |early| out.extend(early)))
                    .expect("advance");
                out.extend(progress.messages);
                for m in out {
                    moved = true;
                    let to = (m.to - 1) as usize;
                    if self.nodes[to].up {
                        self.nodes[to].inbox.push(m);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the group did not settle");
    }

    fn elect(&mut self, id: u64) {
        self.node(id).campaign().expect("campaign");
        self.settle();
        assert!(self.node(id).is_leader(), "node {id} leads");
    }

    fn propose(&mut self, leader: u64, tag: u64, records: usize) -> Offset {
        let replica = self.nodes[(leader - 1) as usize]
            .replica
            .as_mut()
            .expect("up");
        let placed = self
            .exec
            .run_until(replica.propose(batch(tag, records)))
            .expect("propose");
        assert!(placed.0.is_some(), "a new entry");
        placed.1.last_offset
    }

    fn crash(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        node.replica = None;
        node.up = false;
        // Every task of the process goes (flushers included) and unsynced writes are lost.
        self.exec = LocalPool::new();
        node.disk
            .power_cut(id, shoal_sim_disk::CutMode::Adversarial);
        // The other nodes' flushers died with the pool: reopen them (a restart from their
        // synced state, which loses nothing they acknowledged).
        for i in 0..self.nodes.len() {
            if self.nodes[i].up {
                let disk = self.nodes[i].disk.clone();
                self.nodes[i].replica = None;
                let id = self.nodes[i].id;
                let voters = self.voters.clone();
                self.nodes[i].replica = Some(open(&mut self.exec, &disk, id, &voters));
            }
        }
    }

    fn restart(&mut self, id: u64) {
        let disk = self.nodes[(id - 1) as usize].disk.clone();
        let voters = self.voters.clone();
        let replica = open(&mut self.exec, &disk, id, &voters);
        let node = &mut self.nodes[(id - 1) as usize];
        node.replica = Some(replica);
        node.up = true;
    }
}

#[test]
fn one_voter_commits_its_own_synced_entries_and_keeps_them_across_a_restart() {
    let mut c = Cluster::new(1);
    c.elect(1);
    let term1 = c.node(1).term();
    for tag in 0..3 {
        c.propose(1, tag, 4);
    }
    c.settle();
    let log = c.node(1).log().clone();
    assert_eq!(
        log.offsets().high_watermark,
        Offset(12),
        "all three batches committed"
    );
    assert_eq!(visible(&mut c.exec, &log), vec![(0, 4), (4, 4), (8, 4)]);
    // One internal entry (the leader's empty entry) plus three data entries.
    assert_eq!(log.last_index(), RaftIndex(4));

    c.crash(1);
    c.restart(1);
    c.elect(1);
    assert!(c.node(1).term() > term1, "a new term after the restart");
    c.propose(1, 3, 2);
    c.settle();
    let log = c.node(1).log().clone();
    assert_eq!(log.offsets().high_watermark, Offset(14));
    assert_eq!(
        visible(&mut c.exec, &log),
        vec![(0, 4), (4, 4), (8, 4), (12, 2)]
    );
}

#[test]
fn three_voters_replicate_and_a_new_leader_overwrites_an_uncommitted_suffix() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, 0, 5);
    c.settle();
    for id in 1..=3 {
        let log = c.node(id).log().clone();
        assert_eq!(
            log.last_index(),
            RaftIndex(2),
            "node {id} holds both entries"
        );
    }
    let leader_log = c.node(1).log().clone();
    assert_eq!(leader_log.offsets().high_watermark, Offset(5));

    // Node 1 places an entry that never leaves it (its messages are lost), then dies.
    c.nodes[1].up = false;
    c.nodes[2].up = false;
    c.propose(1, 1, 3);
    c.settle();
    assert_eq!(c.node(1).log().last_index(), RaftIndex(3));
    c.nodes[1].up = true;
    c.nodes[2].up = true;
    c.crash(1);

    c.elect(2);
    c.propose(2, 2, 2);
    c.settle();
    let log2 = c.node(2).log().clone();
    assert_eq!(
        visible(&mut c.exec, &log2),
        vec![(0, 5), (5, 2)],
        "batch 1 was never committed"
    );

    // Node 1 comes back: its uncommitted entry is cut and it takes the new leader's entries.
    c.restart(1);
    c.settle();
    for _ in 0..20 {
        // Heartbeats carry the commit to followers.
        for id in 1..=3 {
            c.node(id).tick();
        }
        c.settle();
    }
    for id in 1..=3 {
        let log = c.node(id).log().clone();
        assert_eq!(
            log.last_index(),
            log2.last_index(),
            "node {id} holds exactly the leader's entries"
        );
        assert_eq!(
            visible(&mut c.exec, &log),
            vec![(0, 5), (5, 2)],
            "node {id}"
        );
    }
}

#[test]
fn a_follower_far_behind_catches_up_from_the_leaders_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    // Node 3 is away while more than the in-memory window of entries is committed, so the
    // leader must read most of them back from its log for node 3.
    c.nodes[2].up = false;
    let values_per_batch = 200;
    let value_bytes = 1000;
    let window = shoal_consensus::RECENT_ENTRIES_BYTES_MAX;
    let batches = window / (values_per_batch * value_bytes) + 8;
    for tag in 0..batches as u64 {
        let values: Vec<Vec<u8>> = (0..values_per_batch)
            .map(|i| format!("#{tag}:{i}:{}", "x".repeat(value_bytes)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let replica = c.nodes[0].replica.as_mut().expect("up");
        let placed = c
            .exec
            .run_until(replica.propose(build_batch(&refs, 1_700_000_000_000)))
            .expect("propose");
        assert!(placed.0.is_some());
        c.settle();
    }
    let leader_log = c.node(1).log().clone();
    let expected = visible(&mut c.exec, &leader_log);
    assert_eq!(expected.len(), batches);
    c.nodes[2].up = true;
    // The leader's heartbeats find node 3 behind; it probes, then streams from its log.
    for _ in 0..20 {
        let _ = c.node(1).tick();
        c.settle();
    }
    let follower_log = c.node(3).log().clone();
    assert_eq!(follower_log.last_index(), leader_log.last_index());
    // The follower serves the same batches once it knows the commit.
    let follower = visible(&mut c.exec, &follower_log);
    assert_eq!(
        follower, expected,
        "the follower holds every committed batch"
    );
}
