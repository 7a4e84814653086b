//! Receive Packet Steering: `queues/rx-N/rps_cpus` = every online CPU.
//!
//! When a NIC has fewer receive queues than the host has CPUs, the CPUs
//! that take the interrupts would otherwise also do all protocol processing.
//! RPS hands that work to the other CPUs (and, with RFS, to the CPU where
//! the consuming shard runs).

use crate::changes::Changes;
use crate::cpus::CpuSet;
use crate::error::{Error, Result};
use crate::irq;
use crate::report::Severity;
use crate::tuners::net_queues::{queue_path, queue_targets};
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct NetRps;

const ATTRIBUTE: &str = "rps_cpus";

impl Tuner for NetRps {
    fn name(&self) -> &'static str {
        "net_rps"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        queue_targets(ctx, "rx")
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &queue_path(target, ATTRIBUTE))
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        let path = queue_path(target, ATTRIBUTE);
        let text = ctx.host.read(&path)?;
        let set = CpuSet::parse_mask(&text).ok_or_else(|| Error::Parse {
            path: path.into(),
            why: format!("not a CPU mask: {text:?}"),
        })?;
        Ok(set.to_mask())
    }

    fn required(&self, ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(irq::online_cpus(ctx.host)?.to_mask()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        let mask = irq::online_cpus(ctx.host)?.to_mask();
        changes.write_value(&queue_path(target, ATTRIBUTE), &mask, &previous)
    }
}
