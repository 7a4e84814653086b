//! Runs the tuners for `check`, `apply` and `rollback` and decides exit codes.

use std::path::Path;

use crate::changes::Changes;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::options::Options;
use crate::report::{Row, Status};
use crate::state::{Entry, State};
use crate::tuners::{self, Context, Tuner, Want};

/// Exit code: every check passed, or every change was applied.
pub const EXIT_OK: i32 = 0;
/// Exit code: a check of severity error failed, or a change/restore failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad command line, or a refused device.
pub const EXIT_USAGE: i32 = 2;

/// `--only` and `--skip`.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Run only these tuners (empty: all).
    pub only: Vec<String>,
    /// Never run these tuners.
    pub skip: Vec<String>,
}

impl Selection {
    /// Rejects unknown tuner names, so a typo does not silently select nothing.
    pub fn validate(&self) -> Result<()> {
        let known = tuners::names();
        for name in self.only.iter().chain(&self.skip) {
            if !known.contains(&name.as_str()) {
                return Err(Error::Usage(format!(
                    "unknown tuner {name:?}; known tuners: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn includes(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n == name))
            && !self.skip.iter().any(|n| n == name)
    }
}

/// What `apply` or `rollback` did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One row per target (apply) or per restored value (rollback).
    pub rows: Vec<Row>,
    /// Shell commands equivalent to the changes (rendered in dry runs too).
    pub commands: Vec<String>,
}

/// One target inspected: the row, plus what is needed to act on it.
struct Inspected {
    row: Row,
    needs_change: bool,
}

fn inspect(tuner: &dyn Tuner, ctx: &Context<'_>, target: &str) -> Inspected {
    let name = tuner.name();
    let severity = tuner.severity();
    if let Err(reason) = tuner.supported(ctx, target) {
        return Inspected {
            row: Row::new(name, target, severity, Status::Unsupported(reason)),
            needs_change: false,
        };
    }
    let required = tuner.required(ctx, target);
    let current = tuner.current(ctx, target);
    let (current, required) = match (current, required) {
        (Ok(current), Ok(required)) => (current, required),
        (Err(e), _) | (_, Err(e)) => {
            return Inspected {
                row: Row::new(name, target, severity, Status::Error(e.to_string())),
                needs_change: false,
            }
        }
    };
    let satisfied = required.satisfied_by(&current);
    let mut row = Row::new(
        name,
        target,
        severity,
        if satisfied { Status::Ok } else { Status::Fail },
    );
    row.current = Some(current);
    row.required = Some(required.display());
    Inspected {
        row,
        needs_change: !satisfied && required != Want::Report,
    }
}

fn selected(selection: &Selection) -> Vec<Box<dyn Tuner>> {
    tuners::all()
        .into_iter()
        .filter(|t| selection.includes(t.name()))
        .collect()
}

/// Visits every selected tuner and target, giving a row for tuners that are
/// unsupported as a whole.
fn for_each_target(
    ctx: &Context<'_>,
    selection: &Selection,
    mut visit: impl FnMut(&dyn Tuner, &str),
) -> Vec<Row> {
    let mut unsupported = Vec::new();
    for tuner in selected(selection) {
        match tuner.targets(ctx) {
            Ok(targets) => targets.iter().for_each(|t| visit(tuner.as_ref(), t)),
            Err(reason) => unsupported.push(Row::new(
                tuner.name(),
                "-",
                tuner.severity(),
                Status::Unsupported(reason),
            )),
        }
    }
    unsupported
}

/// Reports every selected tuner without changing anything.
pub fn check(host: &Host, opts: &Options, selection: &Selection) -> Result<Vec<Row>> {
    selection.validate()?;
    let ctx = Context::new(host, opts)?;
    let mut rows = Vec::new();
    let unsupported = for_each_target(&ctx, selection, |tuner, target| {
        rows.push(inspect(tuner, &ctx, target).row);
    });
    Ok(merge_in_order(rows, unsupported))
}

/// Keeps rows in tuner order although whole-tuner rows were collected apart.
fn merge_in_order(mut rows: Vec<Row>, unsupported: Vec<Row>) -> Vec<Row> {
    rows.extend(unsupported);
    let order = tuners::names();
    rows.sort_by_key(|row| order.iter().position(|n| *n == row.tuner));
    rows
}

/// Brings every selected tuner to its required value. With `dry_run`
/// nothing is touched and the rows say what would change. Original values
/// are merged into the state file at `state_file` for rollback.
pub fn apply(
    host: &Host,
    opts: &Options,
    selection: &Selection,
    dry_run: bool,
    state_file: &Path,
) -> Result<Outcome> {
    selection.validate()?;
    let ctx = Context::new(host, opts)?;
    let mut changes = Changes::new(host, dry_run);
    let mut rows = Vec::new();
    let mut saved = Vec::new();
    let unsupported = for_each_target(&ctx, selection, |tuner, target| {
        let Inspected {
            mut row,
            needs_change,
        } = inspect(tuner, &ctx, target);
        if needs_change {
            let result = tuner.apply(&ctx, target, &mut changes);
            // Even a failed apply may have changed something before failing,
            // and that must still be restorable.
            saved.extend(changes.take_undo().into_iter().map(|undo| Entry {
                tuner: tuner.name().to_string(),
                target: target.to_string(),
                undo,
            }));
            row = match result {
                Err(e) if e.is_unsupported() => Row {
                    status: Status::Unsupported(e.to_string()),
                    ok: true,
                    ..row
                },
                Err(e) => Row {
                    status: Status::Error(e.to_string()),
                    ok: false,
                    ..row
                },
                Ok(()) if dry_run => Row {
                    status: Status::WouldChange,
                    ..row
                },
                Ok(()) => after_change(tuner, &ctx, target, row),
            };
        }
        rows.push(row);
    });
    if !dry_run && !saved.is_empty() {
        let mut state = State::load(state_file)?.unwrap_or_else(State::empty);
        state.merge(saved);
        state.save(state_file)?;
    }
    Ok(Outcome {
        rows: merge_in_order(rows, unsupported),
        commands: changes.commands().to_vec(),
    })
}

/// Re-reads the value after a change so the row shows what the kernel took.
fn after_change(tuner: &dyn Tuner, ctx: &Context<'_>, target: &str, row: Row) -> Row {
    let previous = row.current.clone();
    let (status, current) = match (tuner.current(ctx, target), tuner.required(ctx, target)) {
        (Ok(now), Ok(want)) if want.satisfied_by(&now) => (Status::Changed, Some(now)),
        (Ok(now), _) => (
            Status::Error(format!("the kernel kept {now:?} after the write")),
            Some(now),
        ),
        (Err(e), _) => (Status::Error(e.to_string()), None),
    };
    let mut out = Row::new(&row.tuner, &row.target, row.severity, status);
    out.current = current;
    out.previous = previous;
    out.required = row.required;
    out
}

/// Restores every value saved in the state file, newest first. Restored
/// entries are removed from the file; failed ones stay for another try.
pub fn rollback(host: &Host, state_file: &Path, dry_run: bool) -> Result<Outcome> {
    let Some(state) = State::load(state_file)? else {
        return Ok(Outcome::default());
    };
    let mut changes = Changes::new(host, dry_run);
    let mut rows = Vec::new();
    let mut remaining = Vec::new();
    for entry in state.entries.iter().rev() {
        let result = entry.undo.replay(&mut changes);
        changes.take_undo();
        let status = match (&result, dry_run) {
            (Err(e), _) => Status::Error(e.to_string()),
            (Ok(()), true) => Status::WouldChange,
            (Ok(()), false) => Status::Changed,
        };
        if result.is_err() {
            remaining.push(entry.clone());
        }
        let mut row = Row::new(
            &entry.tuner,
            &entry.target,
            crate::report::Severity::Error,
            status,
        );
        row.current = restored_value(&entry.undo);
        rows.push(row);
    }
    if !dry_run {
        if remaining.is_empty() {
            std::fs::remove_file(state_file).map_err(|e| Error::State {
                path: state_file.to_path_buf(),
                why: e.to_string(),
            })?;
        } else {
            remaining.reverse();
            State {
                entries: remaining,
                ..State::empty()
            }
            .save(state_file)?;
        }
    }
    Ok(Outcome {
        rows,
        commands: changes.commands().to_vec(),
    })
}

fn restored_value(undo: &crate::changes::Undo) -> Option<String> {
    use crate::changes::Undo;
    Some(match undo {
        Undo::WriteValue { value, .. } => value.clone(),
        Undo::RestoreFile { contents: None, .. } | Undo::RemoveFile { .. } => "removed".to_string(),
        Undo::RestoreFile { .. } => "previous contents".to_string(),
        Undo::NvmeSetFeature { cdw11, .. } => format!("cdw11={cdw11:#x}"),
        Undo::EthtoolSetCoalesce { coalesce, .. } => format!(
            "rx-usecs={} tx-usecs={}",
            coalesce.rx_coalesce_usecs, coalesce.tx_coalesce_usecs
        ),
        Undo::Systemctl { args } => format!("systemctl {}", args.join(" ")),
    })
}

/// Exit code of `check`: 1 when any severity-error check failed or could not be read.
pub fn check_exit_code(rows: &[Row]) -> i32 {
    if rows.iter().any(Row::fails_check) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Exit code of `apply` and `rollback`: 1 when anything failed (any
/// severity, since the change was asked for), or a severity-error check
/// still fails.
pub fn apply_exit_code(rows: &[Row]) -> i32 {
    let failed = rows
        .iter()
        .any(|row| matches!(row.status, Status::Error(_)) || row.fails_check());
    if failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
