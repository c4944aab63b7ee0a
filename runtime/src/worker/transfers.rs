//! Incoming transfers, bounded in bytes: inputs to fetch wait in a queue while the bytes
//! already in flight would pass the budget, and all of them wait while the worker is
//! paused. One input is always allowed in flight, however large.

use rustc_hash::FxHashMap;
use shoal_comm::ids::{TaskId, WorkerId};
use std::collections::VecDeque;

/// Inputs to fetch and those being fetched.
pub struct Transfers {
    queue: VecDeque<(TaskId, WorkerId, u64)>,
    in_flight: FxHashMap<TaskId, u64>,
    in_flight_bytes: u64,
    budget: u64,
}

impl Transfers {
    /// At most `budget` bytes in flight at once (`u64::MAX`: no bound).
    pub fn new(budget: u64) -> Self {
        Transfers {
            queue: VecDeque::new(),
            in_flight: FxHashMap::default(),
            in_flight_bytes: 0,
            budget,
        }
    }

    /// The budget for a worker with this memory limit: a tenth of it, at least 16 MiB;
    /// unbounded without a limit.
    pub fn budget_for(memory_limit: u64) -> u64 {
        if memory_limit == 0 {
            u64::MAX
        } else {
            (memory_limit / 10).max(16 << 20)
        }
    }

    /// Queue (input, holder, bytes) fetches.
    pub fn push(&mut self, fetches: impl IntoIterator<Item = (TaskId, WorkerId, u64)>) {
        self.queue.extend(fetches);
    }

    /// The fetches that may start now, by holder; none while `paused`.
    pub fn start(&mut self, paused: bool) -> FxHashMap<WorkerId, Vec<TaskId>> {
        let mut by_peer: FxHashMap<WorkerId, Vec<TaskId>> = FxHashMap::default();
        if paused {
            return by_peer;
        }
        while let Some(&(id, holder, size)) = self.queue.front() {
            if !self.in_flight.is_empty() && self.in_flight_bytes.saturating_add(size) > self.budget
            {
                break;
            }
            self.queue.pop_front();
            self.in_flight_bytes += size;
            if let Some(old) = self.in_flight.insert(id, size) {
                self.in_flight_bytes -= old;
            }
            by_peer.entry(holder).or_default().push(id);
        }
        by_peer
    }

    /// Check the byte count against the fetches in flight; panics if they disagree.
    pub fn sanity_check(&self) {
        let sum: u64 = self.in_flight.values().sum();
        assert_eq!(sum, self.in_flight_bytes, "bytes in flight miscounted");
    }

    /// A fetch ended (found or failed).
    pub fn done(&mut self, id: TaskId) {
        if let Some(size) = self.in_flight.remove(&id) {
            self.in_flight_bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn bytes_in_flight_stay_within_the_budget() {
        let mut t = Transfers::new(20 * MIB);
        t.push((0..5u32).map(|i| (TaskId(u64::from(i)), WorkerId(i % 2), 8 * MIB)));
        let first = t.start(false);
        assert_eq!(first.values().map(Vec::len).sum::<usize>(), 2, "{first:?}");
        assert!(t.start(false).is_empty());
        t.done(TaskId(0));
        assert_eq!(t.start(false).values().map(Vec::len).sum::<usize>(), 1);
    }

    #[test]
    fn one_large_input_always_goes_and_nothing_goes_while_paused() {
        let mut t = Transfers::new(MIB);
        t.push([(TaskId(1), WorkerId(1), 100 * MIB)]);
        assert!(t.start(true).is_empty());
        assert_eq!(t.start(false)[&WorkerId(1)], vec![TaskId(1)]);
        t.done(TaskId(1));
        t.done(TaskId(1));
        assert_eq!(Transfers::budget_for(0), u64::MAX);
        assert_eq!(Transfers::budget_for(1 << 30), (1 << 30) / 10);
        assert_eq!(Transfers::budget_for(64 * MIB), 16 * MIB);
    }
}
