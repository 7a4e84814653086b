//! `net.ipv4.tcp_max_syn_backlog >= 4096`.
//!
//! The queue of half-open connections, for the same reconnect storms as
//! `somaxconn`: a full queue drops SYNs (or falls back to SYN cookies,
//! which lose TCP options such as window scaling).

use crate::report::Severity;
use crate::tuners::sysctl::Sysctl;
use crate::tuners::Want;

/// The tuner.
pub fn tuner() -> Sysctl {
    Sysctl {
        name: "tcp_max_syn_backlog",
        key: "net.ipv4.tcp_max_syn_backlog",
        want: Want::AtLeast(4096),
        severity: Severity::Warning,
    }
}
