//! Workload files: one TOML file per scenario, in the spirit of the OpenMessaging Benchmark's
//! workload YAMLs, plus the Kafka client settings OMB keeps in its driver file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How producers choose a record key (and so, a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KeyDistribution {
    /// No key: librdkafka's partitioner spreads records (sticky random partitioning).
    None,
    /// A random 16-character key per record (partition by key hash).
    Random,
    /// No key, and the producer writes record i to partition i mod partitions.
    RoundRobin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Workload {
    pub(crate) name: String,
    #[serde(default = "one")]
    pub(crate) topics: u32,
    pub(crate) partitions_per_topic: u32,
    /// Replication factor sent with CreateTopics (1; compare.sh's 3-node Kafka variants use 3).
    #[serde(default = "one")]
    pub(crate) replication_factor: u32,
    /// Bytes per record value (at least 16: the first 8 carry the send time).
    pub(crate) message_size: usize,
    #[serde(default = "no_key")]
    pub(crate) key_distribution: KeyDistribution,
    /// Producers per topic, each its own librdkafka client on its own thread.
    pub(crate) producers_per_topic: u32,
    /// Consumers per topic, each assigned partitions p with p mod consumers = its index.
    #[serde(default = "one")]
    pub(crate) consumers_per_topic: u32,
    /// Records per second over all producers; 0 means as fast as the client accepts them.
    pub(crate) producer_rate: f64,
    #[serde(default = "acks_all")]
    pub(crate) acks: String,
    #[serde(default = "linger_default")]
    pub(crate) linger_ms: u32,
    /// librdkafka `batch.size`: the most bytes per partition batch.
    #[serde(default = "batch_default")]
    pub(crate) batch_size: u32,
    #[serde(default = "compression_default")]
    pub(crate) compression: String,
    /// Topic configs sent with CreateTopics (e.g. `"write.caching" = "true"`).
    #[serde(default)]
    pub(crate) topic_config: BTreeMap<String, String>,
    /// Extra librdkafka producer properties.
    #[serde(default)]
    pub(crate) producer_config: BTreeMap<String, String>,
    /// Extra librdkafka consumer properties.
    #[serde(default)]
    pub(crate) consumer_config: BTreeMap<String, String>,
    pub(crate) warmup_seconds: u64,
    pub(crate) test_duration_seconds: u64,
    /// Backlog-drain mode: produce this many MiB with consumers stopped, then start them and
    /// time how long they take to read it all (the rate/duration fields then only bound it).
    #[serde(default)]
    pub(crate) backlog_mib: u64,
    /// Block size for the fio fdatasync comparison (compare.sh); defaults to one record batch
    /// of this workload rounded up to 4 KiB.
    #[serde(default)]
    pub(crate) fio_block_size: Option<u32>,
}

fn one() -> u32 {
    1
}
fn no_key() -> KeyDistribution {
    KeyDistribution::None
}
fn acks_all() -> String {
    "all".to_string()
}
fn linger_default() -> u32 {
    1
}
fn batch_default() -> u32 {
    131_072
}
fn compression_default() -> String {
    "none".to_string()
}

impl Workload {
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let workload: Workload =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        workload.check()?;
        Ok(workload)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.message_size < 16 {
            return Err("message_size must be at least 16 bytes".into());
        }
        if self.topics == 0 || self.partitions_per_topic == 0 || self.producers_per_topic == 0 {
            return Err("topics, partitions_per_topic and producers_per_topic must be > 0".into());
        }
        if self.replication_factor == 0 {
            return Err("replication_factor must be > 0".into());
        }
        if self.producer_rate < 0.0 {
            return Err("producer_rate must be >= 0 (0 = max)".into());
        }
        Ok(())
    }

    pub(crate) fn fio_block_size(&self) -> u32 {
        self.fio_block_size.unwrap_or_else(|| {
            // One record plus the v2 batch header (61 B) and record overhead, in 4 KiB blocks.
            let bytes = self.message_size as u32 + 61 + 32;
            bytes.div_ceil(4096) * 4096
        })
    }

    pub(crate) fn rate_label(&self) -> String {
        if self.producer_rate > 0.0 {
            format!("{}", self.producer_rate)
        } else {
            "max".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_workload_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("workloads dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Workload::load(&path).expect("workload parses");
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} workloads");
    }

    #[test]
    fn fio_block_defaults_to_record_in_4k() {
        let w: Workload = toml::from_str(
            "name='x'\npartitions_per_topic=1\nmessage_size=1024\nproducers_per_topic=1\n\
             producer_rate=0\nwarmup_seconds=0\ntest_duration_seconds=1\n",
        )
        .expect("parses");
        assert_eq!(w.fio_block_size(), 4096);
        assert_eq!(w.key_distribution, KeyDistribution::None);
        assert_eq!(w.acks, "all");
    }
}
