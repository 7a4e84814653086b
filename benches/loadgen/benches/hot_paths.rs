//! Micro benchmarks of the broker's hot paths (criterion; run by hand, never in CI):
//!
//!     cargo bench -p shoal-loadgen --bench hot_paths
//!
//! - codec: decode a Produce v9 request frame carrying one batch (1 KiB and 64 KiB of records)
//!   with `shoal_kafka::codec::decode_request`; encode a Fetch v12 response carrying a 64 KiB
//!   batch with `shoal_kafka::codec::encode_response`.
//! - batch validation: `shoal_storage::validate_batch` (header checks + CRC32C) on 1 KiB and
//!   64 KiB batches.
//! - cross-core hop: a round trip over two glommio shared channels between executors pinned to
//!   CPUs 0 and 1 (the cost of routing a request to the core that owns the partition).
//! - index lookup: the sparse offset and time index of one full 1 GiB segment of 1 KiB-record
//!   batches (an entry every 4 KiB of log, ~247,000 entries), looked up at random offsets and
//!   timestamps (through the `bench-internals` feature of shoal-storage).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// A v2 record batch of `total` bytes of values split into records of `record` bytes.
fn batch(total: usize, record: usize) -> Vec<u8> {
    let value = vec![0x5au8; record];
    let values: Vec<&[u8]> = (0..total / record).map(|_| &value[..]).collect();
    shoal_storage::build_batch(&values, 1_700_000_000_000)
}

fn produce_frame(records: &[u8]) -> Bytes {
    let version = 9;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::copy_from_slice(records)))])]);
    let mut out = BytesMut::new();
    header
        .encode(&mut out, ApiKey::Produce.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut out, version).expect("body encodes");
    out.freeze()
}

fn fetch_response(records: &[u8]) -> ResponseKind {
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(1000)
                .with_last_stable_offset(1000)
                .with_records(Some(Bytes::copy_from_slice(records)))]),
    ]))
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for (name, size) in [("1KiB", 1024), ("64KiB", 65536)] {
        let b = batch(size, 256.min(size));
        let frame = produce_frame(&b);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("decode_produce_v9", name),
            &frame,
            |bn, f| bn.iter(|| shoal_kafka::codec::decode_request(f.clone()).expect("decodes")),
        );
        let resp = fetch_response(&b);
        g.bench_with_input(
            BenchmarkId::new("encode_fetch_v12", name),
            &resp,
            |bn, r| {
                bn.iter(|| {
                    shoal_kafka::codec::encode_response(ApiKey::Fetch, 12, 7, r).expect("encodes")
                })
            },
        );
    }
    g.finish();
}

fn validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate_batch");
    for (name, size, record) in [("1KiB", 1024, 1024), ("64KiB", 65536, 1024)] {
        let b = batch(size, record);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &b, |bn, b| {
            bn.iter(|| shoal_storage::validate_batch(b).expect("valid"))
        });
    }
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    use shoal_model::{Offset, TimestampMs};
    use shoal_storage::bench_internals::OffsetIndex;
    let segment_bytes: u64 = 1 << 30;
    let batch_bytes: u64 = 1024 + 61;
    let interval_bytes: u64 = 4096;
    let mut index = OffsetIndex::default();
    let mut pos = 0;
    let mut offset = 0;
    while pos + batch_bytes <= segment_bytes {
        index.observe(
            Offset(offset),
            pos,
            TimestampMs(1_700_000_000_000 + offset / 10),
            interval_bytes,
        );
        pos += batch_bytes;
        offset += 1;
    }
    let last_offset = offset;
    // Lookups at pseudo-random offsets, generated outside the timed loop.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let targets: Vec<i64> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % last_offset as u64) as i64
        })
        .collect();
    let mut g = c.benchmark_group("index_lookup");
    g.throughput(Throughput::Elements(targets.len() as u64));
    let name = format!("{}_entries", index.entries());
    g.bench_function(BenchmarkId::new("offset", &name), |b| {
        b.iter(|| {
            for &t in &targets {
                criterion::black_box(index.lookup(Offset(t)));
            }
        })
    });
    g.bench_function(BenchmarkId::new("timestamp", &name), |b| {
        b.iter(|| {
            for &t in &targets {
                criterion::black_box(index.lookup_time(TimestampMs(1_700_000_000_000 + t / 10)));
            }
        })
    });
    g.finish();
}

/// `iters` round trips between two executors (CPU 0 drives, CPU 1 echoes); the elapsed time
/// as measured on the driving executor.
fn hop_round_trips(iters: u64, spin: Option<Duration>) -> Duration {
    use glommio::channels::shared_channel;
    let (to_echo_tx, to_echo_rx) = shared_channel::new_bounded::<u64>(16);
    let (to_drv_tx, to_drv_rx) = shared_channel::new_bounded::<u64>(16);
    let opts = |name: &str, cpu: usize| shoal_runtime::executor::ExecutorOptions {
        name: name.to_string(),
        cpu,
        io_memory_bytes: 64 * 1024,
        ring_depth: 64,
        preempt_timer: Duration::from_millis(100),
        spin_before_park: spin,
        blocking_thread: shoal_runtime::executor::BlockingThread::Unpinned,
    };
    let echo = opts("bench-echo", 1)
        .spawn(move || async move {
            let rx = to_echo_rx.connect().await;
            let tx = to_drv_tx.connect().await;
            while let Some(v) = rx.recv().await {
                if tx.send(v).await.is_err() {
                    break;
                }
            }
        })
        .expect("echo executor");
    let driver = opts("bench-driver", 0)
        .spawn(move || async move {
            let tx = to_echo_tx.connect().await;
            let rx = to_drv_rx.connect().await;
            // One untimed round trip so both sides are connected and warm.
            tx.send(0).await.expect("send");
            rx.recv().await.expect("recv");
            let start = Instant::now();
            for i in 0..iters {
                tx.send(i).await.expect("send");
                rx.recv().await.expect("recv");
            }
            start.elapsed()
        })
        .expect("driver executor");
    let elapsed = driver.join().expect("driver ran");
    echo.join().expect("echo ran");
    elapsed
}

fn cross_core(c: &mut Criterion) {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if online < 2 {
        eprintln!("cross_core: needs 2 CPUs, skipped");
        return;
    }
    let mut g = c.benchmark_group("cross_core_round_trip");
    g.sample_size(20);
    g.bench_function("park", |b| b.iter_custom(|n| hop_round_trips(n, None)));
    g.bench_function("spin_50us", |b| {
        b.iter_custom(|n| hop_round_trips(n, Some(Duration::from_micros(50))))
    });
    g.finish();
}

criterion_group!(benches, codec, validation, index_lookup, cross_core);
criterion_main!(benches);
