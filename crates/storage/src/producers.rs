//! Idempotent producer state of one partition: for each producer id, its epoch and the
//! sequence ranges (with their offsets) of its last five batches.
//!
//! The rules (Kafka's idempotent producer, KIP-98 and KIP-360):
//! - a batch whose sequence range equals one of the cached five is a retry: it is answered with
//!   the original offsets and not written again;
//! - otherwise its first sequence must follow the producer's last one, or the batch is
//!   `OutOfOrderSequence` (a gap or an older batch no longer cached);
//! - an epoch below the producer's current one is fenced (`InvalidProducerEpoch`); a higher
//!   epoch starts a new sequence at 0;
//! - an unknown producer must start at sequence 0, else `UnknownProducerId` (its state expired
//!   or was never here; the client re-initialises).
//!
//! The state is rebuilt on recovery from the batches themselves (they carry id, epoch and
//! sequence), starting from the last snapshot (`producer_state.snapshot`) when it is valid.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use shoal_model::Offset;

/// Batches remembered per producer (Kafka's max in-flight requests per idempotent producer).
pub const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchRange {
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: Offset,
    pub(crate) last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchRange>,
    last_append_ms: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_append_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    Duplicate(BatchRange),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceError {
    OutOfOrder { expected: i32, received: i32 },
    InvalidEpoch { current: i16, received: i16 },
    UnknownProducer,
}

/// The sequence after `sequence` (sequences wrap to 0 after `i32::MAX`).
pub(crate) fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch of `count` records starting at `first`.
pub(crate) fn last_sequence(first: i32, count: i64) -> i32 {
    ((i64::from(first) + count - 1) % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: BTreeMap<i64, Producer>,
}

impl ProducerStates {
    /// What to do with a batch of producer `id`: append it, or answer it as a duplicate.
    pub(crate) fn check(
        &self,
        id: i64,
        epoch: i16,
        range: (i32, i32),
    ) -> Result<Verdict, SequenceError> {
        let (first, last) = range;
        let Some(producer) = self.producers.get(&id) else {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::UnknownProducer)
            };
        };
        if epoch < producer.epoch {
            return Err(SequenceError::InvalidEpoch {
                current: producer.epoch,
                received: epoch,
            });
        }
        if epoch > producer.epoch {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    received: first,
                })
            };
        }
        if let Some(cached) = producer
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(Verdict::Duplicate(*cached));
        }
        let expected = producer
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first == expected {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                expected,
                received: first,
            })
        }
    }

    /// Records an appended batch (also used to replay the log on recovery, without checks).
    pub(crate) fn record(&mut self, id: i64, epoch: i16, range: BatchRange, now_ms: i64) {
        let producer = self.producers.entry(id).or_insert_with(|| Producer {
            epoch,
            batches: VecDeque::new(),
            last_append_ms: now_ms,
        });
        if epoch != producer.epoch {
            producer.epoch = epoch;
            producer.batches.clear();
        }
        producer.batches.push_back(range);
        while producer.batches.len() > BATCHES_PER_PRODUCER {
            let _ = producer.batches.pop_front();
        }
        producer.last_append_ms = now_ms;
    }

    /// Undoes the batches at or after `from` (a suffix truncation) where memory suffices, and
    /// removes the producers it cannot restore exactly, returning their ids: their state must
    /// be rebuilt from the log below `from`.
    ///
    /// Batches are recorded in offset order, so a producer has a batch at or after `from` if
    /// and only if its newest one is. Such a producer is restored here when some of its cached
    /// batches lie below `from` and its cache never overflowed (fewer than
    /// [`BATCHES_PER_PRODUCER`]): no batch of its epoch was evicted and no epoch change came
    /// after them, so those batches are exactly what replaying the log up to `from` leaves.
    /// Its `last_append_ms` keeps the time of the cut append (expiry comes a little later).
    pub(crate) fn truncate(&mut self, from: Offset) -> BTreeSet<i64> {
        let mut rebuild = BTreeSet::new();
        self.producers.retain(|&id, producer| {
            let affected = producer
                .batches
                .back()
                .is_some_and(|b| b.base_offset >= from);
            if !affected {
                return true;
            }
            let overflowed = producer.batches.len() >= BATCHES_PER_PRODUCER;
            producer.batches.retain(|b| b.base_offset < from);
            if !overflowed && !producer.batches.is_empty() {
                return true;
            }
            let _ = rebuild.insert(id);
            false
        });
        debug_assert!(self
            .producers
            .values()
            .all(|p| p.batches.back().is_none_or(|b| b.base_offset < from)));
        rebuild
    }

    /// Keeps only the producers in `ids`.
    pub(crate) fn retain_ids(&mut self, ids: &BTreeSet<i64>) {
        self.producers.retain(|id, _| ids.contains(id));
    }

    /// Adds every producer of `other`, which holds none of ours.
    pub(crate) fn absorb(&mut self, other: ProducerStates) {
        for (id, producer) in other.producers {
            let previous = self.producers.insert(id, producer);
            assert!(previous.is_none(), "producer {id} rebuilt twice");
        }
    }

    /// Forgets producers idle for `idle_ms_max` (Kafka `producer.id.expiration.ms`).
    /// The last offset of producer `id`'s last batch, if the producer is known: the cleaner
    /// keeps that batch even when it empties it, so the state rebuilds from the log.
    pub(crate) fn last_offset_of(&self, id: i64) -> Option<Offset> {
        self.producers
            .get(&id)
            .and_then(|p| p.batches.back())
            .map(|b| b.last_offset)
    }

    pub(crate) fn expire(&mut self, now_ms: i64, idle_ms_max: i64) {
        self.producers
            .retain(|_, p| now_ms - p.last_append_ms < idle_ms_max);
    }

    pub(crate) fn describe(&self) -> Vec<ProducerInfo> {
        self.producers
            .iter()
            .map(|(&producer_id, p)| ProducerInfo {
                producer_id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_sequence),
                last_append_ms: p.last_append_ms,
            })
            .collect()
    }

    /// Snapshot bytes: magic, covered offset, producers, CRC32C.
    pub(crate) fn encode(&self, covered: Offset) -> Vec<u8> {
        let mut out = b"SHPS".to_vec();
        out.extend_from_slice(&covered.0.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, p) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&p.epoch.to_be_bytes());
            out.extend_from_slice(&p.last_append_ms.to_be_bytes());
            out.push(p.batches.len() as u8);
            for b in &p.batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot (the file may carry zero padding after it). `None` if damaged.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(ProducerStates, Offset)> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != b"SHPS" {
            return None;
        }
        let covered = Offset(reader.i64()?);
        let count = reader.u32()?;
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = reader.i64()?;
            let epoch = i16::from_be_bytes(reader.take(2)?.try_into().ok()?);
            let last_append_ms = reader.i64()?;
            let batches = reader.take(1)?[0];
            let mut producer = Producer {
                epoch,
                batches: VecDeque::new(),
                last_append_ms,
            };
            for _ in 0..batches {
                let first_sequence = reader.u32()? as i32;
                let last_sequence = reader.u32()? as i32;
                let base_offset = Offset(reader.i64()?);
                let last_offset = Offset(reader.i64()?);
                producer.batches.push_back(BatchRange {
                    first_sequence,
                    last_sequence,
                    base_offset,
                    last_offset,
                });
            }
            let _ = states.producers.insert(id, producer);
        }
        let end = reader.at;
        let crc = reader.u32()?;
        (crc == crc32c::crc32c(&bytes[..end])).then_some((states, covered))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: i32, last: i32, base: i64) -> BatchRange {
        BatchRange {
            first_sequence: first,
            last_sequence: last,
            base_offset: Offset(base),
            last_offset: Offset(base + i64::from(last - first)),
        }
    }

    #[test]
    fn sequences_must_follow_and_retries_are_duplicates() {
        let mut states = ProducerStates::default();
        assert_eq!(states.check(7, 0, (0, 4)), Ok(Verdict::Append));
        states.record(7, 0, range(0, 4, 100), 1);
        assert_eq!(states.check(7, 0, (5, 9)), Ok(Verdict::Append));
        states.record(7, 0, range(5, 9, 105), 2);
        // A retry of either cached batch gets its original offsets back.
        assert_eq!(
            states.check(7, 0, (0, 4)),
            Ok(Verdict::Duplicate(range(0, 4, 100)))
        );
        assert_eq!(
            states.check(7, 0, (5, 9)),
            Ok(Verdict::Duplicate(range(5, 9, 105)))
        );
        // A gap is out of order, and so is an overlapping range that is not a cached batch.
        assert_eq!(
            states.check(7, 0, (11, 12)),
            Err(SequenceError::OutOfOrder {
                expected: 10,
                received: 11
            })
        );
        assert_eq!(
            states.check(7, 0, (3, 9)),
            Err(SequenceError::OutOfOrder {
                expected: 10,
                received: 3
            })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            states.record(1, 0, range(i, i, i64::from(i)), 0);
        }
        assert_eq!(
            states.check(1, 0, (1, 1)),
            Err(SequenceError::OutOfOrder {
                expected: 7,
                received: 1
            })
        );
        assert_eq!(
            states.check(1, 0, (2, 2)),
            Ok(Verdict::Duplicate(range(2, 2, 2)))
        );
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.record(3, 2, range(0, 9, 0), 0);
        assert_eq!(
            states.check(3, 1, (10, 10)),
            Err(SequenceError::InvalidEpoch {
                current: 2,
                received: 1
            })
        );
        assert_eq!(
            states.check(3, 3, (10, 10)),
            Err(SequenceError::OutOfOrder {
                expected: 0,
                received: 10
            })
        );
        assert_eq!(states.check(3, 3, (0, 0)), Ok(Verdict::Append));
        states.record(3, 3, range(0, 0, 10), 0);
        assert_eq!(states.check(3, 3, (1, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn unknown_producers_start_at_zero_and_sequences_wrap() {
        let mut states = ProducerStates::default();
        assert_eq!(
            states.check(9, 0, (4, 4)),
            Err(SequenceError::UnknownProducer)
        );
        assert_eq!(last_sequence(i32::MAX - 1, 3), 0);
        states.record(9, 0, range(i32::MAX - 1, i32::MAX, 0), 0);
        assert_eq!(states.check(9, 0, (0, 0)), Ok(Verdict::Append));
    }

    #[test]
    fn truncation_restores_what_memory_knows_and_names_the_rest() {
        let mut states = ProducerStates::default();
        // 1: two batches below the cut, one above: restored from memory.
        states.record(1, 0, range(0, 0, 0), 1);
        states.record(1, 0, range(1, 1, 5), 2);
        states.record(1, 0, range(2, 2, 12), 3);
        // 2: only below the cut: untouched.
        states.record(2, 0, range(0, 3, 1), 4);
        // 3: first seen above the cut: it may have older batches (not in memory).
        states.record(3, 0, range(0, 0, 11), 5);
        // 4: its cache overflowed, so evicted batches below the cut would be missing.
        for i in 0..7 {
            states.record(4, 0, range(i, i, 20 + i64::from(i) - 12), 6);
        }
        // 5: an epoch change above the cut cleared the batches of the older epoch.
        states.record(5, 0, range(0, 0, 2), 7);
        states.record(5, 1, range(0, 0, 13), 8);
        let rebuild = states.truncate(Offset(10));
        assert_eq!(rebuild.into_iter().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(
            states.check(1, 0, (2, 2)),
            Ok(Verdict::Append),
            "cut batch is new"
        );
        assert_eq!(
            states.check(1, 0, (1, 1)),
            Ok(Verdict::Duplicate(range(1, 1, 5)))
        );
        assert_eq!(
            states.check(2, 0, (0, 3)),
            Ok(Verdict::Duplicate(range(0, 3, 1)))
        );
        assert_eq!(states.check(3, 0, (0, 0)), Ok(Verdict::Append));
        let mut rebuilt = ProducerStates::default();
        rebuilt.record(5, 0, range(0, 0, 2), 7);
        let ids = [5].into_iter().collect();
        rebuilt.retain_ids(&ids);
        states.absorb(rebuilt);
        assert_eq!(
            states.check(5, 0, (0, 0)),
            Ok(Verdict::Duplicate(range(0, 0, 2)))
        );
    }

    #[test]
    fn snapshots_round_trip_and_expiry_forgets_idle_producers() {
        let mut states = ProducerStates::default();
        states.record(1, 0, range(0, 4, 0), 1_000);
        states.record(2, 5, range(0, 0, 5), 9_000);
        let mut bytes = states.encode(Offset(6));
        bytes.resize(4096, 0);
        assert_eq!(
            ProducerStates::decode(&bytes),
            Some((states.clone(), Offset(6)))
        );
        bytes[10] ^= 1;
        assert_eq!(ProducerStates::decode(&bytes), None);
        states.expire(10_000, 5_000);
        assert_eq!(
            states
                .describe()
                .iter()
                .map(|p| p.producer_id)
                .collect::<Vec<_>>(),
            vec![2]
        );
    }
}
