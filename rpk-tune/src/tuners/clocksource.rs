//! Clocksource: `tsc` when the kernel offers it.
//!
//! The broker reads the clock for every request (timeouts, latency
//! metrics). With `tsc` the vDSO answers clock_gettime from user space in
//! nanoseconds; other sources (`hpet`, `acpi_pm`, and on some hypervisors
//! `xen`) make each read a system call or a slow device access. When the
//! kernel does not list `tsc` (it found the TSC unstable) this tuner is
//! unsupported rather than forcing an unreliable clock.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct Clocksource;

const CURRENT: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
const AVAILABLE: &str = "/sys/devices/system/clocksource/clocksource0/available_clocksource";
const REQUIRED: &str = "tsc";

impl Tuner for Clocksource {
    fn name(&self) -> &'static str {
        "clocksource"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, String> {
        Ok(vec!["clocksource0".to_string()])
    }

    fn supported(&self, ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, CURRENT)?;
        let available = ctx.host.read(AVAILABLE).map_err(|e| e.to_string())?;
        if !available.split_whitespace().any(|s| s == REQUIRED) {
            return Err(format!(
                "tsc is not available (available: {})",
                available.trim()
            ));
        }
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, _target: &str) -> Result<String> {
        Ok(ctx.host.read(CURRENT)?.trim().to_string())
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        changes.write_value(CURRENT, REQUIRED, &previous)
    }
}
