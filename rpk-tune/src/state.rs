//! The JSON state file that lets `rollback` restore what `apply` changed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changes::Undo;
use crate::error::{Error, Result};

/// Current state file format.
pub const STATE_VERSION: u32 = 1;

/// One saved original value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Tuner that made the change.
    pub tuner: String,
    /// Its target.
    pub target: String,
    /// How to restore the original.
    pub undo: Undo,
}

/// Everything rollback needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Saved originals in the order they were changed.
    pub entries: Vec<Entry>,
}

impl State {
    /// Reads the state file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_error(path, e.to_string())),
        };
        let state: Self =
            serde_json::from_str(&text).map_err(|e| state_error(path, e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(state_error(
                path,
                format!("unknown version {}", state.version),
            ));
        }
        Ok(Some(state))
    }

    /// Adds entries, keeping an existing entry for the same thing: after two
    /// applies, rollback must restore the value from before the first one.
    pub fn merge(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            let key = entry.undo.key();
            if !self.entries.iter().any(|e| e.undo.key() == key) {
                self.entries.push(entry);
            }
        }
    }

    /// Writes the state atomically (temporary file, then rename), so a crash
    /// never leaves a truncated file that would make rollback impossible.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| state_error(path, e.to_string()))?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| state_error(path, e.to_string()))?;
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        fs::write(&tmp, text + "\n").map_err(|e| state_error(path, e.to_string()))?;
        fs::rename(&tmp, path).map_err(|e| state_error(path, e.to_string()))
    }

    /// An empty state of the current version.
    pub fn empty() -> Self {
        Self {
            version: STATE_VERSION,
            entries: Vec::new(),
        }
    }
}

fn state_error(path: &Path, why: String) -> Error {
    Error::State {
        path: path.to_path_buf(),
        why,
    }
}
