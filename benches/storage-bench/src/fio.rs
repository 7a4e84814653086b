//! Runs fio with the job that matches one engine configuration and reads its JSON report.

use std::path::Path;
use std::process::Command;

use crate::{Policy, Stats};

/// Runs one fio job: `jobs` files written with O_DIRECT through io_uring, `fdatasync` after
/// every write, `block_bytes` per write, pinned to `cpu`, for `seconds`.
/// `dsync`: instead of `fdatasync` after each write, open with O_DSYNC so each write is durable
/// when it completes; latencies are then those of the durable writes.
pub(crate) fn run(
    dir: &Path,
    block_bytes: usize,
    jobs: usize,
    policy: Policy,
    cpu: usize,
    seconds: u64,
    dsync: bool,
) -> Result<Stats, String> {
    let mut args = vec![
        "--name=shoal-baseline".to_string(),
        format!("--directory={}", dir.display()),
        "--ioengine=io_uring".to_string(),
        "--direct=1".to_string(),
        "--rw=write".to_string(),
        format!("--bs={block_bytes}"),
        if dsync {
            "--sync=dsync".to_string()
        } else {
            "--fdatasync=1".to_string()
        },
        "--iodepth=1".to_string(),
        format!("--numjobs={jobs}"),
        format!("--cpus_allowed={cpu}"),
        format!("--runtime={seconds}"),
        "--time_based".to_string(),
        "--group_reporting".to_string(),
        "--output-format=json".to_string(),
    ];
    // The file preparation that matches the engine policy.
    // Pre-allocated files must hold a whole run without wrapping (a wrap would turn appends into
    // cheaper overwrites), yet not fill the disk: about 10k writes per second, at most 8 GiB.
    let per_job = (block_bytes as u64 * 10_000 * seconds).clamp(256 << 20, 8 << 30);
    let size = format!("--size={per_job}");
    match policy {
        Policy::Append => {
            args.extend(["--size=64g", "--file_append=1", "--fallocate=none"].map(String::from))
        }
        Policy::FallocateAhead => args.extend([size, "--fallocate=keep".to_string()]),
        Policy::ExtendAhead => args.extend([size, "--fallocate=native".to_string()]),
        Policy::Recycle => args.extend([
            format!("--size={}", crate::recycle_file_bytes(block_bytes)),
            "--overwrite=1".to_string(),
        ]),
    }
    let output = Command::new("fio")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run fio: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text.find('{').ok_or("fio printed no JSON")?;
    let report: serde_json::Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let job = &report["jobs"][0];
    let runtime_s = job["job_runtime"].as_f64().unwrap_or(0.0) / 1000.0 / jobs as f64;
    let lat = if dsync {
        &job["write"]["clat_ns"]
    } else {
        &job["sync"]["lat_ns"]
    };
    let durable_ops = if dsync {
        job["write"]["total_ios"].as_f64()
    } else {
        lat["N"].as_f64()
    };
    let durable_ops = durable_ops.unwrap_or(0.0);
    let percentile = |p: &str| lat["percentile"][p].as_f64().unwrap_or(f64::NAN) / 1000.0;
    Ok(Stats {
        acks_per_s: durable_ops / runtime_s,
        syncs_per_s: durable_ops / runtime_s,
        p50_us: percentile("50.000000"),
        p99_us: percentile("99.000000"),
        p999_us: percentile("99.900000"),
    })
}
