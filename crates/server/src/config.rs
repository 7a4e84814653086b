//! Broker configuration: command-line flags, a TOML-free `key = value` config file, and
//! `SHOAL_*` environment variables, in increasing precedence: defaults < file < env < flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "shoal",
    version,
    about = "A Kafka-compatible streaming broker, thread-per-core"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub(crate) enum Command {
    /// Start the broker.
    Start(StartArgs),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct StartArgs {
    /// Configuration file of `key = value` lines (keys as in `deploy/config/shoal.conf`).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Directory holding all partition data and the cluster metadata.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds on every core.
    #[arg(long)]
    pub(crate) kafka_addr: Option<SocketAddr>,
    /// host:port clients are told to connect to (Metadata); defaults to kafka-addr.
    #[arg(long)]
    pub(crate) advertised_addr: Option<String>,
    /// Address of the admin HTTP endpoint.
    #[arg(long)]
    pub(crate) admin_addr: Option<SocketAddr>,
    /// Number of cores (one executor each, pinned in order to the CPUs the process may use:
    /// its affinity mask, so `taskset -c 2,3` places it on CPUs 2 and 3).
    #[arg(long)]
    pub(crate) cores: Option<usize>,
    /// Memory budget in bytes for buffers and caches, split evenly over the cores.
    #[arg(long)]
    pub(crate) memory: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) data_dir: PathBuf,
    pub(crate) kafka_addr: SocketAddr,
    pub(crate) advertised_host: String,
    pub(crate) advertised_port: i32,
    pub(crate) admin_addr: SocketAddr,
    pub(crate) cores: usize,
    pub(crate) memory_bytes: u64,
    pub(crate) node_id: i32,
    pub(crate) auto_create_topics: bool,
    pub(crate) default_partitions: i32,
    /// A cluster node: the replication factor of topics created with -1 (Kafka's
    /// `default.replication.factor`), capped by the unfenced brokers.
    pub(crate) default_replication_factor: i16,
    /// Largest request frame accepted (Kafka `socket.request.max.bytes`).
    pub(crate) request_bytes_max: usize,
    /// Requests read ahead of their responses on one connection.
    pub(crate) requests_inflight_per_connection_max: usize,
    /// Bytes of request frames held at once across the broker (split per core): reading a
    /// frame waits for room, so a flood of large requests backs up instead of exhausting memory.
    pub(crate) requests_inflight_bytes_max: u64,
    /// Client connections held at once across the broker (split per core); more are closed.
    pub(crate) connections_max: usize,
    /// Disk space kept for metadata and offsets when partitions fill the data disk (the ballast
    /// file; at most an eighth of the file system; 0: none).
    pub(crate) disk_reserve_bytes: u64,
    /// Fetch sessions (KIP-227) kept at once across the broker, split per core (Kafka's
    /// `max.incremental.fetch.session.cache.slots`); 0: every fetch is sessionless.
    pub(crate) fetch_sessions_max: usize,
    /// A new fetch session may take the slot of one idle this long (Kafka's
    /// `min.incremental.fetch.session.eviction.ms`).
    pub(crate) fetch_session_eviction_ms: i64,
    /// Log compaction: how long a core's cleaner sleeps when no log is due (Kafka's
    /// `log.cleaner.backoff.ms`).
    pub(crate) log_cleaner_backoff_ms: u64,
    /// Log compaction: the key -> offset map's memory across the broker, split per core and
    /// taken by a core only once it cleans (Kafka's `log.cleaner.dedupe.buffer.size`).
    pub(crate) log_cleaner_dedupe_buffer_bytes: u64,
    /// Log compaction: disk bytes per second a core's cleaner reads and writes at most (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`, split per core); 0: unpaced. Default 100 MiB/s.
    pub(crate) log_cleaner_io_bytes_per_second_max: u64,
    /// Client quotas (Kafka's `quota.window.num`, `quota.window.size.seconds`): a client's
    /// token bucket holds one sample's worth of its bound, a request_percentage throttle is at
    /// most one sample and forgets debt older than `samples` of them (shoal-quotas `bucket.rs`).
    pub(crate) quota_window_samples: usize,
    pub(crate) quota_window_sample_ms: u64,
    /// Client quotas: usage sensors a core keeps at once (one per quota-bound client and
    /// kind); when full, the one unused longest goes.
    pub(crate) quota_sensors_per_core_max: usize,
    /// The node's rack (Kafka `broker.rack`), reported in Metadata and used for placement.
    pub(crate) rack: Option<String>,
    /// Cluster settings; `None`: a one-node cluster, exactly as before clusters existed.
    pub(crate) cluster: Option<ClusterConfig>,
}

