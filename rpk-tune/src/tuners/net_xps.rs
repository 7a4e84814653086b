//! Transmit Packet Steering: `queues/tx-N/xps_cpus`.
//!
//! XPS makes each CPU transmit on "its" queue, so shards sending on
//! different cores do not contend for one queue lock. CPUs are dealt out
//! round robin: with 4 CPUs and 2 queues, tx-0 gets CPUs 0 and 2, tx-1
//! gets 1 and 3; with more queues than CPUs, queues share CPUs.

use crate::changes::Changes;
use crate::cpus::CpuSet;
use crate::error::{Error, Result};
use crate::irq;
use crate::report::Severity;
use crate::tuners::net_queues::{queue_path, queue_targets, queues};
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct NetXps;

const ATTRIBUTE: &str = "xps_cpus";

/// CPUs for one transmit queue.
fn cpus_for(ctx: &Context<'_>, target: &str) -> Result<CpuSet> {
    let (nic, queue) = target.split_once(' ').unwrap_or((target, ""));
    let all = queues(ctx, nic, "tx").map_err(Error::Usage)?;
    let count = all.len().max(1);
    let index = all.iter().position(|q| q == queue).unwrap_or(0);
    let online: Vec<usize> = irq::online_cpus(ctx.host)?.iter().collect();
    let mut set: CpuSet = online
        .iter()
        .enumerate()
        .filter(|(position, _)| position % count == index)
        .map(|(_, cpu)| *cpu)
        .collect();
    if set.is_empty() {
        set.insert(online[index % online.len()]);
    }
    Ok(set)
}

impl Tuner for NetXps {
    fn name(&self) -> &'static str {
        "net_xps"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        queue_targets(ctx, "tx")
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        let path = queue_path(target, ATTRIBUTE);
        // The kernel answers ENOENT when reading xps_cpus of a device with a
        // single transmit queue; say that instead of "no such file".
        if let Err(Error::Read { source, .. }) = ctx.host.read(&path) {
            if source.kind() == std::io::ErrorKind::NotFound && ctx.host.exists(&path) {
                return Err(
                    "XPS needs a multi-queue device (reading xps_cpus gives ENOENT)".to_string(),
                );
            }
        }
        attribute_supported(ctx.host, &path)
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

    fn required(&self, ctx: &Context<'_>, target: &str) -> Result<Want> {
        Ok(Want::Exact(cpus_for(ctx, target)?.to_mask()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        let mask = cpus_for(ctx, target)?.to_mask();
        changes.write_value(&queue_path(target, ATTRIBUTE), &mask, &previous)
    }
}
