//! `net.core.somaxconn >= 4096`.
//!
//! The accept backlog is capped by this value. When many clients reconnect
//! at once (a broker restart, a rebalance) a short backlog drops their SYNs
//! and they retry after a second or more.

use crate::report::Severity;
use crate::tuners::sysctl::Sysctl;
use crate::tuners::Want;

/// The tuner.
pub fn tuner() -> Sysctl {
    Sysctl {
        name: "somaxconn",
        key: "net.core.somaxconn",
        want: Want::AtLeast(4096),
        severity: Severity::Warning,
    }
}