/// How this node joins a cluster (`seeds` and `rpc_addr` set).
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    /// The node-to-node listener (core 0).
    pub(crate) rpc_addr: SocketAddr,
    /// host:port other nodes connect to; defaults to `rpc_addr`.
    pub(crate) advertised_rpc_addr: String,
    /// The controller voters: every node lists the same ones.
    pub(crate) seeds: Vec<Seed>,
    /// Every internal frame carries it; a frame of another cluster is refused.
    pub(crate) cluster_id: shoal_rpc::ClusterId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seed {
    pub(crate) node: shoal_model::NodeId,
    /// host:port of its node-to-node listener.
    pub(crate) addr: String,
}

/// Node ids of a cluster are below this (bounds the broker table and the ids in frames).
pub(crate) const CLUSTER_NODE_IDS_MAX: i64 = 1024;

/// Controller voter counts a cluster may have (a majority survives one, resp. two, losses).
const SEED_COUNTS: [usize; 3] = [1, 3, 5];

/// Parses `seeds = 1@host:port,2@host:port,...`.
pub(crate) fn parse_seeds(text: &str) -> anyhow::Result<Vec<Seed>> {
    let mut seeds = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| anyhow::anyhow!("seed {item:?} is not id@host:port"))?;
        let node = shoal_model::NodeId(
            id.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("seed {item:?}: node id: {e}"))?,
        );
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("seed {item:?}: {addr:?} is not host:port"))?;
        if host.is_empty()
            || port.parse::<u16>().is_err()
            || node.0 < 0
            || i64::from(node.0) >= CLUSTER_NODE_IDS_MAX
        {
            anyhow::bail!(
                "seed {item:?}: want id@host:port with a node id 0..{CLUSTER_NODE_IDS_MAX}"
            );
        }
        if seeds.iter().any(|s: &Seed| s.node == node) {
            anyhow::bail!("seeds name node {node} twice");
        }
        seeds.push(Seed {
            node,
            addr: addr.to_string(),
        });
    }
    if !SEED_COUNTS.contains(&seeds.len()) {
        anyhow::bail!(
            "seeds lists {} controller voters; a cluster has 1, 3 or 5",
            seeds.len()
        );
    }
    Ok(seeds)
}

/// The cluster id: `cluster_id` (32 hex digits) if set, else derived from the seed list, so
/// nodes started with the same seeds agree without another setting.
fn cluster_id(configured: Option<&str>, seeds: &[Seed]) -> anyhow::Result<shoal_rpc::ClusterId> {
    if let Some(text) = configured {
        let bytes = parse_hex16(text)
            .ok_or_else(|| anyhow::anyhow!("cluster_id {text:?} is not 32 hex digits"))?;
        return Ok(shoal_rpc::ClusterId(bytes));
    }
    let mut sorted: Vec<String> = seeds
        .iter()
        .map(|s| format!("{}@{}", s.node, s.addr))
        .collect();
    sorted.sort();
    let text = format!("shoal-cluster:{}", sorted.join(","));
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let crc = crc32c::crc32c_append(i as u32, text.as_bytes());
        chunk.copy_from_slice(&crc.to_be_bytes());
    }
    Ok(shoal_rpc::ClusterId(bytes))
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

fn resolve_cluster(
    values: &std::collections::BTreeMap<String, String>,
    node_id: i32,
) -> anyhow::Result<Option<ClusterConfig>> {
    let (seeds, rpc_addr) = (values.get("seeds"), values.get("rpc_addr"));
    let (seeds, rpc_addr) = match (seeds, rpc_addr) {
        (None, None) => {
            if values.contains_key("advertised_rpc_addr") || values.contains_key("cluster_id") {
                anyhow::bail!("advertised_rpc_addr and cluster_id need seeds and rpc_addr");
            }
            return Ok(None);
        }
        (Some(seeds), Some(rpc_addr)) => (parse_seeds(seeds)?, rpc_addr),
        _ => anyhow::bail!("a cluster node needs both seeds and rpc_addr"),
    };
    let rpc_addr: SocketAddr = rpc_addr
        .parse()
        .map_err(|e| anyhow::anyhow!("rpc_addr {rpc_addr:?}: {e}"))?;
    if node_id < 0 || i64::from(node_id) >= CLUSTER_NODE_IDS_MAX {
        anyhow::bail!("node_id of a cluster node must be 0..{CLUSTER_NODE_IDS_MAX}");
    }
    let advertised_rpc_addr = values
        .get("advertised_rpc_addr")
        .cloned()
        .unwrap_or_else(|| rpc_addr.to_string());
    let cluster_id = cluster_id(values.get("cluster_id").map(String::as_str), &seeds)?;
    Ok(Some(ClusterConfig {
        rpc_addr,
        advertised_rpc_addr,
        seeds,
        cluster_id,
    }))
}

