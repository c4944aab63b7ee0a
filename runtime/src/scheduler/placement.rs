//! Placing ready tasks on workers (data locality, then load), releasing queued root tasks
//! as worker slots free up, and stealing queued work for idle workers. Nothing here scans
//! the workers: candidates come from the holders of a task's inputs and from the
//! [`WorkerIndex`](super::worker_index::WorkerIndex).

use super::comm::Comm;
use super::core::Core;
use super::task::TaskState;
use super::worker::WorkerState;
use super::worker_index::LoadKey;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{ComputeTask, ExecutorKind, Input, Resource, TaskError, ToWorker};
use smallvec::SmallVec;

/// An eligible worker holding inputs of a task being placed: input bytes it holds, and its
/// load when asked.
struct HolderBytes {
    bytes: u64,
    load: LoadKey,
}

/// Most tasks one steal round moves to one idle worker.
const MAX_STEAL_PER_WORKER: usize = 256;

impl Core {
    /// One bounded slice of pending work: a piece of a submission being accepted, ready
    /// tasks placed, queued root tasks released to workers with free slots. Returns
    /// whether work remains (call again, after answering other events).
    pub fn schedule(&mut self, comm: &mut impl Comm) -> bool {
        let mut budget = self.config.slice_budget.max(1);
        let mut more = self.settle_within(&mut budget, comm);
        more |= self.jobs_slice(&mut budget, comm);
        let mut holders: Vec<HolderBytes> = Vec::new();
        while budget > 0 {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            budget -= 1;
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if !matches!(task.state, TaskState::Ready) {
                continue;
            }
            if task.deps.is_empty() && task.constraints.is_none() {
                let (kind, priority) = (task.kind, task.priority);
                self.root_queue.push(kind, priority, id);
                continue;
            }
            // Where its inputs are; else the least loaded capable worker, from the index
            // (brought up to date only then: O(log W), and not once per placement).
            let worker = self.best_holder(id, &mut holders).or_else(|| {
                self.refresh_index();
                self.least_loaded_capable(id)
            });
            match worker {
                Some(w) => self.assign(id, w, comm),
                None => self.no_worker_fits(id, comm),
            }
        }
        more |= !self.ready.is_empty();
        more |= self.release_roots(&mut budget, comm);
        more |= self.settle_within(&mut budget.max(1), comm);
        more || !self.ready.is_empty()
    }

