//! Every tuner on prepared fake trees: values before and after apply,
//! rollback, dry runs that change nothing and the exact rendered commands.

mod common;

use std::path::PathBuf;

use common::{default_nic_coalesce, no_msi_host, nvme_host, virtio_host, Fixture};
use rpk_tune::engine::{self, Outcome};
use rpk_tune::ethtool::{self, Coalesce};
use rpk_tune::irq::IrqMode;
use rpk_tune::nvme;
use rpk_tune::{Error, Options, Row, Selection, Severity, Status};

fn select(only: &[&str]) -> Selection {
    Selection {
        only: only.iter().map(|s| s.to_string()).collect(),
        skip: Vec::new(),
    }
}

fn opts() -> Options {
    Options {
        ballast_size_bytes: 64 * 1024,
        ..Options::default()
    }
}

fn state_file(f: &Fixture) -> PathBuf {
    f.path("/var/lib/shoal/rpk-tune-state.json")
}

fn check(f: &Fixture, opts: &Options, only: &[&str]) -> Vec<Row> {
    rpk_tune::check(&f.host(), opts, &select(only)).expect("check runs")
}

fn apply(f: &Fixture, opts: &Options, only: &[&str], dry_run: bool) -> Outcome {
    rpk_tune::apply(&f.host(), opts, &select(only), dry_run, &state_file(f)).expect("apply runs")
}

fn rollback(f: &Fixture, dry_run: bool) -> Outcome {
    rpk_tune::rollback(&f.host(), &state_file(f), dry_run).expect("rollback runs")
}

fn row<'r>(rows: &'r [Row], tuner: &str, target: &str) -> &'r Row {
    rows.iter()
        .find(|r| r.tuner == tuner && r.target == target)
        .unwrap_or_else(|| panic!("no row {tuner}/{target} in {rows:#?}"))
}

fn shown(f: &Fixture, host_path: &str) -> String {
    f.path(host_path).display().to_string()
}

// ---------------------------------------------------------------- disks

#[test]
fn disk_tuners_find_the_data_disk_through_the_partition() {
    let f = nvme_host();
    let rows = check(
        &f,
        &opts(),
        &[
            "disk_nomerges",
            "disk_scheduler",
            "disk_rq_affinity",
            "disk_write_cache",
        ],
    );
    // Only the NVMe namespace holds the data directory; the OS disk sda must not appear.
    assert!(rows.iter().all(|r| r.target == "nvme0n1"), "{rows:#?}");
    let nomerges = row(&rows, "disk_nomerges", "nvme0n1");
    assert_eq!(nomerges.current.as_deref(), Some("0"));
    assert_eq!(nomerges.required.as_deref(), Some("2"));
    assert_eq!(nomerges.status, Status::Fail);
    assert_eq!(nomerges.severity, Severity::Error);
    let scheduler = row(&rows, "disk_scheduler", "nvme0n1");
    assert_eq!(scheduler.current.as_deref(), Some("mq-deadline"));
    let cache = row(&rows, "disk_write_cache", "nvme0n1");
    assert_eq!(cache.current.as_deref(), Some("write back"));
    assert_eq!(cache.status, Status::Ok);
    assert_eq!(engine::check_exit_code(&rows), engine::EXIT_FAILED);
}

