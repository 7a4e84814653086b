//! IRQ affinity of the NIC queues.
//!
//! Spreading NIC queue interrupts over CPUs keeps a single core from
//! handling all packet processing for the broker's connections. In
//! `--irq-mode driver` the driver's own `affinity_hint` is followed (drivers
//! such as mlx5 and ixgbe pair queue N with CPU N); without a hint the
//! interrupts are spread one per CPU.

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
pub struct NetIrq {
    plan: OnceCell<Result<Plan, String>>,
}

/// Builds the plan for every selected NIC.
pub(crate) fn plan(ctx: &Context<'_>) -> Result<Plan, String> {
    let nics = ctx.nics()?;
    let online = irq::online_cpus(ctx.host).map_err(|e| e.to_string())?;
    let mut plan = Plan::new();
    for nic in nics {
        let irqs = match irq::nic_irqs(ctx.host, &nic) {
            Ok(irqs) => irqs,
            Err(reason) => {
                plan.push((nic, Err(reason)));
                continue;
            }
        };
        let spread = irq::generic_placement(ctx.opts.irq_mode, &irqs, &online);
        for (index, irq) in irqs.into_iter().enumerate() {
            let cpus = match ctx.opts.irq_mode {
                IrqMode::Driver => {
                    affinity_hint(ctx, irq.number, &online).unwrap_or_else(|| spread[index].clone())
                }
                _ => spread[index].clone(),
            };
            plan.push((format!("{nic} {}", irq.label()), Ok(Planned { irq, cpus })));
        }
    }
    Ok(plan)
}

/// The driver's hint, if it gave a non-empty one within the online CPUs.
fn affinity_hint(ctx: &Context<'_>, irq: u32, online: &CpuSet) -> Option<CpuSet> {
    let text = ctx
        .host
        .read(format!("/proc/irq/{irq}/affinity_hint"))
        .ok()?;
    let hint = CpuSet::parse_mask(&text)?;
    let usable: CpuSet = hint
        .iter()
        .filter(|cpu| online.iter().any(|c| c == *cpu))
        .collect();
    (!usable.is_empty()).then_some(usable)
}

impl NetIrq {
    fn plan(&self, ctx: &Context<'_>) -> &Result<Plan, String> {
        self.plan.get_or_init(|| plan(ctx))
    }
}

impl Tuner for NetIrq {
    fn name(&self) -> &'static str {
        "net_irq"
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
