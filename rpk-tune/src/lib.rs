//! `rpk-tune`: checks, applies and rolls back host settings for the Shoal broker.
//!
//! The binary is a thin command line over [`engine`]; the broker itself uses
//! [`check_summary`] at startup to warn about an untuned host.

pub mod changes;
pub mod commands;
pub mod cpus;
pub mod engine;
pub mod error;
pub mod ethtool;
pub mod host;
pub mod ioctl;
pub mod irq;
pub mod mountinfo;
pub mod nvme;
pub mod options;
pub mod report;
pub mod state;
pub mod storage;
mod sys;
pub mod tuners;

use std::path::Path;

pub use engine::{apply, check, rollback, Selection};
pub use error::{Error, Result};
pub use host::Host;
pub use options::Options;
pub use report::{Row, Severity, Status};

/// Checks the real host for a broker whose data lives in `data_dir` and
/// returns the checks that do not pass (any severity, unsupported ones
/// excluded), so the broker can log a warning naming them at startup.
/// Nothing is changed.
pub fn check_summary(data_dir: &Path) -> Result<Vec<Row>> {
    let host = Host::live();
    let opts = Options {
        data_dir: data_dir.to_path_buf(),
        ..Options::default()
    };
    let rows = check(&host, &opts, &Selection::default())?;
    Ok(rows
        .into_iter()
        .filter(|row| matches!(row.status, Status::Fail | Status::Error(_)))
        .collect())
}
