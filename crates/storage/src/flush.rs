//! The flusher: the one task per log that writes chunks and syncs (group commit).
//!
//! The owner spawns [`Log::run_flusher`] on the partition's core. It sleeps until there is
//! work, then runs rounds: write every queued chunk in order (one O_DIRECT write each, never
//! two writes of the same block in flight), then, if the durability mode asks for it, one
//! `fdatasync` that covers all of them. Appends that arrive during a round wait for the next
//! one, so the number of syncs per second stays bounded by the device while the number of
//! acknowledged batches per sync grows with concurrency.

use std::rc::Rc;

use shoal_io::{Disk, DmaBuf, DmaFile};

use crate::config::{Durability, Fallocation};
use crate::error::OfflineReason;
use crate::log::Log;
use crate::segment::{align_up, path_of, LOG_SUFFIX};
use crate::trailer::{Trailer, TRAILER_BYTES};

impl<D: Disk> Log<D> {
    /// Runs until the log is closed or goes offline. Spawn it once, on the owning core.
    pub async fn run_flusher(&self) {
        loop {
            let listener = self.inner.work.listen();
            let (has_work, done) = {
                let mut state = self.inner.state.borrow_mut();
                // An open chunk is written as soon as the flusher is free: waiting for it to
                // fill would only add latency, and both modes acknowledge no earlier than the
                // write. Batches that arrive meanwhile go to the next chunk (group commit).
                state.writer.seal_open();
                let unwritten = !state.writer.queued.is_empty();
                let unsynced = state.writer.synced_bytes < state.writer.written_bytes;
                let wants_sync = state.sync_requested && unsynced;
                if state.sync_requested && !unwritten && !unsynced {
                    state.sync_requested = false;
                }
                (
                    unwritten || wants_sync,
                    state.offline.is_some() || state.closed,
                )
            };
            if has_work && !done {
                if self.flush_round().await.is_err() {
                    return;
                }
                continue;
            }
            if done {
                return;
            }
            listener.await;
        }
    }

