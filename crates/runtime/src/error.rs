//! Mapping glommio errors to `std::io::Error` without losing the errno.

use std::io;

use glommio::GlommioError;

/// Converts a glommio error into an [`io::Error`], preserving the raw OS error code.
///
/// glommio's own `From<GlommioError> for io::Error` rebuilds enhanced errors from their kind
/// and message, which drops [`io::Error::raw_os_error`]. The storage engine needs the errno
/// (it treats `ENOSPC` as "disk full, stop accepting writes" and `EIO` as "this file is lost"),
/// so this function returns the kernel's error itself:
///
/// - `IoError(e)` → `e`;
/// - `EnhancedIoError { source, .. }` → `source` (the operation, path and fd glommio attached
///   are logged at `debug` level rather than kept, because an `io::Error` cannot carry both a
///   raw errno and a custom message);
/// - anything else (executor, reactor, channel errors) → glommio's own conversion, which picks
///   the closest [`io::ErrorKind`] (falling back to `Other`) and has no errno.
pub fn to_io_error<T>(err: GlommioError<T>) -> io::Error {
    match err {
        GlommioError::IoError(e) => e,
        GlommioError::EnhancedIoError {
            source,
            op,
            path,
            fd,
        } => {
            tracing::debug!(op, ?path, ?fd, error = %source, "glommio I/O error");
            source
        }
        other => io::Error::from(other),
    }
}
