//! Cluster metadata: topics, their configs and the partition-to-core map.
//!
//! Core 0 owns it: it alone changes it, persists it (`metadata.json`, written atomically) and
//! sends each new version to the other cores, which keep the latest `Arc<Snapshot>` (immutable:
//! readers never lock). The map is persisted, so a restart finds every partition on the same
//! core (or, if the number of cores changed, on `core % cores`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) const METADATA_FILE: &str = "metadata.json";
pub(crate) const TOPICS_DIR: &str = "topics";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) cluster_id: String,
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this may have been handed out; core 0 reserves blocks above it.
    #[serde(default)]
    pub(crate) producer_ids_reserved_until: i64,
    /// This node's id. Partitions whose `nodes` entry names another node are served there.
    #[serde(default)]
    pub(crate) node: i32,
    /// A cluster node: the brokers the controller knows (empty on a one-node cluster, whose
    /// only broker is this one).
    #[serde(default)]
    pub(crate) brokers: Vec<BrokerMeta>,
    /// Client quotas (AlterClientQuotas), on every core: each resolves its clients' quotas
    /// from its copy.
    #[serde(default)]
    pub(crate) client_quotas: shoal_quotas::QuotaConfigs,
}

/// A broker of the cluster, as the controller's metadata has it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct BrokerMeta {
    pub(crate) node: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
    /// Missed its heartbeats (or is starting): not a leader for clients.
    pub(crate) fenced: bool,
}

/// Where a partition is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// On this node, by this core.
    Local(usize),
    /// On another node.
    Remote(i32),
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct TopicMeta {
    pub(crate) id: [u8; 16],
    /// Owning core of each partition, by partition index.
    pub(crate) owners: Vec<usize>,
    pub(crate) configs: BTreeMap<String, String>,
    /// Leader epoch of each partition, by partition index (missing: 0, as every partition
    /// of a metadata file written before epochs were kept).
    #[serde(default)]
    pub(crate) leader_epochs: Vec<i32>,
    /// A cluster node: the node of each partition, by partition index (empty: every
    /// partition on this node, as on a one-node cluster). For a replicated partition, its
    /// leader as reported to the controller (-1: none known yet).
    #[serde(default)]
    pub(crate) nodes: Vec<i32>,
    /// A cluster node: each partition's replicas as (node, core), by partition index (empty,
    /// or one replica: not replicated). `owners` names this node's replica's core.
    #[serde(default)]
    pub(crate) replicas: Vec<Vec<(i32, u32)>>,
    /// A cluster node: each replicated partition's in-sync replicas, as its leader reported.
    #[serde(default)]
    pub(crate) isr: Vec<Vec<i32>>,
}

impl TopicMeta {
    /// The node serving partition `index` (`here` if the topic lists no nodes).
    pub(crate) fn node_of(&self, index: usize, here: i32) -> i32 {
        self.nodes.get(index).copied().unwrap_or(here)
    }

    /// Whether partition `index` is a Raft group (more than one replica).
    pub(crate) fn is_replicated(&self, index: usize) -> bool {
        self.replicas.get(index).is_some_and(|r| r.len() > 1)
    }

    /// Whether `node` holds a replica of replicated partition `index`.
    pub(crate) fn has_replica(&self, index: usize, node: i32) -> bool {
        self.replicas
            .get(index)
            .is_some_and(|r| r.len() > 1 && r.iter().any(|&(n, _)| n == node))
    }
}

impl Snapshot {
    /// The core serving a partition, if it is served on this node.
    pub(crate) fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        match self.locate(topic, partition) {
            Location::Local(core) => Some(core),
            _ => None,
        }
    }

    pub(crate) fn locate(&self, topic: &str, partition: i32) -> Location {
        let Some(meta) = self.topics.get(topic) else {
            return Location::Unknown;
        };
        let Some(index) = usize::try_from(partition).ok() else {
            return Location::Unknown;
        };
        let Some(&core) = meta.owners.get(index) else {
            return Location::Unknown;
        };
        if meta.has_replica(index, self.node) {
            // A replica here: its group knows whether it leads (and answers
            // NOT_LEADER_OR_FOLLOWER if not), fresher than the reported leader.
            return Location::Local(core);
        }
        match meta.node_of(index, self.node) {
            node if node == self.node => Location::Local(core),
            node => Location::Remote(node),
        }
    }

    /// Whether partition `index` of `meta` has its log on this node (it leads it, or holds
    /// one of its replicas).
    pub(crate) fn is_local(&self, meta: &TopicMeta, index: usize) -> bool {
        if meta.is_replicated(index) {
            return meta.has_replica(index, self.node);
        }
        meta.node_of(index, self.node) == self.node
    }

    /// The broker of `node`, if the controller lists it unfenced (a one-node cluster's only
    /// broker is always there).
    pub(crate) fn live_broker(&self, node: i32) -> bool {
        if self.brokers.is_empty() {
            return node == self.node;
        }
        self.brokers.iter().any(|b| b.node == node && !b.fenced)
    }

    /// The leader epoch of a partition (0 if the metadata does not list one).
    pub(crate) fn leader_epoch(&self, topic: &str, partition: i32) -> shoal_model::Term {
        let epoch = usize::try_from(partition)
            .ok()
            .and_then(|p| self.topics.get(topic)?.leader_epochs.get(p).copied());
        shoal_model::Term(epoch.unwrap_or(0))
    }

    /// Partitions per core, for balanced placement.
    pub(crate) fn load(&self, cores: usize) -> Vec<usize> {
        let mut load = vec![0; cores];
        for topic in self.topics.values() {
            for (index, &owner) in topic.owners.iter().enumerate() {
                if !self.is_local(topic, index) {
                    continue;
                }
                if let Some(slot) = load.get_mut(owner) {
                    *slot += 1;
                }
            }
        }
        load
    }
}

