//! One client connection, served on the core that accepted it.
//!
//! A reader task reads size-prefixed frames, decodes them and spawns each request's handler at
//! once (requests are pipelined); the handler tasks go into a bounded queue in arrival order.
//! The writer loop takes them from the queue in that order and writes each response when its
//! handler finishes, so responses stay in request order even when a later request finishes
//! first. The queue bound (`requests_inflight_per_connection_max`) is the backpressure: when it
//! is full the reader stops reading the socket.
//!
//! Memory: before it allocates a frame, the reader takes the frame's size from its core's
//! share of `requests_inflight_bytes_max` (a FIFO semaphore, so a large request is not starved
//! by small ones; a frame larger than the whole share takes the whole share) and holds it until
//! the frame's response is written. However many connections send large requests, a core
//! holds at most its share of request bytes; the others wait, unread, in their sockets.
//! A core holds at most `connections_max / cores` connections; one more is closed at once.
//!
//! Bad input closes this connection only, with a logged reason: an oversized or negative frame
//! size, an unknown API key, an unsupported version (except ApiVersions, which gets the v0
//! fallback answer), a body that does not decode.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use shoal_kafka::codec::{self, DecodeError};
use shoal_kafka::handlers::api_versions;

use crate::cluster_impl::ShardCluster;
use crate::shard::Shard;

/// A response in the making: its API (for the fault switch) and its bytes, or nothing to send;
/// and the request bytes it holds of the core's budget, given back once it is written.
type Pending = (glommio::Task<Option<(ApiKey, BytesMut)>>, Held);

/// Request bytes taken from the core's budget, given back (and uncounted) when dropped:
/// after the response is written, or with the connection.
struct Held {
    _permit: glommio::sync::StaticPermit,
    units: u64,
    metrics: std::sync::Arc<crate::metrics::CoreMetrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self
            .metrics
            .request_bytes_inflight
            .fetch_sub(self.units, Ordering::Relaxed);
    }
}

/// Test-only fault switch: `SHOAL_FAULT_DROP_PRODUCE_RESPONSE_EVERY=N` closes the connection
/// instead of sending every N-th Produce response, after the append completed. Real clients
/// then retry a batch that is already stored: this is how the idempotent producer is tested.
fn drop_produce_response_every() -> Option<u64> {
    static EVERY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| {
        let every = std::env::var("SHOAL_FAULT_DROP_PRODUCE_RESPONSE_EVERY")
            .ok()?
            .parse()
            .ok()
            .filter(|&n| n > 0);
        if let Some(n) = every {
            tracing::warn!(
                every = n,
                "fault injection on: dropping connections instead of Produce responses"
            );
        }
        every
    })
}

pub(crate) async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    let connections_max = shard.config.connections_per_core();
    if shard.metrics.connections.load(Ordering::Relaxed) >= connections_max as u64 {
        let _ = shard
            .metrics
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, connections_max, "closing a connection: this core holds connections_max / cores");
        return;
    }
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let limit = shard.config.requests_inflight_per_connection_max;
    let (queue, pending) = glommio::channels::local_channel::new_bounded::<Pending>(limit);
    let request_bytes_max = shard.config.request_bytes_max;
    let budget = shard.request_bytes.clone();
    let budget_total = shard.config.request_bytes_per_core();
    let reader_metrics = shard.metrics.clone();
    let cluster = ShardCluster(shard.clone());
    let metrics = shard.metrics.clone();
    let _ = metrics.connections.fetch_add(1, Ordering::Relaxed);
    let reading: JoinHandle<()> = glommio::spawn_local(async move {
        loop {
            let read = read_frame(
                &mut reader,
                request_bytes_max,
                (&budget, budget_total, &reader_metrics),
            );
            let frame = match read.await {
                Ok(Some(frame)) => frame,
                Ok(None) => return, // The client closed the connection.
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return;
                }
            };
            let (frame, held) = frame;
            let _ = cluster
                .0
                .metrics
                .bytes_in
                .fetch_add(frame.len() as u64 + 4, Ordering::Relaxed);
            let task = match codec::decode_request(frame) {
                Ok(request) => {
                    let cluster = cluster.clone();
                    glommio::spawn_local(async move { respond(&cluster, request).await })
                }
                Err(DecodeError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    ..
                }) => {
                    let body = ResponseKind::ApiVersions(api_versions::unsupported_version());
                    let encoded =
                        codec::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
                            .ok()
                            .map(|bytes| (ApiKey::ApiVersions, bytes));
                    glommio::spawn_local(async move { encoded })
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing connection on a bad request");
                    return;
                }
            };
            if queue.send((task, held)).await.is_err() {
                return;
            }
        }
    })
    .detach();
    let mut produce_responses: u64 = 0;
    while let Some((task, held)) = pending.recv().await {
        let Some((api_key, response)) = task.await else {
            drop(held);
            continue;
        };
        if api_key == ApiKey::Produce {
            produce_responses += 1;
            if drop_produce_response_every().is_some_and(|n| produce_responses.is_multiple_of(n)) {
                tracing::warn!(
                    "fault injection: closing the connection instead of a Produce response"
                );
                break;
            }
        }
        let _ = metrics
            .bytes_out
            .fetch_add(response.len() as u64, Ordering::Relaxed);
        let written = writer.write_all(&response).await;
        drop(held);
        if let Err(error) = written {
            tracing::debug!(%error, "client went away before its response");
            break;
        }
    }
    // The reader ends on its own at end of stream or on a bad frame.
    drop(reading);
    let _ = writer.close().await;
    let _ = metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn respond(cluster: &ShardCluster, request: codec::Request) -> Option<(ApiKey, BytesMut)> {
    let (api_key, version, correlation_id) = (
        request.api_key,
        request.version,
        request.header.correlation_id,
    );
    let started = Instant::now();
    let body = shoal_kafka::handle(cluster, request).await;
    cluster.0.metrics.record_request(api_key as i16, started);
    let body = body?;
    match codec::encode_response(api_key, version, correlation_id, &body) {
        Ok(bytes) => Some((api_key, bytes)),
        Err(error) => {
            tracing::error!(?api_key, version, %error, "cannot encode a response");
            None
        }
    }
}

/// Reads one frame, once the core's request budget has room for it (the permit holds that
/// room). `Ok(None)` at a clean end of stream.
async fn read_frame<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    request_bytes_max: usize,
    (budget, budget_total, metrics): (
        &Rc<glommio::sync::Semaphore>,
        u64,
        &std::sync::Arc<crate::metrics::CoreMetrics>,
    ),
) -> Result<Option<(Bytes, Held)>, String> {
    let mut prefix = [0u8; codec::FRAME_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(format!("read failed: {error}")),
    }
    let size = codec::frame_size(&prefix).unwrap_or(-1);
    let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
    if size > request_bytes_max {
        return Err(format!(
            "request of {size} bytes exceeds request_bytes_max ({request_bytes_max})"
        ));
    }
    // A frame larger than the whole share waits for all of it (FIFO: it is not starved).
    let units = (size as u64).clamp(1, budget_total);
    let permit = budget
        .acquire_static_permit(units)
        .await
        .map_err(|_| "the core is stopping".to_string())?;
    let _ = metrics
        .request_bytes_inflight
        .fetch_add(units, Ordering::Relaxed);
    let held = Held {
        _permit: permit,
        units,
        metrics: metrics.clone(),
    };
    let mut frame = BytesMut::zeroed(size);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| format!("truncated frame: {e}"))?;
    Ok(Some((frame.freeze(), held)))
}
