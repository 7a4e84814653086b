//! Single-core async primitives: an event that wakes every listener, and a FIFO semaphore.
//!
//! Both live on one core (`Rc`, `RefCell`, `!Send`) and never hold a `RefCell` borrow across
//! an `.await`. They are runtime-free so the log can run on glommio and on the simulator.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every waiting listener when notified. A listener created before a notification
/// completes; one created after waits for the next.
#[derive(Clone, Default)]
pub(crate) struct Event {
    inner: Rc<RefCell<EventInner>>,
}

#[derive(Default)]
struct EventInner {
    generation: u64,
    wakers: Vec<Waker>,
}

impl Event {
    pub(crate) fn notify(&self) {
        let wakers = {
            let mut inner = self.inner.borrow_mut();
            inner.generation += 1;
            std::mem::take(&mut inner.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that resolves at the next `notify` after this call.
    pub(crate) fn listen(&self) -> Listener {
        let generation = self.inner.borrow().generation;
        Listener {
            inner: self.inner.clone(),
            generation,
        }
    }
}

pub(crate) struct Listener {
    inner: Rc<RefCell<EventInner>>,
    generation: u64,
}

impl Future for Listener {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.generation != self.generation {
            return Poll::Ready(());
        }
        if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            inner.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A counting semaphore that grants permits strictly in arrival order, so a large request is
/// not starved by a stream of small ones.
#[derive(Clone)]
pub(crate) struct FifoSemaphore {
    inner: Rc<RefCell<SemInner>>,
}

struct SemInner {
    permits_total: usize,
    permits_available: usize,
    next_ticket: u64,
    queue: VecDeque<(u64, usize, Option<Waker>)>,
}

impl FifoSemaphore {
    pub(crate) fn new(permits_total: usize) -> FifoSemaphore {
        let inner = SemInner {
            permits_total,
            permits_available: permits_total,
            next_ticket: 0,
            queue: VecDeque::new(),
        };
        FifoSemaphore {
            inner: Rc::new(RefCell::new(inner)),
        }
    }

    pub(crate) fn permits_total(&self) -> usize {
        self.inner.borrow().permits_total
    }

    pub(crate) fn permits_available(&self) -> usize {
        self.inner.borrow().permits_available
    }

    /// Waits for `count` permits. Panics if `count` exceeds the total (it could never be met).
    pub(crate) fn acquire(&self, count: usize) -> Acquire {
        assert!(
            count <= self.permits_total(),
            "request of {count} permits can never be met"
        );
        Acquire {
            sem: self.clone(),
            count,
            ticket: None,
        }
    }

    /// Takes `count` permits now if nobody is queued and enough are free.
    #[cfg(test)]
    pub(crate) fn try_acquire(&self, count: usize) -> Option<Permit> {
        let mut inner = self.inner.borrow_mut();
        if inner.queue.is_empty() && inner.permits_available >= count {
            inner.permits_available -= count;
            return Some(Permit {
                sem: self.clone(),
                count,
            });
        }
        None
    }

    fn release(&self, count: usize) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.permits_available += count;
            assert!(inner.permits_available <= inner.permits_total);
            inner.head_waker_if_satisfiable()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl SemInner {
    fn head_waker_if_satisfiable(&mut self) -> Option<Waker> {
        let available = self.permits_available;
        match self.queue.front_mut() {
            Some((_, need, waker)) if *need <= available => waker.take(),
            _ => None,
        }
    }
}

/// Permits held until dropped.
pub(crate) struct Permit {
    sem: FifoSemaphore,
    count: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.count > 0 {
            self.sem.release(self.count);
        }
    }
}

pub(crate) struct Acquire {
    sem: FifoSemaphore,
    count: usize,
    ticket: Option<u64>,
}

impl Future for Acquire {
    type Output = Permit;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let count = self.count;
        let sem = self.sem.clone();
        let mut inner = sem.inner.borrow_mut();
        let ticket = match self.ticket {
            Some(ticket) => ticket,
            None => {
                if inner.queue.is_empty() && inner.permits_available >= count {
                    inner.permits_available -= count;
                    drop(inner);
                    return Poll::Ready(Permit { sem, count });
                }
                let ticket = inner.next_ticket;
                inner.next_ticket += 1;
                inner
                    .queue
                    .push_back((ticket, count, Some(cx.waker().clone())));
                self.ticket = Some(ticket);
                return Poll::Pending;
            }
        };
        let at_head = inner.queue.front().map(|(t, _, _)| *t) == Some(ticket);
        if at_head && inner.permits_available >= count {
            inner.permits_available -= count;
            let _ = inner.queue.pop_front();
            self.ticket = None;
            // The next in line may fit into what is left.
            let next = inner.head_waker_if_satisfiable();
            drop(inner);
            if let Some(waker) = next {
                waker.wake();
            }
            return Poll::Ready(Permit { sem, count });
        }
        if let Some(entry) = inner.queue.iter_mut().find(|(t, _, _)| *t == ticket) {
            entry.2 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        // A cancelled waiter leaves the queue; whoever is now at the head may proceed.
        let Some(ticket) = self.ticket else { return };
        let waker = {
            let mut inner = self.sem.inner.borrow_mut();
            inner.queue.retain(|(t, _, _)| *t != ticket);
            inner.head_waker_if_satisfiable()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn fifo_semaphore_grants_in_arrival_order() {
        let sem = FifoSemaphore::new(10);
        let held = sem.try_acquire(8).expect("free");
        let mut big = Box::pin(sem.acquire(5));
        assert!(big.as_mut().now_or_never().is_none());
        // A small request that would fit must still queue behind the big one.
        assert!(sem.try_acquire(1).is_none());
        let mut small = Box::pin(sem.acquire(1));
        assert!(small.as_mut().now_or_never().is_none());
        drop(held);
        let big_permit = big.as_mut().now_or_never().expect("head is satisfiable");
        let small_permit = small.as_mut().now_or_never().expect("room for the next");
        assert_eq!(sem.permits_available(), 4);
        drop((big_permit, small_permit));
        assert_eq!(sem.permits_available(), 10);
    }

    #[test]
    fn cancelled_waiter_unblocks_the_queue() {
        let sem = FifoSemaphore::new(4);
        let held = sem.try_acquire(3).expect("free");
        let mut big = Box::pin(sem.acquire(4));
        assert!(big.as_mut().now_or_never().is_none());
        let mut small = Box::pin(sem.acquire(1));
        assert!(small.as_mut().now_or_never().is_none());
        drop(big);
        assert!(small.as_mut().now_or_never().is_some());
        drop(held);
    }

    #[test]
    fn event_wakes_only_listeners_from_before() {
        let event = Event::default();
        let mut before = Box::pin(event.listen());
        assert!(before.as_mut().now_or_never().is_none());
        event.notify();
        let mut after = Box::pin(event.listen());
        assert!(before.as_mut().now_or_never().is_some());
        assert!(after.as_mut().now_or_never().is_none());
    }
}
