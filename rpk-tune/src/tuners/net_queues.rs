//! Shared helpers for the per-queue NIC tuners (RPS, RFS, XPS).

use crate::tuners::Context;

/// Queue directory names of `kind` (`rx` or `tx`) for one NIC, in order.
pub(crate) fn queues(ctx: &Context<'_>, nic: &str, kind: &str) -> Result<Vec<String>, String> {
    let entries = ctx
        .host
        .list(format!("/sys/class/net/{nic}/queues"))
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    Ok(entries
        .into_iter()
        .filter(|e| e.starts_with(&format!("{kind}-")))
        .collect())
}

/// `"eth0 rx-0"` targets for every selected NIC.
pub(crate) fn queue_targets(ctx: &Context<'_>, kind: &str) -> Result<Vec<String>, String> {
    let mut targets = Vec::new();
    for nic in ctx.nics()? {
        for queue in queues(ctx, &nic, kind)? {
            targets.push(format!("{nic} {queue}"));
        }
    }
    if targets.is_empty() {
        return Err(format!("no {kind} queues found in /sys/class/net/*/queues"));
    }
    Ok(targets)
}

/// The sysfs file `attribute` of a `"eth0 rx-0"` target.
pub(crate) fn queue_path(target: &str, attribute: &str) -> String {
    let (nic, queue) = target.split_once(' ').unwrap_or((target, ""));
    format!("/sys/class/net/{nic}/queues/{queue}/{attribute}")
}
