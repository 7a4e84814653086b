//! `queue/write_cache` of the disks holding the data directory, reported only.
//!
//! "write back" means the device acknowledges writes before they are on
//! stable media, so the broker's fsync/FUA must reach the device for
//! durability; "write through" means every write is durable on completion.
//! Both are correct with a broker that issues flushes, and switching the
//! kernel's view without changing the device would lie about durability, so
//! this tuner never changes it: operators should know which one they run.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{Context, Tuner, Want};

/// The tuner.
pub struct DiskWriteCache;

fn path(disk: &str) -> String {
    format!("/sys/block/{disk}/queue/write_cache")
}

impl Tuner for DiskWriteCache {
    fn name(&self) -> &'static str {
        "disk_write_cache"
    }

    fn severity(&self) -> Severity {
        Severity::Info
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        ctx.disks()
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        if ctx.host.exists(path(target)) {
            Ok(())
        } else {
            Err(format!("{} does not exist", path(target)))
        }
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(ctx.host.read(path(target))?.trim().to_string())
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Report)
    }

    fn apply(&self, _ctx: &Context<'_>, _target: &str, _changes: &mut Changes<'_>) -> Result<()> {
        Ok(())
    }
}