    /// Makes the whole synced extent knowable at recovery: when the newest trailer on disk
    /// does not yet cover the last write's data and the log is idle, rewrites the tail block
    /// unchanged with a fresh trailer. A partition with steady traffic needs none (each write's
    /// trailer covers the previous ones); the owner calls this periodically (the broker: every
    /// second), so a quiet partition's last write is confirmed within that period.
    pub async fn confirm_synced(&self) -> Result<(), crate::error::Error> {
        let _permit = self.inner.placement.acquire(1).await;
        let (chunk_bytes, file, next) = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            let writer = &state.writer;
            let idle = writer.open.is_none()
                && writer.queued.is_empty()
                && writer.synced_bytes == writer.written_bytes;
            if !idle || writer.synced_bytes <= writer.confirmed_bytes {
                return Ok(());
            }
            let chunk_bytes = writer.chunk_bytes_for(0, 0);
            let next = (state.log_end, state.next_index);
            (chunk_bytes, state.active().file.clone(), next)
        };
        let lease = self.inner.pool.lease(chunk_bytes).await;
        let buf = file.alloc_buf(chunk_bytes);
        {
            let mut state = self.inner.state.borrow_mut();
            state.check_usable()?;
            state.writer.queue_confirm(buf, lease, next);
        }
        self.inner.work.notify();
        Ok(())
    }

    /// Writes all queued chunks, then syncs if due. `Err` means the log went offline.
    async fn flush_round(&self) -> Result<(), ()> {
        let (chunks, file, path, (segment_base, segment_term, segment_index)) = {
            let mut state = self.inner.state.borrow_mut();
            let chunks: Vec<_> = state.writer.queued.drain(..).collect();
            // Until each write completes: a truncation waits for them (`truncate.rs`).
            state.writes_in_flight += chunks.len();
            let active = state.active();
            let path = path_of(&self.inner.dir, &active.stem(), LOG_SUFFIX);
            (
                chunks,
                active.file.clone(),
                path,
                (active.base, active.term, active.first_index),
            )
        };
        // In Fsync mode with nothing written-but-unsynced, each chunk goes out as one durable
        // (O_DSYNC) write: the same device work as write + fdatasync, one completion fewer.
        let durable_writes = {
            let state = self.inner.state.borrow();
            self.inner.config.borrow().durability == Durability::Fsync
                && state.writer.synced_bytes == state.writer.written_bytes
        };
        for mut chunk in chunks {
            let end = chunk.end_pos();
            // What is synced now was synced before this write is issued: the trailer's claim.
            let synced_before = self.inner.state.borrow().writer.synced_bytes;
            let trailer = Trailer {
                segment_base,
                segment_term,
                segment_index,
                data_start: chunk.data_start(),
                end_bytes: end,
                synced_before,
                next_offset: chunk.next_offset,
            };
            trailer.encode(&mut chunk.buf.as_bytes_mut()[chunk.used..]);
            let padded = align_up(end + TRAILER_BYTES as u64);
            self.ensure_allocated(&file, padded, &path).await?;
            let buf = Rc::new(chunk.buf);
            let expected = padded - chunk.file_pos;
            let written = if durable_writes {
                file.write_at_synced(buf, chunk.file_pos).await
            } else {
                file.write_at(buf, chunk.file_pos).await
            };
            let op = if durable_writes {
                "write with O_DSYNC (write + fdatasync)"
            } else {
                "write"
            };
            match written {
                Ok(written) if written as u64 >= expected => {}
                Ok(written) => {
                    let detail = format!("short DMA write: {written} of {expected} bytes");
                    self.fail(op, path, &std::io::Error::other(detail));
                    return Err(());
                }
                Err(error) => {
                    self.fail(op, path, &error);
                    return Err(());
                }
            }
            drop(chunk.lease);
            let mut state = self.inner.state.borrow_mut();
            assert!(
                end > state.writer.written_bytes
                    || (chunk.confirm && end == state.writer.written_bytes),
                "writes complete in order"
            );
            state.writes_in_flight -= 1;
            state.writer.written_bytes = end;
            state.writer.confirmed_bytes = synced_before;
            state.written_next = chunk.next_offset;
            state.written_next_index = chunk.next_index;
            state.stats.dma_writes += 1;
            if durable_writes {
                state.writer.synced_bytes = end;
                state.synced_next = chunk.next_offset;
                state.synced_next_index = chunk.next_index;
                state.batches_unsynced -= chunk.batches.min(state.batches_unsynced);
                state.stats.syncs += 1;
            }
            // A commit index past what was written waited for this write (replicated logs).
            if let Some(raft) = state.raft.as_mut() {
                raft.apply_commit_within(chunk.next_index);
            }
            drop(state);
            self.inner.progress.notify();
        }
        let sync_target = {
            let state = self.inner.state.borrow();
            let fsync = self.inner.config.borrow().durability == Durability::Fsync;
            let unsynced = state.writer.synced_bytes < state.writer.written_bytes;
            (unsynced && (fsync || state.sync_requested)).then_some((
                (state.written_next, state.written_next_index),
                state.writer.written_bytes,
                state.batches_unsynced,
            ))
        };
        if let Some(((next, next_index), bytes, batches)) = sync_target {
            if let Err(error) = file.fdatasync().await {
                self.fail("fdatasync", path, &error);
                return Err(());
            }
            let mut state = self.inner.state.borrow_mut();
            state.synced_next = next;
            state.synced_next_index = next_index;
            state.writer.synced_bytes = bytes;
            state.batches_unsynced -= batches.min(state.batches_unsynced);
            state.stats.syncs += 1;
            let drained = state.writer.queued.is_empty() && state.writer.open.is_none();
            if drained && state.synced_next == state.log_end {
                state.sync_requested = false;
            }
            drop(state);
            self.inner.progress.notify();
        }
        Ok(())
    }

    /// Reserves blocks ahead of a write, per the fallocation policy. The step shrinks when
    /// free space is short (an eighth of what is free, at least one block), so a nearly full
    /// disk is not filled by reservations alone.
    async fn ensure_allocated(
        &self,
        file: &Rc<D::File>,
        end: u64,
        path: &std::path::Path,
    ) -> Result<(), ()> {
        let (policy, step_max) = self.fallocation();
        if policy == Fallocation::None {
            return Ok(());
        }
        if end <= self.inner.state.borrow().writer.allocated_bytes {
            return Ok(());
        }
        let free = self.inner.disk.free_bytes(&self.inner.dir).unwrap_or(0);
        let step = align_up((free / 8).min(step_max)).max(4096);
        let target = end + step;
        let keep_size = policy == Fallocation::FallocateAhead;
        if let Err(error) = file.allocate(target, keep_size).await {
            return {
                self.fail("fallocate", path.to_path_buf(), &error);
                Err(())
            };
        }
        self.inner.state.borrow_mut().writer.allocated_bytes = target;
        Ok(())
    }

    fn fail(&self, op: &str, path: std::path::PathBuf, error: &std::io::Error) {
        self.go_offline(OfflineReason::from_io(op, path, error));
    }
}
