//! Building a glommio `LocalExecutor` pinned to one CPU.
//!
//! Every option that affects latency is a field of [`ExecutorOptions`] with no default, so a
//! glommio upgrade cannot silently change how the broker behaves.

use std::future::Future;
use std::io;
use std::time::Duration;

use glommio::{
    CpuSet, ExecutorJoinHandle, LocalExecutor, LocalExecutorBuilder, Placement, PoolPlacement,
};

use crate::error::to_io_error;

/// Where glommio's blocking thread (one thread; it runs `ftruncate`, `rename`, `unlink` and
/// the metadata work of [`crate::GlommioDisk`]) is allowed to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingThread {
    /// Pinned to this CPU. Using the executor's own CPU keeps the other cores undisturbed, at
    /// the cost of competing with the reactor while a metadata syscall runs.
    Cpu(usize),
    /// Left to the OS scheduler.
    Unpinned,
}

/// Configuration of one per-core executor. All fields are required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorOptions {
    /// Thread name (shows in `top -H`, `perf`, panics).
    pub name: String,
    /// The CPU the executor thread is pinned to.
    pub cpu: usize,
    /// Bytes of DMA memory registered with io_uring up front (glommio rounds up to 4 KiB, at
    /// least 64 KiB). Buffers beyond it come from the heap and use unregistered I/O. Size it to
    /// the storage buffer pool so the hot path stays on registered buffers. The memory is
    /// locked: the process needs `RLIMIT_MEMLOCK` for it (or `CAP_IPC_LOCK`).
    pub io_memory_bytes: usize,
    /// io_uring submission queue depth (per ring).
    pub ring_depth: usize,
    /// How long a task queue runs before the executor checks whether another must run.
    pub preempt_timer: Duration,
    /// Busy-poll this long before parking the thread when idle. `None`: park immediately
    /// (frees the core, costs a wakeup on the next request). `Some`: lower latency, burns CPU.
    pub spin_before_park: Option<Duration>,
    /// Placement of the blocking thread.
    pub blocking_thread: BlockingThread,
}

impl ExecutorOptions {
    /// A glommio builder with every option set explicitly.
    ///
    /// Fails if a CPU named in the options is not online.
    pub fn builder(&self) -> io::Result<LocalExecutorBuilder> {
        let online = CpuSet::online().map_err(to_io_error)?;
        for cpu in self.cpus() {
            if online.clone().filter(|l| l.cpu == cpu).is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("executor {:?}: cpu {cpu} is not online", self.name),
                ));
            }
        }
        let blocking = match self.blocking_thread {
            BlockingThread::Cpu(cpu) => {
                PoolPlacement::Custom(vec![online.filter(|l| l.cpu == cpu)])
            }
            BlockingThread::Unpinned => PoolPlacement::Unbound(1),
        };
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(self.cpu))
            .name(&self.name)
            .io_memory(self.io_memory_bytes)
            .ring_depth(self.ring_depth)
            .preempt_timer(self.preempt_timer)
            .record_io_latencies(false)
            .detect_stalls(None)
            .blocking_thread_pool_placement(blocking);
        if let Some(spin) = self.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        Ok(builder)
    }

    /// Creates the executor on the current thread (and pins the current thread to `cpu`).
    pub fn make(&self) -> io::Result<LocalExecutor> {
        self.builder()?.make().map_err(to_io_error)
    }

    /// Starts the executor on a new thread and runs `fut_gen()` on it. The future may be
    /// `!Send`: only the generator crosses threads.
    pub fn spawn<G, F, T>(&self, fut_gen: G) -> io::Result<ExecutorJoinHandle<T>>
    where
        G: FnOnce() -> F + Send + 'static,
        F: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.builder()?.spawn(fut_gen).map_err(to_io_error)
    }

    fn cpus(&self) -> impl Iterator<Item = usize> {
        let blocking = match self.blocking_thread {
            BlockingThread::Cpu(cpu) => Some(cpu),
            BlockingThread::Unpinned => None,
        };
        std::iter::once(self.cpu).chain(blocking)
    }
}

/// The CPUs this process may run on (its affinity mask, as set by `taskset` or a cgroup
/// cpuset), in increasing order. Executors are placed on these so that `taskset -c 2,3 shoal`
/// keeps the broker on CPUs 2 and 3 instead of pinning it to 0 and 1 regardless. Falls back to
/// every online CPU if the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    let online: Vec<usize> = CpuSet::online()
        .map(|set| set.into_iter().map(|l| l.cpu).collect())
        .unwrap_or_default();
    let allowed: Vec<usize> = match rustix::thread::sched_getaffinity(None) {
        Ok(mask) => online
            .iter()
            .copied()
            .filter(|&cpu| mask.is_set(cpu))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut cpus = if allowed.is_empty() { online } else { allowed };
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}
