//! The single error type of the library.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while inspecting or changing the host.
///
/// Unsupported tuners are not errors: they are reported as rows with a reason,
/// so this enum only covers real failures (I/O, parse, ioctl, usage).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (sysfs, procfs, config) could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A file (sysfs, procfs, config) could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// A file had contents this tool does not understand.
    #[error("unexpected contents in {path}: {why}")]
    Parse { path: PathBuf, why: String },
    /// An ioctl (NVMe admin command, SIOCETHTOOL) failed.
    #[error("{request} on {target} failed: {source}")]
    Ioctl {
        request: &'static str,
        target: String,
        source: io::Error,
    },
    /// An external command (systemctl) could not be run or failed.
    #[error("`{command}` failed: {why}")]
    Command { command: String, why: String },
    /// The state file used by rollback is missing, unreadable or invalid.
    #[error("state file {path}: {why}")]
    State { path: PathBuf, why: String },
    /// The caller asked for something that is refused or invalid.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether the failure means "this device or driver cannot do that"
    /// (EOPNOTSUPP, ENOTTY) rather than a real error, so that apply reports
    /// the tuner as unsupported instead of failing the run.
    pub fn is_unsupported(&self) -> bool {
        match self {
            Self::Ioctl { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)
                ) || source.kind() == io::ErrorKind::Unsupported
            }
            _ => false,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
