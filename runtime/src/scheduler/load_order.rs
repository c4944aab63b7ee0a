//! Workers of one thread count ordered by (assigned tasks, id), for the worker index.
//!
//! A balanced tree of 10,000 workers costs two searches of some 14 comparisons every
//! time a worker's load changes, which is every placement. Here workers are bucketed by
//! assigned count, each bucket a bitset over worker ids: moving a worker is clearing one
//! bit and setting another, and the least loaded is the lowest id of the lowest bucket.
//! The sorted list of non-empty counts changes only when a bucket empties or fills (and
//! holds a few counts as a rule: workers' loads stay close to one another).

use super::id_set::IdSet;
use rustc_hash::FxHashMap;
use shoal_comm::ids::WorkerId;

/// A worker's place in the order: its assigned count and id.
pub type Place = (u32, WorkerId);

/// Workers (of one thread count) by assigned count, then id.
#[derive(Debug, Default, Clone)]
pub struct LoadOrder {
    buckets: FxHashMap<u32, IdSet>,
    /// Assigned counts with a non-empty bucket, ascending.
    loads: Vec<u32>,
    /// Emptied buckets kept for reuse (their bitsets are sized for the cluster).
    spare: Vec<IdSet>,
    len: usize,
}

impl LoadOrder {
    /// Add a worker with `assigned` tasks (not present yet).
    pub fn insert(&mut self, assigned: u32, id: WorkerId) {
        let bucket = self.buckets.entry(assigned).or_insert_with(|| {
            if let Err(at) = self.loads.binary_search(&assigned) {
                self.loads.insert(at, assigned);
            }
            self.spare.pop().unwrap_or_default()
        });
        bucket.insert(id);
        self.len += 1;
    }

    /// Remove a worker that was inserted with `assigned` tasks.
    pub fn remove(&mut self, assigned: u32, id: WorkerId) {
        let Some(bucket) = self.buckets.get_mut(&assigned) else {
            debug_assert!(false, "{id} not at load {assigned}");
            return;
        };
        self.len -= 1;
        if bucket.remove(id) {
            if let Some(mut empty) = self.buckets.remove(&assigned) {
                empty.clear();
                self.spare.push(empty);
            }
            if let Ok(at) = self.loads.binary_search(&assigned) {
                self.loads.remove(at);
            }
        }
    }

    /// The worker is present with `assigned` tasks.
    pub fn contains(&self, assigned: u32, id: WorkerId) -> bool {
        self.buckets.get(&assigned).is_some_and(|b| b.contains(id))
    }

    /// Workers present.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first two workers in (assigned, id) order, as (assigned, id).
    pub fn first_two(&self) -> (Option<Place>, Option<Place>) {
        let mut loads = self.loads.iter();
        let Some(&low) = loads.next() else {
            return (None, None);
        };
        let bucket = &self.buckets[&low];
        let Some(first) = bucket.first() else {
            return (None, None);
        };
        let second = match bucket.next_after(first) {
            Some(id) => Some((low, id)),
            None => loads
                .next()
                .and_then(|&next| self.buckets[&next].first().map(|id| (next, id))),
        };
        (Some((low, first)), second)
    }

    /// The first worker in (assigned, id) order.
    pub fn first(&self) -> Option<Place> {
        let &low = self.loads.first()?;
        self.buckets[&low].first().map(|id| (low, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_by_load_then_id_across_moves() {
        let mut order = LoadOrder::default();
        for id in [130, 3, 64, 7] {
            order.insert(0, WorkerId(id));
        }
        assert_eq!(
            order.first_two(),
            (Some((0, WorkerId(3))), Some((0, WorkerId(7))))
        );
        // 3 and 7 get a task each: 64 and 130 lead.
        for id in [3, 7] {
            order.remove(0, WorkerId(id));
            order.insert(1, WorkerId(id));
        }
        assert_eq!(
            order.first_two(),
            (Some((0, WorkerId(64))), Some((0, WorkerId(130))))
        );
        order.remove(0, WorkerId(64));
        order.insert(2, WorkerId(64));
        assert_eq!(
            order.first_two(),
            (Some((0, WorkerId(130))), Some((1, WorkerId(3))))
        );
        order.remove(0, WorkerId(130));
        assert_eq!(order.first(), Some((1, WorkerId(3))));
        assert!(order.contains(2, WorkerId(64)) && !order.contains(0, WorkerId(64)));
        assert_eq!(order.len(), 3);
        for (load, id) in [(1, 3), (1, 7), (2, 64)] {
            order.remove(load, WorkerId(id));
        }
        assert!(order.len() == 0 && order.first_two() == (None, None));
        assert!(order.buckets.is_empty() && order.loads.is_empty());
    }
}