#[test]
fn disk_tuners_apply_and_roll_back() {
    let f = nvme_host();
    let only = [
        "disk_nomerges",
        "disk_scheduler",
        "disk_rq_affinity",
        "disk_write_cache",
    ];
    let outcome = apply(&f, &opts(), &only, false);
    assert_eq!(engine::apply_exit_code(&outcome.rows), engine::EXIT_OK);
    assert_eq!(f.read("/sys/block/nvme0n1/queue/nomerges"), "2");
    assert_eq!(f.read("/sys/block/nvme0n1/queue/scheduler"), "none");
    assert_eq!(f.read("/sys/block/nvme0n1/queue/rq_affinity"), "2");
    // Reported only: never written.
    assert_eq!(f.read("/sys/block/nvme0n1/queue/write_cache"), "write back");
    let nomerges = row(&outcome.rows, "disk_nomerges", "nvme0n1");
    assert_eq!(nomerges.status, Status::Changed);
    assert_eq!(nomerges.previous.as_deref(), Some("0"));
    assert_eq!(nomerges.current.as_deref(), Some("2"));
    // The OS disk is untouched.
    assert_eq!(f.read("/sys/block/sda/queue/nomerges"), "0");
    assert_eq!(
        engine::check_exit_code(&check(&f, &opts(), &only)),
        engine::EXIT_OK
    );

    let undone = rollback(&f, false);
    assert_eq!(engine::apply_exit_code(&undone.rows), engine::EXIT_OK);
    assert_eq!(f.read("/sys/block/nvme0n1/queue/nomerges"), "0");
    assert_eq!(f.read("/sys/block/nvme0n1/queue/scheduler"), "mq-deadline");
    assert_eq!(f.read("/sys/block/nvme0n1/queue/rq_affinity"), "1");
    assert!(
        !state_file(&f).exists(),
        "a complete rollback removes the state file"
    );
}

#[test]
fn dry_run_changes_nothing_and_renders_exact_commands() {
    let f = nvme_host();
    let before = f.snapshot();
    let outcome = apply(
        &f,
        &opts(),
        &["disk_nomerges", "disk_scheduler", "aio_max_nr"],
        true,
    );
    assert_eq!(f.snapshot(), before, "dry run must not touch the tree");
    assert!(!state_file(&f).exists());
    assert_eq!(
        outcome.commands,
        vec![
            format!(
                "echo 2 > {}",
                shown(&f, "/sys/block/nvme0n1/queue/nomerges")
            ),
            format!(
                "echo none > {}",
                shown(&f, "/sys/block/nvme0n1/queue/scheduler")
            ),
            format!("echo 1048576 > {}", shown(&f, "/proc/sys/fs/aio-max-nr")),
        ]
    );
    assert!(outcome.rows.iter().all(|r| r.status == Status::WouldChange));
}

#[test]
fn stacked_devices_resolve_to_every_real_disk() {
    let mut f = Fixture::new(2);
    f.disk("nvme0n1", "259:0");
    f.partition("nvme0n1", "nvme0n1p2", "259:2");
    f.disk("nvme1n1", "259:4");
    f.stacked("md0", "9:0", &["nvme0n1p2", "nvme1n1"]);
    f.stacked("dm-0", "253:0", &["md0"]);
    f.mount("253:0", "/", "xfs", "/dev/mapper/vg-data");
    f.mkdir("/var/lib/shoal/data");
    f.interrupt(1, "timer");
    let rows = check(&f, &opts(), &["disk_nomerges"]);
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["nvme0n1", "nvme1n1"]);
}

#[test]
fn data_dir_that_does_not_exist_yet_uses_its_parent_filesystem() {
    let f = nvme_host();
    let opts = Options {
        data_dir: "/var/lib/shoal/not-yet/data".into(),
        ..opts()
    };
    let rows = check(&f, &opts, &["disk_nomerges"]);
    assert_eq!(rows[0].target, "nvme0n1");
}

#[test]
fn other_devices_are_refused_unless_allowed() {
    let f = nvme_host();
    let refused = Options {
        devices: vec!["sda".to_string()],
        ..opts()
    };
    let error = rpk_tune::apply(
        &f.host(),
        &refused,
        &select(&["disk_nomerges"]),
        false,
        &state_file(&f),
    )
    .expect_err("sda does not hold the data directory");
    assert!(matches!(error, Error::Usage(_)), "{error}");
    assert!(
        error.to_string().contains("refusing to tune sda"),
        "{error}"
    );
    assert_eq!(f.read("/sys/block/sda/queue/nomerges"), "0");

    let allowed = Options {
        allow_other_devices: true,
        ..refused
    };
    apply(&f, &allowed, &["disk_nomerges"], false);
    assert_eq!(f.read("/sys/block/sda/queue/nomerges"), "2");
    assert_eq!(f.read("/sys/block/nvme0n1/queue/nomerges"), "0");
}

