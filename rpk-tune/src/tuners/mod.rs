//! The tuners: one file per tuner, all implementing [`Tuner`].

pub mod aio_max_nr;
pub mod ballast_file;
pub mod clocksource;
pub mod cpu_governor;
pub mod disk_coalesce;
pub mod disk_irq;
pub mod disk_nomerges;
pub mod disk_rq_affinity;
pub mod disk_scheduler;
pub mod disk_write_cache;
pub mod fstrim;
pub mod irq_affinity;
pub mod irqbalance;
pub mod net_coalesce;
pub mod net_irq;
pub mod net_queues;
pub mod net_rfs;
pub mod net_rps;
pub mod net_xps;
pub mod somaxconn;
pub mod swappiness;
pub mod sysctl;
pub mod tcp_max_syn_backlog;
pub mod transparent_hugepages;

use crate::changes::Changes;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::options::Options;
use crate::report::Severity;
use crate::storage::{self, DataStorage};

pub use irqbalance::render_config as render_irqbalance_config;

/// What a tuner requires of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly this value.
    Exact(String),
    /// A number at least this large.
    AtLeast(u64),
    /// A comma separated list that includes every one of these items.
    AllOf(Vec<String>),
    /// Nothing: the value is only reported.
    Report,
}

impl Want {
    /// Whether `current` meets the requirement.
    pub fn satisfied_by(&self, current: &str) -> bool {
        match self {
            Self::Exact(value) => current == value,
            Self::AtLeast(minimum) => current.trim().parse::<u64>().is_ok_and(|v| v >= *minimum),
            Self::AllOf(items) => {
                let present: Vec<&str> = current.split(',').map(str::trim).collect();
                items.iter().all(|item| present.contains(&item.as_str()))
            }
            Self::Report => true,
        }
    }

    /// The "required" column.
    pub fn display(&self) -> String {
        match self {
            Self::Exact(value) => value.clone(),
            Self::AtLeast(minimum) => format!(">= {minimum}"),
            Self::AllOf(items) => format!("includes {}", items.join(",")),
            Self::Report => "(reported only)".to_string(),
        }
    }
}

/// One tuner. A tuner finds its targets (devices, interrupts, settings) and,
/// for each, says whether it can run, what the value is, what it should be,
/// and how to change it.
pub trait Tuner {
    /// Name used in reports and by `--only`/`--skip`.
    fn name(&self) -> &'static str;

    /// How much a failed check matters.
    fn severity(&self) -> Severity;

    /// The targets on this host; `Err(reason)` when the tuner cannot run at all.
    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String>;

    /// Whether this target can be checked and changed; `Err(reason)` if not.
    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String>;

    /// The value on the host now.
    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String>;

    /// What the value should be.
    fn required(&self, ctx: &Context<'_>, target: &str) -> Result<Want>;

    /// Changes the value to the required one through `changes`.
    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()>;
}

/// Every tuner, in report order.
pub fn all() -> Vec<Box<dyn Tuner>> {
    vec![
        Box::new(disk_nomerges::DiskNomerges),
        Box::new(disk_scheduler::DiskScheduler),
        Box::new(disk_rq_affinity::DiskRqAffinity),
        Box::new(disk_write_cache::DiskWriteCache),
        Box::new(disk_irq::DiskIrq::default()),
        Box::new(disk_coalesce::DiskCoalesce),
        Box::new(net_irq::NetIrq::default()),
        Box::new(net_coalesce::NetCoalesce),
        Box::new(net_rps::NetRps),
        Box::new(net_rfs::NetRfs),
        Box::new(net_xps::NetXps),
        Box::new(irqbalance::Irqbalance),
        Box::new(aio_max_nr::tuner()),
        Box::new(swappiness::tuner()),
        Box::new(somaxconn::tuner()),
        Box::new(tcp_max_syn_backlog::tuner()),
        Box::new(transparent_hugepages::TransparentHugepages),
        Box::new(clocksource::Clocksource),
        Box::new(cpu_governor::CpuGovernor),
        Box::new(ballast_file::BallastFile),
        Box::new(fstrim::Fstrim),
    ]
}

/// Names of every tuner, in report order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|t| t.name()).collect()
}

