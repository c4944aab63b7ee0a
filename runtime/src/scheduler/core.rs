//! The scheduler's state and the transitions every event goes through.
//!
//! All bookkeeping that must stay consistent (pending dependents, worker assignment,
//! state counts, releasing data nobody needs, forgetting records nobody refers to) lives
//! in [`Core::set_state`] and [`Core::settle`], so event handlers only decide *what*
//! happens.

use super::comm::Comm;
use super::jobs::Job;
use super::root_queue::RootQueue;
use super::tally::TaskTally;
use super::task::{Task, TaskState};
use super::task_map::TaskMap;
use super::worker::WorkerState;
use super::worker_index::WorkerIndex;
use rustc_hash::{FxHashMap, FxHashSet};
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{KeyState, KeyUpdate, TaskError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Tunables of the scheduling core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A task running on this many workers that died errs with `KilledWorker`.
    pub allowed_failures: u32,
    /// Workers silent this long are dropped.
    pub worker_timeout: Duration,
    /// Ready tasks without inputs go to a worker only while it has fewer than
    /// `max(ceil(nthreads × worker_saturation), min_worker_queue, 1)` tasks; the rest wait
    /// in the scheduler, highest priority first, and go to whichever worker has a free slot
    /// first. `f64::INFINITY` sends every ready task at once.
    ///
    /// 2 (Dask uses 1.1) gives a worker of many threads running long tasks the next task
    /// for each thread without piling up root tasks whose results it cannot consume yet.
    pub worker_saturation: f64,
    /// ... but a worker may always hold this many: tasks of microseconds finish faster than
    /// the scheduler hears of it and answers, so a worker needs this much queued work to stay
    /// busy across that round trip. 256 keeps 2 zero-mode workers of 1 thread as fast as
    /// without queueing (measured end to end: 64 tasks cost ~25 %, 4 cost ~80 %); set 0 when
    /// root tasks are long or produce large results.
    pub min_worker_queue: u32,
    /// Work units (a task placed, inserted, validated or released) one call of
    /// [`Core::schedule`] does before returning, so the server can answer other events
    /// between slices of a large submission or release. 1,024 units take about 1 ms with
    /// warm caches and a few ms over millions of tasks (cold caches).
    pub slice_budget: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            worker_timeout: Duration::from_secs(30),
            worker_saturation: 2.0,
            min_worker_queue: 256,
            slice_budget: 1024,
        }
    }
}

/// Queue `worker` for re-indexing once (see `Core::reindex`).
fn mark_reindex(queue: &mut Vec<WorkerId>, worker: &mut WorkerState) {
    if !worker.reindex {
        worker.reindex = true;
        queue.push(worker.id);
    }
}

/// A connected client.
#[derive(Debug, Default)]
pub struct ClientState {
    /// Tasks that listed the client among their wanters when recorded; entries go stale
    /// when it releases them (checked when read). What its departure releases, without a
    /// walk over every task; compacted when it has doubled since the last compaction.
    pub(super) wanted: Vec<TaskId>,
    /// Length of `wanted` after its last compaction.
    compacted: usize,
}

/// The whole scheduler state.
#[derive(Debug, Default)]
pub struct Core {
    pub(super) config: CoreConfig,
    pub(super) tasks: TaskMap,
    pub(super) workers: FxHashMap<WorkerId, WorkerState>,
    pub(super) clients: FxHashMap<ClientId, ClientState>,
    /// Tasks that became ready and await placement (may hold stale entries: check state).
    pub(super) ready: VecDeque<TaskId>,
    /// Ready tasks without inputs waiting for a worker slot (may hold stale entries).
    pub(super) root_queue: RootQueue,
    /// Workers by load, signature, idleness and name.
    pub(super) index: WorkerIndex,
    /// Long client requests (graphs to accept, keys to release), done slice by slice in
    /// arrival order.
    pub(super) jobs: VecDeque<Job>,
    /// Ready tasks no current worker can run (resources, restrictions, executor kind).
    pub(super) unplaced: Vec<TaskId>,
    /// Steal requests in flight: task → the idle worker it should move to.
    pub(super) steals: FxHashMap<TaskId, WorkerId>,
    /// Tasks that finished since start.
    pub(super) finished_count: u64,
    /// Task counts by state and prefix (the dashboard's and `/metrics`' source).
    pub(super) tally: TaskTally,
    next_worker: u32,
    next_client: u32,
    /// Tasks whose need or references changed; examined by `settle`.
    dirty: Vec<TaskId>,
    /// Workers whose load changed since the index last saw them (each once, flagged by
    /// [`WorkerState::reindex`]): re-indexed only before the index is read (placing a
    /// task without local inputs, releasing roots, balancing), so a worker whose load
    /// changes at every event moves in the index once per read, not once per event.
    reindex: Vec<WorkerId>,
    /// Scratch stack reused by `revive`.
    revive_stack: Vec<TaskId>,
}

