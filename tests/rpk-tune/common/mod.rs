//! Builds fake sysfs/procfs/etc trees in temporary directories.
//!
//! The layout mirrors the kernel's: device directories live under
//! `/sys/devices/...` and `/sys/class/block`, `/sys/block` and
//! `/sys/dev/block` are symlinks to them, so the same path walking
//! (canonicalize, parent directory = whole disk) works as on a real host.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rpk_tune::commands::FakeSystemctl;
use rpk_tune::ethtool::Coalesce;
use rpk_tune::ioctl::FakeIoctl;
use rpk_tune::Host;

/// A fake host tree plus the fakes behind its ioctls and systemctl.
pub struct Fixture {
    dir: tempfile::TempDir,
    pub ioctl: FakeIoctl,
    pub systemctl: Option<FakeSystemctl>,
    cpu_count: usize,
    interrupts: Vec<(u32, String)>,
}

impl Fixture {
    /// A bare tree with `cpu_count` CPUs and the sysctl/sysfs files every
    /// Linux host has, set to common distribution defaults.
    pub fn new(cpu_count: usize) -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            ioctl: FakeIoctl::new(),
            systemctl: None,
            cpu_count,
            interrupts: Vec::new(),
        };
        fixture.write(
            "/sys/devices/system/cpu/online",
            &format!("0-{}\n", cpu_count - 1),
        );
        fixture.write("/proc/self/mountinfo", "");
        fixture.write("/proc/sys/fs/aio-max-nr", "65536\n");
        fixture.write("/proc/sys/vm/swappiness", "60\n");
        fixture.write("/proc/sys/net/core/somaxconn", "4096\n");
        fixture.write("/proc/sys/net/ipv4/tcp_max_syn_backlog", "512\n");
        fixture.write("/proc/sys/net/core/rps_sock_flow_entries", "0\n");
        fixture.write(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        fixture.write(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet\n",
        );
        fixture.write(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm \n",
        );
        fixture.write_interrupts();
        fixture
    }

    /// The root to pass as `--root`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A host path resolved inside the tree.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root().join(host_path.trim_start_matches('/'))
    }

    /// Writes a file, creating parent directories.
    pub fn write(&self, host_path: &str, contents: &str) {
        let path = self.path(host_path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, contents).expect("write fixture file");
    }

    /// Reads a file, trimmed.
    pub fn read(&self, host_path: &str) -> String {
        fs::read_to_string(self.path(host_path))
            .expect("read fixture file")
            .trim()
            .to_string()
    }

    /// Creates a directory.
    pub fn mkdir(&self, host_path: &str) {
        fs::create_dir_all(self.path(host_path)).expect("mkdir");
    }

    /// `link` → `target`, both host paths inside the tree.
    pub fn symlink(&self, link: &str, target: &str) {
        let link = self.path(link);
        fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(self.path(target), link).expect("symlink");
    }

    /// Removes the write bits, like a sysfs attribute without a store method.
    pub fn read_only(&self, host_path: &str) {
        fs::set_permissions(self.path(host_path), fs::Permissions::from_mode(0o444))
            .expect("chmod");
    }

    /// Every file of the tree with its contents, to prove a run changed nothing.
    pub fn snapshot(&self) -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            for path in entries {
                let meta = fs::symlink_metadata(&path).expect("metadata");
                if meta.is_dir() {
                    walk(&path, out);
                } else if meta.is_file() {
                    let contents = fs::read_to_string(&path).unwrap_or_default();
                    out.push((path, contents));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root(), &mut out);
        out
    }

    /// Adds a mount line to mountinfo.
    pub fn mount(&self, major_minor: &str, mount_point: &str, fs_type: &str, source: &str) {
        let mut text = fs::read_to_string(self.path("/proc/self/mountinfo")).expect("mountinfo");
        let id = 20 + text.lines().count();
        text.push_str(&format!(
            "{id} 1 {major_minor} / {mount_point} rw,relatime - {fs_type} {source} rw\n"
        ));
        self.write("/proc/self/mountinfo", &text);
    }

    /// A whole disk with the queue attributes of a fresh boot.
    pub fn disk(&self, name: &str, major_minor: &str) {
        let dir = format!("/sys/devices/fixture/block/{name}");
        self.write(&format!("{dir}/dev"), &format!("{major_minor}\n"));
        self.write(&format!("{dir}/queue/nomerges"), "0\n");
        self.write(
            &format!("{dir}/queue/scheduler"),
            "none [mq-deadline] kyber\n",
        );
        self.write(&format!("{dir}/queue/rq_affinity"), "1\n");
        self.write(&format!("{dir}/queue/write_cache"), "write back\n");
        self.symlink(&format!("/sys/class/block/{name}"), &dir);
        self.symlink(&format!("/sys/block/{name}"), &dir);
        self.symlink(&format!("/sys/dev/block/{major_minor}"), &dir);
    }

    /// A partition directory inside its disk's directory.
    pub fn partition(&self, disk: &str, name: &str, major_minor: &str) {
        let dir = format!("/sys/devices/fixture/block/{disk}/{name}");
        self.write(&format!("{dir}/dev"), &format!("{major_minor}\n"));
        self.write(&format!("{dir}/partition"), "1\n");
        self.symlink(&format!("/sys/class/block/{name}"), &dir);
        self.symlink(&format!("/sys/dev/block/{major_minor}"), &dir);
    }

    /// A device-mapper (or md) device stacked on `slaves`.
    pub fn stacked(&self, name: &str, major_minor: &str, slaves: &[&str]) {
        let dir = format!("/sys/devices/virtual/block/{name}");
        self.write(&format!("{dir}/dev"), &format!("{major_minor}\n"));
        for slave in slaves {
            self.symlink(
                &format!("{dir}/slaves/{slave}"),
                &format!("/sys/class/block/{slave}"),
            );
        }
        self.symlink(&format!("/sys/class/block/{name}"), &dir);
        self.symlink(&format!("/sys/block/{name}"), &dir);
        self.symlink(&format!("/sys/dev/block/{major_minor}"), &dir);
    }

    fn write_interrupts(&self) {
        let mut text = String::from("           ");
        for cpu in 0..self.cpu_count {
            text.push_str(&format!("CPU{cpu:<8}"));
        }
        text.push('\n');
        for (irq, name) in &self.interrupts {
            text.push_str(&format!("{irq:>4}:"));
            for _ in 0..self.cpu_count {
                text.push_str("          0");
            }
            text.push_str(&format!(" PCI-MSIX-0000:00:04.0   0-edge      {name}\n"));
        }
        text.push_str(" NMI:          0          0   Non-maskable interrupts\n");
        self.write("/proc/interrupts", &text);
    }

    /// Registers an interrupt: `/proc/interrupts` line and `/proc/irq/N`
    /// with affinity on every CPU (the kernel's default).
    pub fn interrupt(&mut self, irq: u32, name: &str) {
        self.interrupts.push((irq, name.to_string()));
        self.write_interrupts();
        self.write(
            &format!("/proc/irq/{irq}/smp_affinity_list"),
            &format!("0-{}\n", self.cpu_count - 1),
        );
        self.write(&format!("/proc/irq/{irq}/affinity_hint"), "0\n");
    }

    /// An NVMe controller with `io_queues` I/O queues (plus the admin queue)
    /// whose interrupts start at `first_irq`; `msi` decides whether the PCI
    /// device lists them in `msi_irqs`. The namespace `{controller}n1` maps
    /// hardware context N to CPU N modulo the CPU count.
    pub fn nvme(&mut self, controller: &str, io_queues: u32, first_irq: u32, msi: bool) {
        self.mkdir(&format!("/sys/class/nvme/{controller}/device"));
        self.write(&format!("/dev/{controller}"), "");
        for queue in 0..=io_queues {
            let irq = first_irq + queue;
            self.interrupt(irq, &format!("{controller}q{queue}"));
            if msi {
                self.mkdir(&format!(
                    "/sys/class/nvme/{controller}/device/msi_irqs/{irq}"
                ));
            }
        }
        let namespace = format!("{controller}n1");
        for context in 0..io_queues {
            let cpu = context as usize % self.cpu_count;
            self.write(
                &format!("/sys/devices/fixture/block/{namespace}/mq/{context}/cpu_list"),
                &format!("{cpu}\n"),
            );
        }
    }

    /// A NIC backed by a PCI device with one interrupt per queue pair.
    pub fn nic(&mut self, iface: &str, queues: u32, first_irq: u32, msi: bool) {
        let device = "/sys/devices/pci0000:00/0000:00:05.0";
        self.mkdir(device);
        self.symlink(&format!("/sys/class/net/{iface}/device"), device);
        for queue in 0..queues {
            self.write(
                &format!("/sys/class/net/{iface}/queues/rx-{queue}/rps_cpus"),
                "0\n",
            );
            self.write(
                &format!("/sys/class/net/{iface}/queues/rx-{queue}/rps_flow_cnt"),
                "0\n",
            );
            self.write(
                &format!("/sys/class/net/{iface}/queues/tx-{queue}/xps_cpus"),
                "0\n",
            );
            let irq = first_irq + queue;
            self.interrupt(irq, &format!("{iface}-TxRx-{queue}"));
            if msi {
                self.mkdir(&format!("{device}/msi_irqs/{irq}"));
            }
        }
    }

    /// A virtio NIC: the netdev's device is `virtioN`, whose parent PCI
    /// device carries `msi_irqs` shared with the config interrupt.
    pub fn virtio_nic(&mut self, iface: &str, virtio: &str, first_irq: u32) {
        let pci = "/sys/devices/pci0000:00/0000:00:03.0";
        let device = format!("{pci}/{virtio}");
        self.mkdir(&device);
        self.symlink(&format!("/sys/class/net/{iface}/device"), &device);
        self.write(
            &format!("/sys/class/net/{iface}/queues/rx-0/rps_cpus"),
            "0\n",
        );
        self.write(
            &format!("/sys/class/net/{iface}/queues/rx-0/rps_flow_cnt"),
            "0\n",
        );
        self.write(
            &format!("/sys/class/net/{iface}/queues/tx-0/xps_cpus"),
            "0\n",
        );
        for (offset, suffix) in ["config", "input.0", "output.0"].iter().enumerate() {
            let irq = first_irq + offset as u32;
            self.interrupt(irq, &format!("{virtio}-{suffix}"));
            self.mkdir(&format!("{pci}/msi_irqs/{irq}"));
        }
    }

    /// The host for library calls, with this fixture's fakes.
    pub fn host(&self) -> Host {
        let commands: Box<dyn rpk_tune::commands::CommandRunner> = match &self.systemctl {
            Some(fake) => Box::new(fake.clone()),
            None => Box::new(rpk_tune::commands::NoCommands),
        };
        Host::new(self.root(), Box::new(self.ioctl.clone()), commands)
    }
}

