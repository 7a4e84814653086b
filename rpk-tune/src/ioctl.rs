//! The ioctl seam: tuners hand fully built payloads to an [`IoctlExecutor`].
//!
//! The real executor lives in [`crate::sys`]; [`FakeIoctl`] emulates a set of
//! NVMe controllers and NICs and records every payload so tests can compare
//! them byte for byte.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ethtool::{self, Coalesce, CoalescePayload};
use crate::nvme::{self, AdminCmd};

/// Issues the two kinds of ioctl this tool needs.
pub trait IoctlExecutor {
    /// Sends `NVME_IOCTL_ADMIN_CMD` to the controller character device (for
    /// example `/dev/nvme0`); the kernel writes the completion result into
    /// the command's `result` field.
    fn nvme_admin(&self, device: &Path, cmd: &mut AdminCmd) -> io::Result<()>;

    /// Sends `SIOCETHTOOL` for interface `iface` with `payload` as `ifr_data`.
    fn ethtool(&self, iface: &str, payload: &mut CoalescePayload) -> io::Result<()>;
}

/// Used under `--root`: ioctls would reach the real devices, not the fake
/// tree, so they are refused and the tuners report themselves unsupported.
pub struct UnavailableIoctl;

impl IoctlExecutor for UnavailableIoctl {
    fn nvme_admin(&self, _device: &Path, _cmd: &mut AdminCmd) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ioctls are not issued under --root",
        ))
    }

    fn ethtool(&self, _iface: &str, _payload: &mut CoalescePayload) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ioctls are not issued under --root",
        ))
    }
}

/// One ioctl as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedIoctl {
    /// `/dev/nvme0` style path or interface name.
    pub target: String,
    /// The bytes as they were handed to the executor, before any reply.
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct FakeState {
    nvme_features: BTreeMap<(PathBuf, u8), u32>,
    nics: BTreeMap<String, Option<Coalesce>>,
    calls: Vec<RecordedIoctl>,
}

/// An in-memory stand-in for NVMe controllers and NICs. Clones share state,
/// so a test keeps one clone to inspect after handing the other to a [`crate::Host`].
#[derive(Clone, Default)]
pub struct FakeIoctl {
    state: Arc<Mutex<FakeState>>,
}

impl FakeIoctl {
    /// A fake with no devices: every ioctl fails with `ENODEV`.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds an NVMe controller whose feature `feature_id` currently holds `value`.
    pub fn with_nvme_feature(self, device: impl Into<PathBuf>, feature_id: u8, value: u32) -> Self {
        self.lock()
            .nvme_features
            .insert((device.into(), feature_id), value);
        self
    }

    /// Adds a NIC; `None` models a driver without coalescing support.
    pub fn with_nic(self, iface: &str, coalesce: Option<Coalesce>) -> Self {
        self.lock().nics.insert(iface.to_string(), coalesce);
        self
    }

    /// Every ioctl issued so far, in order.
    pub fn calls(&self) -> Vec<RecordedIoctl> {
        self.lock().calls.clone()
    }

    /// The current value of an NVMe feature.
    pub fn nvme_feature(&self, device: impl Into<PathBuf>, feature_id: u8) -> Option<u32> {
        self.lock()
            .nvme_features
            .get(&(device.into(), feature_id))
            .copied()
    }

    /// The current coalescing of a NIC.
    pub fn nic(&self, iface: &str) -> Option<Coalesce> {
        self.lock().nics.get(iface).copied().flatten()
    }
}

impl IoctlExecutor for FakeIoctl {
    fn nvme_admin(&self, device: &Path, cmd: &mut AdminCmd) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(RecordedIoctl {
            target: device.display().to_string(),
            payload: cmd.to_vec(),
        });
        let feature_id = cmd[40];
        let key = (device.to_path_buf(), feature_id);
        let Some(value) = state.nvme_features.get(&key).copied() else {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        };
        match cmd[0] {
            nvme::OPCODE_GET_FEATURES => {
                cmd[68..72].copy_from_slice(&value.to_ne_bytes());
                Ok(())
            }
            nvme::OPCODE_SET_FEATURES => {
                let cdw11 = u32::from_ne_bytes([cmd[44], cmd[45], cmd[46], cmd[47]]);
                state.nvme_features.insert(key, cdw11);
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn ethtool(&self, iface: &str, payload: &mut CoalescePayload) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(RecordedIoctl {
            target: iface.to_string(),
            payload: payload.to_vec(),
        });
        let Some(current) = state.nics.get(iface).copied() else {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        };
        let Some(current) = current else {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        };
        let cmd = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
        match cmd {
            ethtool::ETHTOOL_GCOALESCE => {
                *payload = ethtool::payload(ethtool::ETHTOOL_GCOALESCE, &current);
                Ok(())
            }
            ethtool::ETHTOOL_SCOALESCE => {
                state
                    .nics
                    .insert(iface.to_string(), Some(ethtool::parse(payload)));
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}
