//! NVMe Interrupt Coalescing (feature 0x08) on the controllers behind the
//! data directory, through Get/Set Features admin commands.
//!
//! Without coalescing a busy controller raises one interrupt per completion.
//! Aggregating a few completions (or waiting at most a short time) cuts the
//! interrupt rate under load; the bound on time keeps a lone fsync from
//! waiting long. The setting is not saved on the controller, so a reboot or
//! controller reset restores the default, which is why the tool runs at
//! every boot.

use crate::changes::{read_nvme_feature, Changes};
use crate::error::Result;
use crate::nvme::{InterruptCoalescing, FEATURE_INTERRUPT_COALESCING};
use crate::report::Severity;
use crate::tuners::{Context, Tuner, Want};

/// The tuner.
pub struct DiskCoalesce;

fn device(controller: &str) -> String {
    format!("/dev/{controller}")
}

fn wanted(ctx: &Context<'_>) -> InterruptCoalescing {
    InterruptCoalescing {
        threshold_entries: ctx.opts.nvme_coalesce_threshold_entries,
        time_us: ctx.opts.nvme_coalesce_time_us,
    }
}

impl Tuner for DiskCoalesce {
    fn name(&self) -> &'static str {
        "disk_coalesce"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        ctx.nvme_controllers()
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        read_nvme_feature(ctx.host, &device(target), FEATURE_INTERRUPT_COALESCING)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        let cdw11 = read_nvme_feature(ctx.host, &device(target), FEATURE_INTERRUPT_COALESCING)?;
        Ok(InterruptCoalescing::from_cdw11(cdw11).to_string())
    }

    fn required(&self, ctx: &Context<'_>, _target: &str) -> Result<Want> {
        let wanted = wanted(ctx);
        // Validate now so an impossible setting shows up in `check` too.
        wanted.to_cdw11()?;
        Ok(Want::Exact(wanted.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let device = device(target);
        let previous = read_nvme_feature(ctx.host, &device, FEATURE_INTERRUPT_COALESCING)?;
        let cdw11 = wanted(ctx).to_cdw11()?;
        changes.nvme_set_feature(&device, FEATURE_INTERRUPT_COALESCING, cdw11, previous)
    }
}
