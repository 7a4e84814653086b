//! A ballast file in the data directory.
//!
//! A broker whose disk fills up cannot write, and often cannot even run the
//! compaction or retention that would free space. The ballast is a file of
//! really allocated blocks (fallocate, not a sparse file) that an operator
//! can delete in an emergency to get that room back at once. The Shoal broker
//! manages the same file itself (`disk_reserve_bytes`): it releases it when a
//! write finds the disk full and takes it back once there is room.

use std::os::unix::fs::MetadataExt;

use crate::changes::Changes;
use crate::error::{Error, Result};
use crate::report::Severity;
use crate::tuners::{Context, Tuner, Want};

/// The tuner.
pub struct BallastFile;

/// File name inside the data directory.
pub const BALLAST_NAME: &str = "ballast";

fn ballast_path(ctx: &Context<'_>) -> String {
    ctx.opts.data_dir.join(BALLAST_NAME).display().to_string()
}

/// Bytes of disk really allocated to the file (blocks are 512 bytes in st_blocks).
fn allocated_bytes(ctx: &Context<'_>, path: &str) -> Result<Option<u64>> {
    let resolved = ctx.host.path(path);
    match std::fs::metadata(&resolved) {
        Ok(meta) => Ok(Some(meta.blocks() * 512)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: resolved,
            source,
        }),
    }
}

impl Tuner for BallastFile {
    fn name(&self) -> &'static str {
        "ballast_file"
    }

    fn severity(&self) -> Severity {
        Severity::Warning
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, String> {
        if !ctx.host.exists(&ctx.opts.data_dir) {
            return Err(format!(
                "data directory {} does not exist yet",
                ctx.opts.data_dir.display()
            ));
        }
        Ok(vec![ballast_path(ctx)])
    }

    fn supported(&self, _ctx: &Context<'_>, _target: &str) -> Result<(), String> {
        Ok(())
    }

    fn current(&self, ctx: &Context<'_>, target: &str) -> Result<String> {
        Ok(match allocated_bytes(ctx, target)? {
            Some(bytes) => bytes.to_string(),
            None => "missing".to_string(),
        })
    }

    fn required(&self, ctx: &Context<'_>, _target: &str) -> Result<Want> {
        Ok(Want::AtLeast(ctx.opts.ballast_size_bytes))
    }

    fn apply(&self, ctx: &Context<'_>, target: &str, changes: &mut Changes<'_>) -> Result<()> {
        if let Some(bytes) = allocated_bytes(ctx, target)? {
            // Growing a file someone else made could eat the space they kept
            // for themselves, so an undersized ballast is left for the operator.
            return Err(Error::Usage(format!(
                "{target} exists with only {bytes} bytes allocated; delete it to let rpk-tune recreate it"
            )));
        }
        changes.create_ballast(target, ctx.opts.ballast_size_bytes)
    }
}
