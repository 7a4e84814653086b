//! Settings that shape what the tuners require.

use std::path::PathBuf;

use crate::irq::IrqMode;

/// Default data directory of the broker.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal/data";
/// Default state file used by apply and rollback (resolved under `--root`).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/shoal/rpk-tune-state.json";
/// Default ballast size: 1 GiB, enough to let a full disk be recovered
/// (compaction, deleting segments) without being a noticeable loss.
pub const DEFAULT_BALLAST_SIZE_BYTES: u64 = 1 << 30;

/// Everything the tuners need to know besides the host itself.
#[derive(Clone, Debug)]
pub struct Options {
    /// The broker's data directory.
    pub data_dir: PathBuf,
    /// Explicit block devices to tune instead of the ones under the data directory.
    pub devices: Vec<String>,
    /// Allow `devices` that do not hold the data directory.
    pub allow_other_devices: bool,
    /// NICs to tune; empty means every interface backed by a device.
    pub nics: Vec<String>,
    /// How IRQs are spread over CPUs.
    pub irq_mode: IrqMode,
    /// Size of the ballast file.
    pub ballast_size_bytes: u64,
    /// NVMe completions aggregated per interrupt (1..=256).
    pub nvme_coalesce_threshold_entries: u16,
    /// Longest NVMe interrupt delay, in µs (multiple of 100).
    pub nvme_coalesce_time_us: u32,
    /// NIC receive interrupt delay, in µs.
    pub nic_rx_coalesce_us: u32,
    /// NIC transmit interrupt delay, in µs.
    pub nic_tx_coalesce_us: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            devices: Vec::new(),
            allow_other_devices: false,
            nics: Vec::new(),
            irq_mode: IrqMode::default(),
            ballast_size_bytes: DEFAULT_BALLAST_SIZE_BYTES,
            // Eight completions or 100 µs, whichever comes first: under load
            // this divides the interrupt rate by up to eight, and when idle
            // it adds at most 100 µs, small next to an fsync on flash.
            nvme_coalesce_threshold_entries: 8,
            nvme_coalesce_time_us: 100,
            // 50 µs keeps per-packet interrupts from saturating a core at
            // high packet rates while staying far below produce latencies.
            nic_rx_coalesce_us: 50,
            nic_tx_coalesce_us: 50,
        }
    }
}
