//! Pure builders for the `SIOCETHTOOL` coalescing requests.
//!
//! `struct ethtool_coalesce` in `linux/ethtool.h` is a `cmd` word followed by
//! 22 `__u32` fields, 92 bytes in native byte order. `ETHTOOL_GCOALESCE`
//! fills it in; `ETHTOOL_SCOALESCE` takes the complete structure, so a change
//! is always "read everything, modify some fields, write everything back".

use serde::{Deserialize, Serialize};

/// `SIOCETHTOOL` from `linux/sockios.h`.
pub const SIOCETHTOOL: u64 = 0x8946;
/// Get coalescing parameters.
pub const ETHTOOL_GCOALESCE: u32 = 0x0e;
/// Set coalescing parameters.
pub const ETHTOOL_SCOALESCE: u32 = 0x0f;
/// Number of `__u32` fields after `cmd`.
pub const FIELD_COUNT: usize = 22;
/// Size of `struct ethtool_coalesce`.
pub const COALESCE_LEN: usize = 4 * (1 + FIELD_COUNT);

/// One raw `struct ethtool_coalesce`.
pub type CoalescePayload = [u8; COALESCE_LEN];

macro_rules! coalesce_struct {
    ($($field:ident => $arg:literal),* $(,)?) => {
        /// The fields of `struct ethtool_coalesce`, in kernel order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Coalesce {
            $(
                #[allow(missing_docs)]
                pub $field: u32,
            )*
        }

        /// Field names in kernel order, paired with the `ethtool -C` argument
        /// that sets them.
        pub const FIELDS: [(&str, &str); FIELD_COUNT] = [$((stringify!($field), $arg)),*];

        impl Coalesce {
            /// The fields as words, in kernel order.
            pub fn to_words(&self) -> [u32; FIELD_COUNT] {
                [$(self.$field),*]
            }

            /// Builds the structure from words in kernel order.
            pub fn from_words(words: [u32; FIELD_COUNT]) -> Self {
                let mut iter = words.into_iter();
                Self { $($field: iter.next().unwrap_or_default()),* }
            }
        }
    };
}

coalesce_struct! {
    rx_coalesce_usecs => "rx-usecs",
    rx_max_coalesced_frames => "rx-frames",
    rx_coalesce_usecs_irq => "rx-usecs-irq",
    rx_max_coalesced_frames_irq => "rx-frames-irq",
    tx_coalesce_usecs => "tx-usecs",
    tx_max_coalesced_frames => "tx-frames",
    tx_coalesce_usecs_irq => "tx-usecs-irq",
    tx_max_coalesced_frames_irq => "tx-frames-irq",
    stats_block_coalesce_usecs => "stats-block-usecs",
    use_adaptive_rx_coalesce => "adaptive-rx",
    use_adaptive_tx_coalesce => "adaptive-tx",
    pkt_rate_low => "pkt-rate-low",
    rx_coalesce_usecs_low => "rx-usecs-low",
    rx_max_coalesced_frames_low => "rx-frames-low",
    tx_coalesce_usecs_low => "tx-usecs-low",
    tx_max_coalesced_frames_low => "tx-frames-low",
    pkt_rate_high => "pkt-rate-high",
    rx_coalesce_usecs_high => "rx-usecs-high",
    rx_max_coalesced_frames_high => "rx-frames-high",
    tx_coalesce_usecs_high => "tx-usecs-high",
    tx_max_coalesced_frames_high => "tx-frames-high",
    rate_sample_interval => "sample-interval",
}

/// Builds the request for `cmd` carrying `values`.
pub fn payload(cmd: u32, values: &Coalesce) -> CoalescePayload {
    let mut out = [0u8; COALESCE_LEN];
    out[0..4].copy_from_slice(&cmd.to_ne_bytes());
    for (i, word) in values.to_words().iter().enumerate() {
        let start = 4 * (i + 1);
        out[start..start + 4].copy_from_slice(&word.to_ne_bytes());
    }
    out
}

/// The `ETHTOOL_GCOALESCE` request: only `cmd` is set, the kernel fills the rest.
pub fn get_coalesce() -> CoalescePayload {
    payload(ETHTOOL_GCOALESCE, &Coalesce::default())
}

/// The `ETHTOOL_SCOALESCE` request carrying the complete new structure.
pub fn set_coalesce(values: &Coalesce) -> CoalescePayload {
    payload(ETHTOOL_SCOALESCE, values)
}

/// Reads the fields back out of a request the kernel has filled.
pub fn parse(payload: &CoalescePayload) -> Coalesce {
    let mut words = [0u32; FIELD_COUNT];
    for (i, word) in words.iter_mut().enumerate() {
        let start = 4 * (i + 1);
        *word = u32::from_ne_bytes([
            payload[start],
            payload[start + 1],
            payload[start + 2],
            payload[start + 3],
        ]);
    }
    Coalesce::from_words(words)
}

/// The `ethtool -C IF ...` arguments that turn `from` into `to`, listing only
/// the fields that differ, so rendered scripts stay readable.
pub fn ethtool_args(from: &Coalesce, to: &Coalesce) -> Vec<String> {
    let mut args = Vec::new();
    for ((_, arg), (old, new)) in FIELDS
        .iter()
        .zip(from.to_words().into_iter().zip(to.to_words()))
    {
        if old != new {
            args.push(arg.to_string());
            args.push(if arg.starts_with("adaptive-") {
                (if new != 0 { "on" } else { "off" }).to_string()
            } else {
                new.to_string()
            });
        }
    }
    args
}