/// What every tuner may look at: the host, the options and where the data
/// directory lives.
pub struct Context<'h> {
    /// The host being tuned.
    pub host: &'h Host,
    /// The options.
    pub opts: &'h Options,
    /// The storage holding the data directory, or why it is unknown.
    pub storage: Result<DataStorage, String>,
}

impl<'h> Context<'h> {
    /// Locates the data directory and validates `--device` against it.
    ///
    /// A device given with `--device` that does not hold the data directory
    /// is refused unless `--allow-other-devices` is set, because tuning the
    /// wrong disk (say, the OS disk) is a mistake worth stopping for.
    pub fn new(host: &'h Host, opts: &'h Options) -> Result<Self> {
        let storage = storage::locate(host, &opts.data_dir);
        if !opts.allow_other_devices {
            for device in &opts.devices {
                let holds = storage.as_ref().is_ok_and(|s| s.disks.contains(device));
                if !holds {
                    let why = match &storage {
                        Ok(s) => format!("it holds {}", s.disks.join(", ")),
                        Err(reason) => reason.clone(),
                    };
                    return Err(Error::Usage(format!(
                        "refusing to tune {device}: it does not hold the data directory {} ({why}); pass --allow-other-devices to override",
                        opts.data_dir.display()
                    )));
                }
            }
        }
        for device in &opts.devices {
            if !host.exists(format!("/sys/block/{device}")) {
                return Err(Error::Usage(format!("no such block device: {device}")));
            }
        }
        Ok(Self {
            host,
            opts,
            storage,
        })
    }

    /// The whole disks to tune: `--device` if given, else the data directory's.
    pub fn disks(&self) -> Result<Vec<String>, String> {
        if !self.opts.devices.is_empty() {
            return Ok(self.opts.devices.clone());
        }
        let storage = self.storage.as_ref().map_err(Clone::clone)?;
        if storage.disks.is_empty() {
            return Err("no block device found under the data directory".to_string());
        }
        Ok(storage.disks.clone())
    }

    /// The NVMe controllers behind [`Context::disks`].
    pub fn nvme_controllers(&self) -> Result<Vec<String>, String> {
        let disks = self.disks()?;
        let mut controllers: Vec<String> = Vec::new();
        for disk in &disks {
            if let Some(controller) = storage::nvme_controller(self.host, disk) {
                if !controllers.contains(&controller) {
                    controllers.push(controller);
                }
            }
        }
        if controllers.is_empty() {
            return Err(format!(
                "no NVMe device holds the data directory ({})",
                disks.join(", ")
            ));
        }
        Ok(controllers)
    }

    /// The NICs to tune: `--nic` if given, else every interface backed by a
    /// device (loopback, bridges, bonds' virtual halves and ifb have none).
    pub fn nics(&self) -> Result<Vec<String>, String> {
        if !self.opts.nics.is_empty() {
            return Ok(self.opts.nics.clone());
        }
        let names = self
            .host
            .list("/sys/class/net")
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let nics: Vec<String> = names
            .into_iter()
            .filter(|name| self.host.exists(format!("/sys/class/net/{name}/device")))
            .collect();
        if nics.is_empty() {
            return Err("no network interface backed by a device".to_string());
        }
        Ok(nics)
    }
}

/// Shared check for sysfs/procfs attributes: present and writable.
pub(crate) fn attribute_supported(host: &Host, path: &str) -> Result<(), String> {
    if !host.exists(path) {
        return Err(format!("{path} does not exist"));
    }
    if !host.is_writable(path) {
        return Err(format!("{path} is read-only"));
    }
    // Some attributes exist but refuse to be read in some configurations
    // (xps_cpus on a single-queue device answers ENOENT); that is a property
    // of the device, not a failure of the check.
    host.read(path).map(|_| ()).map_err(|e| e.to_string())
}

/// The selected entry of a sysfs choice file such as
/// `none [mq-deadline] kyber`; a file without brackets is its own selection.
pub(crate) fn selected_choice(text: &str) -> String {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or_else(|| text.trim())
        .to_string()
}

/// The choices offered by a sysfs choice file, without brackets.
pub(crate) fn available_choices(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| {
            word.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect()
}
