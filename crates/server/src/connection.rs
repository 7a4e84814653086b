//! One client connection, served on the core that accepted it.
//!
//! A reader task reads size-prefixed frames, decodes them and spawns each request's handler at
//! once (requests are pipelined); the handler tasks go into a bounded queue in arrival order.
//! The writer loop takes them from the queue in that order and writes each response when its
//! handler finishes, so responses stay in request order even when a later request finishes
//! first. The queue bound (`requests_inflight_per_connection_max`) is the backpressure: when it
//! is full the reader stops reading the socket.
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

/// A response in the making: its API (for the fault switch) and its bytes, or nothing to send.
type Pending = glommio::Task<Option<(ApiKey, BytesMut)>>;

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
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let limit = shard.config.requests_inflight_per_connection_max;
    let (queue, pending) = glommio::channels::local_channel::new_bounded::<Pending>(limit);
    let request_bytes_max = shard.config.request_bytes_max;
    let cluster = ShardCluster(shard.clone());
    let metrics = shard.metrics.clone();
    let _ = metrics.connections.fetch_add(1, Ordering::Relaxed);
    let reading: JoinHandle<()> = glommio::spawn_local(async move {
        loop {
            let frame = match read_frame(&mut reader, request_bytes_max).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return, // The client closed the connection.
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return;
                }
            };
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
            if queue.send(task).await.is_err() {
                return;
            }
        }
    })
    .detach();
    let mut produce_responses: u64 = 0;
    while let Some(task) = pending.recv().await {
        let Some((api_key, response)) = task.await else {
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
        if let Err(error) = writer.write_all(&response).await {
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

/// Reads one frame. `Ok(None)` at a clean end of stream.
async fn read_frame<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    request_bytes_max: usize,
) -> Result<Option<Bytes>, String> {
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
    let mut frame = BytesMut::zeroed(size);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| format!("truncated frame: {e}"))?;
    Ok(Some(frame.freeze()))
}
