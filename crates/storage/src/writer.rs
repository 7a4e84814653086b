//! The active segment's write state: aligned chunks filled by appends and drained, in order,
//! by the log's flusher.
//!
//! ## The partial tail block
//! O_DIRECT writes whole 4 KiB blocks, but batches end anywhere. A chunk therefore starts at the
//! block that holds the current end of the log and begins with a copy of that block's bytes
//! (`tail_block`). Writing the chunk rewrites that block with the same prefix plus new bytes.
//! A torn write leaves each 512-byte sector all old or all new, and both versions hold the same
//! bytes below the old end, so a rewrite can never damage data that was already written or
//! synced. Two writes of the same block are never in flight at once (the flusher writes chunks
//! one after another), so an older version cannot land after a newer one. Bytes after the
//! logical end inside the last block are zeroed before the write, so stale buffer memory never
//! reaches the disk where recovery could mistake it for a batch; the first 64 of them hold the
//! write's sync trailer (`trailer.rs`), which every chunk has room for.

use std::collections::VecDeque;

use shoal_io::DmaBuf;
use shoal_model::constants::DMA_ALIGNMENT_BYTES;
use shoal_model::Offset;

use crate::pool::Lease;
use crate::segment::{align_down, align_up};
use crate::trailer::TRAILER_BYTES;

const BLOCK_BYTES: usize = DMA_ALIGNMENT_BYTES as usize;

pub(crate) struct Chunk<B> {
    pub(crate) buf: B,
    pub(crate) lease: Lease,
    /// Aligned segment position of `buf[0]`.
    pub(crate) file_pos: u64,
    /// Bytes of `buf` holding log data (inherited tail prefix included).
    pub(crate) used: usize,
    /// Bytes inherited from the previous chunk's last block.
    pub(crate) inherited: usize,
    /// The offset after the last batch in this chunk.
    pub(crate) next_offset: Offset,
    /// The Raft index after the last batch in this chunk (a replicated log's; a plain log
    /// counts batches from its opening, unused).
    pub(crate) next_index: u64,
    /// Appends (batches) placed in this chunk.
    pub(crate) batches: u64,
    /// A chunk with no new data, written only to carry a trailer that confirms the synced
    /// extent (`Log::confirm_synced`).
    pub(crate) confirm: bool,
}

impl<B: DmaBuf> Chunk<B> {
    pub(crate) fn capacity(&self) -> usize {
        self.buf.as_bytes().len()
    }

    pub(crate) fn end_pos(&self) -> u64 {
        self.file_pos + self.used as u64
    }

    /// Where this chunk's new bytes start: the log's end before it.
    pub(crate) fn data_start(&self) -> u64 {
        self.file_pos + self.inherited as u64
    }
}

/// Write state of the active segment. Positions are bytes within the segment file.
pub(crate) struct Writer<B> {
    pub(crate) open: Option<Chunk<B>>,
    pub(crate) queued: VecDeque<Chunk<B>>,
    /// The bytes of the block at `align_down(appended_bytes)` below `appended_bytes`.
    tail_block: Vec<u8>,
    pub(crate) appended_bytes: u64,
    pub(crate) written_bytes: u64,
    pub(crate) synced_bytes: u64,
    /// Blocks reserved by fallocation (or already present in a recycled file).
    pub(crate) allocated_bytes: u64,
    /// The synced extent the newest written trailer records.
    pub(crate) confirmed_bytes: u64,
}

impl<B: DmaBuf> Writer<B> {
    /// A writer for a segment whose first `end_bytes` are on disk and synced; `tail` holds
    /// the bytes of the block containing `end_bytes` (below it).
    pub(crate) fn resume(end_bytes: u64, tail: &[u8], allocated_bytes: u64) -> Writer<B> {
        assert_eq!(tail.len() as u64, end_bytes - align_down(end_bytes));
        let mut tail_block = Vec::with_capacity(BLOCK_BYTES);
        tail_block.extend_from_slice(tail);
        Writer {
            open: None,
            queued: VecDeque::new(),
            tail_block,
            appended_bytes: end_bytes,
            written_bytes: end_bytes,
            synced_bytes: end_bytes,
            allocated_bytes,
            // Recovery truncates a segment's trailer away; the first confirm restores one.
            confirmed_bytes: 0,
        }
    }

