//! The admin HTTP endpoint, served by core 0: `/metrics` (Prometheus text, every core),
//! `/v1/status/ready` (200 once every core serves Kafka, 503 before), `/v1/partitions` (the
//! partition-to-core map, JSON). A deliberately small HTTP/1.1 server: one request per
//! connection, bounded request size, `Connection: close`.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::metrics::{self, CoreMetrics};
use crate::shard::Shard;

/// Request head bytes accepted; anything longer is refused.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// What the endpoint reads, shared from `main` (read-only atomics, no locks).
#[derive(Clone)]
pub(crate) struct AdminView {
    pub(crate) metrics: Vec<Arc<CoreMetrics>>,
    /// Cores that have opened their partitions and bound the Kafka listener.
    pub(crate) ready_cores: Arc<AtomicUsize>,
    pub(crate) disk: Arc<crate::disk_guard::DiskGuard>,
}

pub(crate) async fn serve(shard: Rc<Shard>, listener: TcpListener, view: AdminView) {
    loop {
        if shard.stopping.get() {
            return;
        }
        match listener.accept().await {
            Ok(stream) => {
                let (shard, view) = (shard.clone(), view.clone());
                glommio::spawn_local(async move { answer(&shard, stream, &view).await }).detach();
            }
            Err(error) => tracing::warn!(%error, "admin accept failed"),
        }
    }
}

async fn answer(shard: &Shard, mut stream: TcpStream, view: &AdminView) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            let _ = respond(&mut stream, 431, "text/plain", "request head too large\n").await;
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = route(shard, method, path, view);
    let _ = respond(&mut stream, status, content_type, &body).await;
}

/// The series that belong to the broker, not to one core.
fn broker_wide(view: &AdminView) -> String {
    let series = [
        ("shoal_disk_full", "gauge", u64::from(view.disk.is_full())),
        (
            "shoal_disk_reserve_releases_total",
            "counter",
            view.disk.releases(),
        ),
        (
            "shoal_log_lines_dropped_total",
            "counter",
            crate::LOG_LINES_DROPPED.load(Ordering::Relaxed),
        ),
    ];
    series
        .iter()
        .map(|(name, kind, value)| format!("# TYPE {name} {kind}\n{name} {value}\n"))
        .collect()
}

/// The cluster's series (a cluster node only): controller term, leader and leader changes,
/// metadata version, missed heartbeats, node-to-node traffic.
fn cluster_series(shard: &Shard) -> String {
    let Some(view) = shard
        .cluster_view
        .borrow()
        .as_ref()
        .map(|v| v.borrow().clone())
    else {
        return String::new();
    };
    let series = [
        ("shoal_controller_term", "gauge", view.term as i64),
        (
            "shoal_controller_leader",
            "gauge",
            view.leader.map_or(-1, i64::from),
        ),
        (
            "shoal_controller_leader_changes_total",
            "counter",
            view.leader_changes as i64,
        ),
        ("shoal_metadata_version", "gauge", view.applied as i64),
        (
            "shoal_broker_heartbeats_missed_total",
            "counter",
            view.heartbeats_missed as i64,
        ),
        (
            "shoal_rpc_received_bytes_total",
            "counter",
            view.rpc_bytes_in as i64,
        ),
        (
            "shoal_rpc_sent_bytes_total",
            "counter",
            view.rpc_bytes_out as i64,
        ),
        (
            "shoal_rpc_frames_refused_total",
            "counter",
            view.rpc_frames_refused as i64,
        ),
        (
            "shoal_rpc_envelopes_dropped_total",
            "counter",
            view.rpc_envelopes_dropped as i64,
        ),
        (
            "shoal_controller_registrations_refused_total",
            "counter",
            view.registrations_refused as i64,
        ),
        (
            "shoal_rpc_heartbeat_round_trip_us_max",
            "gauge",
            view.heartbeat_round_trip_us_max as i64,
        ),
    ];
    let mut out: String = series
        .iter()
        .map(|(name, kind, value)| format!("# TYPE {name} {kind}\n{name} {value}\n"))
        .collect();
    // Heartbeat round trips to the controller leader: the node-to-node latency.
    let name = "shoal_rpc_heartbeat_round_trip_seconds";
    out.push_str(&format!("# TYPE {name} histogram\n"));
    view.heartbeat_round_trip.render(&mut out, name, "");
    out
}

fn route(shard: &Shard, method: &str, path: &str, view: &AdminView) -> (u16, &'static str, String) {
    if method != "GET" {
        return (405, "text/plain", "only GET is served\n".to_string());
    }
    match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            metrics::render(&view.metrics) + &broker_wide(view) + &cluster_series(shard),
        ),
        "/v1/status/ready" => {
            let ready = view.ready_cores.load(Ordering::Relaxed);
            if ready >= shard.cores && !shard.stopping.get() {
                (200, "text/plain", "ready\n".to_string())
            } else {
                (
                    503,
                    "text/plain",
                    format!("not ready: {ready} of {} cores serving\n", shard.cores),
                )
            }
        }
        "/v1/cluster" => (200, "application/json", cluster_json(shard) + "\n"),
        "/v1/partitions" => {
            let snapshot = shard.snapshot();
            let map: serde_json::Map<String, serde_json::Value> = snapshot
                .topics
                .iter()
                .map(|(name, meta)| {
                    let partitions = meta
                        .owners
                        .iter()
                        .enumerate()
                        .map(|(partition, core)| serde_json::json!({ "partition": partition, "core": core }))
                        .collect();
                    (name.clone(), serde_json::Value::Array(partitions))
                })
                .collect();
            let body = serde_json::json!({ "cores": shard.cores, "metadata_version": snapshot.version, "topics": map });
            (200, "application/json", format!("{body}\n"))
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.close().await
}

/// `/v1/cluster`: this node's view of the cluster (controller voters, leader, term, metadata
/// version, registered brokers, node-to-node traffic). A node without cluster settings is a
/// one-node cluster of its own.
fn cluster_json(shard: &Shard) -> String {
    let view = match (shard.cluster_view.borrow().as_ref(), shard.cluster_handle()) {
        (Some(view), Some(cluster)) => Some(view.borrow().to_json(&cluster.state.borrow())),
        _ => None,
    };
    let json = view.unwrap_or_else(|| {
        let config = &shard.config;
        serde_json::json!({
            "node_id": config.node_id,
            "cluster_id": shard.snapshot().cluster_id,
            "mode": "single-node",
            "controller": { "voters": [config.node_id], "leader": config.node_id },
            "metadata_version": shard.snapshot().version,
            "brokers": [{
                "node_id": config.node_id,
                "kafka": format!("{}:{}", config.advertised_host, config.advertised_port),
                "rack": config.rack, "fenced": false,
            }],
        })
    });
    json.to_string()
}
