//! `queue/rq_affinity = 2` on the disks holding the data directory.
//!
//! With 2 the block layer completes each request on the very CPU that
//! submitted it. The broker runs one shard per core, so completions then
//! land where the waiting shard runs, instead of costing an inter-processor
//! interrupt and cache-line traffic (1 only guarantees the same CPU group).

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct DiskRqAffinity;

const REQUIRED: &str = "2";

fn path(disk: &str) -> String {
    format!("/sys/block/{disk}/queue/rq_affinity")
}

impl Tuner for DiskRqAffinity {
    fn name(&self) -> &'static str {
        "disk_rq_affinity"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        ctx.disks()
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &path(target))
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(ctx.host.read(path(target))?.trim().to_string())
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        changes.write_value(&path(target), REQUIRED, &previous)
    }
}
