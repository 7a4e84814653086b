//! The `systemctl` seam, so the fstrim tuner can be tested without systemd.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// What a command printed and whether it exited with status 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output, trimmed.
    pub stdout: String,
    /// Standard error, trimmed.
    pub stderr: String,
}

/// Runs `systemctl`.
pub trait CommandRunner {
    /// Runs `systemctl args...`; `Ok(None)` means systemctl is not available.
    fn systemctl(&self, args: &[&str]) -> Result<Option<CommandOutput>>;
}

/// Runs the real `systemctl` found on `PATH`.
pub struct SystemCommands;

impl CommandRunner for SystemCommands {
    fn systemctl(&self, args: &[&str]) -> Result<Option<CommandOutput>> {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("systemctl").is_file()))
            .unwrap_or(false)
            || Path::new("/usr/bin/systemctl").is_file();
        if !found {
            return Ok(None);
        }
        let output = Command::new("systemctl")
            .args(args)
            .output()
            .map_err(|e| Error::Command {
                command: format!("systemctl {}", args.join(" ")),
                why: e.to_string(),
            })?;
        Ok(Some(CommandOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }))
    }
}

/// Used under `--root`: the real systemctl manages the real machine, not the fake tree.
pub struct NoCommands;

impl CommandRunner for NoCommands {
    fn systemctl(&self, _args: &[&str]) -> Result<Option<CommandOutput>> {
        Ok(None)
    }
}

#[derive(Default)]
struct FakeUnits {
    states: BTreeMap<String, String>,
    calls: Vec<Vec<String>>,
}

/// A tiny systemctl that knows `is-enabled`, `enable --now` and `disable --now`.
/// Clones share state so tests can inspect calls afterwards.
#[derive(Clone, Default)]
pub struct FakeSystemctl {
    units: Arc<Mutex<FakeUnits>>,
}

impl FakeSystemctl {
    /// A systemctl that knows no units.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeUnits> {
        self.units
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Declares a unit in state `enabled` or `disabled`.
    pub fn with_unit(self, unit: &str, state: &str) -> Self {
        self.lock()
            .states
            .insert(unit.to_string(), state.to_string());
        self
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.lock().calls.clone()
    }

    /// The state of a unit.
    pub fn state(&self, unit: &str) -> Option<String> {
        self.lock().states.get(unit).cloned()
    }
}

impl CommandRunner for FakeSystemctl {
    fn systemctl(&self, args: &[&str]) -> Result<Option<CommandOutput>> {
        let mut units = self.lock();
        units
            .calls
            .push(args.iter().map(|a| a.to_string()).collect());
        let unit = args.last().copied().unwrap_or_default().to_string();
        let Some(state) = units.states.get(&unit).cloned() else {
            return Ok(Some(CommandOutput {
                success: false,
                stdout: String::new(),
                stderr: format!(
                    "Failed to get unit file state for {unit}: No such file or directory"
                ),
            }));
        };
        let new_state = match args.first().copied() {
            Some("enable") => "enabled".to_string(),
            Some("disable") => "disabled".to_string(),
            _ => state.clone(),
        };
        let is_query = args.first() == Some(&"is-enabled");
        units.states.insert(unit, new_state);
        Ok(Some(CommandOutput {
            success: !is_query || state == "enabled",
            stdout: if is_query { state } else { String::new() },
            stderr: String::new(),
        }))
    }
}
