//! Shared parts of the two IRQ affinity tuners (`disk_irq`, `net_irq`).
//!
//! A plan maps each interrupt label to the CPUs it should run on. Devices
//! whose interrupts cannot be found keep an `Err(reason)` entry so that the
//! report says why they are skipped instead of silently dropping them.

use crate::changes::Changes;
use crate::cpus::CpuSet;
use crate::error::{Error, Result};
use crate::irq::{self, Irq};
use crate::tuners::{attribute_supported, Context, Want};

/// One planned interrupt.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub(crate) irq: Irq,
    pub(crate) cpus: CpuSet,
}

/// Label → planned interrupt, or why the device has none.
pub(crate) type Plan = Vec<(String, Result<Planned, String>)>;

pub(crate) fn affinity_path(irq: u32) -> String {
    format!("/proc/irq/{irq}/smp_affinity_list")
}

pub(crate) fn targets(plan: &Result<Plan, String>) -> Result<Vec<String>, String> {
    let plan = plan.as_ref().map_err(Clone::clone)?;
    if plan.iter().all(|(_, entry)| entry.is_err()) {
        let reasons: Vec<String> = plan
            .iter()
            .filter_map(|(_, entry)| entry.as_ref().err().cloned())
            .collect();
        return Err(reasons.join("; "));
    }
    Ok(plan.iter().map(|(label, _)| label.clone()).collect())
}

fn find<'p>(plan: &'p Result<Plan, String>, target: &str) -> Result<&'p Planned, String> {
    let plan = plan.as_ref().map_err(Clone::clone)?;
    plan.iter()
        .find(|(label, _)| label == target)
        .ok_or_else(|| format!("{target} is no longer present"))?
        .1
        .as_ref()
        .map_err(Clone::clone)
}

pub(crate) fn supported(
    ctx: &Context<'_>,
    plan: &Result<Plan, String>,
    target: &str,
) -> Result<(), String> {
    let planned = find(plan, target)?;
    attribute_supported(ctx.host, &affinity_path(planned.irq.number))
}

pub(crate) fn current(
    ctx: &Context<'_>,
    plan: &Result<Plan, String>,
    target: &str,
) -> Result<String> {
    let planned = find(plan, target).map_err(Error::Usage)?;
    Ok(irq::current_affinity(ctx.host, planned.irq.number)?.to_list())
}

pub(crate) fn required(plan: &Result<Plan, String>, target: &str) -> Result<Want> {
    let planned = find(plan, target).map_err(Error::Usage)?;
    Ok(Want::Exact(planned.cpus.to_list()))
}

pub(crate) fn apply(
    ctx: &Context<'_>,
    plan: &Result<Plan, String>,
    target: &str,
    changes: &mut Changes<'_>,
) -> Result<()> {
    let planned = find(plan, target).map_err(Error::Usage)?;
    let previous = irq::current_affinity(ctx.host, planned.irq.number)?.to_list();
    changes.write_value(
        &affinity_path(planned.irq.number),
        &planned.cpus.to_list(),
        &previous,
    )
}

/// Every IRQ number in a plan, for the irqbalance tuner.
pub(crate) fn irq_numbers(plan: &Result<Plan, String>) -> Vec<u32> {
    match plan {
        Ok(plan) => plan
            .iter()
            .filter_map(|(_, entry)| entry.as_ref().ok().map(|p| p.irq.number))
            .collect(),
        Err(_) => Vec::new(),
    }
}
