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
//!
//! Client quotas (see `quotas.rs`): once any quota is set, each request's handler is timed
//! (`request_percentage`) and a Produce counts its frame bytes as the reader takes it
//! (`producer_byte_rate`: the reader mutes itself at once when they earn a throttle); Fetch
//! counts its own bytes. The largest throttle time earned
//! goes into the response's `throttle_time_ms`, and the connection is muted that long
//! (KIP-219): the reader reads and dispatches nothing until then. A client on a version from
//! before KIP-219 gets its response only once the throttle time has passed. Requests the
//! reader had already taken before the mute (pipelined) still run: at most
//! `requests_inflight_per_connection_max`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use shoal_kafka::codec::{self, DecodeError};
use shoal_kafka::handlers::api_versions;
use shoal_kafka::throttle::{client_throttles, throttle_time_ms};
use shoal_quotas::QuotaKind;

use crate::cluster_impl::ShardCluster;
use crate::shard::Shard;

/// A response in the making, and the request bytes it holds of the core's budget, given back
/// once it is written.
type Pending = (glommio::Task<Responded>, Held);

/// A handled request.
struct Responded {
    /// For the fault switch.
    api_key: ApiKey,
    /// Nothing to send: acks=0, or a response that could not be encoded.
    bytes: Option<BytesMut>,
    /// The throttle time the response carries (0: none); the connection is muted that long.
    throttle_ms: u64,
    /// Whether the client waits the throttle time out by itself (KIP-219); if not, the
    /// response is held back that long.
    client_throttles: bool,
}

impl Responded {
    fn unthrottled(api_key: ApiKey, bytes: Option<BytesMut>) -> Responded {
        Responded {
            api_key,
            bytes,
            throttle_ms: 0,
            client_throttles: true,
        }
    }
}

/// Until when the connection reads and dispatches nothing (a throttled client).
type Muted = Rc<Cell<Option<Instant>>>;

/// Mutes the connection for `ms` from now, unless it already is for longer.
fn mute_for(muted: &Muted, ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    muted.set(Some(muted.get().map_or(until, |u| u.max(until))));
}

