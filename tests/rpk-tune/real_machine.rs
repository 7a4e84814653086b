//! One real `rpk-tune check` on the machine running the tests. Read-only:
//! `check` never writes, and the ioctls it issues are GET requests.
//!
//! The expected values are discovered independently of the tool: the data
//! directory's device comes from stat(2) and /sys/dev/block, not from
//! mountinfo, and the current nomerges value is read straight from sysfs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The whole disk holding `dir`, found through st_dev; `None` when the
/// filesystem is not on a block device (tmpfs, overlay without one).
fn disk_of(dir: &Path) -> Option<String> {
    let dev = fs::metadata(dir).expect("stat data dir").dev();
    // Linux dev_t encoding (see major()/minor() in sys/sysmacros.h).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = fs::canonicalize(&sys).ok()?;
    // A partition's directory sits inside its disk's directory.
    let disk_dir = if real.join("partition").exists() {
        real.parent()?.to_path_buf()
    } else {
        real
    };
    let name = disk_dir.file_name()?.to_string_lossy().into_owned();
    // Stacked devices (dm, md) are resolved by the tool to their slaves; keep
    // this test to plain disks so the expectation stays independent.
    let has_slaves = fs::read_dir(disk_dir.join("slaves"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    (!has_slaves).then_some(name)
}

fn check(data_dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpk-tune"))
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run rpk-tune")
}

#[test]
fn real_check_prints_true_values_and_the_documented_exit_code() {
    let data_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("data dir");
    let Some(disk) = disk_of(data_dir.path()) else {
        eprintln!(
            "skipping: {} is not on a plain block device",
            data_dir.path().display()
        );
        return;
    };
    let nomerges = fs::read_to_string(format!("/sys/block/{disk}/queue/nomerges"))
        .expect("real nomerges")
        .trim()
        .to_string();

    let output = check(data_dir.path(), &[]);
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{table}");
    assert!(table.starts_with("TUNER"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("disk_nomerges"))
        .unwrap_or_else(|| panic!("no nomerges row in\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], disk, "device holding the data dir");
    assert_eq!(
        row[2], nomerges,
        "current value from /sys/block/{disk}/queue/nomerges"
    );
    assert_eq!(row[3], "2");
    assert_eq!(row[4], if nomerges == "2" { "ok" } else { "no" });

    // Documented exit codes: 1 when any severity-error check fails, else 0.
    // nomerges is severity error, so a real nomerges != 2 must give 1.
    let json = check(data_dir.path(), &["--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let any_error_failure = rows
        .as_array()
        .expect("rows")
        .iter()
        .any(|r| r["severity"] == "error" && (r["status"] == "fail" || r["status"] == "error"));
    let expected = if any_error_failure { 1 } else { 0 };
    assert_eq!(output.status.code(), Some(expected), "{table}");
    assert_eq!(json.status.code(), Some(expected));
    if nomerges != "2" {
        assert_eq!(output.status.code(), Some(1));
    }
}

#[test]
fn check_summary_names_the_failing_checks() {
    let data_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("data dir");
    let Some(disk) = disk_of(data_dir.path()) else {
        return;
    };
    let nomerges =
        fs::read_to_string(format!("/sys/block/{disk}/queue/nomerges")).expect("nomerges");
    let failing = rpk_tune::check_summary(data_dir.path()).expect("summary");
    let names_nomerges = failing
        .iter()
        .any(|r| r.tuner == "disk_nomerges" && r.target == disk);
    assert_eq!(names_nomerges, nomerges.trim() != "2", "{failing:#?}");
    assert!(failing.iter().all(|r| !r.ok));
}
