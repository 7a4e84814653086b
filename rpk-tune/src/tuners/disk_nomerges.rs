//! `queue/nomerges = 2` on the disks holding the data directory.
//!
//! The broker already submits large, aligned, sequential writes, so the
//! block layer's attempts to merge neighbouring requests only cost CPU time
//! in the submission path and add latency variance. 2 turns every merge
//! attempt off (1 would still try the cheap one-hit merge).

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct DiskNomerges;

const REQUIRED: &str = "2";

fn path(disk: &str) -> String {
    format!("/sys/block/{disk}/queue/nomerges")
}

impl Tuner for DiskNomerges {
    fn name(&self) -> &'static str {
        "disk_nomerges"
    }

    fn severity(&self) -> Severity {
        Severity::Error
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