/// Every key a config file or `SHOAL_<KEY>` variable may set.
pub(crate) const KEYS: &[&str] = &[
    "data_dir",
    "kafka_addr",
    "advertised_addr",
    "admin_addr",
    "cores",
    "memory",
    "node_id",
    "auto_create_topics",
    "default_partitions",
    "default_replication_factor",
    "request_bytes_max",
    "requests_inflight_per_connection_max",
    "requests_inflight_bytes_max",
    "connections_max",
    "disk_reserve_bytes",
    "fetch_sessions_max",
    "fetch_session_eviction_ms",
    "log_cleaner_backoff_ms",
    "log_cleaner_dedupe_buffer_bytes",
    "log_cleaner_io_bytes_per_second_max",
    "quota_window_samples",
    "quota_window_sample_ms",
    "quota_sensors_per_core_max",
    "rack",
    "rpc_addr",
    "advertised_rpc_addr",
    "seeds",
    "cluster_id",
];

impl Config {
    pub(crate) fn resolve(args: &StartArgs) -> anyhow::Result<Config> {
        let mut values = std::collections::BTreeMap::new();
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let (key, value) = line.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("{}:{}: expected key = value", path.display(), number + 1)
                })?;
                let key = key.trim();
                if !KEYS.contains(&key) {
                    anyhow::bail!("{}:{}: unknown key {key:?}", path.display(), number + 1);
                }
                let _ = values.insert(key.to_string(), value.trim().trim_matches('"').to_string());
            }
        }
        for key in KEYS {
            if let Ok(value) = std::env::var(format!("SHOAL_{}", key.to_uppercase())) {
                let _ = values.insert((*key).to_string(), value);
            }
        }
        let flag = |key: &str, value: Option<String>| value.or_else(|| values.get(key).cloned());
        let parse = |key: &str, value: Option<String>, default: &str| -> anyhow::Result<String> {
            Ok(flag(key, value).unwrap_or_else(|| default.to_string()))
        };
        let cores_default = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string();
        let kafka_addr: SocketAddr = parse(
            "kafka_addr",
            args.kafka_addr.map(|a| a.to_string()),
            "127.0.0.1:9092",
        )?
        .parse()?;
        let advertised = parse(
            "advertised_addr",
            args.advertised_addr.clone(),
            &kafka_addr.to_string(),
        )?;
        let (host, port) = advertised
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("advertised_addr {advertised:?} is not host:port"))?;
        let config = Config {
            data_dir: PathBuf::from(parse(
                "data_dir",
                args.data_dir.as_ref().map(|p| p.display().to_string()),
                "./shoal-data",
            )?),
            kafka_addr,
            advertised_host: host.trim_matches(['[', ']']).to_string(),
            advertised_port: port.parse()?,
            admin_addr: parse(
                "admin_addr",
                args.admin_addr.map(|a| a.to_string()),
                "127.0.0.1:9644",
            )?
            .parse()?,
            cores: parse("cores", args.cores.map(|c| c.to_string()), &cores_default)?.parse()?,
            memory_bytes: parse("memory", args.memory.map(|m| m.to_string()), "1073741824")?
                .parse()?,
            node_id: parse("node_id", None, "0")?.parse()?,
            auto_create_topics: parse("auto_create_topics", None, "true")?.parse()?,
            default_partitions: parse("default_partitions", None, "1")?.parse()?,
            default_replication_factor: parse("default_replication_factor", None, "3")?.parse()?,
            request_bytes_max: parse("request_bytes_max", None, "104857600")?.parse()?,
            requests_inflight_per_connection_max: parse(
                "requests_inflight_per_connection_max",
                None,
                "64",
            )?
            .parse()?,
            requests_inflight_bytes_max: parse("requests_inflight_bytes_max", None, "268435456")?
                .parse()?,
            connections_max: parse("connections_max", None, "10000")?.parse()?,
            disk_reserve_bytes: parse("disk_reserve_bytes", None, "1073741824")?.parse()?,
            fetch_sessions_max: parse("fetch_sessions_max", None, "1000")?.parse()?,
            fetch_session_eviction_ms: parse("fetch_session_eviction_ms", None, "120000")?
                .parse()?,
            log_cleaner_backoff_ms: parse("log_cleaner_backoff_ms", None, "15000")?.parse()?,
            quota_window_samples: parse("quota_window_samples", None, "11")?.parse()?,
            quota_window_sample_ms: parse("quota_window_sample_ms", None, "1000")?.parse()?,
            quota_sensors_per_core_max: parse("quota_sensors_per_core_max", None, "10000")?
                .parse()?,
            log_cleaner_dedupe_buffer_bytes: parse(
                "log_cleaner_dedupe_buffer_bytes",
                None,
                "134217728",
            )?
            .parse()?,
            // Paced by default (Kafka's default is unpaced): on the benchmark machine an
            // unpaced cleaning tripled produce p99 on its core, 50 MiB/s per core kept it
            // within 1.7x (benches/RESULTS.md, "Log compaction").
            log_cleaner_io_bytes_per_second_max: parse(
                "log_cleaner_io_bytes_per_second_max",
                None,
                "104857600",
            )?
            .parse()?,
            rack: values.get("rack").cloned().filter(|r| !r.is_empty()),
            cluster: None,
        };
        let config = Config {
            cluster: resolve_cluster(&values, config.node_id)?,
            ..config
        };
        if config.cores == 0
            || config.default_partitions < 1
            || config.default_replication_factor < 1
            || config.requests_inflight_per_connection_max == 0
            || config.requests_inflight_bytes_max == 0
            || config.connections_max == 0
        {
            anyhow::bail!("cores, default_partitions, default_replication_factor, requests_inflight_per_connection_max, requests_inflight_bytes_max and connections_max must be positive");
        }
        if config.quota_window_samples < 2
            || config.quota_window_sample_ms == 0
            || config.quota_sensors_per_core_max == 0
        {
            anyhow::bail!("quota_window_samples must be at least 2, quota_window_sample_ms and quota_sensors_per_core_max positive");
        }
        Ok(config)
    }

    /// Per-core budgets: a quarter of the memory for DMA write buffers, a quarter for the batch
    /// cache, the rest for requests and indexes.
    pub(crate) fn pool_bytes_per_core(&self) -> usize {
        ((self.memory_bytes / 4) / self.cores as u64).max(8 << 20) as usize
    }

    /// This core's share of `requests_inflight_bytes_max` (at least one page).
    pub(crate) fn request_bytes_per_core(&self) -> u64 {
        (self.requests_inflight_bytes_max / self.cores as u64).max(4096)
    }

    /// This core's share of `connections_max` (at least one).
    pub(crate) fn connections_per_core(&self) -> usize {
        self.connections_max.div_ceil(self.cores)
    }

    /// This core's share of `log_cleaner_dedupe_buffer_bytes` (at least 1 MiB).
    pub(crate) fn cleaner_map_bytes_per_core(&self) -> usize {
        (self.log_cleaner_dedupe_buffer_bytes / self.cores as u64).max(1 << 20) as usize
    }

    pub(crate) fn cache_bytes_per_core(&self) -> usize {
        ((self.memory_bytes / 4) / self.cores as u64).max(4 << 20) as usize
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_cluster_settings_is_one_node() {
        assert!(resolve_cluster(&values(&[]), 0).expect("ok").is_none());
    }

    #[test]
    fn seeds_parse_and_are_checked() {
        let seeds = parse_seeds("0@10.0.0.1:33145, 1@10.0.0.2:33145,2@h:1").expect("three");
        assert_eq!(seeds.len(), 3);
        assert_eq!(seeds[1].node, shoal_model::NodeId(1));
        assert_eq!(seeds[2].addr, "h:1");
        for bad in [
            "0@10.0.0.1:33145,1@10.0.0.2:33145", // even: no majority survives a loss
            "0@a:1,0@b:1,2@c:1",                 // duplicate id
            "0@a,1@b:1,2@c:1",                   // no port
            "x@a:1",                             // not a number
            "-1@a:1",                            // negative id
            "0@a:1,1@b:1,2@c:1,3@d:1,4@e:1,5@f:1", // six
        ] {
            assert!(parse_seeds(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cluster_settings_come_together() {
        let seeds = "0@a:1,1@b:1,2@c:1";
        assert!(resolve_cluster(&values(&[("seeds", seeds)]), 0).is_err());
        assert!(resolve_cluster(&values(&[("rpc_addr", "127.0.0.1:1")]), 0).is_err());
        assert!(resolve_cluster(&values(&[("cluster_id", "00")]), 0).is_err());
        let both = values(&[("seeds", seeds), ("rpc_addr", "127.0.0.1:1")]);
        let cluster = resolve_cluster(&both, 1).expect("ok").expect("a cluster");
        assert_eq!(cluster.advertised_rpc_addr, "127.0.0.1:1");
        // Nodes with the same seeds derive the same id, whatever order they list them in.
        let reordered = values(&[("seeds", "2@c:1,0@a:1,1@b:1"), ("rpc_addr", "127.0.0.1:2")]);
        let other = resolve_cluster(&reordered, 2)
            .expect("ok")
            .expect("a cluster");
        assert_eq!(cluster.cluster_id, other.cluster_id);
        let explicit = values(&[
            ("seeds", seeds),
            ("rpc_addr", "127.0.0.1:1"),
            ("cluster_id", "0123456789abcdef0123456789ABCDEF"),
        ]);
        let cluster = resolve_cluster(&explicit, 0)
            .expect("ok")
            .expect("a cluster");
        assert_eq!(cluster.cluster_id.0[0], 0x01);
        assert_eq!(cluster.cluster_id.0[15], 0xef);
    }
}
