//! The only module with `unsafe`: the real ioctls and `fallocate(2)`.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::ethtool::{CoalescePayload, SIOCETHTOOL};
use crate::ioctl::IoctlExecutor;
use crate::nvme::{AdminCmd, NVME_IOCTL_ADMIN_CMD};

/// Issues real ioctls against the running kernel.
pub(crate) struct SysIoctl;

/// `struct ifreq` with the `ifr_data` member of the union selected. The union
/// is 24 bytes on 64-bit Linux (its largest member is `struct ifmap`), so the
/// pointer is followed by padding to keep the total at the kernel's 40 bytes.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    pad: [u8; 24 - std::mem::size_of::<*mut libc::c_void>()],
}

impl IoctlExecutor for SysIoctl {
    fn nvme_admin(&self, device: &Path, cmd: &mut AdminCmd) -> io::Result<()> {
        // Admin passthrough only needs a read-only descriptor; the kernel
        // checks CAP_SYS_ADMIN instead of the open mode.
        let file = OpenOptions::new().read(true).open(device)?;
        // SAFETY: `cmd` is a live, exclusively borrowed 72-byte buffer laid out
        // as `struct nvme_passthru_cmd`; its `addr` and `metadata` fields are
        // zero (the builders never set them), so the kernel reads and writes
        // only these 72 bytes. The descriptor stays open for the whole call.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                NVME_IOCTL_ADMIN_CMD as _,
                cmd.as_mut_ptr(),
            )
        };
        match rc {
            0 => Ok(()),
            rc if rc < 0 => Err(io::Error::last_os_error()),
            // A positive return is the NVMe status code of a command the
            // controller rejected (for example an unsupported feature).
            status => Err(io::Error::other(format!(
                "controller returned NVMe status {status:#x}"
            ))),
        }
    }

    fn ethtool(&self, iface: &str, payload: &mut CoalescePayload) -> io::Result<()> {
        let name = iface.as_bytes();
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else, so
        // `OwnedFd` may take ownership and close it on drop.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ifr = IfreqData {
            name: [0; libc::IFNAMSIZ],
            data: payload.as_mut_ptr().cast(),
            pad: [0; 24 - std::mem::size_of::<*mut libc::c_void>()],
        };
        ifr.name[..name.len()].copy_from_slice(name);
        // SAFETY: `ifr` is a correctly sized `struct ifreq` whose name is NUL
        // terminated and whose `ifr_data` points at `payload`, a live 92-byte
        // `struct ethtool_coalesce` that is exclusively borrowed for the call.
        let rc = unsafe {
            libc::ioctl(
                socket.as_raw_fd(),
                SIOCETHTOOL as _,
                std::ptr::addr_of_mut!(ifr),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Reserves `size_bytes` of real disk blocks for `file`, so the space is
/// actually taken from the filesystem rather than being a sparse hole.
pub(crate) fn fallocate(file: &File, size_bytes: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(size_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
    // SAFETY: fallocate(2) takes the descriptor of a file we hold open and
    // two integers; no memory is shared with the kernel.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
