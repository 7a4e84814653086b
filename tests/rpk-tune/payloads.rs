//! The ioctl payload builders, byte for byte against the NVMe base
//! specification (Set/Get Features, feature 08h) and `linux/ethtool.h`.
//! Expected bytes are written out by hand from the specs, not computed with
//! the code under test. x86-64 and arm64 are little endian.
#![cfg(target_endian = "little")]

use rpk_tune::ethtool::{self, Coalesce};
use rpk_tune::nvme::{self, InterruptCoalescing};

#[test]
fn nvme_ioctl_number_is_iowr_n_0x41_of_72_bytes() {
    // _IOC(dir=3, type='N'=0x4e, nr=0x41, size=72=0x48) from asm-generic/ioctl.h.
    assert_eq!(nvme::NVME_IOCTL_ADMIN_CMD, 0xC048_4E41);
    assert_eq!(nvme::ADMIN_CMD_LEN, 72);
}

#[test]
fn nvme_set_features_interrupt_coalescing_bytes() {
    // 8 entries (0-based threshold 7) and 300 us (3 units of 100 us):
    // cdw11 = time << 8 | threshold = 0x0307.
    let cdw11 = InterruptCoalescing {
        threshold_entries: 8,
        time_us: 300,
    }
    .to_cdw11()
    .expect("valid setting");
    assert_eq!(cdw11, 0x0307);

    let mut expected = [0u8; 72];
    expected[0] = 0x09; // opcode: Set Features
    expected[40] = 0x08; // cdw10 bits 7:0: feature id 08h, SV (bit 31) clear
    expected[44] = 0x07; // cdw11 bits 7:0: aggregation threshold, 0-based
    expected[45] = 0x03; // cdw11 bits 15:8: aggregation time, 100 us units
    assert_eq!(nvme::set_features(0x08, cdw11), expected);
}

#[test]
fn nvme_get_features_bytes_and_result() {
    let mut expected = [0u8; 72];
    expected[0] = 0x0a; // opcode: Get Features
    expected[40] = 0x08; // cdw10: feature id, SEL = 0 (current)
    let mut cmd = nvme::get_features(0x08);
    assert_eq!(cmd, expected);

    // The kernel writes completion dword 0 at offset 68 (`result`).
    cmd[68..72].copy_from_slice(&[0x0f, 0x02, 0, 0]);
    assert_eq!(nvme::result(&cmd), 0x020f);
    let decoded = InterruptCoalescing::from_cdw11(nvme::result(&cmd));
    assert_eq!(decoded.threshold_entries, 16);
    assert_eq!(decoded.time_us, 200);
}

#[test]
fn nvme_coalescing_limits() {
    let max = InterruptCoalescing {
        threshold_entries: 256,
        time_us: 25_500,
    };
    assert_eq!(max.to_cdw11().expect("max is valid"), 0xffff);
    let off = InterruptCoalescing {
        threshold_entries: 1,
        time_us: 0,
    };
    assert_eq!(off.to_cdw11().expect("off is valid"), 0);
    for bad in [(0, 0), (257, 0), (1, 150), (1, 25_600)] {
        let setting = InterruptCoalescing {
            threshold_entries: bad.0,
            time_us: bad.1,
        };
        assert!(setting.to_cdw11().is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn ethtool_constants_match_the_kernel_headers() {
    assert_eq!(ethtool::SIOCETHTOOL, 0x8946);
    assert_eq!(ethtool::ETHTOOL_GCOALESCE, 0x0e);
    assert_eq!(ethtool::ETHTOOL_SCOALESCE, 0x0f);
    // cmd + 22 __u32 fields.
    assert_eq!(ethtool::COALESCE_LEN, 92);
}

#[test]
fn ethtool_get_coalesce_is_cmd_then_zeroes() {
    let mut expected = [0u8; 92];
    expected[0] = 0x0e;
    assert_eq!(ethtool::get_coalesce(), expected);
}

#[test]
fn ethtool_set_coalesce_fields_are_in_kernel_order() {
    // Give every field a distinct value: field k (1-based after cmd) = 0x100 + k.
    let values = Coalesce {
        rx_coalesce_usecs: 0x101,
        rx_max_coalesced_frames: 0x102,
        rx_coalesce_usecs_irq: 0x103,
        rx_max_coalesced_frames_irq: 0x104,
        tx_coalesce_usecs: 0x105,
        tx_max_coalesced_frames: 0x106,
        tx_coalesce_usecs_irq: 0x107,
        tx_max_coalesced_frames_irq: 0x108,
        stats_block_coalesce_usecs: 0x109,
        use_adaptive_rx_coalesce: 0x10a,
        use_adaptive_tx_coalesce: 0x10b,
        pkt_rate_low: 0x10c,
        rx_coalesce_usecs_low: 0x10d,
        rx_max_coalesced_frames_low: 0x10e,
        tx_coalesce_usecs_low: 0x10f,
        tx_max_coalesced_frames_low: 0x110,
        pkt_rate_high: 0x111,
        rx_coalesce_usecs_high: 0x112,
        rx_max_coalesced_frames_high: 0x113,
        tx_coalesce_usecs_high: 0x114,
        tx_max_coalesced_frames_high: 0x115,
        rate_sample_interval: 0x116,
    };
    let mut expected = vec![0x0f, 0, 0, 0];
    for k in 1u8..=22 {
        expected.extend_from_slice(&[k, 0x01, 0, 0]);
    }
    let payload = ethtool::set_coalesce(&values);
    assert_eq!(payload.to_vec(), expected);
    assert_eq!(ethtool::parse(&payload), values);
}

#[test]
fn ethtool_rx_usecs_is_at_offset_4_and_tx_usecs_at_20() {
    let values = Coalesce {
        rx_coalesce_usecs: 50,
        tx_coalesce_usecs: 0x0102_0304,
        ..Coalesce::default()
    };
    let payload = ethtool::set_coalesce(&values);
    assert_eq!(&payload[4..8], &[50, 0, 0, 0]);
    assert_eq!(&payload[20..24], &[0x04, 0x03, 0x02, 0x01]);
}

#[test]
fn ethtool_args_list_only_changed_fields() {
    let from = Coalesce {
        rx_coalesce_usecs: 3,
        use_adaptive_rx_coalesce: 1,
        ..Coalesce::default()
    };
    let to = Coalesce {
        rx_coalesce_usecs: 50,
        tx_coalesce_usecs: 50,
        ..Coalesce::default()
    };
    assert_eq!(
        ethtool::ethtool_args(&from, &to).join(" "),
        "rx-usecs 50 tx-usecs 50 adaptive-rx off"
    );
}
