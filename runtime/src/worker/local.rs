//! A worker's own bookkeeping of the tasks the scheduler gave it: which inputs are still
//! being fetched, which tasks are ready (by priority), which run, and which fetched copies
//! can be dropped. No I/O: the session acts on what these functions return.

use super::store::{DataStore, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{ComputeTask, ExecutorKind, Input, Resource};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A task accepted but not yet running.
pub struct LocalTask {
    /// How to run it.
    pub kind: ExecutorKind,
    /// Its payload, if it has one.
    pub payload: Option<bytes::Bytes>,
    /// Higher runs first.
    pub priority: i32,
    /// Its inputs, in dependency order.
    pub inputs: Vec<TaskId>,
    /// Resources one run occupies.
    pub resources: Vec<Resource>,
    /// Inputs not yet here.
    pub waiting_for: u32,
}

/// An input being fetched.
pub struct Fetch {
    /// Local tasks waiting for it.
    pub waiters: Vec<TaskId>,
    /// Holders not tried yet.
    pub untried: Vec<WorkerId>,
    /// Holders tried and failed.
    pub tried: Vec<WorkerId>,
    /// Its size in bytes, as the scheduler knows it.
    pub size: u64,
    /// Keep it once fetched, as held here (a replica the scheduler asked for).
    pub keep: bool,
}

/// The worker's task bookkeeping.
pub struct Local {
    /// This worker's id.
    pub me: WorkerId,
    /// Tasks accepted and not yet running.
    pub tasks: FxHashMap<TaskId, LocalTask>,
    ready: BinaryHeap<(i32, Reverse<TaskId>)>,
    /// Running tasks and the resources they hold.
    pub running: FxHashMap<TaskId, (Vec<TaskId>, Vec<Resource>)>,
    /// Running tasks that left the thread count (`secede`): they take no slot.
    pub seceded: FxHashSet<TaskId>,
    /// Running tasks the scheduler released: their results are dropped.
    pub discard: FxHashSet<TaskId>,
    /// Inputs being fetched.
    pub fetching: FxHashMap<TaskId, Fetch>,
    /// Fetched copies and how many local tasks still read them.
    pub replicas: FxHashMap<TaskId, u32>,
    /// Tasks that may be running at once: the thread count, or a few per thread while
    /// tasks are short (see [`Local::set_depth`]).
    pub slots: u32,
    /// Threads running tasks.
    pub nthreads: u32,
    /// Resources not held by running tasks.
    pub free_resources: Vec<Resource>,
}

/// What the session must do after `Local` accepted tasks or fetched data.
#[derive(Default)]
pub struct Actions {
    /// (input, holder, bytes) to fetch.
    pub fetch: Vec<(TaskId, WorkerId, u64)>,
    /// (task, missing input, holders tried) to report to the scheduler.
    pub missing: Vec<(TaskId, TaskId, Vec<WorkerId>)>,
}

impl Local {
    /// No tasks yet; `nthreads` threads and `resources` free.
    pub fn new(me: WorkerId, nthreads: u32, resources: Vec<Resource>) -> Self {
        Local {
            me,
            tasks: FxHashMap::default(),
            ready: BinaryHeap::new(),
            running: FxHashMap::default(),
            seceded: FxHashSet::default(),
            discard: FxHashSet::default(),
            fetching: FxHashMap::default(),
            replicas: FxHashMap::default(),
            slots: nthreads.max(1),
            nthreads: nthreads.max(1),
            free_resources: resources,
        }
    }

    /// Accept a task from the scheduler.
    pub fn accept(
        &mut self,
        task: ComputeTask,
        payload: Option<bytes::Bytes>,
        store: &dyn DataStore,
        actions: &mut Actions,
    ) {
        let unreachable = task.inputs.iter().find(|input| {
            !self.fetching.contains_key(&input.id)
                && !store.contains(input.id)
                && input.holders.iter().all(|w| *w == self.me)
        });
        if let Some(input) = unreachable {
            actions
                .missing
                .push((task.id, input.id, input.holders.clone()));
            return;
        }
        let mut waiting_for = 0;
        for input in &task.inputs {
            if let Some(fetch) = self.fetching.get_mut(&input.id) {
                fetch.waiters.push(task.id);
                waiting_for += 1;
            } else if store.contains(input.id) {
                if let Some(refs) = self.replicas.get_mut(&input.id) {
                    *refs += 1;
                }
            } else {
                let mut untried: Vec<WorkerId> = input
                    .holders
                    .iter()
                    .copied()
                    .filter(|w| *w != self.me)
                    .collect();
                let first = untried.remove(0);
                actions.fetch.push((input.id, first, input.size));
                self.fetching.insert(
                    input.id,
                    Fetch {
                        waiters: vec![task.id],
                        untried,
                        tried: vec![first],
                        size: input.size,
                        keep: false,
                    },
                );
                waiting_for += 1;
            }
        }
        if waiting_for == 0 {
            self.ready.push((task.priority, Reverse(task.id)));
        }
        self.tasks.insert(
            task.id,
            LocalTask {
                kind: task.kind,
                payload,
                priority: task.priority,
                inputs: task.inputs.into_iter().map(|i| i.id).collect(),
                resources: task.resources,
                waiting_for,
            },
        );
    }

    /// Copy results here as the scheduler asked; returns those already held, which are
    /// kept from now on (the others arrive through [`Local::fetched`]).
    pub fn replicate(
        &mut self,
        inputs: Vec<Input>,
        store: &dyn DataStore,
        actions: &mut Actions,
    ) -> Vec<TaskId> {
        let mut held = Vec::new();
        for input in inputs {
            if let Some(fetch) = self.fetching.get_mut(&input.id) {
                fetch.keep = true;
            } else if store.contains(input.id) {
                // A fetched copy read by local tasks stays once they are done.
                self.replicas.remove(&input.id);
                held.push(input.id);
            } else {
                let mut untried: Vec<WorkerId> = input
                    .holders
                    .into_iter()
                    .filter(|w| *w != self.me)
                    .collect();
                let Some(first) = untried.pop() else {
                    continue;
                };
                actions.fetch.push((input.id, first, input.size));
                self.fetching.insert(
                    input.id,
                    Fetch {
                        waiters: Vec::new(),
                        untried,
                        tried: vec![first],
                        size: input.size,
                        keep: true,
                    },
                );
            }
        }
        held
    }

    /// A fetched input arrived; `true` if it is kept as a replica the scheduler asked for.
    pub fn fetched(&mut self, id: TaskId, value: Value, store: &dyn DataStore) -> bool {
        let Some(fetch) = self.fetching.remove(&id) else {
            return false;
        };
        let mut refs = 0;
        for waiter in fetch.waiters {
            if let Some(task) = self.tasks.get_mut(&waiter) {
                refs += 1;
                task.waiting_for -= 1;
                if task.waiting_for == 0 {
                    self.ready.push((task.priority, Reverse(waiter)));
                }
            }
        }
        if fetch.keep {
            if !store.contains(id) {
                store.put(id, value);
            }
            return true;
        }
        if refs > 0 && !store.contains(id) {
            store.put(id, value);
            self.replicas.insert(id, refs);
        }
        false
    }

    /// A fetch of `id` from `holder` failed: try the next holder or give up on its waiters.
    pub fn fetch_failed(&mut self, id: TaskId, store: &dyn DataStore, actions: &mut Actions) {
        let Some(fetch) = self.fetching.get_mut(&id) else {
            return;
        };
        if let Some(next) = fetch.untried.pop() {
            fetch.tried.push(next);
            actions.fetch.push((id, next, fetch.size));
            return;
        }
        let Some(fetch) = self.fetching.remove(&id) else {
            return;
        };
        for waiter in fetch.waiters {
            if let Some(task) = self.tasks.remove(&waiter) {
                actions.missing.push((waiter, id, fetch.tried.clone()));
                self.forget_inputs(waiter, &task.inputs, store);
            }
        }
    }

    /// Drop a queued task (released or stolen). Returns whether it was queued here.
    pub fn remove_queued(&mut self, id: TaskId, store: &dyn DataStore) -> bool {
        match self.tasks.remove(&id) {
            Some(task) => {
                self.forget_inputs(id, &task.inputs, store);
                true
            }
            None => false,
        }
    }

    /// Let up to `depth` tasks per thread be handed to the executor threads at once (1:
    /// one task per thread). Short tasks then run back to back without a round trip
    /// through the event loop each; tasks handed over can no longer be stolen, so callers
    /// keep the depth to a few milliseconds of work.
    pub fn set_depth(&mut self, depth: u32) {
        self.slots = self.nthreads.saturating_mul(depth.max(1));
    }

    /// The next ready task whose resources are free, taking a slot and its resources.
    pub fn next_to_run(&mut self) -> Option<(TaskId, LocalTask)> {
        if self.running.len() - self.seceded.len() >= self.slots as usize {
            return None;
        }
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some((priority, Reverse(id))) = self.ready.pop() {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            }; // stale entry
            if !fits(&task.resources, &self.free_resources) {
                skipped.push((priority, Reverse(id)));
                continue;
            }
            found = self.tasks.remove(&id).map(|t| (id, t));
            break;
        }
        self.ready.extend(skipped);
        let (id, task) = found?;
        take(&task.resources, &mut self.free_resources);
        self.running
            .insert(id, (task.inputs.clone(), task.resources.clone()));
        Some((id, task))
    }

    /// A running task left the thread count (it waits on other tasks): its slot is free,
    /// its resources stay taken.
    pub fn secede(&mut self, id: TaskId) {
        if self.running.contains_key(&id) {
            self.seceded.insert(id);
        }
    }

    /// A seceded task counts against the thread count again.
    pub fn rejoin(&mut self, id: TaskId) {
        self.seceded.remove(&id);
    }

    /// A running task ended: give back its thread and resources, drop fetched copies
    /// nobody reads. Returns whether its result should be kept.
    pub fn finished(&mut self, id: TaskId, store: &dyn DataStore) -> bool {
        let Some((inputs, resources)) = self.running.remove(&id) else {
            return false;
        };
        give_back(&resources, &mut self.free_resources);
        self.seceded.remove(&id);
        self.forget_inputs(id, &inputs, store);
        self.replicas.remove(&id);
        !self.discard.remove(&id)
    }

    /// `task` no longer reads `inputs`: leave fetch queues, release fetched copies.
    fn forget_inputs(&mut self, task: TaskId, inputs: &[TaskId], store: &dyn DataStore) {
        for input in inputs {
            if let Some(fetch) = self.fetching.get_mut(input) {
                fetch.waiters.retain(|w| *w != task);
            } else if let Some(refs) = self.replicas.get_mut(input) {
                *refs -= 1;
                if *refs == 0 {
                    self.replicas.remove(input);
                    store.remove(*input);
                }
            }
        }
    }

    /// Tasks queued (not running).
    pub fn queued(&self) -> usize {
        self.tasks.len()
    }

    /// Check every invariant of the bookkeeping; panics naming the first one broken.
    pub fn sanity_check(&self, store: &dyn DataStore) {
        for (id, task) in &self.tasks {
            assert!(
                !self.running.contains_key(id),
                "task {id} queued and running"
            );
            let waiting = task
                .inputs
                .iter()
                .filter(|i| self.fetching.get(i).is_some_and(|f| f.waiters.contains(id)))
                .count();
            assert_eq!(
                waiting, task.waiting_for as usize,
                "task {id} waits for {} inputs, {waiting} are being fetched for it",
                task.waiting_for
            );
        }
        for (input, fetch) in &self.fetching {
            for waiter in &fetch.waiters {
                assert!(
                    self.tasks.contains_key(waiter),
                    "fetch of {input} waited on by {waiter}, which is not queued"
                );
            }
        }
        for id in self.seceded.iter().chain(&self.discard) {
            assert!(
                self.running.contains_key(id),
                "task {id} marked but not running"
            );
        }
        for (id, refs) in &self.replicas {
            assert!(*refs > 0, "copy {id} kept for no reader");
            assert!(store.contains(*id), "copy {id} counted but not stored");
        }
        for r in &self.free_resources {
            assert!(r.amount >= -1e-9, "resource {} over-committed", r.name);
        }
    }
}