#[test]
fn read_only_attribute_is_unsupported_and_not_written() {
    let f = nvme_host();
    f.read_only("/sys/block/nvme0n1/queue/nomerges");
    let outcome = apply(&f, &opts(), &["disk_nomerges", "disk_rq_affinity"], false);
    let nomerges = row(&outcome.rows, "disk_nomerges", "nvme0n1");
    assert!(
        matches!(&nomerges.status, Status::Unsupported(reason) if reason.contains("read-only")),
        "{nomerges:?}"
    );
    assert_eq!(f.read("/sys/block/nvme0n1/queue/nomerges"), "0");
    // The other tuner still ran, and an unsupported tuner does not fail the run.
    assert_eq!(f.read("/sys/block/nvme0n1/queue/rq_affinity"), "2");
    assert_eq!(engine::apply_exit_code(&outcome.rows), engine::EXIT_OK);
}

// ---------------------------------------------------------------- IRQs

#[test]
fn nvme_irqs_follow_the_driver_queue_map() {
    let f = nvme_host();
    let rows = check(&f, &opts(), &["disk_irq"]);
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "nvme0q0 (irq 40)",
            "nvme0q1 (irq 41)",
            "nvme0q2 (irq 42)",
            "nvme0q3 (irq 43)",
            "nvme0q4 (irq 44)"
        ]
    );
    // Admin queue anywhere; queue N on the CPU of hardware context N-1.
    let required: Vec<&str> = rows
        .iter()
        .map(|r| r.required.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(required, ["0-3", "0", "1", "2", "3"]);
    assert_eq!(
        row(&rows, "disk_irq", "nvme0q0 (irq 40)").status,
        Status::Ok
    );
    assert_eq!(
        row(&rows, "disk_irq", "nvme0q2 (irq 42)")
            .current
            .as_deref(),
        Some("0-3")
    );

    apply(&f, &opts(), &["disk_irq"], false);
    assert_eq!(f.read("/proc/irq/42/smp_affinity_list"), "1");
    assert_eq!(f.read("/proc/irq/44/smp_affinity_list"), "3");
    rollback(&f, false);
    assert_eq!(f.read("/proc/irq/42/smp_affinity_list"), "0-3");
}

#[test]
fn nvme_irqs_fall_back_to_proc_interrupts_names_without_msi_irqs() {
    let mut f = Fixture::new(2);
    f.disk("nvme0n1", "259:0");
    f.mount("259:0", "/", "xfs", "/dev/nvme0n1");
    f.nvme("nvme0", 2, 60, false);
    f.interrupt(61_000, "eth9-unrelated");
    let rows = check(&f, &opts(), &["disk_irq"]);
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        ["nvme0q0 (irq 60)", "nvme0q1 (irq 61)", "nvme0q2 (irq 62)"]
    );
    let required: Vec<&str> = rows
        .iter()
        .map(|r| r.required.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(required, ["0-1", "0", "1"]);
}

#[test]
fn irq_modes_spread_and_single() {
    let f = nvme_host();
    let spread = Options {
        irq_mode: IrqMode::Spread,
        ..opts()
    };
    let rows = check(&f, &spread, &["net_irq"]);
    let required: Vec<&str> = rows
        .iter()
        .map(|r| r.required.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(required, ["0", "1", "2", "3"]);
    let single = Options {
        irq_mode: IrqMode::Single,
        ..opts()
    };
    apply(&f, &single, &["net_irq", "disk_irq"], false);
    for irq in 40..=53 {
        if (45..50).contains(&irq) {
            continue;
        }
        assert_eq!(
            f.read(&format!("/proc/irq/{irq}/smp_affinity_list")),
            "0",
            "irq {irq}"
        );
    }
}

#[test]
fn nic_irqs_follow_the_affinity_hint_in_driver_mode() {
    let f = nvme_host();
    f.write("/proc/irq/50/affinity_hint", "8\n");
    let rows = check(&f, &opts(), &["net_irq"]);
    assert_eq!(
        row(&rows, "net_irq", "eth0 eth0-TxRx-0 (irq 50)")
            .required
            .as_deref(),
        Some("3")
    );
    // No hint: spread by queue position.
    assert_eq!(
        row(&rows, "net_irq", "eth0 eth0-TxRx-1 (irq 51)")
            .required
            .as_deref(),
        Some("1")
    );
}

#[test]
fn virtio_nic_irqs_are_its_queue_interrupts_only() {
    let f = virtio_host();
    let rows = check(&f, &opts(), &["net_irq"]);
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "eth0 virtio2-input.0 (irq 38)",
            "eth0 virtio2-output.0 (irq 39)"
        ]
    );
}

