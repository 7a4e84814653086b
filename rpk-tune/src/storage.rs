//! Finding the block devices that hold the data directory.
//!
//! The path goes: data directory → its mount in `/proc/self/mountinfo` →
//! the mounted block device (`/sys/dev/block/MAJ:MIN`) → through device
//! mapper and md layers (`/sys/block/X/slaves/`) and partitions
//! (`/sys/class/block/X/partition`) down to the whole disks whose queues can
//! be tuned.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::host::Host;
use crate::mountinfo;

/// Where the data directory lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataStorage {
    /// The path that was looked up: the data directory or, when it does not
    /// exist yet, its nearest existing ancestor (the broker will create the
    /// directory on that same filesystem).
    pub probed_path: PathBuf,
    /// The mount point holding it.
    pub mount_point: PathBuf,
    /// The mount source as listed in mountinfo.
    pub source: String,
    /// The whole disks under it, for example `["nvme0n1", "nvme1n1"]`.
    pub disks: Vec<String>,
}

/// Locates the disks holding `data_dir`; `Err` carries the reason in words.
pub fn locate(host: &Host, data_dir: &Path) -> Result<DataStorage, String> {
    let probed_path = nearest_existing(host, data_dir)?;
    let mountinfo = host
        .read("/proc/self/mountinfo")
        .map_err(|e| e.to_string())?;
    let mounts = mountinfo::parse(&mountinfo);
    let mount = mountinfo::mount_of(&mounts, &probed_path)
        .ok_or_else(|| format!("no mount holds {}", probed_path.display()))?;
    let top = mounted_device(host, mount).ok_or_else(|| {
        format!(
            "{} is on {} ({}), which is not a block device",
            probed_path.display(),
            mount.source,
            mount.fs_type
        )
    })?;
    let mut disks = Vec::new();
    collect_disks(host, &top, &mut disks, 0).map_err(|e| e.to_string())?;
    Ok(DataStorage {
        probed_path,
        mount_point: mount.mount_point.clone(),
        source: mount.source.clone(),
        disks,
    })
}

/// The data directory itself when it exists, otherwise its nearest existing
/// ancestor, with symlinks resolved so the mount lookup sees the real path.
fn nearest_existing(host: &Host, data_dir: &Path) -> Result<PathBuf, String> {
    let mut candidate = Some(data_dir);
    while let Some(path) = candidate {
        if host.exists(path) {
            return host.canonical(path).map_err(|e| e.to_string());
        }
        candidate = path.parent();
    }
    Err(format!("no part of {} exists", data_dir.display()))
}

/// The kernel name (`vda`, `dm-0`, `nvme0n1p1`) of the mounted device.
fn mounted_device(host: &Host, mount: &mountinfo::Mount) -> Option<String> {
    let by_number = format!("/sys/dev/block/{}", mount.major_minor);
    if host.exists(&by_number) {
        return kernel_name(host, &by_number);
    }
    // Filesystems such as btrfs report an anonymous device number, so fall
    // back to the mount source when it names a device node.
    let source = mount.source.strip_prefix("/dev/")?;
    let node = format!("/dev/{source}");
    let name = match host.canonical(&node) {
        Ok(real) => real.file_name()?.to_string_lossy().into_owned(),
        Err(_) => Path::new(source)
            .file_name()?
            .to_string_lossy()
            .into_owned(),
    };
    host.exists(format!("/sys/class/block/{name}"))
        .then_some(name)
}

/// The last component of a sysfs device path after resolving symlinks.
fn kernel_name(host: &Host, sysfs_path: &str) -> Option<String> {
    let real = host.canonical(sysfs_path).ok()?;
    Some(real.file_name()?.to_string_lossy().into_owned())
}

/// The whole disk a partition belongs to: in sysfs a partition directory
/// sits inside its disk's directory.
pub fn partition_parent(host: &Host, name: &str) -> Option<String> {
    if !host.exists(format!("/sys/class/block/{name}/partition")) {
        return None;
    }
    let real = host.canonical(format!("/sys/class/block/{name}")).ok()?;
    Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
}

/// Walks down stacked devices to whole disks. Depth is bounded because a
/// corrupt tree with a slave cycle must not hang the tool.
fn collect_disks(host: &Host, name: &str, out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 16 {
        return Ok(());
    }
    let slaves = host
        .list(format!("/sys/class/block/{name}/slaves"))?
        .unwrap_or_default();
    if !slaves.is_empty() {
        for slave in slaves {
            collect_disks(host, &slave, out, depth + 1)?;
        }
        return Ok(());
    }
    if let Some(parent) = partition_parent(host, name) {
        return collect_disks(host, &parent, out, depth + 1);
    }
    if !out.iter().any(|d| d == name) {
        out.push(name.to_string());
    }
    Ok(())
}

/// The NVMe controller (`nvme0`) behind a namespace block device
/// (`nvme0n1`), if the disk is an NVMe namespace and the controller exists.
pub fn nvme_controller(host: &Host, disk: &str) -> Option<String> {
    let rest = disk.strip_prefix("nvme")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || !rest[digits.len()..].starts_with('n') {
        return None;
    }
    let controller = format!("nvme{digits}");
    host.exists(format!("/sys/class/nvme/{controller}"))
        .then_some(controller)
}
