//! Interrupt discovery and the CPU each interrupt should be steered to.

use std::collections::BTreeMap;

use crate::cpus::CpuSet;
use crate::error::{Error, Result};
use crate::host::{natural_key, Host};

/// How interrupts are spread over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IrqMode {
    /// Follow the driver: NVMe queue N goes to the CPUs the block layer maps
    /// to hardware queue N-1; NIC interrupts follow the driver's
    /// `affinity_hint` (spread when the driver gives none).
    #[default]
    Driver,
    /// One CPU per interrupt, round robin over the online CPUs.
    Spread,
    /// Every interrupt on the first online CPU, leaving the other CPUs to
    /// the broker's shards (Redpanda's "sq" mode).
    Single,
}

/// One interrupt line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irq {
    /// The IRQ number (`/proc/irq/N`).
    pub number: u32,
    /// The action name from `/proc/interrupts`, for example `nvme0q3`; empty when unknown.
    pub name: String,
}

impl Irq {
    /// The label shown in the device column, for example `nvme0q3 (irq 45)`.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("irq {}", self.number)
        } else {
            format!("{} (irq {})", self.name, self.number)
        }
    }
}

/// IRQ number → action name, from `/proc/interrupts`.
pub fn interrupt_names(host: &Host) -> Result<BTreeMap<u32, String>> {
    let text = host.read("/proc/interrupts")?;
    let mut names = BTreeMap::new();
    for line in text.lines() {
        let Some((number, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        if let Some(name) = rest.split_whitespace().last() {
            names.insert(number, name.to_string());
        }
    }
    Ok(names)
}

/// IRQ numbers listed in a PCI device's `msi_irqs` directory, if it has one.
pub fn msi_irqs(host: &Host, device_dir: &str) -> Result<Option<Vec<u32>>> {
    let Some(entries) = host.list(format!("{device_dir}/msi_irqs"))? else {
        return Ok(None);
    };
    let mut irqs: Vec<u32> = entries.iter().filter_map(|e| e.parse().ok()).collect();
    irqs.sort_unstable();
    Ok(Some(irqs))
}

/// The queue interrupts of an NVMe controller, ordered by queue number.
/// `Err` explains why there are none to tune.
pub fn nvme_irqs(host: &Host, controller: &str) -> Result<Vec<Irq>, String> {
    let names = interrupt_names(host).map_err(|e| e.to_string())?;
    let prefix = format!("{controller}q");
    let msi = msi_irqs(host, &format!("/sys/class/nvme/{controller}/device"))
        .map_err(|e| e.to_string())?;
    let mut irqs: Vec<Irq> = match msi {
        Some(numbers) => numbers
            .into_iter()
            .map(|number| Irq {
                number,
                name: names.get(&number).cloned().unwrap_or_default(),
            })
            .collect(),
        // Without msi_irqs (older kernels, some hypervisors) the queue names
        // in /proc/interrupts still identify the interrupts.
        None => names
            .iter()
            .filter(|(_, name)| name.starts_with(&prefix))
            .map(|(number, name)| Irq {
                number: *number,
                name: name.clone(),
            })
            .collect(),
    };
    if irqs.is_empty() {
        return Err(format!(
            "{controller} has no MSI/MSI-X interrupts (no msi_irqs and no {prefix}N in /proc/interrupts)"
        ));
    }
    irqs.sort_by(|a, b| {
        natural_key(&a.name)
            .cmp(&natural_key(&b.name))
            .then(a.number.cmp(&b.number))
    });
    Ok(irqs)
}

/// The interrupts of a NIC. Virtio NICs keep `msi_irqs` on the parent PCI
/// device, shared with the config interrupt, so only their
/// `virtioN-input.*`/`virtioN-output.*` queue interrupts are taken.
pub fn nic_irqs(host: &Host, iface: &str) -> Result<Vec<Irq>, String> {
    let names = interrupt_names(host).map_err(|e| e.to_string())?;
    let device = format!("/sys/class/net/{iface}/device");
    let named = |numbers: Vec<u32>| -> Vec<Irq> {
        numbers
            .into_iter()
            .map(|number| Irq {
                number,
                name: names.get(&number).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let own = msi_irqs(host, &device).map_err(|e| e.to_string())?;
    let mut irqs = match own {
        Some(numbers) => named(numbers),
        None => {
            let virtio = host
                .canonical(&device)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .filter(|n| n.starts_with("virtio"));
            let parent = msi_irqs(host, &format!("{device}/..")).map_err(|e| e.to_string())?;
            match (virtio, parent) {
                (Some(virtio), Some(numbers)) => named(numbers)
                    .into_iter()
                    .filter(|irq| {
                        irq.name.starts_with(&format!("{virtio}-input"))
                            || irq.name.starts_with(&format!("{virtio}-output"))
                    })
                    .collect(),
                _ => Vec::new(),
            }
        }
    };
    if irqs.is_empty() {
        return Err(format!("{iface} has no MSI/MSI-X interrupts (no msi_irqs)"));
    }
    irqs.sort_by(|a, b| {
        natural_key(&a.name)
            .cmp(&natural_key(&b.name))
            .then(a.number.cmp(&b.number))
    });
    Ok(irqs)
}

/// The online CPUs.
pub fn online_cpus(host: &Host) -> Result<CpuSet> {
    let path = "/sys/devices/system/cpu/online";
    let text = host.read(path)?;
    CpuSet::parse_list(&text)
        .filter(|set| !set.is_empty())
        .ok_or_else(|| Error::Parse {
            path: path.into(),
            why: format!("not a CPU list: {text:?}"),
        })
}

/// The current affinity of an IRQ.
pub fn current_affinity(host: &Host, irq: u32) -> Result<CpuSet> {
    let path = format!("/proc/irq/{irq}/smp_affinity_list");
    let text = host.read(&path)?;
    CpuSet::parse_list(&text).ok_or_else(|| Error::Parse {
        path: path.into(),
        why: format!("not a CPU list: {text:?}"),
    })
}

/// `spread` and `single` placements, shared by NVMe and NIC interrupts.
pub fn generic_placement(mode: IrqMode, irqs: &[Irq], online: &CpuSet) -> Vec<CpuSet> {
    let cpus: Vec<usize> = online.iter().collect();
    irqs.iter()
        .enumerate()
        .map(|(i, _)| match mode {
            IrqMode::Single => CpuSet::single(cpus[0]),
            _ => CpuSet::single(cpus[i % cpus.len()]),
        })
        .collect()
}

/// The queue number at the end of an NVMe interrupt name (`nvme0q3` → 3).
pub fn nvme_queue_number(name: &str) -> Option<usize> {
    let (_, queue) = name.rsplit_once('q')?;
    queue.parse().ok()
}
