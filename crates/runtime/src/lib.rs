//! glommio implementation of the `shoal-io` traits, and a pinned-executor builder.
//!
//! - [`GlommioDisk`] / [`GlommioFile`] / [`GlommioBuf`] implement [`shoal_io::Disk`],
//!   [`shoal_io::DmaFile`] and [`shoal_io::DmaBuf`] on glommio's O_DIRECT, io_uring-backed
//!   [`glommio::io::DmaFile`].
//! - [`executor`] builds a `LocalExecutor` pinned to one CPU with every latency-relevant option
//!   spelled out.
//!
//! Everything here is thread-per-core: a [`GlommioFile`] (and any [`GlommioBuf`] allocated from
//! it) belongs to the executor that opened it and must never be moved to another thread. The
//! types are `!Send`, so the compiler enforces this.
//!
//! Errors are plain [`std::io::Error`]s that keep the kernel's errno
//! ([`std::io::Error::raw_os_error`]), so callers can tell `ENOSPC` from `EIO`; see
//! [`to_io_error`].

pub mod alloc;
mod disk;
mod error;
pub mod executor;
mod observed;
/// Test-only: a simulated power cut (the fault suite's lost-unsynced-writes fault).
#[cfg(feature = "fault-switches")]
pub mod power_cut;

pub use disk::{
    file_system_space, release_file, reserve_file, GlommioBuf, GlommioDisk, GlommioFile,
};
pub use error::to_io_error;
pub use observed::{DurableIoObserver, ObservedDisk, ObservedFile};
