//! `fstrim.timer` enabled.
//!
//! Flash needs to be told which blocks are free to keep write amplification
//! and latency low as it fills. Periodic fstrim does that in one batch,
//! instead of the `discard` mount option's per-delete trims that stall
//! deletes of large segment files.

use crate::changes::Changes;
use crate::commands::CommandOutput;
use crate::error::{Error, Result};
use crate::report::Severity;
use crate::tuners::{Context, Tuner, Want};

/// The tuner.
pub struct Fstrim;

const UNIT: &str = "fstrim.timer";
const REQUIRED: &str = "enabled";

fn is_enabled(ctx: &Context<'_>) -> Result<Option<CommandOutput>> {
    ctx.host.commands().systemctl(&["is-enabled", UNIT])
}

impl Tuner for Fstrim {
    fn name(&self) -> &'static str {
        "fstrim"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, String> {
        Ok(vec![UNIT.to_string()])
    }

    fn supported(&self, ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        let output = is_enabled(ctx)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "systemctl is not available".to_string())?;
        if output.stdout.is_empty() || output.stdout == "not-found" {
            return Err(format!("{UNIT} is not installed ({})", output.stderr));
        }
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, _target: &str) -> Result<String> {
        let output = is_enabled(ctx)?.ok_or_else(|| Error::Command {
            command: format!("systemctl is-enabled {UNIT}"),
            why: "systemctl is not available".to_string(),
        })?;
        Ok(output.stdout)
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, _ctx: &Context<'_>, _target: &str, changes: &mut Changes<'_>) -> Result<()> {
        changes.systemctl(&["enable", "--now", UNIT], &["disable", "--now", UNIT])
    }
}