    /// Whether `len` more bytes fit in the open chunk (with room left for its trailer).
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.open
            .as_ref()
            .is_some_and(|c| c.used + len + TRAILER_BYTES <= c.capacity())
    }

    /// The capacity a new chunk needs to take a batch of `len` bytes after the inherited tail.
    pub(crate) fn chunk_bytes_for(&self, len: usize, chunk_bytes_min: usize) -> usize {
        // The new chunk inherits the partial block at the current end (not `tail_block`,
        // which lags until the open chunk is sealed).
        let partial = self.appended_bytes - align_down(self.appended_bytes);
        let needed = align_up(partial + (len + TRAILER_BYTES) as u64) as usize;
        needed.max(chunk_bytes_min)
    }

    /// Queues the open chunk (if it holds new data) and installs `buf` as the new open chunk,
    /// starting with a copy of the partial tail block.
    pub(crate) fn start_chunk(&mut self, buf: B, lease: Lease, next: (Offset, u64)) {
        self.start(buf, lease, next, false);
    }

    /// Queues a chunk that rewrites the tail block unchanged, to carry a fresh trailer.
    pub(crate) fn queue_confirm(&mut self, buf: B, lease: Lease, next: (Offset, u64)) {
        self.start(buf, lease, next, true);
        self.seal_open();
    }

    /// Installs a new open chunk; `next` is the (offset, index) after the log's last batch.
    fn start(&mut self, mut buf: B, lease: Lease, next: (Offset, u64), confirm: bool) {
        let (next_offset, next_index) = next;
        self.seal_open();
        let inherited = self.tail_block.len();
        buf.as_bytes_mut()[..inherited].copy_from_slice(&self.tail_block);
        let file_pos = align_down(self.appended_bytes);
        assert_eq!(file_pos + inherited as u64, self.appended_bytes);
        self.open = Some(Chunk {
            buf,
            lease,
            file_pos,
            used: inherited,
            inherited,
            next_offset,
            next_index,
            batches: 0,
            confirm,
        });
    }

    /// Copies a stamped batch into the open chunk. The caller checked `fits`. `next` is the
    /// (offset, index) after the batch.
    pub(crate) fn place(&mut self, batch: &[u8], next: (Offset, u64)) -> u64 {
        let (next_offset, next_index) = next;
        let chunk = self.open.as_mut().expect("caller ensured an open chunk");
        assert!(chunk.used + batch.len() <= chunk.capacity());
        let pos = chunk.end_pos();
        assert_eq!(pos, self.appended_bytes);
        chunk.buf.as_bytes_mut()[chunk.used..chunk.used + batch.len()].copy_from_slice(batch);
        chunk.used += batch.len();
        chunk.next_offset = next_offset;
        assert_eq!(chunk.next_index + 1, next_index, "one index per batch");
        chunk.next_index = next_index;
        chunk.batches += 1;
        self.appended_bytes += batch.len() as u64;
        pos
    }

    /// Moves the open chunk to the write queue: zero the slack of its last block, remember the
    /// new partial tail block, trim the buffer to whole blocks.
    pub(crate) fn seal_open(&mut self) {
        let Some(mut chunk) = self.open.take() else {
            return;
        };
        if chunk.used == chunk.inherited && !chunk.confirm {
            return; // Nothing new: rewriting the tail block would be wasted I/O.
        }
        // The padding holds the trailer, filled in by the flusher when it issues the write.
        let padded = align_up((chunk.used + TRAILER_BYTES) as u64) as usize;
        assert!(
            padded <= chunk.capacity(),
            "every chunk has room for its trailer"
        );
        let bytes = chunk.buf.as_bytes_mut();
        bytes[chunk.used..padded].fill(0);
        let tail_from = align_down(chunk.used as u64) as usize;
        self.tail_block.clear();
        self.tail_block
            .extend_from_slice(&bytes[tail_from..chunk.used]);
        chunk.buf.trim_to_size(padded);
        self.queued.push_back(chunk);
    }
}