    /// Most tasks a worker with `nthreads` threads gets while root tasks are queued.
    pub fn saturation_limit(&self, nthreads: u32) -> u32 {
        let limit = (f64::from(nthreads.max(1)) * self.config.worker_saturation).ceil();
        let by_threads = if limit.is_nan() || limit >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            limit as u32
        };
        by_threads.max(self.config.min_worker_queue).max(1)
    }

    /// Send queued root tasks to the least loaded workers while they are below their
    /// saturation limit. Returns whether the budget ran out with work left.
    ///
    /// Roots go out in runs: the least loaded worker takes the next roots in priority
    /// order, at least as many as it has threads (fewer only when it fills up or the
    /// queue empties), then more while it is still below the runner-up. Neighbours in
    /// priority order are the roots a reduction combines first (Dask orders a graph that
    /// way), so a run lets their dependent start where both inputs are, with no
    /// transfer; one task at a time to the least loaded would deal neighbours out to
    /// different workers. The index moves a worker once per run, not once per task.
    fn release_roots(&mut self, budget: &mut usize, comm: &mut impl Comm) -> bool {
        let kinds: SmallVec<[ExecutorKind; 4]> = self.root_queue.kinds().collect();
        for kind in kinds {
            'runs: while self.root_queue.peek(kind).is_some() {
                self.refresh_index();
                let (Some(mut least), runner_up) = self.index.least_two(kind, &[]) else {
                    if !self.workers.is_empty() && !self.index.kind_known(kind) {
                        while let Some(id) = self.root_queue.peek(kind) {
                            if *budget == 0 {
                                return true;
                            }
                            *budget -= 1;
                            self.root_queue.pop(kind);
                            if self.is_ready(id) {
                                self.fail_unsupported(id, comm);
                            }
                        }
                    }
                    break; // capable workers exist but are paused or retiring
                };
                let limit = self.saturation_limit(least.nthreads);
                let mut run = 0;
                loop {
                    if run >= least.nthreads && runner_up.is_some_and(|r| r < least) {
                        continue 'runs; // the runner-up is the least loaded now
                    }
                    if least.assigned >= limit {
                        if run > 0 {
                            continue 'runs; // it filled up before the run ended
                        }
                        break 'runs; // the least loaded is full, so all are
                    }
                    let Some(id) = self.root_queue.peek(kind) else {
                        break 'runs;
                    };
                    if *budget == 0 {
                        return true;
                    }
                    *budget -= 1;
                    self.root_queue.pop(kind);
                    if self.is_ready(id) {
                        self.assign(id, least.id, comm);
                        least.assigned += 1;
                        run += 1;
                    }
                }
            }
        }
        false
    }

    /// `id` is a task still ready (a queue entry about it is not stale).
    fn is_ready(&self, id: TaskId) -> bool {
        self.tasks
            .get(&id)
            .is_some_and(|t| matches!(t.state, TaskState::Ready))
    }

    /// No current worker can run `id`. If none even has its executor kind, fail it now
    /// with what to do (waiting could last forever); otherwise it waits for a worker with
    /// the resources or name it asks for, as Dask does.
    fn no_worker_fits(&mut self, id: TaskId, comm: &mut impl Comm) {
        let kind = self.task(id).kind;
        if self.workers.is_empty() || self.index.kind_known(kind) {
            self.unplaced.push(id);
            return;
        }
        self.fail_unsupported(id, comm);
    }

    fn fail_unsupported(&mut self, id: TaskId, comm: &mut impl Comm) {
        let kind = self.task(id).kind;
        let error = TaskError {
            key: self.task(id).key.to_string(),
            kind: shoal_comm::message::TaskErrorKind::Unsupported,
            message: format!(
                "no worker of this cluster can run {kind:?} tasks: its workers were started from the Rust `shoal` binary"
            ),
            traceback: None,
            exception: Vec::new(),
        };
        self.fail_with_dependents(id, std::sync::Arc::new(error), comm);
    }

    /// Workers changed: give unplaced tasks another chance.
    pub(crate) fn requeue_unplaced(&mut self) {
        let unplaced = std::mem::take(&mut self.unplaced);
        self.ready.extend(unplaced);
    }

    /// The worker holding most input bytes among those that can run the task; ties go to
    /// the least loaded (its load read from the worker itself, so the index need not be
    /// current). `None` if no eligible worker holds an input. O(inputs · holders).
    fn best_holder(&self, id: TaskId, holders: &mut Vec<HolderBytes>) -> Option<WorkerId> {
        let task = self.task(id);
        let (resources, allowed) = (task.resources(), task.allowed_workers());
        // Each eligible holder once per input it holds, with its load (one lookup each).
        holders.clear();
        for dep in task.deps.iter() {
            let d = self.task(*dep);
            if let TaskState::Memory(held_by) = &d.state {
                for h in held_by {
                    let Some(w) = self.eligible(*h, task.kind, resources, allowed) else {
                        continue;
                    };
                    // A spilled input counts half: a holder with it in memory is better.
                    let spilled = w.is_spilled(*dep);
                    let bytes = d.size.max(1);
                    holders.push(HolderBytes {
                        bytes: if spilled { bytes / 2 } else { bytes },
                        load: LoadKey::of(w),
                    });
                }
            }
        }
        // Bytes per holder: sorted by holder, runs summed in place (a few entries as a
        // rule; a hash map per task cost more than the sort).
        holders.sort_unstable_by_key(|h| h.load.id);
        holders.dedup_by(|later, first| {
            let same = later.load.id == first.load.id;
            if same {
                first.bytes += later.bytes;
            }
            same
        });
        // Best holder: most bytes, then least loaded, then lowest id.
        holders
            .iter()
            .filter(|h| h.bytes > 0)
            .min_by(|a, b| b.bytes.cmp(&a.bytes).then(a.load.cmp(&b.load)))
            .map(|h| h.load.id)
    }

    /// The least loaded worker that can run `id` (among those its `workers=` restriction
    /// names, if any), from an up-to-date index. `None` if no worker can run it.
    fn least_loaded_capable(&self, id: TaskId) -> Option<WorkerId> {
        let task = self.task(id);
        let (resources, allowed) = (task.resources(), task.allowed_workers());
        if allowed.is_empty() {
            return self.index.least_loaded(task.kind, resources).map(|k| k.id);
        }
        allowed
            .iter()
            .flat_map(|name| self.index.named(name))
            .filter_map(|w| self.eligible(*w, task.kind, resources, allowed))
            .map(LoadKey::of)
            .min()
            .map(|k| k.id)
    }

    /// Worker `w`, if it accepts work and can run a task with these needs.
    fn eligible(
        &self,
        w: WorkerId,
        kind: ExecutorKind,
        resources: &[Resource],
        allowed: &[String],
    ) -> Option<&WorkerState> {
        self.workers
            .get(&w)
            .filter(|w| w.accepts_work() && w.can_run(kind, resources, allowed))
    }

    /// Tell `worker` the address of `peer` unless it knows it already.
    pub(crate) fn introduce(&mut self, worker: WorkerId, peer: WorkerId, comm: &mut impl Comm) {
        if worker == peer
            || !self.workers.contains_key(&peer)
            || !self
                .workers
                .get_mut(&worker)
                .is_some_and(|w| w.knows.insert(peer))
        {
            return;
        }
        let Some(p) = self.workers.get_mut(&peer) else {
            return;
        };
        p.known_by.insert(worker);
        let address = p.registration.data_address.clone();
        comm.send_worker(worker, ToWorker::PeerJoined(peer, address));
    }

    /// Send a ready task to a worker, with where each input lives.
    pub(crate) fn assign(&mut self, id: TaskId, worker: WorkerId, comm: &mut impl Comm) {
        let task = self.task(id);
        let inputs: Vec<Input> = task
            .deps
            .iter()
            .map(|d| Input {
                id: *d,
                holders: match &self.task(*d).state {
                    TaskState::Memory(h) => self.holders_memory_first(*d, h),
                    _ => Vec::new(),
                },
                size: self.task(*d).size,
            })
            .collect();
        for input in &inputs {
            for h in &input.holders {
                self.introduce(worker, *h, comm);
            }
        }
        let task = self.task(id);
        let compute = ComputeTask {
            id,
            kind: task.kind,
            payload: None,
            priority: task.priority,
            inputs,
            resources: task.resources().to_vec(),
        };
        let payload = task.payload.clone();
        comm.compute(worker, compute, payload);
        self.set_state(id, TaskState::Queued(worker), comm);
    }

    /// The holders of `id`, those with it in memory first (fetches go to them first).
    fn holders_memory_first(&self, id: TaskId, holders: &[WorkerId]) -> Vec<WorkerId> {
        let mut out = holders.to_vec();
        out.sort_by_key(|h| self.workers.get(h).is_some_and(|w| w.is_spilled(id)));
        out
    }

    /// Move queued (not started) tasks from the busiest workers to idle ones. Thieves come
    /// from the index of idle workers, victims from the index of overloaded ones; one call
    /// examines at most `slice_budget` queued tasks (the rest waits for the next call).
    pub fn balance(&mut self, comm: &mut impl Comm) {
        let mut budget = self.config.slice_budget.max(1);
        self.refresh_index();
        let thieves: Vec<WorkerId> = self.index.idle().take(budget).collect();
        // Victims whose stealable work this call already requested.
        let mut exhausted: SmallVec<[WorkerId; 8]> = SmallVec::new();
        for thief in thieves {
            if budget == 0 {
                return;
            }
            let Some(victim) = self
                .index
                .victims_by_load()
                .find(|v| *v != thief && !exhausted.contains(v))
            else {
                return;
            };
            let thief_state = &self.workers[&thief];
            let free = thief_state.nthreads() as usize - thief_state.assigned.len();
            let victim_state = &self.workers[&victim];
            let surplus = victim_state.surplus();
            let want = free.max(surplus / 2).min(MAX_STEAL_PER_WORKER).min(surplus);
            let mut picked: SmallVec<[TaskId; 16]> = SmallVec::new();
            let mut scanned = 0;
            for t in victim_state.assigned.iter().copied() {
                if picked.len() >= want || scanned >= budget {
                    break;
                }
                scanned += 1;
                let task = self.task(t);
                if task.state.is_queued_on(victim)
                    && !self.steals.contains_key(&t)
                    && thief_state.can_run(task.kind, task.resources(), task.allowed_workers())
                {
                    picked.push(t);
                }
            }
            budget -= scanned;
            if picked.is_empty() {
                exhausted.push(victim);
            }
            for t in picked {
                self.steals.insert(t, thief);
                comm.steal(victim, t);
            }
        }
    }
}
