//! Test-only switches that each break one safety rule of the log, so the fault suite
//! (`tests/chaos`) can show that it notices: its mutation evidence. Compiled in only with the
//! `fault-switches` feature, which nothing in a release build of the broker enables; without
//! it every switch is a constant `false` and the checks compile away.
//!
//! The switches are process-wide (a broker under test runs with one set, chosen at startup
//! from `SHOAL_FAULT_SWITCHES`), which is why they are atomics and not per-log configuration.

/// The names `enable` accepts, one per broken rule.
pub const NAMES: [&str; 3] = ["ack-before-sync", "no-idempotent-dedup", "serve-above-hwm"];

#[cfg(feature = "fault-switches")]
mod switches {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ACK_BEFORE_SYNC: AtomicBool = AtomicBool::new(false);
    static NO_IDEMPOTENT_DEDUP: AtomicBool = AtomicBool::new(false);
    static SERVE_ABOVE_HWM: AtomicBool = AtomicBool::new(false);

    pub const COMPILED_IN: bool = true;

    pub fn enable(name: &str) -> Result<(), String> {
        let flag = match name {
            "ack-before-sync" => &ACK_BEFORE_SYNC,
            "no-idempotent-dedup" => &NO_IDEMPOTENT_DEDUP,
            "serve-above-hwm" => &SERVE_ABOVE_HWM,
            other => {
                return Err(format!(
                    "unknown fault switch {other:?} (known: {})",
                    super::NAMES.join(", ")
                ))
            }
        };
        flag.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub fn ack_before_sync() -> bool {
        ACK_BEFORE_SYNC.load(Ordering::Relaxed)
    }

    pub fn no_idempotent_dedup() -> bool {
        NO_IDEMPOTENT_DEDUP.load(Ordering::Relaxed)
    }

    pub fn serve_above_hwm() -> bool {
        SERVE_ABOVE_HWM.load(Ordering::Relaxed)
    }
}

#[cfg(not(feature = "fault-switches"))]
mod switches {
    pub const COMPILED_IN: bool = false;

    pub fn enable(name: &str) -> Result<(), String> {
        Err(format!(
            "fault switch {name:?} requested, but this binary was built without the \
             `fault-switches` feature"
        ))
    }

    pub const fn ack_before_sync() -> bool {
        false
    }

    pub const fn no_idempotent_dedup() -> bool {
        false
    }

    pub const fn serve_above_hwm() -> bool {
        false
    }
}

pub use switches::{ack_before_sync, enable, no_idempotent_dedup, serve_above_hwm, COMPILED_IN};
