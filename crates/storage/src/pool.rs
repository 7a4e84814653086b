//! The per-core DMA buffer budget.
//!
//! Owned by one core and shared (`Rc`) by every log on it. A write chunk leases pages from the
//! pool before it takes an aligned buffer from the file (on glommio that buffer is carved from
//! the executor's pre-registered io_uring arena, which the runtime sizes to cover this budget).
//! When the budget is spent, appends wait in arrival order until a chunk's DMA write completes
//! and returns its pages: exhaustion is backpressure, never a fresh allocation.

use shoal_model::constants::DMA_ALIGNMENT_BYTES;

use crate::sync::{FifoSemaphore, Permit};

const PAGE_BYTES: usize = DMA_ALIGNMENT_BYTES as usize;

#[derive(Clone)]
pub struct BufferPool {
    pages: FifoSemaphore,
}

/// Pages held by one write chunk; returned to the pool on drop.
pub(crate) struct Lease {
    _permit: Permit,
}

impl BufferPool {
    pub fn new(budget_bytes: usize) -> BufferPool {
        assert!(budget_bytes >= PAGE_BYTES, "a pool needs at least one page");
        BufferPool {
            pages: FifoSemaphore::new(budget_bytes / PAGE_BYTES),
        }
    }

    pub fn budget_bytes(&self) -> usize {
        self.pages.permits_total() * PAGE_BYTES
    }

    pub fn used_bytes(&self) -> usize {
        (self.pages.permits_total() - self.pages.permits_available()) * PAGE_BYTES
    }

    /// Waits (in FIFO order) until `len_bytes` (a multiple of the page size) are free.
    pub(crate) async fn lease(&self, len_bytes: usize) -> Lease {
        assert!(len_bytes.is_multiple_of(PAGE_BYTES));
        assert!(
            len_bytes <= self.budget_bytes(),
            "lease larger than the whole pool"
        );
        Lease {
            _permit: self.pages.acquire(len_bytes / PAGE_BYTES).await,
        }
    }
}
