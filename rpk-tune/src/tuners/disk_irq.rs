//! IRQ affinity of the NVMe queues behind the data directory.
//!
//! Each NVMe I/O queue has its own interrupt. Placing queue N's interrupt
//! on the CPUs that submit to queue N (what the driver's blk-mq mapping
//! says, `--irq-mode driver`) means a completion wakes the shard that is
//! waiting for it on its own core. The admin queue (q0) is rare traffic and
//! may run anywhere.

use std::cell::OnceCell;

use crate::changes::Changes;
use crate::cpus::CpuSet;
use crate::error::Result;
use crate::irq::{self, IrqMode};
use crate::report::Severity;
use crate::tuners::irq_affinity::{self, Plan, Planned};
use crate::tuners::{Context, Tuner, Want};

/// The tuner; the plan is computed once per run.
#[derive(Default)]
pub struct DiskIrq {
    plan: OnceCell<Result<Plan, String>>,
}

/// Builds the plan for every NVMe controller holding the data directory.
pub(crate) fn plan(ctx: &Context<'_>) -> Result<Plan, String> {
    let controllers = ctx.nvme_controllers()?;
    let online = irq::online_cpus(ctx.host).map_err(|e| e.to_string())?;
    let disks = ctx.disks()?;
    let mut plan = Plan::new();
    for controller in controllers {
        let irqs = match irq::nvme_irqs(ctx.host, &controller) {
            Ok(irqs) => irqs,
            Err(reason) => {
                plan.push((controller, Err(reason)));
                continue;
            }
        };
        // The blk-mq map of any namespace on this controller: all
        // namespaces share the controller's queues.
        let namespace = disks
            .iter()
            .find(|d| d.starts_with(&format!("{controller}n")))
            .cloned();
        let spread = irq::generic_placement(ctx.opts.irq_mode, &irqs, &online);
        for (index, irq) in irqs.into_iter().enumerate() {
            let cpus = match ctx.opts.irq_mode {
                IrqMode::Driver => driver_cpus(ctx, namespace.as_deref(), &irq.name)
                    .unwrap_or_else(|| {
                        if irq::nvme_queue_number(&irq.name) == Some(0) {
                            online.clone()
                        } else {
                            spread[index].clone()
                        }
                    }),
                _ => spread[index].clone(),
            };
            plan.push((irq.label(), Ok(Planned { irq, cpus })));
        }
    }
    Ok(plan)
}

/// CPUs blk-mq maps to the hardware context serving queue `qN` (context N-1).
fn driver_cpus(ctx: &Context<'_>, namespace: Option<&str>, irq_name: &str) -> Option<CpuSet> {
    let queue = irq::nvme_queue_number(irq_name)?;
    let context = queue.checked_sub(1)?;
    let text = ctx
        .host
        .read(format!("/sys/block/{}/mq/{context}/cpu_list", namespace?))
        .ok()?;
    CpuSet::parse_list(&text).filter(|set| !set.is_empty())
}

impl DiskIrq {
    fn plan(&self, ctx: &Context<'_>) -> &Result<Plan, String> {
        self.plan.get_or_init(|| plan(ctx))
    }
}

impl Tuner for DiskIrq {
    fn name(&self) -> &'static str {
        "disk_irq"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        irq_affinity::targets(self.plan(ctx))
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        irq_affinity::supported(ctx, self.plan(ctx), target)
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        irq_affinity::current(ctx, self.plan(ctx), target)
    }

    fn required(&self, ctx: &Context<'_>, target: &str) -> Result<Want> {
        irq_affinity::required(self.plan(ctx), target)
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        irq_affinity::apply(ctx, self.plan(ctx), target, changes)
    }
}
