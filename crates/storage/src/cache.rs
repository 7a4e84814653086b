//! The per-core batch cache: recent batches kept in memory so tailing consumers never read
//! the disk (O_DIRECT bypasses the page cache, so nothing else would keep them).
//!
//! Owned by one core, shared (`Rc<RefCell<_>>` inside) by the logs on it. Batches enter when
//! they are appended and leave oldest-first when the byte budget is exceeded. An entry holds
//! the exact stored bytes (offset and epoch already stamped), so a hit is served without a copy.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use shoal_model::Offset;

/// Identifies one log among those sharing a cache.
pub(crate) type LogUid = u64;

#[derive(Clone)]
pub struct BatchCache {
    inner: Rc<RefCell<CacheInner>>,
}

struct CacheInner {
    budget_bytes: usize,
    used_bytes: usize,
    entries: BTreeMap<(LogUid, Offset), CachedBatch>,
    /// Insertion order, for eviction. Keys may be stale (already removed).
    age: VecDeque<(LogUid, Offset)>,
    next_uid: LogUid,
    hits: u64,
    misses: u64,
}

#[derive(Clone)]
pub(crate) struct CachedBatch {
    pub(crate) bytes: Bytes,
    pub(crate) next_offset: Offset,
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> BatchCache {
        let inner = CacheInner {
            budget_bytes,
            used_bytes: 0,
            entries: BTreeMap::new(),
            age: VecDeque::new(),
            next_uid: 0,
            hits: 0,
            misses: 0,
        };
        BatchCache {
            inner: Rc::new(RefCell::new(inner)),
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.inner.borrow().used_bytes
    }

    /// (hits, misses) of [`BatchCache::get`] since creation.
    pub fn hit_counts(&self) -> (u64, u64) {
        let inner = self.inner.borrow();
        (inner.hits, inner.misses)
    }

    pub(crate) fn register_log(&self) -> LogUid {
        let mut inner = self.inner.borrow_mut();
        inner.next_uid += 1;
        inner.next_uid
    }

    pub(crate) fn insert(&self, log: LogUid, base: Offset, batch: CachedBatch) {
        let mut inner = self.inner.borrow_mut();
        if batch.bytes.len() > inner.budget_bytes {
            return;
        }
        inner.used_bytes += batch.bytes.len();
        if let Some(old) = inner.entries.insert((log, base), batch) {
            inner.used_bytes -= old.bytes.len();
        }
        inner.age.push_back((log, base));
        while inner.used_bytes > inner.budget_bytes {
            let Some(key) = inner.age.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.entries.remove(&key) {
                inner.used_bytes -= evicted.bytes.len();
            }
        }
    }

    /// The cached batch that contains `offset`, if any.
    pub(crate) fn get(&self, log: LogUid, offset: Offset) -> Option<CachedBatch> {
        let mut inner = self.inner.borrow_mut();
        let found = inner
            .entries
            .range((log, Offset(i64::MIN))..=(log, offset))
            .next_back()
            .filter(|(_, batch)| batch.next_offset > offset)
            .map(|(_, batch)| batch.clone());
        if found.is_some() {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
        found
    }

    /// Drops every entry of `log` (the log closed).
    pub(crate) fn remove_log(&self, log: LogUid) {
        self.remove_from(log, Offset(i64::MIN));
    }

    /// Drops every entry of `log` whose batch starts in `[from, to)` (a cleaned range, whose
    /// stored batches changed).
    pub(crate) fn remove_range(&self, log: LogUid, from: Offset, to: Offset) {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<_> = inner
            .entries
            .range((log, from)..(log, to))
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(removed) = inner.entries.remove(&key) {
                inner.used_bytes -= removed.bytes.len();
            }
        }
    }

    /// Drops every entry of `log` whose batch starts at or after `from` (a suffix truncation).
    /// Keys left in the age queue are stale and skipped; one that names an offset the log
    /// assigns again may evict the new entry early (a later cache miss, never a wrong batch:
    /// an entry is found only under the key it was inserted with).
    pub(crate) fn remove_from(&self, log: LogUid, from: Offset) {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<_> = inner
            .entries
            .range((log, from)..=(log, Offset(i64::MAX)))
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(removed) = inner.entries.remove(&key) {
                inner.used_bytes -= removed.bytes.len();
            }
        }
        debug_assert!(inner
            .entries
            .range((log, from)..=(log, Offset(i64::MAX)))
            .next()
            .is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize, next: i64) -> CachedBatch {
        CachedBatch {
            bytes: Bytes::from(vec![0u8; len]),
            next_offset: Offset(next),
        }
    }

    #[test]
    fn finds_the_batch_containing_an_offset_and_evicts_oldest() {
        let cache = BatchCache::new(250);
        let log = cache.register_log();
        cache.insert(log, Offset(0), entry(100, 10));
        cache.insert(log, Offset(10), entry(100, 20));
        assert!(cache.get(log, Offset(5)).is_some());
        assert!(cache.get(log, Offset(19)).is_some());
        assert!(cache.get(log, Offset(20)).is_none());
        cache.insert(log, Offset(20), entry(100, 30));
        assert!(
            cache.get(log, Offset(5)).is_none(),
            "oldest evicted over budget"
        );
        assert_eq!(cache.used_bytes(), 200);
        cache.remove_log(log);
        assert_eq!(cache.used_bytes(), 0);
    }

    #[test]
    fn truncation_drops_only_the_suffix_of_one_log() {
        let cache = BatchCache::new(10_000);
        let (log, other) = (cache.register_log(), cache.register_log());
        for base in [0, 10, 20] {
            cache.insert(log, Offset(base), entry(100, base + 10));
            cache.insert(other, Offset(base), entry(100, base + 10));
        }
        cache.remove_from(log, Offset(10));
        assert!(cache.get(log, Offset(5)).is_some(), "below the cut kept");
        assert!(cache.get(log, Offset(10)).is_none());
        assert!(cache.get(log, Offset(25)).is_none());
        assert!(
            cache.get(other, Offset(25)).is_some(),
            "other logs untouched"
        );
        assert_eq!(cache.used_bytes(), 400);
        // The offset is assigned again: the new batch is what a read finds.
        cache.insert(log, Offset(10), entry(50, 12));
        assert_eq!(cache.get(log, Offset(11)).map(|b| b.bytes.len()), Some(50));
        assert!(cache.get(log, Offset(12)).is_none());
    }
}
