//! Which partitions are offline, broker-wide: the one piece of partition state that cores share.
//!
//! The owner core of a partition is the only writer of its entry: it records a log that failed
//! to open or went offline (a failed write or sync, a full disk, corruption) and clears the
//! entry when the log is open again. Metadata, which any core serves, reads it to report the
//! partition without a leader. Entries change rarely (on failures), and nothing on the data path
//! reads them: a produce or fetch asks the owner's log, which knows its own state. So a
//! read-write lock over a small map costs nothing where it matters.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shoal_kafka::cluster::TopicPartition;
use shoal_storage::OfflineKind;

use crate::disk_guard::DiskGuard;

/// What every core shares: partition health (for Metadata) and the disk guard. Nothing of the
/// data path: each core still owns its partitions.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) health: Arc<Health>,
    pub(crate) disk: Arc<DiskGuard>,
}

#[derive(Clone, Debug)]
pub(crate) struct Offline {
    pub(crate) reason: String,
    pub(crate) kind: OfflineKind,
}

#[derive(Default)]
pub(crate) struct Health {
    offline: RwLock<BTreeMap<TopicPartition, Offline>>,
}

impl Health {
    pub(crate) fn set_offline(&self, tp: &TopicPartition, offline: Offline) {
        if let Ok(mut map) = self.offline.write() {
            let _ = map.insert(tp.clone(), offline);
        }
    }

    pub(crate) fn set_online(&self, tp: &TopicPartition) {
        if let Ok(mut map) = self.offline.write() {
            let _ = map.remove(tp);
        }
    }

    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<Offline> {
        self.offline.read().ok()?.get(tp).cloned()
    }

    /// The offline partitions of `topic`, ascending.
    pub(crate) fn offline_partitions(&self, topic: &str) -> Vec<i32> {
        let Ok(map) = self.offline.read() else {
            return Vec::new();
        };
        map.keys()
            .filter(|tp| tp.topic == topic)
            .map(|tp| tp.partition)
            .collect()
    }

    /// The offline partitions `mine` selects, with why.
    pub(crate) fn offline_where(
        &self,
        mine: impl Fn(&TopicPartition) -> bool,
    ) -> Vec<(TopicPartition, Offline)> {
        let Ok(map) = self.offline.read() else {
            return Vec::new();
        };
        map.iter()
            .filter(|(tp, _)| mine(tp))
            .map(|(tp, offline)| (tp.clone(), offline.clone()))
            .collect()
    }
}