/// NIC coalescing as a typical driver reports it: adaptive rx on.
pub fn default_nic_coalesce() -> Coalesce {
    Coalesce {
        rx_coalesce_usecs: 3,
        rx_max_coalesced_frames: 64,
        tx_coalesce_usecs: 16,
        tx_max_coalesced_frames: 128,
        use_adaptive_rx_coalesce: 1,
        ..Coalesce::default()
    }
}

/// A bare-metal NVMe host: 4 CPUs; the data directory `/var/lib/shoal/data`
/// on `/var/lib/shoal`, mounted from `nvme0n1p1` (4 I/O queues, MSI-X
/// interrupts 40-44); the OS on `sda`; NIC `eth0` with 4 queue interrupts
/// (50-53); irqbalance installed; fstrim.timer disabled.
pub fn nvme_host() -> Fixture {
    let mut f = Fixture::new(4);
    f.disk("sda", "8:0");
    f.partition("sda", "sda1", "8:1");
    f.disk("nvme0n1", "259:0");
    f.partition("nvme0n1", "nvme0n1p1", "259:1");
    f.mount("8:1", "/", "ext4", "/dev/sda1");
    f.mount("259:1", "/var/lib/shoal", "xfs", "/dev/nvme0n1p1");
    f.mkdir("/var/lib/shoal/data");
    f.nvme("nvme0", 4, 40, true);
    f.nic("eth0", 4, 50, true);
    for cpu in 0..4 {
        f.write(
            &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "powersave\n",
        );
        f.write(
            &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_available_governors"),
            "performance powersave\n",
        );
    }
    f.write(
        "/etc/default/irqbalance",
        "# irqbalance options\n#IRQBALANCE_ONESHOT=\nIRQBALANCE_ARGS=\"--policyscript=/etc/irq.sh --banirq=7\"\n",
    );
    f.ioctl = FakeIoctl::new()
        .with_nvme_feature(f.path("/dev/nvme0"), 0x08, 0)
        .with_nic("eth0", Some(default_nic_coalesce()));
    f.systemctl = Some(FakeSystemctl::new().with_unit("fstrim.timer", "disabled"));
    f
}

