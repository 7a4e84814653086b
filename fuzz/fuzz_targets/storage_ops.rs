//! The storage API driven by fuzzer bytes: each step reads an operation and its arguments
//! (appends of arbitrary or damaged batches, reads and DeleteRecords at any offset, new terms,
//! configs at their limits, injected EIO/ENOSPC, power cuts and restarts) and runs it on a log
//! on the simulated disk. Nothing may panic or stall, and a usable log keeps
//! `log_start <= high_watermark <= log_end`. `crates/storage/tests/hostile_ops.rs` is the
//! same idea as a property test in CI.
#![no_main]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use libfuzzer_sys::fuzz_target;
use shoal_model::{Offset, Term, TimestampMs};
use shoal_sim_disk::{CutMode, SimDisk};
use shoal_storage::{BatchCache, BufferPool, Durability, Log, LogConfig, LogContext, Wait};

struct Clock(Cell<i64>);

impl shoal_io::Clock for Clock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }
    fn offset(&mut self) -> Option<i64> {
        Some(match self.byte()? {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => -1,
            b => i64::from(b) - 3,
        })
    }
    fn take(&mut self, len: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
}

struct World {
    exec: LocalPool,
    disk: SimDisk,
    clock: Rc<Clock>,
    pool: BufferPool,
    config: LogConfig,
    log: Option<Log<SimDisk>>,
}

impl World {
    fn open(&mut self) {
        self.exec = LocalPool::new();
        let ctx = LogContext {
            disk: Rc::new(self.disk.clone()),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            cache: BatchCache::new(16 * 1024),
        };
        let opened = finish(&mut self.exec, Log::open(ctx, PathBuf::from("/d/t-0"), self.config.clone()));
        self.log = opened.ok();
        if let Some(log) = &self.log {
            let flusher = log.clone();
            let _ = self.exec.spawner().spawn_local(async move { flusher.run_flusher().await });
        }
    }
}

/// Runs `future` to completion with no outside help: a stall is a hang, a bug.
fn finish<T: 'static>(exec: &mut LocalPool, future: impl Future<Output = T> + 'static) -> T {
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let out = slot.clone();
    exec.spawner()
        .spawn_local(async move { *out.borrow_mut() = Some(future.await) })
        .expect("spawn");
    exec.run_until_stalled();
    let done = slot.borrow_mut().take();
    done.expect("an operation never completed")
}

fn batch(input: &mut Bytes<'_>, tag: u64) -> Vec<u8> {
    let value_bytes = usize::from(input.u16().unwrap_or(10)) * 4;
    let value = format!("#{tag}:").into_bytes().into_iter().chain(std::iter::repeat_n(b'v', value_bytes)).collect::<Vec<_>>();
    let mut bytes = shoal_storage::build_batch(&[&value, b"second"], tag as i64);
    match input.byte().unwrap_or(0) % 4 {
        0 => {}
        1 => {
            let at = usize::from(input.u16().unwrap_or(0)) % bytes.len();
            bytes[at] ^= input.byte().unwrap_or(1) | 1;
        }
        2 => bytes.truncate(usize::from(input.u16().unwrap_or(0)) % bytes.len()),
        _ => {
            let raw = input.take(64).to_vec();
            bytes = raw;
        }
    }
    bytes
}

fn step(world: &mut World, input: &mut Bytes<'_>, tag: u64) -> Option<()> {
    let op = input.byte()?;
    let Some(log) = world.log.clone() else {
        world.disk.set_capacity_bytes(None);
        world.disk.clear_faults();
        world.open();
        return Some(());
    };
    let exec = &mut world.exec;
    match op % 16 {
        0..=4 => {
            let bytes = batch(input, tag);
            let wait = if op & 0x10 == 0 { Wait::Durable } else { Wait::Buffered };
            let _ = finish(exec, async move { log.append(bytes, wait).await });
        }
        5 => {
            let (offset, max) = (input.offset()?, usize::from(input.u16()?) * 16);
            let _ = finish(exec, async move { log.read(Offset(offset), max).await });
        }
        6 => {
            let offset = input.offset()?;
            let _ = finish(exec, async move { log.delete_records(Offset(offset)).await });
        }
        7 => {
            let term = i32::from(input.byte()?) - 3;
            let _ = finish(exec, async move { log.set_term(Term(term)).await });
        }
        8 => {
            let flags = input.byte()?;
            world.config = LogConfig {
                segment_bytes_max: [1 << 20, 8192, 64][usize::from(flags % 3)],
                index_interval_bytes: [0, 1, 4096][usize::from((flags >> 2) % 3)],
                durability: if flags & 0x10 == 0 {
                    Durability::Fsync
                } else {
                    Durability::Relaxed { flush_messages: 3, flush_ms: 1000 }
                },
                batch_bytes_max: [0, 100, 1 << 20][usize::from((flags >> 5) % 3)],
                write_chunk_bytes: if flags & 0x80 == 0 { 4096 } else { 1 << 20 },
                retention_bytes: (flags & 0x40 != 0).then_some(5000),
                ..world.config.clone()
            };
            let next = world.config.clone();
            let _ = finish(exec, async move { log.reconfigure(next).await });
        }
        9 => {
            let _ = finish(exec, async move { log.enforce_retention().await });
        }
        10 => {
            let _ = finish(exec, async move {
                let _ = log.checkpoint().await;
                let _ = log.confirm_synced().await;
                log.sync().await
            });
        }
        11 => {
            let ts = input.offset()?;
            let _ = finish(exec, async move {
                let _ = log.max_timestamp().await;
                log.offset_for_timestamp(TimestampMs(ts)).await
            });
            let _ = world.log.as_ref().map(|l| l.epoch_end_offset(Term(i32::from(op) - 3)));
        }
        12 => world.disk.fail_write(u32::from(input.byte()? % 4), if op & 0x10 == 0 { 5 } else { 28 }),
        13 => world.disk.fail_sync(u32::from(input.byte()? % 4), 5),
        14 => world.disk.set_capacity_bytes(Some(u64::from(input.u16()?) * 8)),
        _ => {
            drop(log);
            world.log = None;
            if op & 0x10 != 0 {
                world.disk.power_cut(u64::from(input.byte()?), CutMode::Adversarial);
            }
            world.clock.0.set(world.clock.0.get() + i64::from(input.byte()?) * 3_600_000);
            world.disk.clear_faults();
            world.open();
            return Some(());
        }
    }
    match &world.log {
        Some(log) if log.offline_reason().is_none() => {
            let o = log.offsets();
            assert!(o.log_start <= o.high_watermark && o.high_watermark <= o.log_end, "{o:?}");
        }
        Some(_) => world.open(), // The broker reopens an offline log.
        None => {}
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let mut world = World {
        exec: LocalPool::new(),
        disk: SimDisk::new(),
        clock: Rc::new(Clock(Cell::new(1_700_000_000_000))),
        pool: BufferPool::new(96 * 1024),
        config: LogConfig {
            segment_bytes_max: 8192,
            write_chunk_bytes: 4096,
            fallocation_step_bytes_max: 16 * 1024,
            ..LogConfig::default()
        },
        log: None,
    };
    world.open();
    let mut input = Bytes(data);
    let mut tag = 0;
    while step(&mut world, &mut input, tag).is_some() {
        tag += 1;
    }
});
