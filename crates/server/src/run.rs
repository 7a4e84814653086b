//! Startup and shutdown of one core: join the mesh, open owned partitions, serve the mesh and
//! the Kafka listener until asked to stop, then sync and close every log.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{select, Either};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use shoal_io::SystemClock;
use shoal_runtime::GlommioDisk;
use shoal_storage::{BatchCache, BufferPool, LogContext};

use crate::config::Config;
use crate::mesh::ShardMsg;
use crate::metadata::Snapshot;
use crate::shard::Shard;

/// How often a core looks at the stop flag set by the signal handler.
const STOP_POLL_MS: u64 = 100;
/// How long in-flight requests get to finish after the listener closed.
const DRAIN_MS: u64 = 500;

pub(crate) async fn run_core(
    config: Config,
    snapshot: Arc<Snapshot>,
    mesh: MeshBuilder<ShardMsg, Full>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("joining the core mesh failed: {e}"))?;
    let ctx = LogContext {
        disk: Rc::new(GlommioDisk::new()),
        clock: Rc::new(SystemClock),
        pool: BufferPool::new(config.pool_bytes_per_core()),
        cache: BatchCache::new(config.cache_bytes_per_core()),
    };
    let shard = Rc::new(Shard::new(config.clone(), snapshot, senders, ctx));
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                glommio::spawn_local(shard.clone().serve_message(message)).detach();
            }
        })
        .detach();
    }
    shard.open_owned().await;
    glommio::spawn_local(shard.clone().housekeeping()).detach();
    let listener = TcpListener::bind(config.kafka_addr)
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.kafka_addr))?;
    tracing::info!(core = shard.id, addr = %config.kafka_addr, "serving Kafka");
    let mut accept = Box::pin(listener.accept());
    loop {
        let tick = Box::pin(glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)));
        match select(accept, tick).await {
            Either::Left((accepted, _)) => {
                match accepted {
                    Ok(stream) => {
                        glommio::spawn_local(crate::connection::serve(shard.clone(), stream))
                            .detach();
                    }
                    Err(error) => tracing::warn!(%error, "accept failed"),
                }
                accept = Box::pin(listener.accept());
            }
            Either::Right(((), pending)) => {
                accept = pending;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    tracing::info!(core = shard.id, "stopping: no new connections, draining");
    drop(accept);
    drop(listener);
    shard.stopping.set(true);
    glommio::timer::sleep(Duration::from_millis(DRAIN_MS)).await;
    shard.close_all().await;
    tracing::info!(
        core = shard.id,
        "stopped: every partition synced and closed"
    );
    Ok(())
}
