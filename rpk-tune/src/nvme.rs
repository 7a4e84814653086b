//! Pure builders for NVMe admin commands sent through `NVME_IOCTL_ADMIN_CMD`.
//!
//! The layout is `struct nvme_passthru_cmd` (alias `struct nvme_admin_cmd`)
//! from `linux/nvme_ioctl.h`, 72 bytes in native byte order:
//!
//! | offset | field        | size |
//! |-------:|--------------|-----:|
//! | 0      | opcode       | 1    |
//! | 1      | flags        | 1    |
//! | 2      | rsvd1        | 2    |
//! | 4      | nsid         | 4    |
//! | 8      | cdw2         | 4    |
//! | 12     | cdw3         | 4    |
//! | 16     | metadata     | 8    |
//! | 24     | addr         | 8    |
//! | 32     | metadata_len | 4    |
//! | 36     | data_len     | 4    |
//! | 40..64 | cdw10..cdw15 | 4 each |
//! | 64     | timeout_ms   | 4    |
//! | 68     | result       | 4    |

use crate::error::{Error, Result};

/// Size of `struct nvme_passthru_cmd`.
pub const ADMIN_CMD_LEN: usize = 72;

/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`: direction read|write (3) in
/// bits 31:30, size 72 in bits 29:16, type 'N' in bits 15:8, number 0x41.
pub const NVME_IOCTL_ADMIN_CMD: u64 =
    (3 << 30) | ((ADMIN_CMD_LEN as u64) << 16) | (0x4e << 8) | 0x41;

/// Admin opcode of Set Features.
pub const OPCODE_SET_FEATURES: u8 = 0x09;
/// Admin opcode of Get Features.
pub const OPCODE_GET_FEATURES: u8 = 0x0a;
/// Feature identifier of Interrupt Coalescing.
pub const FEATURE_INTERRUPT_COALESCING: u8 = 0x08;

/// The aggregation time field counts units of 100 microseconds.
pub const AGGREGATION_TIME_UNIT_US: u32 = 100;

/// One raw admin command.
pub type AdminCmd = [u8; ADMIN_CMD_LEN];

/// Builds an admin command with the given opcode and command dwords 10 and 11;
/// every other field is zero, which means: no data buffer, no metadata,
/// namespace 0 (the controller) and the driver's default timeout.
pub fn admin_cmd(opcode: u8, cdw10: u32, cdw11: u32) -> AdminCmd {
    let mut cmd = [0u8; ADMIN_CMD_LEN];
    cmd[0] = opcode;
    cmd[40..44].copy_from_slice(&cdw10.to_ne_bytes());
    cmd[44..48].copy_from_slice(&cdw11.to_ne_bytes());
    cmd
}

/// Get Features for `feature_id`, selecting the current value (SEL = 0 in cdw10 bits 10:8).
pub fn get_features(feature_id: u8) -> AdminCmd {
    admin_cmd(OPCODE_GET_FEATURES, u32::from(feature_id), 0)
}

/// Set Features for `feature_id` with `cdw11`, without the Save bit (cdw10 bit 31),
/// so the setting lasts until the next controller reset and a reboot undoes it.
pub fn set_features(feature_id: u8, cdw11: u32) -> AdminCmd {
    admin_cmd(OPCODE_SET_FEATURES, u32::from(feature_id), cdw11)
}

/// The completion dword 0 the kernel copies back into the `result` field.
pub fn result(cmd: &AdminCmd) -> u32 {
    u32::from_ne_bytes([cmd[68], cmd[69], cmd[70], cmd[71]])
}

/// The Interrupt Coalescing setting in human units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptCoalescing {
    /// Completion entries aggregated before an interrupt, 1..=256.
    pub threshold_entries: u16,
    /// Longest delay before an interrupt, a multiple of 100 µs up to 25 500 µs.
    pub time_us: u32,
}

impl InterruptCoalescing {
    /// Encodes cdw11: bits 7:0 are the threshold minus one (the field is
    /// 0-based), bits 15:8 the time in 100 µs units.
    pub fn to_cdw11(self) -> Result<u32> {
        if !(1..=256).contains(&self.threshold_entries) {
            return Err(Error::Usage(format!(
                "NVMe coalescing threshold must be 1..=256 entries, got {}",
                self.threshold_entries
            )));
        }
        let time_units = self.time_us / AGGREGATION_TIME_UNIT_US;
        // The field only holds whole 100 µs units; refuse rather than round,
        // so the controller never gets a delay the operator did not ask for.
        if time_units * AGGREGATION_TIME_UNIT_US != self.time_us || time_units > 255 {
            return Err(Error::Usage(format!(
                "NVMe coalescing time must be a multiple of 100 us up to 25500 us, got {}",
                self.time_us
            )));
        }
        let threshold = u32::from(self.threshold_entries - 1);
        Ok((time_units << 8) | threshold)
    }

    /// Decodes the Get Features result (same layout as cdw11).
    pub fn from_cdw11(cdw11: u32) -> Self {
        Self {
            threshold_entries: (cdw11 & 0xff) as u16 + 1,
            time_us: ((cdw11 >> 8) & 0xff) * AGGREGATION_TIME_UNIT_US,
        }
    }
}

impl std::fmt::Display for InterruptCoalescing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "threshold={} entries, time={}us",
            self.threshold_entries, self.time_us
        )
    }
}