#[test]
fn hosts_without_msi_irqs_are_unsupported_but_the_run_continues() {
    let f = no_msi_host();
    let outcome = apply(&f, &opts(), &[], false);
    let disk_irq = row(&outcome.rows, "disk_irq", "-");
    assert!(
        matches!(&disk_irq.status, Status::Unsupported(reason) if reason.contains("nvme0 has no MSI")),
        "{disk_irq:?}"
    );
    let net_irq = row(&outcome.rows, "net_irq", "-");
    assert!(
        matches!(&net_irq.status, Status::Unsupported(reason) if reason.contains("eth0 has no MSI"))
    );
    // Everything else still ran.
    assert_eq!(f.read("/sys/block/nvme0n1/queue/nomerges"), "2");
    assert_eq!(f.read("/proc/sys/fs/aio-max-nr"), "1048576");
    assert_eq!(
        engine::apply_exit_code(&outcome.rows),
        engine::EXIT_OK,
        "{:#?}",
        outcome.rows
    );
}

#[test]
fn irqbalance_is_told_to_leave_tuned_irqs_alone() {
    let f = nvme_host();
    let rows = check(&f, &opts(), &["irqbalance"]);
    let r = row(&rows, "irqbalance", "/etc/default/irqbalance");
    assert_eq!(r.current.as_deref(), Some("7"));
    assert_eq!(r.status, Status::Fail);
    let original = f.read("/etc/default/irqbalance");

    apply(&f, &opts(), &["irqbalance"], false);
    let config = f.read("/etc/default/irqbalance");
    assert_eq!(
        config,
        "# irqbalance options\n#IRQBALANCE_ONESHOT=\nIRQBALANCE_ARGS=\"--policyscript=/etc/irq.sh \
         --banirq=7 --banirq=40 --banirq=41 --banirq=42 --banirq=43 --banirq=44 \
         --banirq=50 --banirq=51 --banirq=52 --banirq=53\""
    );
    assert_eq!(
        row(
            &check(&f, &opts(), &["irqbalance"]),
            "irqbalance",
            "/etc/default/irqbalance"
        )
        .status,
        Status::Ok
    );
    rollback(&f, false);
    assert_eq!(f.read("/etc/default/irqbalance"), original);
}

#[test]
fn irqbalance_config_rendering() {
    assert_eq!(
        rpk_tune::tuners::render_irqbalance_config("", &[45, 44]),
        "# Interrupts placed by rpk-tune; irqbalance must leave them alone.\n\
         IRQBALANCE_ARGS=\"--banirq=44 --banirq=45\"\n"
    );
    assert_eq!(
        rpk_tune::tuners::render_irqbalance_config("IRQBALANCE_ARGS=\"--banirq=45\"\n", &[45]),
        "IRQBALANCE_ARGS=\"--banirq=45\"\n"
    );
}

#[test]
fn irqbalance_not_installed_is_unsupported() {
    let f = virtio_host();
    let rows = check(&f, &opts(), &["irqbalance"]);
    assert!(
        matches!(&rows[0].status, Status::Unsupported(reason) if reason.contains("not installed"))
    );
}

// ---------------------------------------------------------------- coalescing

