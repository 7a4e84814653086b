//! `vm.swappiness = 1`.
//!
//! A broker's working set is its memory and the page cache; swapping its
//! anonymous memory out turns memory accesses into disk reads at random
//! moments. 1 (not 0) keeps swap as a last resort before the OOM killer.

use crate::report::Severity;
use crate::tuners::sysctl::Sysctl;
use crate::tuners::Want;

/// The tuner.
pub fn tuner() -> Sysctl {
    Sysctl {
        name: "swappiness",
        key: "vm.swappiness",
        want: Want::Exact("1".to_string()),
        severity: Severity::Warning,
    }
}
