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
    "request_bytes_max",
    "requests_inflight_per_connection_max",
    "requests_inflight_bytes_max",
    "connections_max",
    "disk_reserve_bytes",
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
        };
        if config.cores == 0
            || config.default_partitions < 1
            || config.requests_inflight_per_connection_max == 0
            || config.requests_inflight_bytes_max == 0
            || config.connections_max == 0
        {
            anyhow::bail!("cores, default_partitions, requests_inflight_per_connection_max, requests_inflight_bytes_max and connections_max must be positive");
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

    pub(crate) fn cache_bytes_per_core(&self) -> usize {
        ((self.memory_bytes / 4) / self.cores as u64).max(4 << 20) as usize
    }
}
