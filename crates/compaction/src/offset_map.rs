//! The key -> latest offset map of one cleaning pass, in a fixed memory budget.
//!
//! Kafka's `SkimpyOffsetMap` idea: keys are not stored, only a 128-bit hash of each, with the
//! offset of the key's latest record; open addressing with linear probing in one flat table
//! whose size is fixed when the map is made. Compaction trusts the map to tell a superseded
//! record from a live one, so a collision would delete a live record: the hash is a keyed
//! SipHash (a random key per map, 2 x 64 bits), so no producer can craft keys that collide.
//!
//! The table is filled up to [`LOAD_FACTOR`] of its slots; past that the cleaning pass stops
//! indexing (at a batch boundary, [`OffsetMap::has_room_for`]) and the rest of the dirty log
//! waits for the next pass.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use shoal_model::Offset;

/// Bytes per slot: the 128-bit key hash and the offset.
pub const SLOT_BYTES: usize = 24;

/// The share of slots a map fills before it counts as full (Kafka's
/// `log.cleaner.io.buffer.load.factor` default): probes stay short.
pub const LOAD_FACTOR: f64 = 0.9;

/// The smallest map: a handful of slots, so a tiny budget still makes progress.
const SLOTS_MIN: usize = 16;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 in both halves: empty (a hash that comes out as 0 is stored as 1, see `hash`).
    hash_hi: u64,
    hash_lo: u64,
    offset: i64,
}

pub struct OffsetMap {
    slots: Vec<Slot>,
    entries: usize,
    entries_max: usize,
    hasher_hi: RandomState,
    hasher_lo: RandomState,
    /// The highest offset put since the last `clear`.
    latest: Option<Offset>,
}

impl OffsetMap {
    /// A map taking at most `budget_bytes` of memory for its table.
    pub fn with_budget(budget_bytes: usize) -> OffsetMap {
        let slots = (budget_bytes / SLOT_BYTES).max(SLOTS_MIN);
        let entries_max = ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1);
        OffsetMap {
            slots: vec![Slot::default(); slots],
            entries: 0,
            entries_max,
            hasher_hi: RandomState::new(),
            hasher_lo: RandomState::new(),
            latest: None,
        }
    }

    /// Keys the map holds (distinct key hashes).
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// How many distinct keys fit before the map counts as full.
    pub fn capacity(&self) -> usize {
        self.entries_max
    }

    /// Bytes the table takes.
    pub fn size_bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    /// Whether `keys` more distinct keys fit (a batch is indexed whole or not at all, so the
    /// pass ends at a batch boundary).
    pub fn has_room_for(&self, keys: usize) -> bool {
        self.entries + keys <= self.entries_max
    }

    /// The highest offset put since the map was made or cleared.
    pub fn latest_offset(&self) -> Option<Offset> {
        self.latest
    }

    /// Records `offset` as the latest of `key`. Offsets are put in log order, so a later put
    /// of the same key replaces the earlier one. Refused (false, map unchanged) only for a new
    /// key once the map is full.
    pub fn put(&mut self, key: &[u8], offset: Offset) -> bool {
        let (hi, lo) = self.hash(key);
        let at = self.find(hi, lo);
        let slot = &mut self.slots[at];
        if slot.hash_hi == 0 && slot.hash_lo == 0 {
            if self.entries >= self.entries_max {
                return false;
            }
            self.entries += 1;
            slot.hash_hi = hi;
            slot.hash_lo = lo;
        }
        slot.offset = offset.0;
        self.latest = Some(self.latest.map_or(offset, |latest| latest.max(offset)));
        true
    }

    /// The offset of `key`'s latest record, if the map has the key.
    pub fn get(&self, key: &[u8]) -> Option<Offset> {
        let (hi, lo) = self.hash(key);
        let slot = &self.slots[self.find(hi, lo)];
        (slot.hash_hi != 0 || slot.hash_lo != 0).then_some(Offset(slot.offset))
    }

    /// Empties the map for the next pass (a new hash key too).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.entries = 0;
        self.latest = None;
        self.hasher_hi = RandomState::new();
        self.hasher_lo = RandomState::new();
    }

    fn hash(&self, key: &[u8]) -> (u64, u64) {
        let mut hi = self.hasher_hi.build_hasher();
        hi.write(key);
        let mut lo = self.hasher_lo.build_hasher();
        lo.write(key);
        match (hi.finish(), lo.finish()) {
            (0, 0) => (0, 1),
            hash => hash,
        }
    }

    /// The slot holding this hash, or the empty slot where it would go. The table always has
    /// an empty slot (`entries_max` < slots), so the probe ends.
    fn find(&self, hi: u64, lo: u64) -> usize {
        let len = self.slots.len();
        let mut at = (hi % len as u64) as usize;
        loop {
            let slot = &self.slots[at];
            if (slot.hash_hi == hi && slot.hash_lo == lo)
                || (slot.hash_hi == 0 && slot.hash_lo == 0)
            {
                return at;
            }
            at = (at + 1) % len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_puts_win_and_a_full_map_refuses_new_keys() {
        let mut map = OffsetMap::with_budget(SLOT_BYTES * 20);
        assert_eq!(map.capacity(), 18);
        for i in 0..18u32 {
            assert!(map.put(&i.to_be_bytes(), Offset(i64::from(i))));
        }
        assert!(!map.has_room_for(1));
        assert!(!map.put(b"new", Offset(100)), "a new key in a full map");
        assert_eq!(map.get(b"new"), None);
        // An existing key is still updated.
        assert!(map.put(&3u32.to_be_bytes(), Offset(200)));
        assert_eq!(map.get(&3u32.to_be_bytes()), Some(Offset(200)));
        assert_eq!(map.get(&4u32.to_be_bytes()), Some(Offset(4)));
        assert_eq!(map.latest_offset(), Some(Offset(200)));
        map.clear();
        assert!(map.is_empty() && map.get(&4u32.to_be_bytes()).is_none());
        assert!(map.has_room_for(18));
    }

    #[test]
    fn an_empty_key_is_a_key() {
        let mut map = OffsetMap::with_budget(1024);
        assert!(map.put(b"", Offset(7)));
        assert_eq!(map.get(b""), Some(Offset(7)));
        assert_eq!(map.get(b"x"), None);
    }
}
