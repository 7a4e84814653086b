//! Named limits hold against the real binary: a flood of large requests from many connections
//! stays within the request-bytes budget (memory does not grow with the number of senders), and
//! connections beyond `connections_max` are closed at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{frame, read_response, start_with};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn api_versions_answered(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    stream.write_all(&request).is_ok()
        && read_response(&mut stream, ApiKey::ApiVersions, 3).is_some()
}

const FRAME_BYTES: usize = 40 << 20;
const SENDERS: usize = 24;
const BUDGET_BYTES: u64 = 64 << 20;

/// Sends SENDERS frames of FRAME_BYTES at once; the broker's peak RSS above its baseline.
fn flood(budget_bytes: u64) -> u64 {
    let budget = budget_bytes.to_string();
    let broker = start_with(
        "2",
        &[
            ("SHOAL_MEMORY", "134217728"),
            ("SHOAL_REQUESTS_INFLIGHT_BYTES_MAX", &budget),
        ],
    );
    let pid = broker.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_bytes(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let _ = peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let addr = broker.addr.clone();
            std::thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(&addr) else {
                    return;
                };
                // A frame the broker must read whole before it can tell it is no request.
                let _ = stream.write_all(&(FRAME_BYTES as i32).to_be_bytes());
                let chunk = vec![0x55u8; 1 << 20];
                for _ in 0..FRAME_BYTES / chunk.len() {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = stream.read(&mut [0u8; 1]);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for sender in senders {
        let _ = sender.join();
        assert!(Instant::now() < deadline, "the flood did not drain");
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert!(
        api_versions_answered(&broker.addr),
        "the broker serves after the flood"
    );
    peak.load(Ordering::Relaxed).saturating_sub(baseline)
}

#[test]
fn a_flood_of_large_requests_stays_within_the_request_budget() {
    let grown = flood(BUDGET_BYTES);
    // Each core holds at most its share (32 MiB; a 40 MiB frame takes the whole share): two
    // frames in memory at once, not 24 (960 MiB).
    assert!(
        grown < 2 * FRAME_BYTES as u64 + (64 << 20),
        "RSS grew by {} MiB under a {} MiB budget",
        grown >> 20,
        BUDGET_BYTES >> 20
    );
}

#[test]
fn connections_beyond_the_limit_are_closed() {
    let broker = start_with("2", &[("SHOAL_CONNECTIONS_MAX", "4")]);
    // Two per core. Hold more than that; the extra ones are closed by the broker at once.
    let held: Vec<TcpStream> = (0..10)
        .filter_map(|_| TcpStream::connect(&broker.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = held
        .iter()
        .filter(|stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            matches!((&**stream).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(
        closed >= 6,
        "{closed} of 10 connections closed with a limit of 4"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        api_versions_answered(&broker.addr),
        "room again once connections close"
    );
}