#[test]
fn nvme_coalescing_set_features_payload_and_rollback() {
    let f = nvme_host();
    let device = f.path("/dev/nvme0");
    let rows = check(&f, &opts(), &["disk_coalesce"]);
    let r = row(&rows, "disk_coalesce", "nvme0");
    assert_eq!(r.current.as_deref(), Some("threshold=1 entries, time=0us"));
    assert_eq!(
        r.required.as_deref(),
        Some("threshold=8 entries, time=100us")
    );

    let outcome = apply(&f, &opts(), &["disk_coalesce"], false);
    assert_eq!(
        row(&outcome.rows, "disk_coalesce", "nvme0").status,
        Status::Changed
    );
    // cdw11 = time 1 (x100 us) << 8 | threshold 7 (0-based) = 0x0107.
    assert_eq!(f.ioctl.nvme_feature(&device, 0x08), Some(0x0107));
    let sets: Vec<Vec<u8>> = f
        .ioctl
        .calls()
        .into_iter()
        .filter(|c| c.payload[0] == nvme::OPCODE_SET_FEATURES)
        .map(|c| c.payload)
        .collect();
    let mut expected = vec![0u8; 72];
    expected[0] = 0x09;
    expected[40] = 0x08;
    expected[44] = 0x07;
    expected[45] = 0x01;
    assert_eq!(sets, vec![expected]);
    assert_eq!(
        outcome.commands,
        vec![format!(
            "nvme set-feature {} --feature-id=0x08 --value=0x107",
            device.display()
        )]
    );

    rollback(&f, false);
    assert_eq!(f.ioctl.nvme_feature(&device, 0x08), Some(0));
}

#[test]
fn nic_coalescing_keeps_other_fields_and_rolls_back() {
    let f = nvme_host();
    let rows = check(&f, &opts(), &["net_coalesce"]);
    assert_eq!(
        row(&rows, "net_coalesce", "eth0").current.as_deref(),
        Some("rx-usecs=3 tx-usecs=16 adaptive-rx=on adaptive-tx=off")
    );
    let outcome = apply(&f, &opts(), &["net_coalesce"], false);
    let expected = Coalesce {
        rx_coalesce_usecs: 50,
        tx_coalesce_usecs: 50,
        use_adaptive_rx_coalesce: 0,
        ..default_nic_coalesce()
    };
    assert_eq!(f.ioctl.nic("eth0"), Some(expected));
    // Exactly one ETHTOOL_SCOALESCE carrying the full structure, byte for byte.
    let sets: Vec<_> = f
        .ioctl
        .calls()
        .into_iter()
        .filter(|c| c.payload[0] == ethtool::ETHTOOL_SCOALESCE as u8)
        .collect();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].target, "eth0");
    assert_eq!(sets[0].payload, ethtool::set_coalesce(&expected).to_vec());
    assert_eq!(
        outcome.commands,
        ["ethtool -C eth0 rx-usecs 50 tx-usecs 50 adaptive-rx off"]
    );

    rollback(&f, false);
    assert_eq!(f.ioctl.nic("eth0"), Some(default_nic_coalesce()));
}

#[test]
fn virtio_nic_without_coalescing_is_unsupported() {
    let f = virtio_host();
    let outcome = apply(&f, &opts(), &["net_coalesce"], false);
    let r = row(&outcome.rows, "net_coalesce", "eth0");
    assert!(
        matches!(&r.status, Status::Unsupported(reason) if reason.contains("ETHTOOL_GCOALESCE")),
        "{r:?}"
    );
    assert!(r.ok);
}

#[test]
fn nvme_tuners_are_unsupported_on_virtio_disks() {
    let f = virtio_host();
    let rows = check(&f, &opts(), &["disk_coalesce", "disk_irq"]);
    for r in &rows {
        assert!(
            matches!(&r.status, Status::Unsupported(reason) if reason.contains("no NVMe device")),
            "{r:?}"
        );
    }
}

// ---------------------------------------------------------------- NIC queues

