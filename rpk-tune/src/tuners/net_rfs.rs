//! Receive Flow Steering: `net.core.rps_sock_flow_entries` and each receive
//! queue's `rps_flow_cnt`.
//!
//! RFS steers a flow's packets to the CPU where the socket was last read,
//! which for a thread-per-core broker is the shard that owns the
//! connection. The kernel's documentation suggests 32768 global entries,
//! split evenly over the receive queues.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::net_queues::{queue_path, queue_targets, queues};
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct NetRfs;

/// Global flow table size.
const SOCK_FLOW_ENTRIES: u64 = 32768;
const GLOBAL_TARGET: &str = "net.core.rps_sock_flow_entries";
const GLOBAL_PATH: &str = "/proc/sys/net/core/rps_sock_flow_entries";

fn path(target: &str) -> String {
    if target == GLOBAL_TARGET {
        GLOBAL_PATH.to_string()
    } else {
        queue_path(target, "rps_flow_cnt")
    }
}

/// Per-queue share of the global table.
fn per_queue(ctx: &Context<'_>, target: &str) -> Result<u64> {
    let nic = target.split(' ').next().unwrap_or(target);
    let count = queues(ctx, nic, "rx")
        .map_err(crate::error::Error::Usage)?
        .len()
        .max(1) as u64;
    Ok(SOCK_FLOW_ENTRIES / count)
}

impl Tuner for NetRfs {
    fn name(&self) -> &'static str {
        "net_rfs"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        let mut targets = vec![GLOBAL_TARGET.to_string()];
        targets.extend(queue_targets(ctx, "rx")?);
        Ok(targets)
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &path(target))
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(ctx.host.read(path(target))?.trim().to_string())
    }

    fn required(&self, ctx: &Context<'_>, target: &str) -> Result<Want> {
        Ok(Want::AtLeast(if target == GLOBAL_TARGET {
            SOCK_FLOW_ENTRIES
        } else {
            per_queue(ctx, target)?
        }))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        let value = match self.required(ctx, target)? {
            Want::AtLeast(value) => value,
            _ => SOCK_FLOW_ENTRIES,
        };
        changes.write_value(&path(target), &value.to_string(), &previous)
    }
}
