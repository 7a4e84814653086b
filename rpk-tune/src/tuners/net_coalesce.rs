//! NIC interrupt coalescing (`ethtool -C`), through `SIOCETHTOOL`.
//!
//! A fixed, short delay (`rx-usecs`/`tx-usecs`) batches packets per
//! interrupt so that high packet rates do not turn into one interrupt per
//! packet, while the delay stays far below produce/fetch latencies. Adaptive
//! coalescing is turned off because its delay changes under the broker's
//! feet and makes latency hard to reason about. Drivers without coalescing
//! support (for example most virtio NICs) answer EOPNOTSUPP and are skipped.

use crate::changes::{read_coalesce, Changes};
use crate::error::Result;
use crate::ethtool::Coalesce;
use crate::report::Severity;
use crate::tuners::{Context, Tuner, Want};

/// The tuner.
pub struct NetCoalesce;

fn describe(c: &Coalesce) -> String {
    let on_off = |v: u32| if v != 0 { "on" } else { "off" };
    format!(
        "rx-usecs={} tx-usecs={} adaptive-rx={} adaptive-tx={}",
        c.rx_coalesce_usecs,
        c.tx_coalesce_usecs,
        on_off(c.use_adaptive_rx_coalesce),
        on_off(c.use_adaptive_tx_coalesce)
    )
}

/// `current` with the tuned fields replaced; every other field is kept.
fn wanted(ctx: &Context<'_>, current: &Coalesce) -> Coalesce {
    Coalesce {
        rx_coalesce_usecs: ctx.opts.nic_rx_coalesce_us,
        tx_coalesce_usecs: ctx.opts.nic_tx_coalesce_us,
        use_adaptive_rx_coalesce: 0,
        use_adaptive_tx_coalesce: 0,
        ..*current
    }
}

impl Tuner for NetCoalesce {
    fn name(&self) -> &'static str {
        "net_coalesce"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        ctx.nics()
    }

    fn supported(&self, ctx: &Context<'_>, target: &str) -> Result<(), String> {
        read_coalesce(ctx.host, target)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(describe(&read_coalesce(ctx.host, target)?))
    }

    fn required(&self, ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(describe(&wanted(ctx, &Coalesce::default()))))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let current = read_coalesce(ctx.host, target)?;
        changes.ethtool_set_coalesce(target, &current, &wanted(ctx, &current))
    }
}
