//! Transparent huge pages: `/sys/kernel/mm/transparent_hugepage/enabled = madvise`.
//!
//! `always` makes every anonymous mapping eligible, and the compaction and
//! khugepaged work needed to find 2 MiB pages shows up as multi-millisecond
//! stalls on ordinary allocations. `never` would forbid huge pages even for
//! the broker's large, long-lived buffers, which do benefit (fewer TLB
//! misses). `madvise` gives huge pages only to regions that ask for them
//! with madvise(MADV_HUGEPAGE), so the broker opts in for its buffers and
//! nothing else pays for compaction.

use crate::changes::Changes;
use crate::error::Result;
use crate::report::Severity;
use crate::tuners::{
    attribute_supported, available_choices, selected_choice, Context, Tuner, Want,
};

/// The tuner.
pub struct TransparentHugepages;

const PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const REQUIRED: &str = "madvise";

impl Tuner for TransparentHugepages {
    fn name(&self) -> &'static str {
        "transparent_hugepages"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, String> {
        Ok(vec![PATH.to_string()])
    }

    fn supported(&self, ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        attribute_supported(ctx.host, PATH)?;
        let text = ctx.host.read(PATH).map_err(|e| e.to_string())?;
        if !available_choices(&text).iter().any(|c| c == REQUIRED) {
            return Err(format!("{REQUIRED:?} is not offered ({})", text.trim()));
        }
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, _target: &str) -> Result<String> {
        Ok(selected_choice(&ctx.host.read(PATH)?))
    }

    fn required(&self, _ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::Exact(REQUIRED.to_string()))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        let previous = self.current(ctx, target)?;
        changes.write_value(PATH, REQUIRED, &previous)
    }
}