/// A cloud VM like the build machine: 2 CPUs, virtio disk `vda` holding `/`
/// (and so the data directory), virtio NIC `eth0` without coalescing
/// support, no cpufreq, no irqbalance, no systemctl.
pub fn virtio_host() -> Fixture {
    let mut f = Fixture::new(2);
    f.disk("vda", "254:0");
    f.mount("254:0", "/", "ext4", "/dev/vda");
    f.mkdir("/var/lib/shoal/data");
    f.virtio_nic("eth0", "virtio2", 37);
    f.ioctl = FakeIoctl::new().with_nic("eth0", None);
    f
}

/// An NVMe host whose devices have no MSI interrupts: no `msi_irqs` and no
/// per-queue names in `/proc/interrupts` (legacy INTx), NIC likewise.
pub fn no_msi_host() -> Fixture {
    let mut f = Fixture::new(2);
    f.disk("nvme0n1", "259:0");
    f.mount("259:0", "/", "xfs", "/dev/nvme0n1");
    f.mkdir("/sys/class/nvme/nvme0/device");
    f.interrupt(11, "nvme0");
    let device = "/sys/devices/pci0000:00/0000:00:05.0";
    f.mkdir(device);
    f.symlink("/sys/class/net/eth0/device", device);
    f.write("/sys/class/net/eth0/queues/rx-0/rps_cpus", "0\n");
    f.ioctl = FakeIoctl::new()
        .with_nvme_feature(f.path("/dev/nvme0"), 0x08, 0)
        .with_nic("eth0", Some(Coalesce::default()));
    f
}