impl Core {
    /// A core without workers, clients or tasks.
    pub fn new(config: CoreConfig) -> Self {
        Core {
            config,
            ..Default::default()
        }
    }

    /// A fresh id for a worker about to join (the server routes the worker's messages by
    /// it before [`Core::on_worker_added`] sends the first).
    pub fn new_worker_id(&mut self) -> WorkerId {
        self.next_worker += 1;
        WorkerId(self.next_worker)
    }

    /// Tasks the scheduler knows (in any state).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Tasks finished since start.
    pub fn finished_count(&self) -> u64 {
        self.finished_count
    }

    /// The connected workers' ids.
    pub fn worker_ids(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// A connected worker.
    pub fn worker(&self, id: WorkerId) -> Option<&WorkerState> {
        self.workers.get(&id)
    }

    /// The key of a task the scheduler still knows.
    pub fn task_key(&self, id: TaskId) -> Option<&str> {
        self.tasks.get(&id).map(|t| &*t.key)
    }

    /// The last worker id handed out.
    pub(crate) fn last_worker_id(&self) -> WorkerId {
        WorkerId(self.next_worker)
    }

    /// The id for a client that just connected.
    pub fn new_client_id(&mut self) -> ClientId {
        self.next_client += 1;
        ClientId(self.next_client)
    }

    /// The task with this id; panics with the id if it is unknown (an internal bug).
    #[inline]
    pub fn task(&self, id: TaskId) -> &Task {
        self.tasks
            .get(&id)
            .unwrap_or_else(|| panic!("unknown task {id}"))
    }

    #[inline]
    pub(crate) fn task_mut(&mut self, id: TaskId) -> &mut Task {
        self.tasks
            .get_mut(&id)
            .unwrap_or_else(|| panic!("unknown task {id}"))
    }

    /// `client` is now among the wanters of `id` (the caller pushed it): remember the task
    /// for the client's departure.
    pub(crate) fn note_want(&mut self, client: ClientId, id: TaskId) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.wanted.push(id);
        if c.wanted.len() > 2 * c.compacted + 1024 {
            // Amortized O(1) per want: as many entries were pushed since the last time.
            let tasks = &self.tasks;
            c.wanted
                .retain(|id| tasks.get(id).is_some_and(|t| t.wanted_by.contains(&client)));
            c.wanted.sort_unstable();
            c.wanted.dedup();
            c.compacted = c.wanted.len();
        }
    }

    /// Find a task by key.
    pub fn find_key(&self, key: &str) -> Option<TaskId> {
        self.tasks.find(key)
    }

