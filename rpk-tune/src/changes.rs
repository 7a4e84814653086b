//! Every change to the host goes through [`Changes`], which either performs
//! it (recording how to undo it) or, in a dry run, only renders it.
//!
//! Because tuners describe their changes through this one interface, the
//! dry-run output and `--script` file are exactly what `apply` would do.

use std::fs::OpenOptions;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ethtool::{self, Coalesce};
use crate::host::Host;
use crate::nvme;
use crate::sys;

/// How to put something back the way it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// Write `value` back into a sysfs/procfs file.
    WriteValue { path: String, value: String },
    /// Restore a whole file; `None` means it did not exist.
    RestoreFile {
        path: String,
        contents: Option<String>,
    },
    /// Set an NVMe feature back to `cdw11`.
    NvmeSetFeature {
        device: String,
        feature_id: u8,
        cdw11: u32,
    },
    /// Set a NIC's coalescing back to `coalesce`.
    EthtoolSetCoalesce { iface: String, coalesce: Coalesce },
    /// Remove a file this tool created.
    RemoveFile { path: String },
    /// Run systemctl with these arguments.
    Systemctl { args: Vec<String> },
}

impl Undo {
    /// Identifies what is being restored, so a second apply does not replace
    /// the original value saved by the first one.
    pub fn key(&self) -> String {
        match self {
            Self::WriteValue { path, .. }
            | Self::RestoreFile { path, .. }
            | Self::RemoveFile { path } => {
                format!("file:{path}")
            }
            Self::NvmeSetFeature {
                device, feature_id, ..
            } => format!("nvme:{device}:{feature_id}"),
            Self::EthtoolSetCoalesce { iface, .. } => format!("ethtool:{iface}"),
            Self::Systemctl { args } => {
                format!("systemctl:{}", args.last().cloned().unwrap_or_default())
            }
        }
    }

    /// Performs the undo through `changes` (so rollback can be dry-run too).
    pub fn replay(&self, changes: &mut Changes<'_>) -> Result<()> {
        match self {
            Self::WriteValue { path, value } => changes.write_value(path, value, value),
            Self::RestoreFile {
                path,
                contents: Some(contents),
            } => changes.replace_file(path, contents),
            Self::RestoreFile {
                path,
                contents: None,
            }
            | Self::RemoveFile { path } => changes.remove_file(path),
            Self::NvmeSetFeature {
                device,
                feature_id,
                cdw11,
            } => changes.nvme_set_feature(device, *feature_id, *cdw11, *cdw11),
            Self::EthtoolSetCoalesce { iface, coalesce } => {
                let current = read_coalesce(changes.host, iface).unwrap_or(*coalesce);
                changes.ethtool_set_coalesce(iface, &current, coalesce)
            }
            Self::Systemctl { args } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                changes.systemctl(&args, &args)
            }
        }
    }
}

/// Reads a NIC's coalescing through `ETHTOOL_GCOALESCE`.
pub fn read_coalesce(host: &Host, iface: &str) -> Result<Coalesce> {
    let mut payload = ethtool::get_coalesce();
    host.ioctl()
        .ethtool(iface, &mut payload)
        .map_err(|source| Error::Ioctl {
            request: "ETHTOOL_GCOALESCE",
            target: iface.to_string(),
            source,
        })?;
    Ok(ethtool::parse(&payload))
}

/// Reads an NVMe feature through Get Features.
pub fn read_nvme_feature(host: &Host, device: &str, feature_id: u8) -> Result<u32> {
    let mut cmd = nvme::get_features(feature_id);
    host.ioctl()
        .nvme_admin(&host.path(device), &mut cmd)
        .map_err(|source| Error::Ioctl {
            request: "NVMe Get Features",
            target: device.to_string(),
            source,
        })?;
    Ok(nvme::result(&cmd))
}

/// Quotes a shell word only when it needs it.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Performs or renders changes.
pub struct Changes<'h> {
    host: &'h Host,
    dry_run: bool,
    commands: Vec<String>,
    undo: Vec<Undo>,
}

impl<'h> Changes<'h> {
    /// `dry_run` renders commands without touching the host.
    pub fn new(host: &'h Host, dry_run: bool) -> Self {
        Self {
            host,
            dry_run,
            commands: Vec::new(),
            undo: Vec::new(),
        }
    }

    /// Shell commands equivalent to every change so far.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// Takes the undo entries recorded since the last call.
    pub fn take_undo(&mut self) -> Vec<Undo> {
        std::mem::take(&mut self.undo)
    }

    fn shown(&self, host_path: &str) -> String {
        shell_quote(&self.host.path(host_path).display().to_string())
    }

