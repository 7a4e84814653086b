//! Keeps irqbalance away from the interrupts placed by `disk_irq` and `net_irq`.
//!
//! irqbalance periodically moves interrupts to even out load, which would
//! silently undo the placement above. Each tuned IRQ is added as
//! `--banirq=N` to `IRQBALANCE_ARGS` in irqbalance's environment file
//! (`IRQBALANCE_BANNED_CPUS` would instead take whole CPUs away from it,
//! which is more than needed). irqbalance reads the file when it starts, so
//! the change takes effect at its next restart or at boot.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{disk_irq, irq_affinity, net_irq, Context, Tuner, Want};

/// The tuner.
pub struct Irqbalance;

const DEBIAN_CONFIG: &str = "/etc/default/irqbalance";
const REDHAT_CONFIG: &str = "/etc/sysconfig/irqbalance";
const BINARIES: [&str; 2] = ["/usr/sbin/irqbalance", "/usr/bin/irqbalance"];
const ARGS_KEY: &str = "IRQBALANCE_ARGS=";

fn config_path(ctx: &Context<'_>) -> &'static str {
    if !ctx.host.exists(DEBIAN_CONFIG) && ctx.host.exists(REDHAT_CONFIG) {
        REDHAT_CONFIG
    } else {
        DEBIAN_CONFIG
    }
}

/// The IRQs the two affinity tuners manage, sorted.
fn tuned_irqs(ctx: &Context<'_>) -> Vec<u32> {
    let mut irqs = irq_affinity::irq_numbers(&disk_irq::plan(ctx));
    irqs.extend(irq_affinity::irq_numbers(&net_irq::plan(ctx)));
    irqs.sort_unstable();
    irqs.dedup();
    irqs
}

/// The words of the active `IRQBALANCE_ARGS=` line, quotes removed.
fn current_args(config: &str) -> Vec<String> {
    config
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(ARGS_KEY))
        .map(|value| {
            value
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// IRQ numbers banned by `--banirq=N` in a config file.
pub fn banned_irqs(config: &str) -> Vec<u32> {
    let mut irqs: Vec<u32> = current_args(config)
        .iter()
        .filter_map(|arg| arg.strip_prefix("--banirq=")?.parse().ok())
        .collect();
    irqs.sort_unstable();
    irqs.dedup();
    irqs
}

/// Renders the config with every IRQ of `irqs` banned. Other arguments,
/// IRQs banned by the operator and all other lines are kept as they were.
pub fn render_config(old: &str, irqs: &[u32]) -> String {
    let mut banned = banned_irqs(old);
    banned.extend_from_slice(irqs);
    banned.sort_unstable();
    banned.dedup();
    let mut args: Vec<String> = current_args(old)
        .into_iter()
        .filter(|arg| !arg.starts_with("--banirq="))
        .collect();
    args.extend(banned.iter().map(|irq| format!("--banirq={irq}")));
    let new_line = format!("{ARGS_KEY}\"{}\"", args.join(" "));

    let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
    match lines
        .iter()
        .rposition(|line| line.trim().starts_with(ARGS_KEY))
    {
        Some(index) => lines[index] = new_line,
        None => {
            lines.push(
                "# Interrupts placed by rpk-tune; irqbalance must leave them alone.".to_string(),
            );
            lines.push(new_line);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

impl Tuner for Irqbalance {
    fn name(&self) -> &'static str {
        "irqbalance"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        let installed = BINARIES.iter().any(|b| ctx.host.exists(b))
            || ctx.host.exists(DEBIAN_CONFIG)
            || ctx.host.exists(REDHAT_CONFIG);
        if !installed {
            return Err("irqbalance is not installed, so nothing moves the tuned IRQs".to_string());
        }
        if tuned_irqs(ctx).is_empty() {
            return Err("no IRQs are tuned on this host".to_string());
        }
        Ok(vec![config_path(ctx).to_string()])
    }

    fn supported(&self, _ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        let config = ctx.host.read_opt(target)?.unwrap_or_default();
        let banned = banned_irqs(&config);
        Ok(if banned.is_empty() {
            "none banned".to_string()
        } else {
            join(&banned)
        })
    }

    fn required(&self, ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::AllOf(
            tuned_irqs(ctx).iter().map(u32::to_string).collect(),
        ))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let old = ctx.host.read_opt(target)?.unwrap_or_default();
        changes.replace_file(target, &render_config(&old, &tuned_irqs(ctx)))
    }
}

fn join(irqs: &[u32]) -> String {
    irqs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
