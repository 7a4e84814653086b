//! `fs.aio-max-nr >= 1048576`.
//!
//! The broker does its disk I/O asynchronously and each shard reserves a
//! large number of AIO events up front; the default of 65536 for the whole
//! host is exhausted by a few shards, and then io_setup fails at startup.
//! This is why it is an error, not a warning.

use crate::report::Severity;
use crate::tuners::sysctl::Sysctl;
use crate::tuners::Want;

/// The tuner.
pub fn tuner() -> Sysctl {
    Sysctl {
        name: "aio_max_nr",
        key: "fs.aio-max-nr",
        want: Want::AtLeast(1_048_576),
        severity: Severity::Error,
    }
}