#[test]
fn rps_rfs_xps_apply_and_roll_back() {
    let f = nvme_host();
    apply(&f, &opts(), &["net_rps", "net_rfs", "net_xps"], false);
    assert_eq!(f.read("/sys/class/net/eth0/queues/rx-0/rps_cpus"), "f");
    assert_eq!(f.read("/proc/sys/net/core/rps_sock_flow_entries"), "32768");
    // 32768 entries over 4 receive queues.
    assert_eq!(
        f.read("/sys/class/net/eth0/queues/rx-3/rps_flow_cnt"),
        "8192"
    );
    // 4 CPUs over 4 transmit queues: one CPU each.
    assert_eq!(f.read("/sys/class/net/eth0/queues/tx-0/xps_cpus"), "1");
    assert_eq!(f.read("/sys/class/net/eth0/queues/tx-3/xps_cpus"), "8");
    rollback(&f, false);
    assert_eq!(f.read("/sys/class/net/eth0/queues/rx-0/rps_cpus"), "0");
    assert_eq!(f.read("/proc/sys/net/core/rps_sock_flow_entries"), "0");
    assert_eq!(f.read("/sys/class/net/eth0/queues/tx-3/xps_cpus"), "0");
}

// ---------------------------------------------------------------- sysctls and system

#[test]
fn sysctls_raise_minimums_and_keep_larger_values() {
    let f = nvme_host();
    f.write("/proc/sys/net/core/somaxconn", "65535\n");
    let outcome = apply(
        &f,
        &opts(),
        &[
            "aio_max_nr",
            "swappiness",
            "somaxconn",
            "tcp_max_syn_backlog",
        ],
        false,
    );
    assert_eq!(f.read("/proc/sys/fs/aio-max-nr"), "1048576");
    assert_eq!(f.read("/proc/sys/vm/swappiness"), "1");
    assert_eq!(
        f.read("/proc/sys/net/core/somaxconn"),
        "65535",
        "a larger value is kept"
    );
    assert_eq!(
        row(&outcome.rows, "somaxconn", "net.core.somaxconn").status,
        Status::Ok
    );
    assert_eq!(f.read("/proc/sys/net/ipv4/tcp_max_syn_backlog"), "4096");
    rollback(&f, false);
    assert_eq!(f.read("/proc/sys/fs/aio-max-nr"), "65536");
    assert_eq!(f.read("/proc/sys/vm/swappiness"), "60");
    assert_eq!(f.read("/proc/sys/net/ipv4/tcp_max_syn_backlog"), "512");
}

#[test]
fn thp_clocksource_and_governor() {
    let f = nvme_host();
    let rows = check(
        &f,
        &opts(),
        &["transparent_hugepages", "clocksource", "cpu_governor"],
    );
    assert_eq!(rows.len(), 6, "thp, clocksource and 4 CPUs: {rows:#?}");
    apply(
        &f,
        &opts(),
        &["transparent_hugepages", "clocksource", "cpu_governor"],
        false,
    );
    assert_eq!(
        f.read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "madvise"
    );
    assert_eq!(
        f.read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "tsc"
    );
    assert_eq!(
        f.read("/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor"),
        "performance"
    );
    rollback(&f, false);
    assert_eq!(
        f.read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "always"
    );
    assert_eq!(
        f.read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "hpet"
    );
    assert_eq!(
        f.read("/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor"),
        "powersave"
    );
}

#[test]
fn clocksource_without_tsc_and_vm_without_cpufreq_are_unsupported() {
    let f = virtio_host();
    f.write(
        "/sys/devices/system/clocksource/clocksource0/available_clocksource",
        "kvm-clock acpi_pm\n",
    );
    let rows = check(&f, &opts(), &["clocksource", "cpu_governor"]);
    assert!(
        matches!(&rows[0].status, Status::Unsupported(r) if r.contains("tsc is not available"))
    );
    assert!(matches!(&rows[1].status, Status::Unsupported(r) if r.contains("no cpufreq")));
}

#[test]
fn ballast_file_is_allocated_and_removed_by_rollback() {
    let f = nvme_host();
    let target = "/var/lib/shoal/data/ballast";
    let rows = check(&f, &opts(), &["ballast_file"]);
    assert_eq!(
        row(&rows, "ballast_file", target).current.as_deref(),
        Some("missing")
    );
    apply(&f, &opts(), &["ballast_file"], false);
    let meta = std::fs::metadata(f.path(target)).expect("ballast exists");
    assert_eq!(meta.len(), 64 * 1024);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 64 * 1024,
        "blocks are really allocated, not sparse"
    );
    assert_eq!(
        row(
            &check(&f, &opts(), &["ballast_file"]),
            "ballast_file",
            target
        )
        .status,
        Status::Ok
    );
    rollback(&f, false);
    assert!(!f.path(target).exists());
}

