//! A simulated network between numbered nodes: every message is delayed by a random number of
//! ticks, may be dropped or duplicated, overtakes others (reordering follows from the random
//! delays), and never crosses a partition. All randomness comes from the simulator's seeded
//! generator, so a seed replays the same deliveries.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::Rng;

/// How hostile the network is.
#[derive(Clone, Copy, Debug)]
pub struct NetOptions {
    /// Per message, in percent.
    pub loss_percent: u32,
    pub duplicate_percent: u32,
    /// Delivery after `delay_ticks_min..=delay_ticks_max` ticks.
    pub delay_ticks_min: u64,
    pub delay_ticks_max: u64,
}

impl NetOptions {
    pub fn reliable() -> NetOptions {
        NetOptions {
            loss_percent: 0,
            duplicate_percent: 0,
            delay_ticks_min: 0,
            delay_ticks_max: 0,
        }
    }
}

/// Messages in flight, keyed by (delivery tick, send order) so delivery is deterministic.
pub struct SimNet<M> {
    options: NetOptions,
    in_flight: BTreeMap<(u64, u64), (usize, usize, M)>,
    sent: u64,
    /// Pairs (from, to) that cannot talk; symmetric cuts list both directions.
    blocked: BTreeSet<(usize, usize)>,
    pub stats: NetStats,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub blocked: u64,
}

impl<M: Clone> SimNet<M> {
    pub fn new(options: NetOptions) -> SimNet<M> {
        assert!(options.delay_ticks_min <= options.delay_ticks_max);
        assert!(options.loss_percent <= 100 && options.duplicate_percent <= 100);
        SimNet {
            options,
            in_flight: BTreeMap::new(),
            sent: 0,
            blocked: BTreeSet::new(),
            stats: NetStats::default(),
        }
    }

    pub fn set_options(&mut self, options: NetOptions) {
        self.options = options;
    }

    /// Sends `message` at tick `now`.
    pub fn send(&mut self, rng: &mut StdRng, now: u64, from: usize, to: usize, message: M) {
        self.stats.sent += 1;
        if rng.gen_range(0..100) < self.options.loss_percent {
            self.stats.dropped += 1;
            return;
        }
        let copies = if rng.gen_range(0..100) < self.options.duplicate_percent {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = rng.gen_range(self.options.delay_ticks_min..=self.options.delay_ticks_max);
            self.sent += 1;
            let _ = self
                .in_flight
                .insert((now + delay, self.sent), (from, to, message.clone()));
        }
    }

    /// Removes and returns the messages due at or before `now`, in delivery order. Messages
    /// across a cut are dropped when they arrive (a cut made while they fly stops them too).
    pub fn deliver(&mut self, now: u64) -> Vec<(usize, usize, M)> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut out = Vec::with_capacity(due.len());
        for (_, (from, to, message)) in due {
            if self.blocked.contains(&(from, to)) {
                self.stats.blocked += 1;
            } else {
                self.stats.delivered += 1;
                out.push((from, to, message));
            }
        }
        out
    }

    /// Drops every message to or from `node` (its process died: sockets are gone).
    pub fn drop_node(&mut self, node: usize) {
        self.in_flight
            .retain(|_, (from, to, _)| *from != node && *to != node);
    }

    /// Cuts the network into the given sides: nodes on different sides cannot talk.
    pub fn partition(&mut self, sides: &[Vec<usize>]) {
        self.blocked.clear();
        for (i, a) in sides.iter().enumerate() {
            for b in sides.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        let _ = self.blocked.insert((x, y));
                        let _ = self.blocked.insert((y, x));
                    }
                }
            }
        }
    }

    /// Cuts one direction only (`from` cannot reach `to`; replies still flow).
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        let _ = self.blocked.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delivery_is_ordered_by_tick_and_respects_cuts() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut net = SimNet::new(NetOptions {
            loss_percent: 0,
            duplicate_percent: 0,
            delay_ticks_min: 0,
            delay_ticks_max: 3,
        });
        for i in 0..100 {
            net.send(&mut rng, 0, 0, 1, i);
        }
        net.partition(&[vec![0], vec![1]]);
        assert!(net.deliver(3).is_empty());
        assert_eq!(net.stats.blocked, 100);
        net.heal();
        net.send(&mut rng, 10, 0, 1, 7);
        assert!(net.deliver(9).is_empty());
        assert_eq!(net.deliver(13), vec![(0, 1, 7)]);
    }

    #[test]
    fn loss_and_duplication_follow_the_options() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut net = SimNet::new(NetOptions {
            loss_percent: 50,
            duplicate_percent: 50,
            delay_ticks_min: 1,
            delay_ticks_max: 1,
        });
        for i in 0..1000 {
            net.send(&mut rng, 0, 0, 1, i);
        }
        let delivered = net.deliver(1).len() as u64;
        assert!(net.stats.dropped > 400 && net.stats.dropped < 600);
        assert_eq!(delivered, 1000 - net.stats.dropped + net.stats.duplicated);
    }
}
