//! A global allocator that turns huge allocation requests into lazy address-space
//! reservations instead of process aborts.
//!
//! Why: the Kafka codec (`kafka-protocol` 0.18) sizes a `Vec` from an array length read off the
//! wire before reading any element. A 49-byte request claiming 2^31 elements asks for ~100 GB;
//! the system allocator refuses, and Rust aborts the whole broker (every core) on allocation
//! failure. With this allocator, requests of at least [`RESERVE_THRESHOLD_BYTES`] become
//! `mmap(MAP_NORESERVE)` mappings: Linux grants them without committing memory (even in its
//! default heuristic overcommit mode), the decoder then fails cleanly on the short frame, and
//! the untouched mapping is released. Real allocations of that size would commit pages as they
//! are written, exactly as with the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{null_mut, NonNull};

/// Allocations this large or larger are reservations. Nothing in the broker allocates 1 GiB
/// at once on purpose (requests are capped at `request_bytes_max`, 100 MiB by default).
pub const RESERVE_THRESHOLD_BYTES: usize = 1 << 30;

/// Page-aligned mappings satisfy any alignment up to the page size.
const PAGE_BYTES: usize = 4096;

pub struct ReservingAllocator;

fn reserved(layout: &Layout) -> bool {
    layout.size() >= RESERVE_THRESHOLD_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from an
// anonymous private mapping of exactly `layout.size()` bytes (and unmapped with that size);
// which one is decided by the same pure function of the layout on both paths.
unsafe impl GlobalAlloc for ReservingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserved(&layout) {
            // SAFETY: forwarded with the caller's guarantees (non-zero size layout).
            return unsafe { System.alloc(layout) };
        }
        let flags = rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE;
        let protection = rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing aliases no
        // existing memory.
        match unsafe { rustix::mm::mmap_anonymous(null_mut(), layout.size(), protection, flags) } {
            Ok(pointer) => pointer.cast(),
            Err(_) => null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserved(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // Anonymous mappings read as zeros.
        // SAFETY: same contract as `alloc`.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if !reserved(&layout) {
            // SAFETY: `pointer` came from `System.alloc` with this layout (see `alloc`).
            return unsafe { System.dealloc(pointer, layout) };
        }
        if let Some(pointer) = NonNull::new(pointer) {
            // SAFETY: `pointer` is the start of a mapping of exactly `layout.size()` bytes made
            // by `alloc`, and the caller no longer uses it. A failure can only leak the range.
            let _ = unsafe { rustix::mm::munmap(pointer.as_ptr().cast(), layout.size()) };
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !reserved(&layout) && !reserved(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // Crossing the threshold (or staying above it): allocate, copy, free.
        // SAFETY: `new_layout` is valid; the old block is live for `layout.size()` bytes.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                std::ptr::copy_nonoverlapping(pointer, fresh, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_request_is_reserved_not_refused() {
        let layout = Layout::from_size_align(200 << 30, 8).expect("layout");
        // SAFETY: the layout is non-zero; the pointer is freed with the same layout.
        unsafe {
            let pointer = ReservingAllocator.alloc(layout);
            assert!(
                !pointer.is_null(),
                "200 GiB of address space must be reservable"
            );
            pointer.write(7);
            assert_eq!(pointer.read(), 7);
            ReservingAllocator.dealloc(pointer, layout);
        }
    }

    #[test]
    fn small_allocations_go_to_the_system_allocator_and_grow_across_the_threshold() {
        let small = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: sizes are non-zero; every block is freed with the layout it has.
        unsafe {
            let pointer = ReservingAllocator.alloc(small);
            assert!(!pointer.is_null());
            pointer.write_bytes(9, 64);
            let grown = ReservingAllocator.realloc(pointer, small, RESERVE_THRESHOLD_BYTES);
            assert!(!grown.is_null());
            assert_eq!(
                grown.add(63).read(),
                9,
                "contents survive the move to a mapping"
            );
            let big = Layout::from_size_align(RESERVE_THRESHOLD_BYTES, 8).expect("layout");
            ReservingAllocator.dealloc(grown, big);
        }
    }
}
