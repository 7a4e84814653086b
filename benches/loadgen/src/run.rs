//! One workload run: create topics, start consumers (assign(), no group protocol) and
//! producers (one librdkafka client per thread), report every second, and summarise the
//! measured window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::stats::{self, Percentiles, WorkerStats};
use crate::workload::{KeyDistribution, Workload};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process's first call: producers and consumers share this clock, so
/// the send time written into a payload is directly comparable at the consumer.
pub(crate) fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The measured window, by send time in [`now_us`] microseconds.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(&self, us: u64) -> bool {
        us >= self.start && us < self.end
    }
}

pub(crate) struct Options {
    pub(crate) brokers: String,
    pub(crate) label: String,
    pub(crate) keep_topics: bool,
    pub(crate) quiet: bool,
    pub(crate) window_marker: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Second {
    pub(crate) t: u64,
    pub(crate) measured: bool,
    pub(crate) publish_msgs: f64,
    pub(crate) consume_msgs: f64,
    pub(crate) backlog: i64,
    pub(crate) publish_p50_ms: f64,
    pub(crate) publish_p99_ms: f64,
    pub(crate) publish_max_ms: f64,
    pub(crate) e2e_p50_ms: f64,
    pub(crate) e2e_p99_ms: f64,
    pub(crate) e2e_max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Drain {
    pub(crate) records: u64,
    pub(crate) mib: f64,
    pub(crate) seconds: f64,
    pub(crate) mib_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunResult {
    pub(crate) label: String,
    pub(crate) workload: Workload,
    pub(crate) brokers: String,
    pub(crate) measured_seconds: f64,
    pub(crate) published_records: u64,
    pub(crate) publish_rate_msgs: f64,
    pub(crate) publish_rate_mib: f64,
    pub(crate) consumed_records: u64,
    pub(crate) consume_rate_msgs: f64,
    pub(crate) consume_rate_mib: f64,
    pub(crate) publish_errors: u64,
    pub(crate) consume_errors: u64,
    pub(crate) publish_latency: Percentiles,
    pub(crate) end_to_end_latency: Percentiles,
    /// How late sends left against the fixed-rate schedule (coordinated-omission check).
    pub(crate) send_delay: Percentiles,
    pub(crate) publish_distribution: Vec<(f64, f64)>,
    pub(crate) end_to_end_distribution: Vec<(f64, f64)>,
    pub(crate) timeline: Vec<Second>,
    pub(crate) backlog_drain: Option<Drain>,
}

struct DeliveryCtx {
    stats: Arc<WorkerStats>,
    bytes: u64,
    window: Window,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    /// The send time, in [`now_us`] microseconds.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let sent = sent_us as u64;
        match result {
            Ok(_) => {
                let lat = now_us().saturating_sub(sent);
                let measured = self.window.contains(sent);
                if let Ok(mut pair) = self.stats.latency.lock() {
                    pair.record(lat, measured);
                }
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                if measured {
                    self.stats.count_window(self.bytes);
                }
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn client_config(
    brokers: &str,
    extra: &std::collections::BTreeMap<String, String>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    cfg.set("client.id", "shoal-loadgen");
    for (k, v) in extra {
        cfg.set(k, v);
    }
    cfg
}

fn create_topics(w: &Workload, brokers: &str, names: &[String]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, &Default::default())
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            let mut t = NewTopic::new(
                n,
                w.partitions_per_topic as i32,
                TopicReplication::Fixed(w.replication_factor as i32),
            );
            for (k, v) in &w.topic_config {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics(topics.iter(), &opts))
        .map_err(|e| format!("CreateTopics: {e}"))?;
    for r in results {
        if let Err((topic, code)) = r {
            return Err(format!("CreateTopics {topic}: {code}"));
        }
    }
    // Wait until Metadata shows every partition with a leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|e| format!("Metadata: {e}"))?;
        let ready = names.iter().all(|n| {
            md.topics().iter().any(|t| {
                t.name() == n
                    && t.partitions().len() == w.partitions_per_topic as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("topics did not show up in Metadata within 30 s".into());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn delete_topics(brokers: &str, names: &[String]) {
    let Ok(admin) =
        client_config(brokers, &Default::default()).create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = futures::executor::block_on(admin.delete_topics(&refs, &opts));
}

#[allow(clippy::too_many_arguments)]
fn producer_thread(
    w: &Workload,
    brokers: &str,
    topic: &str,
    stats: Arc<WorkerStats>,
    window: Window,
    rate: f64,
    stop: &AtomicBool,
    seed: u64,
) -> Result<(), String> {
    let mut cfg = client_config(brokers, &Default::default());
    cfg.set("acks", &w.acks)
        .set("linger.ms", w.linger_ms.to_string())
        .set("batch.size", w.batch_size.to_string())
        .set("compression.type", &w.compression)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000");
    for (k, v) in &w.producer_config {
        cfg.set(k, v);
    }
    let ctx = DeliveryCtx {
        stats: Arc::clone(&stats),
        bytes: w.message_size as u64,
        window,
    };
    let producer: ThreadedProducer<DeliveryCtx> = cfg
        .create_with_context(ctx)
        .map_err(|e| format!("producer: {e}"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut payload = vec![0u8; w.message_size];
    rng.fill_bytes(&mut payload);
    let partitions = w.partitions_per_topic as i32;
    let interval_ns = if rate > 0.0 { 1e9 / rate } else { 0.0 };
    let begin = Instant::now();
    let mut i: u64 = 0;
    let mut key = [0u8; 16];
    while !stop.load(Ordering::Relaxed) {
        if interval_ns > 0.0 {
            let intended = begin + Duration::from_nanos((i as f64 * interval_ns) as u64);
            let now = Instant::now();
            if now < intended {
                thread::sleep(intended - now);
                continue;
            }
            let late = (now - intended).as_micros() as u64;
            let measured = window.contains(now_us());
            if let Ok(mut pair) = stats.send_delay.lock() {
                pair.record(late, measured);
            }
        }
        let sent = now_us();
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        payload[8..16].copy_from_slice(&i.to_le_bytes());
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, sent as usize).payload(&payload[..]);
        match w.key_distribution {
            KeyDistribution::None => {}
            KeyDistribution::Random => {
                for b in key.iter_mut() {
                    *b = b'a' + rng.gen_range(0..26u8);
                }
                record = record.key(&key[..]);
            }
            KeyDistribution::RoundRobin => {
                record = record.partition((i % partitions as u64) as i32);
            }
        }
        match producer.send(record) {
            Ok(()) => {
                stats.records.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The client's queue is full: wait for deliveries (max-rate runs live here).
                thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                i += 1;
                if stats.errors.load(Ordering::Relaxed) < 5 {
                    eprintln!("send error: {e}");
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))
}

fn consumer_thread(
    w: &Workload,
    brokers: &str,
    topic: &str,
    index: u32,
    stats: Arc<WorkerStats>,
    window: Window,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut cfg = client_config(brokers, &w.consumer_config);
    // No group protocol: a group.id is required by librdkafka, but we only assign().
    cfg.set("group.id", format!("loadgen-{topic}-{index}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = cfg.create().map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..w.partitions_per_topic {
        if p % w.consumers_per_topic == index {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
                .map_err(|e| format!("assign list: {e}"))?;
        }
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = now_us();
                let payload = m.payload().unwrap_or(&[]);
                stats.records.fetch_add(1, Ordering::Relaxed);
                if payload.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&payload[..8]);
                    let sent = u64::from_le_bytes(ts);
                    let measured = window.contains(sent);
                    if let Ok(mut pair) = stats.latency.lock() {
                        pair.record(now.saturating_sub(sent), measured);
                    }
                    if measured {
                        stats.count_window(payload.len() as u64);
                    }
                }
            }
            Some(Err(e)) => {
                let seen = stats.errors.fetch_add(1, Ordering::Relaxed);
                if seen < 5 {
                    eprintln!("consume error: {e}");
                }
            }
            None => {}
        }
    }
    Ok(())
}

pub(crate) fn run(w: &Workload, opts: &Options) -> Result<RunResult, String> {
    now_us();
    let tag: u32 = rand::thread_rng().gen();
    let names: Vec<String> = (0..w.topics)
        .map(|t| format!("loadgen-{}-{t}-{tag:08x}", w.name))
        .collect();
    create_topics(w, &opts.brokers, &names)?;

    let producers_total = w.topics * w.producers_per_topic;
    let per_producer_rate = w.producer_rate / producers_total as f64;
    let backlog_mode = w.backlog_mib > 0;
    let start = now_us();
    let window = if backlog_mode {
        Window {
            start,
            end: u64::MAX,
        }
    } else {
        Window {
            start: start + w.warmup_seconds * 1_000_000,
            end: start + (w.warmup_seconds + w.test_duration_seconds) * 1_000_000,
        }
    };
    if let (Some(path), false) = (opts.window_marker.clone(), backlog_mode) {
        let starts_in = Duration::from_micros(window.start.saturating_sub(now_us()));
        thread::spawn(move || {
            thread::sleep(starts_in);
            if let Err(e) = std::fs::write(&path, "measuring\n") {
                eprintln!("window marker {}: {e}", path.display());
            }
        });
    }
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producer_stats = Vec::new();
    let mut consumer_stats = Vec::new();

    let shared = Arc::new(w.clone());
    let result = (|| -> Result<RunResult, String> {
        let mut handles = Vec::new();
        let start_consumers =
            |consumer_stats: &mut Vec<Arc<WorkerStats>>,
             handles: &mut Vec<thread::JoinHandle<Result<(), String>>>| {
                for topic in &names {
                    for c in 0..w.consumers_per_topic {
                        let st = Arc::new(WorkerStats::new());
                        consumer_stats.push(Arc::clone(&st));
                        let stop = Arc::clone(&stop_consumers);
                        let brokers = opts.brokers.clone();
                        let (wl, topic) = (Arc::clone(&shared), topic.clone());
                        handles.push(thread::spawn(move || {
                            consumer_thread(&wl, &brokers, &topic, c, st, window, &stop)
                        }));
                    }
                }
            };
        if !backlog_mode {
            start_consumers(&mut consumer_stats, &mut handles);
            // Let the consumers' first fetches reach the broker before records flow.
            thread::sleep(Duration::from_millis(500));
        }
        let mut producer_handles = Vec::new();
        for (ti, topic) in names.iter().enumerate() {
            for p in 0..w.producers_per_topic {
                let st = Arc::new(WorkerStats::new());
                producer_stats.push(Arc::clone(&st));
                let stop = Arc::clone(&stop_producers);
                let brokers = opts.brokers.clone();
                let seed = (ti as u64) << 32 | p as u64;
                let (wl, topic) = (Arc::clone(&shared), topic.clone());
                producer_handles.push(thread::spawn(move || {
                    producer_thread(
                        &wl,
                        &brokers,
                        &topic,
                        st,
                        window,
                        per_producer_rate,
                        &stop,
                        seed,
                    )
                }));
            }
        }

        let mut timeline = Vec::new();
        let total_s = w.warmup_seconds + w.test_duration_seconds;
        let run_start = Instant::now();
        let backlog_bytes = w.backlog_mib * 1024 * 1024;
        let (mut last_acked, mut last_consumed) = (0u64, 0u64);
        let mut tick = 0u64;
        let mut drain: Option<Drain> = None;
        let mut drain_start: Option<(Instant, u64)> = None;
        loop {
            tick += 1;
            let next = run_start + Duration::from_secs(tick);
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                thread::sleep(d);
            }
            let acked = stats::sum(&producer_stats, |x| x.acked.load(Ordering::Relaxed));
            let consumed = stats::sum(&consumer_stats, |x| x.records.load(Ordering::Relaxed));
            let pub_h = stats::drain_interval(&producer_stats);
            let e2e_h = stats::drain_interval(&consumer_stats);
            let (pp, ep) = (stats::percentiles(&pub_h), stats::percentiles(&e2e_h));
            let measured =
                now_us() > window.start && now_us() <= window.end.saturating_add(1_000_000);
            let sec = Second {
                t: tick,
                measured: measured && !backlog_mode,
                publish_msgs: (acked - last_acked) as f64,
                consume_msgs: consumed.saturating_sub(last_consumed) as f64,
                backlog: acked as i64 - consumed as i64,
                publish_p50_ms: pp.p50_ms,
                publish_p99_ms: pp.p99_ms,
                publish_max_ms: pp.max_ms,
                e2e_p50_ms: ep.p50_ms,
                e2e_p99_ms: ep.p99_ms,
                e2e_max_ms: ep.max_ms,
            };
            (last_acked, last_consumed) = (acked, consumed);
            if !opts.quiet {
                let phase = if backlog_mode {
                    if drain_start.is_some() {
                        "drain"
                    } else {
                        "fill"
                    }
                } else if tick <= w.warmup_seconds {
                    "warmup"
                } else {
                    "measure"
                };
                println!(
                    "[{:>4}s {:<7}] pub {:>8.0} msg/s {:>7.2} MiB/s | cons {:>8.0} msg/s | backlog {:>8} | pub ms p50 {:>7.3} p99 {:>7.3} max {:>8.3} | e2e ms p50 {:>7.3} p99 {:>7.3} max {:>8.3}",
                    tick,
                    phase,
                    sec.publish_msgs,
                    sec.publish_msgs * w.message_size as f64 / 1048576.0,
                    sec.consume_msgs,
                    sec.backlog,
                    pp.p50_ms,
                    pp.p99_ms,
                    pp.max_ms,
                    ep.p50_ms,
                    ep.p99_ms,
                    ep.max_ms,
                );
            }
            timeline.push(sec);

            if backlog_mode {
                match drain_start {
                    None => {
                        let produced = acked * w.message_size as u64;
                        if produced >= backlog_bytes || tick >= total_s.max(1) * 10 {
                            stop_producers.store(true, Ordering::Relaxed);
                            for h in producer_handles.drain(..) {
                                h.join().map_err(|_| "producer panicked")??;
                            }
                            let acked =
                                stats::sum(&producer_stats, |x| x.acked.load(Ordering::Relaxed));
                            start_consumers(&mut consumer_stats, &mut handles);
                            drain_start = Some((Instant::now(), acked));
                        }
                    }
                    Some((t0, target)) => {
                        if consumed >= target || t0.elapsed() > Duration::from_secs(600) {
                            let secs = t0.elapsed().as_secs_f64();
                            let mib = consumed as f64 * w.message_size as f64 / 1048576.0;
                            drain = Some(Drain {
                                records: consumed,
                                mib,
                                seconds: secs,
                                mib_per_s: mib / secs,
                            });
                            break;
                        }
                    }
                }
            } else if tick >= total_s {
                break;
            }
        }
        stop_producers.store(true, Ordering::Relaxed);
        for h in producer_handles {
            h.join().map_err(|_| "producer panicked")??;
        }
        // Let consumers catch up with everything acknowledged (at most 10 s).
        let acked = stats::sum(&producer_stats, |x| x.acked.load(Ordering::Relaxed));
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats::sum(&consumer_stats, |x| x.records.load(Ordering::Relaxed)) < acked
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        stop_consumers.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "consumer panicked")??;
        }

        let secs = if backlog_mode {
            drain.as_ref().map_or(1.0, |d| d.seconds)
        } else {
            w.test_duration_seconds as f64
        };
        let pub_total = stats::merge_totals(&producer_stats, |x| &x.latency);
        let e2e_total = stats::merge_totals(&consumer_stats, |x| &x.latency);
        let delay_total = stats::merge_totals(&producer_stats, |x| &x.send_delay);
        let pub_records = stats::sum(&producer_stats, |x| {
            x.window_records.load(Ordering::Relaxed)
        });
        let pub_bytes = stats::sum(&producer_stats, |x| x.window_bytes.load(Ordering::Relaxed));
        let con_records = stats::sum(&consumer_stats, |x| {
            x.window_records.load(Ordering::Relaxed)
        });
        let con_bytes = stats::sum(&consumer_stats, |x| x.window_bytes.load(Ordering::Relaxed));
        let pub_secs = if backlog_mode {
            timeline.len() as f64
        } else {
            secs
        };
        Ok(RunResult {
            label: opts.label.clone(),
            workload: w.clone(),
            brokers: opts.brokers.clone(),
            measured_seconds: secs,
            published_records: pub_records,
            publish_rate_msgs: pub_records as f64 / pub_secs,
            publish_rate_mib: pub_bytes as f64 / 1048576.0 / pub_secs,
            consumed_records: con_records,
            consume_rate_msgs: con_records as f64 / secs,
            consume_rate_mib: con_bytes as f64 / 1048576.0 / secs,
            publish_errors: stats::sum(&producer_stats, |x| x.errors.load(Ordering::Relaxed)),
            consume_errors: stats::sum(&consumer_stats, |x| x.errors.load(Ordering::Relaxed)),
            publish_latency: stats::percentiles(&pub_total),
            end_to_end_latency: stats::percentiles(&e2e_total),
            send_delay: stats::percentiles(&delay_total),
            publish_distribution: stats::distribution(&pub_total),
            end_to_end_distribution: stats::distribution(&e2e_total),
            timeline,
            backlog_drain: drain,
        })
    })();
    if !opts.keep_topics {
        delete_topics(&opts.brokers, &names);
    }
    result
}
