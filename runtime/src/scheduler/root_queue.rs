//! Ready tasks without inputs that wait in the scheduler until a worker has a free slot
//! (Dask's "queued" state): per executor kind, highest priority first, in the order they
//! became ready within a priority.
//!
//! Entries may go stale (the task was cancelled, failed or placed otherwise meanwhile);
//! whoever pops an entry checks the task is still ready.

use rustc_hash::FxHashMap;
use shoal_comm::ids::TaskId;
use shoal_comm::message::ExecutorKind;
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

/// One executor kind's queue: priority buckets, each first in, first out.
#[derive(Debug, Default)]
struct KindQueue {
    by_priority: BTreeMap<Reverse<i32>, VecDeque<TaskId>>,
}

/// The scheduler-side queue of root tasks.
#[derive(Debug, Default)]
pub struct RootQueue {
    kinds: FxHashMap<ExecutorKind, KindQueue>,
    len: usize,
}

impl RootQueue {
    /// Queue a ready task behind those of the same or higher priority.
    pub fn push(&mut self, kind: ExecutorKind, priority: i32, id: TaskId) {
        self.kinds
            .entry(kind)
            .or_default()
            .by_priority
            .entry(Reverse(priority))
            .or_default()
            .push_back(id);
        self.len += 1;
    }

    /// The next task of `kind` (highest priority, oldest), without removing it.
    pub fn peek(&self, kind: ExecutorKind) -> Option<TaskId> {
        let q = self.kinds.get(&kind)?;
        q.by_priority
            .values()
            .next()
            .and_then(|d| d.front())
            .copied()
    }

    /// Remove and return the next task of `kind`.
    pub fn pop(&mut self, kind: ExecutorKind) -> Option<TaskId> {
        let q = self.kinds.get_mut(&kind)?;
        let mut bucket = q.by_priority.first_entry()?;
        let id = bucket.get_mut().pop_front();
        if bucket.get().is_empty() {
            bucket.remove();
        }
        if q.by_priority.is_empty() {
            self.kinds.remove(&kind);
        }
        if id.is_some() {
            self.len -= 1;
        }
        id
    }

    /// Executor kinds with queued tasks.
    pub fn kinds(&self) -> impl Iterator<Item = ExecutorKind> + '_ {
        self.kinds.keys().copied()
    }

    /// Entries queued, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry (tests and status), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.kinds
            .values()
            .flat_map(|q| q.by_priority.values().flat_map(|d| d.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_first_in_first_out() {
        let mut q = RootQueue::default();
        let k = ExecutorKind::Noop;
        q.push(k, 0, TaskId(1));
        q.push(k, 5, TaskId(2));
        q.push(k, 0, TaskId(3));
        q.push(k, 5, TaskId(4));
        q.push(ExecutorKind::Sum, 9, TaskId(5));
        assert_eq!(q.len(), 5);
        assert_eq!(q.peek(k), Some(TaskId(2)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(k)).collect();
        assert_eq!(order, [TaskId(2), TaskId(4), TaskId(1), TaskId(3)]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.kinds().collect::<Vec<_>>(), [ExecutorKind::Sum]);
        assert_eq!(q.pop(ExecutorKind::Sum), Some(TaskId(5)));
        assert!(q.is_empty() && q.pop(k).is_none());
    }
}
