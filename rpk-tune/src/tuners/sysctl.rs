//! A tuner for one sysctl under `/proc/sys`.
//!
//! Values are written to `/proc/sys` only, not persisted in `/etc/sysctl.d`:
//! the tool is meant to run before every broker start (systemd
//! `ExecStartPre=`), which also means rollback never has to edit config files.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{attribute_supported, Context, Tuner, Want};

/// One sysctl and what it must be.
pub struct Sysctl {
    /// Tuner name.
    pub name: &'static str,
    /// Dotted key, for example `fs.aio-max-nr`.
    pub key: &'static str,
    /// Requirement.
    pub want: Want,
    /// How much a failure matters.
    pub severity: Severity,
}

impl Sysctl {
    fn path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

impl Tuner for Sysctl {
    fn name(&self) -> &'static str {
        self.name
    }

    fn severity(&self) -> Severity {
        self.severity
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, String> {
        Ok(vec![self.key.to_string()])
    }

    fn supported(&self, ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, &self.path())
    }

    fn current(&self, ctx: &Context<'_>, _target: &str) -> Result<String> {
        Ok(ctx.host.read(self.path())?.trim().to_string())
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(self.want.clone())
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        let value = match &self.want {
            Want::Exact(value) => value.clone(),
            Want::AtLeast(minimum) => minimum.to_string(),
            Want::AllOf(_) | Want::Report => return Ok(()),
        };
        changes.write_value(&self.path(), &value, &previous)
    }
}
