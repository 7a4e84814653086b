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
}

impl Snapshot {
    pub(crate) fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.owners.get(index).copied()
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
            for &owner in &topic.owners {
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
                version: 1,
                cluster_id: cluster_id
                    .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string),
                topics: BTreeMap::new(),
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

    #[test]
    fn placement_balances_cores() {
        let mut load = vec![3, 0, 1];
        assert_eq!(place(&mut load, 4), vec![1, 1, 2, 1]);
        assert_eq!(load, vec![3, 3, 2]);
    }
}