async fn wait_unmuted(muted: &Muted) {
    while let Some(until) = muted.get() {
        let now = Instant::now();
        if until <= now {
            muted.set(None);
            return;
        }
        glommio::timer::sleep(until - now).await;
    }
}

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
    let muted: Muted = Rc::new(Cell::new(None));
    let reader_muted = muted.clone();
    let reading: JoinHandle<()> = glommio::spawn_local(async move {
        loop {
            wait_unmuted(&reader_muted).await;
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
            let frame_bytes = frame.len() + codec::FRAME_PREFIX_BYTES;
            let _ = cluster
                .0
                .metrics
                .bytes_in
                .fetch_add(frame_bytes as u64, Ordering::Relaxed);
            // A mute that began while this frame was being read holds it back too.
            wait_unmuted(&reader_muted).await;
            let decode_started = Instant::now();
            let decoded = codec::decode_request(frame);
            let mut used = Used {
                busy: decode_started.elapsed(),
                produce_throttle_ms: 0,
            };
            if let Ok(request) = &decoded {
                if request.api_key == ApiKey::Produce && cluster.0.quotas_set() {
                    // Counted as it is read, before the next frame is: a client that
                    // pipelines its batches is muted at once, not after every batch it had
                    // already sent was appended (Kafka reads one request at a time).
                    let client_id = request.header.client_id.as_deref().unwrap_or("");
                    let counted = crate::quotas::Recording::Counted {
                        throttle_ms_max: None,
                    };
                    let earned = cluster
                        .0
                        .quota_record(
                            QuotaKind::ProduceBytes,
                            client_id,
                            frame_bytes as f64,
                            counted,
                        )
                        .await;
                    if earned.ms > 0 {
                        mute_for(&reader_muted, earned.ms);
                    }
                    used.produce_throttle_ms = i32::try_from(earned.ms).unwrap_or(i32::MAX);
                }
            }
            let task = match decoded {
                Ok(request) => {
                    let cluster = cluster.clone();
                    glommio::spawn_local(async move { respond(&cluster, request, used).await })
                }
                Err(DecodeError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    ..
                }) => {
                    let body = ResponseKind::ApiVersions(api_versions::unsupported_version());
                    let encoded =
                        codec::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).ok();
                    let responded = Responded::unthrottled(ApiKey::ApiVersions, encoded);
                    glommio::spawn_local(async move { responded })
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
        let responded = task.await;
        if responded.throttle_ms > 0 {
            mute_for(&muted, responded.throttle_ms);
            let _ = metrics
                .quota_throttled_responses
                .fetch_add(1, Ordering::Relaxed);
            let _ = metrics
                .quota_throttle_ms
                .fetch_add(responded.throttle_ms, Ordering::Relaxed);
            if !responded.client_throttles && responded.bytes.is_some() {
                glommio::timer::sleep(Duration::from_millis(responded.throttle_ms)).await;
            }
        }
        let api_key = responded.api_key;
        let Some(response) = responded.bytes else {
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

async fn respond(cluster: &ShardCluster, request: codec::Request, mut used: Used) -> Responded {
    let (api_key, version, correlation_id) = (
        request.api_key,
        request.version,
        request.header.correlation_id,
    );
    let started = Instant::now();
    let quota_client = cluster.0.quotas_set().then(|| {
        request
            .header
            .client_id
            .as_deref()
            .unwrap_or("")
            .to_string()
    });
    let (mut body, busy) = match &quota_client {
        Some(_) => crate::quotas::Timed::new(shoal_kafka::handle(cluster, request)).await,
        None => (shoal_kafka::handle(cluster, request).await, Duration::ZERO),
    };
    cluster.0.metrics.record_request(api_key as i16, started);
    let throttle_ms = match &quota_client {
        Some(client_id) => {
            used.busy += busy;
            throttle(&cluster.0, client_id, api_key, &used, body.as_mut()).await
        }
        None => 0,
    };
    let bytes = body.and_then(|body| {
        match codec::encode_response(api_key, version, correlation_id, &body) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::error!(?api_key, version, %error, "cannot encode a response");
                None
            }
        }
    });
    Responded {
        api_key,
        bytes,
        throttle_ms: u64::try_from(throttle_ms).unwrap_or(0),
        client_throttles: client_throttles(api_key, version),
    }
}

/// What a request used of a client's quotas.
struct Used {
    /// The throttle its bytes earned against `producer_byte_rate` (a Produce, counted by the
    /// reader).
    produce_throttle_ms: i32,
    /// Core time it took: decoding, and its handler's work on every core (`quotas::Timed`).
    /// Encoding the response is not counted: the throttle time must be in it first.
    busy: Duration,
}

/// Counts a handled request against its client's quotas and puts the largest throttle time
/// earned (a Fetch's own included) into the response; returns it.
async fn throttle(
    shard: &Rc<Shard>,
    client_id: &str,
    api_key: ApiKey,
    used: &Used,
    mut body: Option<&mut ResponseKind>,
) -> i32 {
    let mut ms = body
        .as_deref_mut()
        .and_then(throttle_time_ms)
        .map_or(0, |field| *field);
    if api_key == ApiKey::Produce {
        ms = ms.max(used.produce_throttle_ms);
    }
    // Kafka counts thread time as percent-seconds: a second of one thread's time is 100.
    let percent_seconds = used.busy.as_secs_f64() * 100.0;
    let counted = crate::quotas::Recording::Counted {
        // Kafka caps the request quota's throttle at one sample of the window.
        throttle_ms_max: Some(shard.config.quota_window_sample_ms),
    };
    let earned = shard
        .quota_record(
            QuotaKind::RequestPercentage,
            client_id,
            percent_seconds,
            counted,
        )
        .await;
    ms = ms.max(i32::try_from(earned.ms).unwrap_or(i32::MAX));
    if let Some(field) = body.and_then(throttle_time_ms) {
        *field = ms;
    }
    ms
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
