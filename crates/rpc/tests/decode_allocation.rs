//! The decoder's memory bound, measured: whatever the bytes declare (an envelope count up to
//! the limit, body lengths up to 4 GiB), decoding allocates in proportion to the bytes that
//! are actually there, and never more than the frame limit.
//!
//! A counting global allocator records, per thread, the bytes requested while a decode runs;
//! proptest's own allocations on the same thread happen outside that window.
// The allocator shim is the only unsafe code in this crate, and it exists only in this test.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::prelude::*;
use shoal_model::NodeId;
use shoal_rpc::{
    decode_frame, encode_frame, ClusterId, Envelope, FrameHeader, Incarnation,
    ENVELOPES_PER_FRAME_MAX, ENVELOPE_HEADER_BYTES, FRAME_BYTES_MAX, FRAME_HEADER_BYTES,
    FRAME_PREFIX_BYTES,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static REQUESTED_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = REQUESTED_BYTES.try_with(|total| total.set(total.get() + bytes));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the bookkeeping touches only const-initialised thread-local Cells,
// which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc` or `realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated by `decode_frame(frame)`, whatever it returns.
fn bytes_allocated_decoding(frame: &Bytes) -> usize {
    REQUESTED_BYTES.with(|total| total.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = decode_frame(frame);
    COUNTING.with(|counting| counting.set(false));
    drop(result);
    REQUESTED_BYTES.with(Cell::get)
}

/// What decoding `len` bytes may allocate: one `Envelope` per envelope header the bytes can
/// hold, plus the shared handle `Bytes` creates on its first slice.
fn allowance(len: usize) -> usize {
    let envelopes = len.saturating_sub(FRAME_HEADER_BYTES) / ENVELOPE_HEADER_BYTES;
    std::mem::size_of::<Envelope>() * envelopes + 256
}

/// A frame with a valid magic, version and CRC, so decoding reaches the envelopes, declaring
/// `count` envelopes and followed by `tail`.
fn sealed(count: u32, tail: &[u8]) -> Bytes {
    let header = FrameHeader {
        cluster_id: ClusterId([1; 16]),
        source_node: NodeId(1),
        source_incarnation: Incarnation(1),
        destination_node: NodeId(2),
    };
    let mut out = Vec::new();
    encode_frame(&header, &[], &mut out).expect("empty frame");
    let mut frame = out.split_off(FRAME_PREFIX_BYTES);
    frame[42..46].copy_from_slice(&count.to_be_bytes());
    frame.extend_from_slice(tail);
    let crc = crc32c::crc32c(&frame[10..]);
    frame[6..10].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(frame)
}

#[test]
fn a_short_frame_declaring_the_most_envelopes_allocates_for_what_it_holds() {
    let count = u32::try_from(ENVELOPES_PER_FRAME_MAX).expect("fits");
    // Two real envelope headers (empty bodies), then the frame ends.
    let frame = sealed(count, &[0; 2 * ENVELOPE_HEADER_BYTES]);
    assert!(decode_frame(&frame).is_err());
    let allocated = bytes_allocated_decoding(&frame);
    assert!(
        allocated <= allowance(frame.len()),
        "{allocated} bytes allocated for a {}-byte frame",
        frame.len()
    );
}

#[test]
fn a_frame_declaring_a_4_gib_body_allocates_nothing_for_it() {
    let mut envelope = vec![0, 0, 0, 2];
    envelope.extend_from_slice(&u32::MAX.to_be_bytes());
    let frame = sealed(1, &envelope);
    assert!(decode_frame(&frame).is_err());
    assert!(bytes_allocated_decoding(&frame) <= allowance(frame.len()));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_nor_allocate_past_the_bound(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let frame = Bytes::from(bytes);
        let allocated = bytes_allocated_decoding(&frame);
        prop_assert!(allocated <= allowance(frame.len()));
        prop_assert!(allocated <= FRAME_BYTES_MAX);
    }

    #[test]
    fn arbitrary_sealed_frames_never_panic_nor_allocate_past_the_bound(
        count in prop_oneof![0u32..64, any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let frame = sealed(count, &tail);
        let allocated = bytes_allocated_decoding(&frame);
        prop_assert!(
            allocated <= allowance(frame.len()),
            "{} bytes allocated for a {}-byte frame", allocated, frame.len()
        );
        prop_assert!(allocated <= FRAME_BYTES_MAX);
    }
}
