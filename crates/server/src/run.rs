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
use shoal_storage::{BatchCache, BufferPool, LogContext};

use crate::admin::AdminView;
use crate::config::Config;
use crate::mesh::ShardMsg;
use crate::metadata::Snapshot;
use crate::metrics::CoreMetrics;
use crate::shard::Shard;

/// How often a core looks at the stop flag set by the signal handler.
const STOP_POLL_MS: u64 = 100;
/// Longest a parked core sleeps without looking at its cross-core channels.
const WAKEUP_TICK_MS: u64 = 5;
/// How long in-flight requests get to finish after the listener closed.
const DRAIN_MS: u64 = 500;

pub(crate) async fn run_core(
    config: Config,
    snapshot: Arc<Snapshot>,
    meshes: [MeshBuilder<ShardMsg, Full>; 3],
    stop: Arc<AtomicBool>,
    metrics: Arc<CoreMetrics>,
    admin: AdminView,
    shared: crate::health::Shared,
) -> anyhow::Result<()> {
    // glommio 0.9 can lose the cross-executor wake-up of a parked executor (seen here: the
    // mesh join of 4 executors on 2 CPUs sleeps forever until any signal arrives). A parked
    // executor checks its remote channels whenever it wakes, so a periodic timer bounds such a
    // stall to one tick, for the join and for every later cross-core message.
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(Duration::from_millis(WAKEUP_TICK_MS)).await;
        }
    })
    .detach();
    let [mesh, control_mesh, reply_mesh] = meshes;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("joining the core mesh failed: {e}"))?;
    let (control_senders, mut control_receivers) = control_mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("joining the control mesh failed: {e}"))?;
    let (reply_senders, mut reply_receivers) = reply_mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("joining the reply mesh failed: {e}"))?;
    let ctx = LogContext {
        disk: Rc::new(crate::metrics::metered_disk(metrics.clone())),
        clock: Rc::new(SystemClock),
        pool: BufferPool::new(config.pool_bytes_per_core()),
        cache: BatchCache::new(config.cache_bytes_per_core()),
    };
    let (pool, cache) = (ctx.pool.clone(), ctx.cache.clone());
    let shard = Rc::new(Shard::new(
        config.clone(),
        snapshot,
        (senders, control_senders, reply_senders),
        ctx,
        metrics.clone(),
        shared,
    ));
    metrics.shard.store(shard.id, Ordering::Relaxed);
    glommio::spawn_local(update_gauges(shard.clone(), pool, cache)).detach();
    // Request jobs from other cores: at most MESH_JOBS_INFLIGHT_MAX run at once; beyond that
    // this core stops reading its channels and the senders wait (their channels are bounded).
    let jobs = Rc::new(glommio::sync::Semaphore::new(
        shoal_model::constants::MESH_JOBS_INFLIGHT_MAX,
    ));
    for (_, receiver) in receivers.streams() {
        let (shard, jobs) = (shard.clone(), jobs.clone());
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                let permit = if matches!(message, ShardMsg::Job { .. }) {
                    let Ok(permit) = jobs.acquire_static_permit(1).await else {
                        break;
                    };
                    Some(permit)
                } else {
                    None
                };
                shard.receive(message, permit);
            }
        })
        .detach();
    }
    // Control jobs (the controller's fan-out) are few by construction, and replies are taken
    // off their channels at once: neither waits for a permit (see `mesh.rs`).
    for (_, receiver) in control_receivers
        .streams()
        .into_iter()
        .chain(reply_receivers.streams())
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                shard.receive(message, None);
            }
        })
        .detach();
    }
    shard.open_owned().await;
    crate::groups::start(shard.clone()).await;
    let cluster_stopping = Rc::new(std::cell::Cell::new(false));
    if let (0, Some(cluster)) = (shard.id, config.cluster.as_ref()) {
        // A failed write of the controller log is never retried: the broker stops at once
        // (fail-stop) and recovers the log from disk when it is restarted.
        let fatal: Rc<dyn Fn(String)> = Rc::new(|reason: String| {
            tracing::error!("{reason}; stopping the broker");
            std::process::exit(70);
        });
        let (view, handle) =
            crate::cluster::start(shard.clone(), cluster, cluster_stopping.clone(), fatal).await?;
        *shard.cluster_view.borrow_mut() = Some(view);
        *shard.cluster.borrow_mut() = Some(handle);
    }
    glommio::spawn_local(shard.clone().housekeeping()).detach();
    // Log compaction is background work: a queue of its own with a tenth of the default
    // queue's shares, preempted after 1 ms so request tasks wait at most about that long.
    let cleaner_queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(100),
        glommio::Latency::Matters(Duration::from_millis(1)),
        "log-cleaner",
    );
    glommio::spawn_local_into(shard.clone().log_cleaner(), cleaner_queue)
        .map_err(|e| anyhow::anyhow!("starting the log cleaner: {e}"))?
        .detach();
    let listener = TcpListener::bind(config.kafka_addr)
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.kafka_addr))?;
    tracing::info!(core = shard.id, addr = %config.kafka_addr, "serving Kafka");
    if shard.id == 0 {
        let admin_listener = TcpListener::bind(config.admin_addr)
            .map_err(|e| anyhow::anyhow!("binding admin {}: {e}", config.admin_addr))?;
        tracing::info!(addr = %config.admin_addr, "serving admin HTTP");
        glommio::spawn_local(crate::admin::serve(
            shard.clone(),
            admin_listener,
            admin.clone(),
        ))
        .detach();
    }
    let _ = admin.ready_cores.fetch_add(1, Ordering::Relaxed);
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
    if shard.id == 0 {
        // Every core's leaders hand their partitions away while the node-to-node transport
        // (core 0's) still runs; only then does it stop.
        let cores: Vec<usize> = (0..shard.cores).collect();
        futures::future::join_all(
            cores
                .into_iter()
                .map(|core| shard.control(core, |shard| async move { shard.hand_off_all().await })),
        )
        .await;
    }
    shard.stopping.set(true);
    cluster_stopping.set(true);
    glommio::timer::sleep(Duration::from_millis(DRAIN_MS)).await;
    shard.close_all().await;
    crate::groups::close().await;
    tracing::info!(
        core = shard.id,
        "stopped: every partition synced and closed"
    );
    Ok(())
}

/// Refreshes this core's gauges once a second.
async fn update_gauges(shard: Rc<Shard>, pool: BufferPool, cache: BatchCache) {
    while !shard.stopping.get() {
        let metrics = &shard.metrics;
        metrics
            .pool_used_bytes
            .store(pool.used_bytes() as u64, Ordering::Relaxed);
        metrics
            .pool_budget_bytes
            .store(pool.budget_bytes() as u64, Ordering::Relaxed);
        metrics
            .cache_used_bytes
            .store(cache.used_bytes() as u64, Ordering::Relaxed);
        let snapshot = shard.snapshot();
        let owned = snapshot
            .topics
            .values()
            .flat_map(|t| (0..t.owners.len()).map(move |p| (t, p)))
            .filter(|&(t, p)| t.owners[p] == shard.id && snapshot.is_local(t, p))
            .count();
        metrics.partitions.store(owned as u64, Ordering::Relaxed);
        metrics.record_fetch_sessions(&shard.fetch_sessions.borrow());
        glommio::timer::sleep(Duration::from_secs(1)).await;
    }
}
