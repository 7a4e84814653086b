//! raft-rs logs through `slog`; the broker logs through `tracing`. This drain forwards each
//! slog record to a tracing event of the same level, with the group id as a field, so raft's
//! elections and rejections show up in the broker's log like any other line.

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A slog drain that writes to `tracing`.
pub(crate) struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        // Serialising into a String cannot fail; a failure would only lose the fields.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", "{message}{}", fields.0)
            }
            Level::Warning => tracing::warn!(target: "raft", "{message}{}", fields.0),
            Level::Info => tracing::info!(target: "raft", "{message}{}", fields.0),
            Level::Debug => tracing::debug!(target: "raft", "{message}{}", fields.0),
            Level::Trace => tracing::trace!(target: "raft", "{message}{}", fields.0),
        }
        Ok(())
    }
}

struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The logger a group hands to raft-rs: raft's own fields plus `group`.
pub(crate) fn logger(group: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("group" => group))
}