#[test]
fn fstrim_timer_is_enabled_and_rollback_disables_it() {
    let f = nvme_host();
    let systemctl = f.systemctl.clone().expect("fake systemctl");
    let outcome = apply(&f, &opts(), &["fstrim"], false);
    assert_eq!(
        row(&outcome.rows, "fstrim", "fstrim.timer")
            .previous
            .as_deref(),
        Some("disabled")
    );
    assert_eq!(systemctl.state("fstrim.timer").as_deref(), Some("enabled"));
    rollback(&f, false);
    assert_eq!(systemctl.state("fstrim.timer").as_deref(), Some("disabled"));
    let calls: Vec<String> = systemctl.calls().iter().map(|c| c.join(" ")).collect();
    assert!(calls.contains(&"enable --now fstrim.timer".to_string()));
    assert!(calls.contains(&"disable --now fstrim.timer".to_string()));
}

#[test]
fn fstrim_without_systemctl_is_unsupported() {
    let f = virtio_host();
    let rows = check(&f, &opts(), &["fstrim"]);
    assert!(
        matches!(&rows[0].status, Status::Unsupported(r) if r.contains("systemctl is not available"))
    );
}

// ---------------------------------------------------------------- whole runs

#[test]
fn second_apply_keeps_the_original_values_for_rollback() {
    let f = nvme_host();
    apply(&f, &opts(), &["swappiness"], false);
    f.write("/proc/sys/vm/swappiness", "30\n");
    apply(&f, &opts(), &["swappiness"], false);
    rollback(&f, false);
    assert_eq!(
        f.read("/proc/sys/vm/swappiness"),
        "60",
        "the value from before the first apply"
    );
}

#[test]
fn rollback_dry_run_changes_nothing() {
    let f = nvme_host();
    apply(&f, &opts(), &["disk_nomerges", "swappiness"], false);
    let before = f.snapshot();
    let outcome = rollback(&f, true);
    assert_eq!(f.snapshot(), before);
    assert_eq!(
        outcome.commands,
        vec![
            format!("echo 60 > {}", shown(&f, "/proc/sys/vm/swappiness")),
            format!(
                "echo 0 > {}",
                shown(&f, "/sys/block/nvme0n1/queue/nomerges")
            ),
        ]
    );
}

#[test]
fn full_apply_on_every_fixture_leaves_no_error_severity_failures() {
    for f in [nvme_host(), virtio_host(), no_msi_host()] {
        let outcome = apply(&f, &opts(), &[], false);
        assert_eq!(
            engine::apply_exit_code(&outcome.rows),
            engine::EXIT_OK,
            "{:#?}",
            outcome.rows
        );
        let rows = check(&f, &opts(), &[]);
        assert_eq!(engine::check_exit_code(&rows), engine::EXIT_OK, "{rows:#?}");
        rollback(&f, false);
        assert_eq!(
            engine::check_exit_code(&check(&f, &opts(), &[])),
            engine::EXIT_FAILED
        );
    }
}

#[test]
fn unknown_tuner_names_are_usage_errors() {
    let f = nvme_host();
    let error =
        rpk_tune::check(&f.host(), &opts(), &select(&["nomerges"])).expect_err("unknown name");
    assert!(matches!(error, Error::Usage(_)));
}

#[test]
fn skip_removes_tuners() {
    let f = nvme_host();
    let selection = Selection {
        only: Vec::new(),
        skip: vec!["disk_nomerges".to_string(), "aio_max_nr".to_string()],
    };
    let rows = rpk_tune::check(&f.host(), &opts(), &selection).expect("check");
    assert!(rows
        .iter()
        .all(|r| r.tuner != "disk_nomerges" && r.tuner != "aio_max_nr"));
    assert!(rows.iter().any(|r| r.tuner == "disk_scheduler"));
}
