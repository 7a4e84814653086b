//! CPU frequency governor: `performance` on every CPU.
//!
//! Power-saving governors lower the clock when a core looks idle, and a
//! broker core waiting on I/O looks idle; the ramp back up adds latency to
//! the next request. `performance` keeps the cores at their top frequency.
//! Virtual machines usually have no cpufreq driver (the hypervisor owns the
//! frequency), which makes this tuner unsupported there.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// The tuner.
pub struct CpuGovernor;

const REQUIRED: &str = "performance";

fn path(cpu: &str, attribute: &str) -> String {
    format!("/sys/devices/system/cpu/{cpu}/cpufreq/{attribute}")
}

impl Tuner for CpuGovernor {
    fn name(&self) -> &'static str {
        "cpu_governor"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        let entries = ctx
            .host
            .list("/sys/devices/system/cpu")
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let cpus: Vec<String> = entries
            .into_iter()
            .filter(|e| {
                e.strip_prefix("cpu")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .filter(|cpu| ctx.host.exists(path(cpu, "scaling_governor")))
            .collect();
        if cpus.is_empty() {
            return Err(
                "no cpufreq driver: CPU frequency is managed by the firmware or hypervisor"
                    .to_string(),
            );
        }
        Ok(cpus)
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &path(target, "scaling_governor"))?;
        let available = ctx
            .host
            .read(path(target, "scaling_available_governors"))
            .unwrap_or_default();
        if !available.split_whitespace().any(|g| g == REQUIRED) {
            return Err(format!(
                "governor {REQUIRED:?} is not offered ({})",
                available.trim()
            ));
        }
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(ctx
            .host
            .read(path(target, "scaling_governor"))?
            .trim()
            .to_string())
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        changes.write_value(&path(target, "scaling_governor"), REQUIRED, &previous)
    }
}
