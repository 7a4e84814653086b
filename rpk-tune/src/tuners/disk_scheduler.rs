//! `queue/scheduler = none` on the disks holding the data directory.
//!
//! Flash devices have no seek cost to optimise and deep internal queues of
//! their own; an I/O scheduler only adds a lock and reordering in front of
//! them. The broker orders its own I/O, so `none` passes it straight through.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{
    attribute_supported, available_choices, selected_choice, Context, Tuner, Want,
};

/// The tuner.
pub struct DiskScheduler;

const REQUIRED: &str = "none";

fn path(disk: &str) -> String {
    format!("/sys/block/{disk}/queue/scheduler")
}

impl Tuner for DiskScheduler {
    fn name(&self) -> &'static str {
        "disk_scheduler"
    }

    fn severity(&self) -> Severity {
        Severity::Error
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        ctx.disks()
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &path(target))?;
        let text = ctx.host.read(path(target)).map_err(|e| e.to_string())?;
        if !available_choices(&text).iter().any(|c| c == REQUIRED) {
            return Err(format!(
                "scheduler {REQUIRED:?} is not offered ({})",
                text.trim()
            ));
        }
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(selected_choice(&ctx.host.read(path(target))?))
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        changes.write_value(&path(target), REQUIRED, &previous)
    }
}