/// Chooses owners for `count` new partitions: each goes to the least loaded core.
pub(crate) fn place(load: &mut [usize], count: usize) -> Vec<usize> {
    (0..count)
        .map(|_| {
            let (core, _) = load
                .iter()
                .enumerate()
                .min_by_key(|&(core, &n)| (n, core))
                .expect("at least one core");
            load[core] += 1;
            core
        })
        .collect()
}

pub(crate) fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir
        .join(TOPICS_DIR)
        .join(topic)
        .join(partition.to_string())
}

/// Loads the metadata, creating an empty one on first start (with the configured cluster id
/// of a cluster node, else a fresh one). A data dir of another cluster is refused. Owners
/// beyond the current core count are folded onto the existing cores.
pub(crate) fn load_or_init(
    data_dir: &Path,
    cores: usize,
    node: i32,
    cluster_id: Option<&str>,
) -> anyhow::Result<Snapshot> {
    std::fs::create_dir_all(data_dir.join(TOPICS_DIR))?;
    let path = data_dir.join(METADATA_FILE);
    let mut snapshot = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Snapshot>(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let snapshot = Snapshot {
                producer_ids_reserved_until: 0,
                node: 0,
                brokers: Vec::new(),
                version: 1,
                cluster_id: cluster_id
                    .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string),
                topics: BTreeMap::new(),
                client_quotas: shoal_quotas::QuotaConfigs::default(),
            };
            persist(data_dir, &snapshot)?;
            snapshot
        }
        Err(error) => return Err(anyhow::anyhow!("{}: {error}", path.display())),
    };
    if let Some(configured) = cluster_id {
        if snapshot.cluster_id != configured {
            anyhow::bail!(
                "{} belongs to cluster {}, but this node is configured for cluster {configured} \
                 (a single-node data dir joins a cluster only through a migration, not built yet)",
                path.display(),
                snapshot.cluster_id
            );
        }
    }
    snapshot.node = node;
    for topic in snapshot.topics.values_mut() {
        for owner in &mut topic.owners {
            *owner %= cores;
        }
    }
    Ok(snapshot)
}

/// Writes the metadata so that a crash leaves the old or the new version, never a mix:
/// temporary file, fsync, rename, fsync of the directory.
pub(crate) fn persist(data_dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{METADATA_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(METADATA_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Removes partition directories of topics the metadata does not list (a crash between
/// deleting a topic from the metadata and removing its files).
pub(crate) fn remove_orphans(data_dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    for entry in std::fs::read_dir(data_dir.join(TOPICS_DIR))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !snapshot.topics.contains_key(&name) {
            tracing::warn!(topic = %name, "removing files of a deleted topic");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_snapshot() -> Snapshot {
        let meta = TopicMeta {
            id: [1; 16],
            owners: vec![0, 1, 0],
            configs: BTreeMap::new(),
            leader_epochs: vec![0, 0, 3],
            nodes: vec![7, 8, 7],
            replicas: Vec::new(),
            isr: Vec::new(),
        };
        let broker = |node, fenced| BrokerMeta {
            node,
            host: "h".into(),
            port: 9092,
            rack: None,
            fenced,
        };
        Snapshot {
            node: 7,
            topics: BTreeMap::from([("t".to_string(), meta)]),
            brokers: vec![broker(7, false), broker(8, true)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_cluster_node_serves_only_its_own_partitions() {
        let snapshot = cluster_snapshot();
        assert_eq!(snapshot.locate("t", 0), Location::Local(0));
        assert_eq!(snapshot.locate("t", 1), Location::Remote(8));
        assert_eq!(snapshot.locate("t", 2), Location::Local(0));
        assert_eq!(snapshot.locate("t", 3), Location::Unknown);
        assert_eq!(snapshot.locate("u", 0), Location::Unknown);
        assert_eq!(snapshot.owner("t", 1), None);
        // Only local partitions count toward a core's load.
        assert_eq!(snapshot.load(2), vec![2, 0]);
        assert!(snapshot.live_broker(7) && !snapshot.live_broker(8) && !snapshot.live_broker(9));
        // A one-node snapshot (no nodes listed) serves everything itself.
        let mut single = cluster_snapshot();
        single.brokers.clear();
        for meta in single.topics.values_mut() {
            meta.nodes.clear();
        }
        assert_eq!(single.locate("t", 1), Location::Local(1));
        assert!(single.live_broker(7));
    }

    #[test]
    fn placement_balances_cores() {
        let mut load = vec![3, 0, 1];
        assert_eq!(place(&mut load, 4), vec![1, 1, 2, 1]);
        assert_eq!(load, vec![3, 3, 2]);
    }
}