    /// `echo value > path`; `restore` is what rollback writes back.
    pub fn write_value(&mut self, path: &str, value: &str, restore: &str) -> Result<()> {
        self.commands.push(format!(
            "echo {} > {}",
            shell_quote(value),
            self.shown(path)
        ));
        if self.dry_run {
            return Ok(());
        }
        self.host.write(path, value)?;
        self.undo.push(Undo::WriteValue {
            path: path.to_string(),
            value: restore.to_string(),
        });
        Ok(())
    }

    /// Replaces a whole (configuration) file with `contents`.
    pub fn replace_file(&mut self, path: &str, contents: &str) -> Result<()> {
        let body = contents.strip_suffix('\n').unwrap_or(contents);
        self.commands.push(format!(
            "cat > {} <<'RPK_TUNE_EOF'\n{body}\nRPK_TUNE_EOF",
            self.shown(path)
        ));
        if self.dry_run {
            return Ok(());
        }
        let previous = self.host.read_opt(path)?;
        self.host.replace_file(path, contents)?;
        self.undo.push(Undo::RestoreFile {
            path: path.to_string(),
            contents: previous,
        });
        Ok(())
    }

    /// Removes a file.
    pub fn remove_file(&mut self, path: &str) -> Result<()> {
        self.commands.push(format!("rm -f {}", self.shown(path)));
        if self.dry_run {
            return Ok(());
        }
        self.host.remove_file(path)
    }

    /// Creates a file of `size_bytes` real blocks with fallocate(2).
    pub fn create_ballast(&mut self, path: &str, size_bytes: u64) -> Result<()> {
        self.commands
            .push(format!("fallocate -l {size_bytes} {}", self.shown(path)));
        if self.dry_run {
            return Ok(());
        }
        let resolved = self.host.path(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&resolved)
            .map_err(|source| Error::Write {
                path: resolved.clone(),
                source,
            })?;
        // Record the undo before fallocate so a half-made file is removed too.
        self.undo.push(Undo::RemoveFile {
            path: path.to_string(),
        });
        sys::fallocate(&file, size_bytes).map_err(|source| Error::Write {
            path: resolved,
            source,
        })
    }

    /// NVMe Set Features; `restore_cdw11` is what rollback sets back.
    pub fn nvme_set_feature(
        &mut self,
        device: &str,
        feature_id: u8,
        cdw11: u32,
        restore_cdw11: u32,
    ) -> Result<()> {
        self.commands.push(format!(
            "nvme set-feature {} --feature-id={feature_id:#04x} --value={cdw11:#x}",
            self.shown(device)
        ));
        if self.dry_run {
            return Ok(());
        }
        let mut cmd = nvme::set_features(feature_id, cdw11);
        self.host
            .ioctl()
            .nvme_admin(&self.host.path(device), &mut cmd)
            .map_err(|source| Error::Ioctl {
                request: "NVMe Set Features",
                target: device.to_string(),
                source,
            })?;
        self.undo.push(Undo::NvmeSetFeature {
            device: device.to_string(),
            feature_id,
            cdw11: restore_cdw11,
        });
        Ok(())
    }

    /// `ETHTOOL_SCOALESCE` turning `from` (the current values) into `to`.
    pub fn ethtool_set_coalesce(
        &mut self,
        iface: &str,
        from: &Coalesce,
        to: &Coalesce,
    ) -> Result<()> {
        let args = ethtool::ethtool_args(from, to);
        self.commands.push(format!(
            "ethtool -C {} {}",
            shell_quote(iface),
            args.join(" ")
        ));
        if self.dry_run {
            return Ok(());
        }
        let mut payload = ethtool::set_coalesce(to);
        self.host
            .ioctl()
            .ethtool(iface, &mut payload)
            .map_err(|source| Error::Ioctl {
                request: "ETHTOOL_SCOALESCE",
                target: iface.to_string(),
                source,
            })?;
        self.undo.push(Undo::EthtoolSetCoalesce {
            iface: iface.to_string(),
            coalesce: *from,
        });
        Ok(())
    }

    /// Runs systemctl; `undo_args` is what rollback runs.
    pub fn systemctl(&mut self, args: &[&str], undo_args: &[&str]) -> Result<()> {
        let command = format!("systemctl {}", args.join(" "));
        self.commands.push(command.clone());
        if self.dry_run {
            return Ok(());
        }
        let output = self
            .host
            .commands()
            .systemctl(args)?
            .ok_or_else(|| Error::Command {
                command: command.clone(),
                why: "systemctl is not available".to_string(),
            })?;
        if !output.success {
            return Err(Error::Command {
                command,
                why: output.stderr,
            });
        }
        self.undo.push(Undo::Systemctl {
            args: undo_args.iter().map(|a| a.to_string()).collect(),
        });
        Ok(())
    }
}
