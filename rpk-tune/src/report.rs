//! Result rows and their rendering as a table or JSON.

use serde::Serialize;

/// How much a failed check matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported for information only; never fails a run.
    Info,
    /// A performance or robustness risk; fails nothing.
    Warning,
    /// The broker is expected to misbehave; `check` exits 1.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// The outcome for one tuner and target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Current value satisfies the requirement.
    Ok,
    /// Current value does not satisfy the requirement.
    Fail,
    /// Apply changed the value (from `Row::previous`).
    Changed,
    /// Dry run: apply would change the value.
    WouldChange,
    /// The tuner cannot run here; the reason says why. Never fails a run.
    Unsupported(String),
    /// Reading or changing the value failed.
    Error(String),
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Tuner name, as used by `--only` and `--skip`.
    pub tuner: String,
    /// Device, interrupt, file or setting the row is about.
    pub target: String,
    /// Value read from the host (after apply, the new value).
    pub current: Option<String>,
    /// Value before apply changed it.
    pub previous: Option<String>,
    /// What the tuner requires.
    pub required: Option<String>,
    /// Outcome.
    #[serde(flatten)]
    pub status: Status,
    /// `status` is ok, changed or unsupported.
    pub ok: bool,
    /// How much a failure matters.
    pub severity: Severity,
}

impl Row {
    /// Builds a row; `ok` is derived from the status.
    pub fn new(tuner: &str, target: &str, severity: Severity, status: Status) -> Self {
        let ok = matches!(
            status,
            Status::Ok | Status::Changed | Status::Unsupported(_)
        );
        Self {
            tuner: tuner.to_string(),
            target: target.to_string(),
            current: None,
            previous: None,
            required: None,
            status,
            ok,
            severity,
        }
    }

    /// Whether this row should fail a `check` run.
    pub fn fails_check(&self) -> bool {
        self.severity == Severity::Error && matches!(self.status, Status::Fail | Status::Error(_))
    }

    /// The "ok / why not" column.
    pub fn verdict(&self) -> String {
        match &self.status {
            Status::Ok => "ok".to_string(),
            Status::Fail => "no".to_string(),
            Status::Changed => match &self.previous {
                Some(previous) => format!("changed (was {previous})"),
                None => "changed".to_string(),
            },
            Status::WouldChange => "would change".to_string(),
            Status::Unsupported(reason) => format!("unsupported: {reason}"),
            Status::Error(message) => format!("error: {message}"),
        }
    }
}

/// Renders rows as an aligned text table.
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "TUNER",
        "DEVICE",
        "CURRENT",
        "REQUIRED",
        "OK / WHY NOT",
        "SEVERITY",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.tuner.clone(),
                row.target.clone(),
                row.current.clone().unwrap_or_else(|| "-".to_string()),
                row.required.clone().unwrap_or_else(|| "-".to_string()),
                row.verdict(),
                row.severity.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_line = |line: &[String]| {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    push_line(&header.map(String::from));
    for line in &cells {
        push_line(line);
    }
    out
}
