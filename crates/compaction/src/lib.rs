//! Log compaction's record-level work, free of any runtime and of storage's file layout.
//!
//! A cleaning of one partition (driven by `shoal-storage`, which owns the segments) is:
//! 1. **Map pass**: from the first dirty offset (the end of the previous cleaning) towards the
//!    end of the cleanable range, [`index_batch`] puts each record's key and offset into an
//!    [`OffsetMap`] of a fixed byte budget, until the range ends or the map is full
//!    ([`Indexed::Full`]: the pass ends at that batch, the rest waits for the next pass).
//! 2. **Clean pass**: every batch from the log start to the end of the mapped range goes
//!    through [`clean_batch`]: kept as it is, rebuilt with fewer records (same offsets), or
//!    removed. Storage writes the results into new segments and swaps them in.
//!
//! Everything here runs on the core that owns the partition, in the compactor's task; the
//! map is that core's (one per core, reused pass after pass).

mod batch;
mod clean;
mod error;
mod offset_map;

pub use batch::BatchHeader;
pub use clean::{clean_batch, index_batch, next_offset, CleanRules, CleanStats, Cleaned, Indexed};
pub use error::{Error, Result};
pub use offset_map::{OffsetMap, LOAD_FACTOR, SLOT_BYTES};