fn fits(need: &[Resource], free: &[Resource]) -> bool {
    need.iter().all(|n| {
        free.iter()
            .any(|f| f.name == n.name && f.amount >= n.amount)
    })
}

fn take(need: &[Resource], free: &mut [Resource]) {
    for n in need {
        if let Some(f) = free.iter_mut().find(|f| f.name == n.name) {
            f.amount -= n.amount;
        }
    }
}

fn give_back(need: &[Resource], free: &mut [Resource]) {
    for n in need {
        if let Some(f) = free.iter_mut().find(|f| f.name == n.name) {
            f.amount += n.amount;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::memory::ManagedStore;
    use bytes::Bytes;
    use shoal_comm::message::Input;

    fn task(id: u64, priority: i32, inputs: Vec<Input>) -> ComputeTask {
        ComputeTask {
            id: TaskId(id),
            kind: ExecutorKind::Noop,
            payload: None,
            priority,
            inputs,
            resources: vec![],
        }
    }

    #[test]
    fn higher_priority_runs_first_then_submission_order() {
        let store = ManagedStore::in_memory();
        let mut local = Local::new(WorkerId(1), 1, vec![]);
        let mut actions = Actions::default();
        for (id, p) in [(1, 0), (2, 5), (3, 0)] {
            local.accept(task(id, p, vec![]), None, &store, &mut actions);
        }
        let (first, _) = local.next_to_run().unwrap();
        assert_eq!(first, TaskId(2));
        assert!(local.next_to_run().is_none(), "one thread");
        local.finished(first, &store);
        assert_eq!(local.next_to_run().unwrap().0, TaskId(1));
    }

    #[test]
    fn fetched_copies_are_dropped_after_their_readers() {
        let store = ManagedStore::in_memory();
        let mut local = Local::new(WorkerId(1), 2, vec![]);
        let mut actions = Actions::default();
        let input = || {
            vec![Input {
                id: TaskId(9),
                holders: vec![WorkerId(2), WorkerId(3)],
                size: 1,
            }]
        };
        local.accept(task(1, 0, input()), None, &store, &mut actions);
        local.accept(task(2, 0, input()), None, &store, &mut actions);
        assert_eq!(
            actions.fetch,
            vec![(TaskId(9), WorkerId(2), 1)],
            "one fetch for two readers"
        );
        local.fetch_failed(TaskId(9), &store, &mut actions);
        assert_eq!(
            actions.fetch.last(),
            Some(&(TaskId(9), WorkerId(3), 1)),
            "next holder tried"
        );
        local.fetched(TaskId(9), Bytes::from_static(b"x").into(), &store);
        let (a, _) = local.next_to_run().unwrap();
        let (b, _) = local.next_to_run().unwrap();
        local.finished(a, &store);
        assert!(store.contains(TaskId(9)));
        local.finished(b, &store);
        assert!(
            !store.contains(TaskId(9)),
            "copy dropped after the last reader"
        );
    }

    #[test]
    fn replicas_asked_for_are_fetched_and_kept_after_their_readers() {
        let store = ManagedStore::in_memory();
        let mut local = Local::new(WorkerId(1), 1, Vec::new());
        let mut actions = Actions::default();
        let input = |id| Input {
            id: TaskId(id),
            holders: vec![WorkerId(2)],
            size: 1,
        };
        // 8 is fetched for the scheduler; 9 is held already as a copy read by a task.
        local.accept(task(1, 0, vec![input(9)]), None, &store, &mut actions);
        local.fetched(TaskId(9), Bytes::from_static(b"9").into(), &store);
        let held = local.replicate(vec![input(8), input(9)], &store, &mut actions);
        assert_eq!(held, vec![TaskId(9)]);
        assert_eq!(actions.fetch.last(), Some(&(TaskId(8), WorkerId(2), 1)));
        assert!(local.fetched(TaskId(8), Bytes::from_static(b"8").into(), &store));
        let (a, _) = local.next_to_run().unwrap();
        local.finished(a, &store);
        assert!(
            store.contains(TaskId(8)) && store.contains(TaskId(9)),
            "both kept"
        );
    }

    #[test]
    fn input_with_no_reachable_holder_is_reported() {
        let store = ManagedStore::in_memory();
        let mut local = Local::new(WorkerId(1), 1, vec![]);
        let mut actions = Actions::default();
        local.accept(
            task(
                1,
                0,
                vec![Input {
                    id: TaskId(9),
                    holders: vec![WorkerId(2)],
                    size: 1,
                }],
            ),
            None,
            &store,
            &mut actions,
        );
        local.fetch_failed(TaskId(9), &store, &mut actions);
        assert_eq!(
            actions.missing,
            vec![(TaskId(1), TaskId(9), vec![WorkerId(2)])]
        );
        assert!(local.tasks.is_empty());
    }

    #[test]
    fn resources_limit_concurrency() {
        let store = ManagedStore::in_memory();
        let mut local = Local::new(
            WorkerId(1),
            4,
            vec![Resource {
                name: "GPU".into(),
                amount: 1.0,
            }],
        );
        let mut actions = Actions::default();
        for id in 1..=2 {
            let mut t = task(id, 0, vec![]);
            t.resources.push(Resource {
                name: "GPU".into(),
                amount: 1.0,
            });
            local.accept(t, None, &store, &mut actions);
        }
        local.accept(task(3, 0, vec![]), None, &store, &mut actions);
        assert_eq!(local.next_to_run().unwrap().0, TaskId(1));
        assert_eq!(
            local.next_to_run().unwrap().0,
            TaskId(3),
            "GPU task 2 waits for the GPU"
        );
        assert!(local.next_to_run().is_none());
        local.finished(TaskId(1), &store);
        assert_eq!(local.next_to_run().unwrap().0, TaskId(2));
    }
}