    /// Move a task to a new state, keeping every derived count right.
    pub(crate) fn set_state(&mut self, id: TaskId, new: TaskState, comm: &mut impl Comm) {
        let task = self
            .tasks
            .get_mut(&id)
            .unwrap_or_else(|| panic!("unknown task {id}"));
        let old = std::mem::replace(&mut task.state, new);
        self.tally.moved(task.prefix, &old, &task.state);
        let (old_worker, new_worker) = (old.assigned_worker(), task.state.assigned_worker());
        let now_unfinished = task.state.is_unfinished();
        let is_ready = matches!(task.state, TaskState::Ready);
        let in_memory = matches!(task.state, TaskState::Memory(_));
        if old_worker != new_worker {
            let slot = task.assigned_slot as usize;
            if let Some(w) = old_worker {
                self.unassign(w, id, slot);
            }
            if let Some(w) = new_worker {
                if let Some(worker) = self.workers.get_mut(&w) {
                    let slot = worker.assigned.len() as u32;
                    worker.assigned.push(id);
                    mark_reindex(&mut self.reindex, worker);
                    self.task_mut(id).assigned_slot = slot;
                }
            }
        }
        if let TaskState::Memory(holders) = &old {
            if !in_memory {
                for &w in holders {
                    comm.release(w, id);
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.forget_result(id);
                    }
                }
            }
        }
        if let Some(Task {
            state: TaskState::Memory(holders),
            ..
        }) = self.tasks.get(&id)
        {
            for w in holders {
                if let Some(worker) = self.workers.get_mut(w) {
                    worker.holds.insert(id);
                }
            }
        }
        if old.is_unfinished() != now_unfinished {
            // Borrow the inputs out of the task instead of cloning them.
            let deps = std::mem::take(&mut self.task_mut(id).deps);
            for dep in deps.iter() {
                let d = self.task_mut(*dep);
                if now_unfinished {
                    d.pending_dependents += 1;
                } else {
                    d.pending_dependents -= 1;
                    if !d.is_needed() {
                        self.dirty.push(*dep);
                    }
                }
            }
            self.task_mut(id).deps = deps;
        }
        if is_ready {
            self.ready.push_back(id);
        }
        if !self.task(id).is_needed() {
            self.dirty.push(id);
        }
    }

    /// `id`, at `slot` of worker `w`'s assigned list, is no longer assigned there: the last
    /// entry takes its place.
    fn unassign(&mut self, w: WorkerId, id: TaskId, slot: usize) {
        if let Some(worker) = self.workers.get_mut(&w) {
            debug_assert_eq!(worker.assigned.get(slot), Some(&id), "{w} assigned {id}");
            worker.assigned.swap_remove(slot);
            mark_reindex(&mut self.reindex, worker);
            if let Some(&moved) = worker.assigned.get(slot) {
                self.task_mut(moved).assigned_slot = slot as u32;
            }
        }
        if !self.steals.is_empty() {
            self.steals.remove(&id);
        }
    }

    /// Result of `id` reached memory or failed: tell clients that want it.
    pub(crate) fn notify_wanters(&mut self, id: TaskId, comm: &mut impl Comm) {
        let task = self.task(id);
        let state = match &task.state {
            TaskState::Memory(_) => KeyState::Memory { size: task.size },
            TaskState::Erred(e) => KeyState::Erred(TaskError::clone(e)),
            _ => return,
        };
        for &client in &task.wanted_by {
            comm.key_update(
                client,
                KeyUpdate {
                    key: task.key.to_string(),
                    state: state.clone(),
                },
            );
        }
    }

    /// Put a released task that is needed again back on the way to memory, with every
    /// released input it needs (lineage recomputation).
    pub(crate) fn revive(&mut self, id: TaskId, comm: &mut impl Comm) {
        let mut stack = std::mem::take(&mut self.revive_stack);
        stack.push(id);
        while let Some(id) = stack.pop() {
            if !matches!(self.task(id).state, TaskState::Released) {
                continue;
            }
            let (missing, erred) = self.tally_inputs(id, |d| stack.push(d));
            if let Some(err) = erred {
                self.set_state(id, TaskState::Erred(err), comm);
                self.notify_wanters(id, comm);
                continue;
            }
            self.await_inputs(id, missing, comm);
        }
        self.revive_stack = stack;
    }

    /// Inputs of `id` that are not in memory (with multiplicity) and the error of a failed
    /// one, if any; `released` is called with each input that is released (not on its way
    /// to memory). What activating or reviving a task decides from.
    pub(crate) fn tally_inputs(
        &self,
        id: TaskId,
        mut released: impl FnMut(TaskId),
    ) -> (u32, Option<Arc<TaskError>>) {
        let mut missing = 0;
        let mut erred = None;
        for d in self.task(id).deps.iter() {
            match &self.task(*d).state {
                TaskState::Memory(_) => {}
                TaskState::Erred(e) => erred = Some(e.clone()),
                TaskState::Released => {
                    missing += 1;
                    released(*d);
                }
                _ => missing += 1,
            }
        }
        (missing, erred)
    }

    /// Inputs of `id` not in memory (with multiplicity).
    pub(crate) fn missing_inputs(&self, id: TaskId) -> u32 {
        let task = self.task(id);
        task.deps
            .iter()
            .filter(|d| !matches!(self.task(**d).state, TaskState::Memory(_)))
            .count() as u32
    }

    /// Put `id` on its way to running with `missing` inputs still to come: ready when
    /// none are missing, waiting otherwise. The one place `missing_deps` is set afresh.
    pub(crate) fn await_inputs(&mut self, id: TaskId, missing: u32, comm: &mut impl Comm) {
        self.task_mut(id).missing_deps = missing;
        let state = if missing == 0 {
            TaskState::Ready
        } else {
            TaskState::Waiting
        };
        if self.task(id).state != state {
            self.set_state(id, state, comm);
        }
    }

    /// Fail `id` and every unfinished task that depends on it, transitively.
    pub(crate) fn fail_with_dependents(
        &mut self,
        id: TaskId,
        error: Arc<TaskError>,
        comm: &mut impl Comm,
    ) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let task = self.task(id);
            if !(task.state.is_unfinished() || matches!(task.state, TaskState::Released)) {
                continue;
            }
            let was_unfinished = task.state.is_unfinished();
            if let Some(w) = task.state.assigned_worker() {
                comm.release(w, id);
            }
            let dependents = task.dependents.clone();
            self.set_state(id, TaskState::Erred(error.clone()), comm);
            self.notify_wanters(id, comm);
            if was_unfinished {
                stack.extend(dependents);
            }
        }
    }

    /// Release results nobody needs, drop unfinished work nobody needs, and forget records
    /// nothing refers to. Runs after every event, for at most `slice_budget` tasks; what
    /// is left (releasing a large graph cascades) is done by the next slices of
    /// [`Core::schedule`].
    pub(crate) fn settle(&mut self, comm: &mut impl Comm) {
        let mut budget = self.config.slice_budget.max(1);
        self.settle_within(&mut budget, comm);
    }

    /// Bring the worker index up to date with every load change so far: called before
    /// the index is read.
    pub(crate) fn refresh_index(&mut self) {
        for id in self.reindex.drain(..) {
            if let Some(w) = self.workers.get_mut(&id) {
                w.reindex = false;
                self.index.update(w);
            }
        }
    }

    /// `settle` within `budget`; returns whether tasks are left to examine.
    pub(crate) fn settle_within(&mut self, budget: &mut usize, comm: &mut impl Comm) -> bool {
        while *budget > 0 {
            let Some(id) = self.dirty.pop() else {
                break;
            };
            *budget -= 1;
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if task.is_needed() {
                continue;
            }
            if task.state.is_unfinished() || matches!(task.state, TaskState::Memory(_)) {
                if let Some(w) = task.state.assigned_worker() {
                    comm.release(w, id);
                }
                self.set_state(id, TaskState::Released, comm);
                continue; // set_state marked it dirty again
            }
            if task.dependents.is_empty() {
                self.forget(id);
            }
        }
        !self.dirty.is_empty()
    }

    fn forget(&mut self, id: TaskId) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        self.tally.removed(task.prefix, &task.state);
        for dep in task.deps.iter() {
            if let Some(d) = self.tasks.get_mut(dep) {
                if let Some(pos) = d.dependents.iter().position(|x| *x == id) {
                    d.dependents.swap_remove(pos);
                }
                self.dirty.push(*dep);
            }
        }
    }

    pub(crate) fn mark_dirty(&mut self, ids: impl IntoIterator<Item = TaskId>) {
        self.dirty.extend(ids);
    }

    /// Check every cross-structure invariant; used after each step in tests.
    pub fn sanity_check(&self) {
        // Pending dependents and the dependents lists, recomputed from the inputs in one
        // pass over the edges.
        let mut pending: FxHashMap<TaskId, u32> = FxHashMap::default();
        let mut edges: FxHashMap<(TaskId, TaskId), i64> = FxHashMap::default();
        for (id, task) in self.tasks.iter() {
            for dep in task.deps.iter() {
                *edges.entry((*dep, id)).or_default() += 1;
                if task.state.is_unfinished() {
                    *pending.entry(*dep).or_default() += 1;
                }
            }
            for d in &task.dependents {
                *edges.entry((id, *d)).or_default() -= 1;
            }
        }
        for job in &self.jobs {
            if let Job::Submit(job) = job {
                for id in job.pins() {
                    *pending.entry(*id).or_default() += 1;
                }
            }
        }
        // Tasks the next slices of `settle` will examine.
        let unsettled: FxHashSet<TaskId> = self.dirty.iter().copied().collect();
        let activating = matches!(self.jobs.front(), Some(Job::Submit(j)) if j.activating());
        for ((dep, id), n) in edges {
            assert_eq!(n, 0, "{dep} lists dependent {id} as often as {id} lists it");
        }
        for (id, task) in self.tasks.iter() {
            assert_eq!(self.tasks.find(&task.key), Some(id), "key index of {id}");
            assert_eq!(
                task.pending_dependents,
                pending.get(&id).copied().unwrap_or(0),
                "pending dependents of {id} ({})",
                task.key
            );
            for dep in task.deps.iter() {
                let d = self.task(*dep);
                if task.state.is_unfinished()
                    && !(activating && matches!(d.state, TaskState::Released))
                {
                    assert!(
                        d.state.is_unfinished() || matches!(d.state, TaskState::Memory(_)),
                        "unfinished {id} ({}) has input {dep} in state {:?}",
                        task.key,
                        d.state
                    );
                }
            }
            if matches!(task.state, TaskState::Waiting) {
                let missing = self.missing_inputs(id);
                assert_eq!(task.missing_deps, missing, "missing deps of {id}");
                assert!(missing > 0, "waiting task {id} has all inputs");
            }
            if let Some(w) = task.state.assigned_worker() {
                assert_eq!(
                    self.workers[&w].assigned.get(task.assigned_slot as usize),
                    Some(&id),
                    "{w} assigned {id} at its slot"
                );
            }
            if let TaskState::Memory(holders) = &task.state {
                assert!(!holders.is_empty(), "memory task {id} without holders");
                for w in holders {
                    assert!(self.workers.contains_key(w), "{id} held by gone {w}");
                }
            }
            if !task.is_needed() && !unsettled.contains(&id) {
                assert!(
                    !task.state.is_unfinished(),
                    "unneeded {id} still {:?}",
                    task.state
                );
                assert!(
                    !matches!(task.state, TaskState::Memory(_)),
                    "unneeded {id} in memory"
                );
            }
            for c in &task.wanted_by {
                assert!(
                    self.clients.contains_key(c),
                    "{id} wanted by gone client {c}"
                );
                assert!(
                    self.clients[c].wanted.contains(&id),
                    "{c} does not remember wanting {id}"
                );
            }
        }
        for (w, worker) in &self.workers {
            for (slot, t) in worker.assigned.iter().enumerate() {
                assert_eq!(
                    self.task(*t).state.assigned_worker(),
                    Some(*w),
                    "{w} assigned {t}"
                );
                assert_eq!(
                    self.task(*t).assigned_slot as usize,
                    slot,
                    "{t} listed once, at its slot"
                );
            }
            for t in &worker.holds {
                assert!(
                    matches!(&self.task(*t).state, TaskState::Memory(h) if h.contains(w)),
                    "{w} holds {t}"
                );
            }
            for p in &worker.knows {
                assert!(self.workers[p].known_by.contains(w), "{p} known by {w}");
            }
            for p in &worker.known_by {
                assert!(self.workers[p].knows.contains(w), "{p} knows {w}");
            }
        }
        for (id, task) in self.tasks.iter() {
            if let TaskState::Memory(holders) = &task.state {
                for h in holders {
                    assert!(
                        self.workers[h].holds.contains(&id),
                        "{h} listed as holding {id}"
                    );
                }
            }
        }
        // The index is brought up to date before it is read: check it as it will be then.
        for (id, w) in &self.workers {
            assert_eq!(
                w.reindex,
                self.reindex.contains(id),
                "{id} queued for re-indexing"
            );
        }
        let mut index = self.index.clone();
        for w in self.reindex.iter().filter_map(|id| self.workers.get(id)) {
            index.update(w);
        }
        index.check(&self.workers);
        self.tally
            .check(self.tasks.values().map(|t| (t.prefix, &t.state)));
        // Every ready task is on its way to a worker: in the ready list, the root queue
        // or the unplaced list.
        let waiting: FxHashSet<TaskId> = self
            .ready
            .iter()
            .chain(&self.unplaced)
            .copied()
            .chain(self.root_queue.iter())
            .collect();
        for (id, task) in self.tasks.iter() {
            if matches!(task.state, TaskState::Ready) {
                assert!(
                    waiting.contains(&id),
                    "ready {id} ({}) is nowhere",
                    task.key
                );
            }
        }
        assert_eq!(
            self.tasks.indexed_keys(),
            self.tasks.len(),
            "key index size"
        );
    }
}
