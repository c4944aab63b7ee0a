//! Placing ready tasks on workers (data locality, then load) and stealing queued work
//! for idle workers.

use super::comm::Comm;
use super::core::Core;
use super::task::TaskState;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{ComputeTask, Input, TaskError};

/// Most tasks one steal round moves to one idle worker.
const MAX_STEAL_PER_WORKER: usize = 256;

impl Core {
    /// Place every ready task.
    pub fn schedule(&mut self, comm: &mut impl Comm) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        let mut local_bytes: FxHashMap<WorkerId, u64> = FxHashMap::default();
        for id in ready {
            match self.tasks.get(&id) {
                Some(t) if t.state == TaskState::Ready => {}
                _ => continue,
            }
            match self.choose_worker(id, &mut local_bytes) {
                Some(w) => self.assign(id, w, comm),
                None => self.no_worker_fits(id, comm),
            }
        }
        self.settle(comm);
    }

    /// No current worker can run `id`. If none even has its executor kind, fail it now
    /// with what to do (waiting could last forever); otherwise it waits for a worker with
    /// the resources or name it asks for, as Dask does.
    fn no_worker_fits(&mut self, id: TaskId, comm: &mut impl Comm) {
        let kind = self.task(id).kind;
        let kind_known = self
            .workers
            .values()
            .any(|w| w.registration.executors.contains(&kind));
        if self.workers.is_empty() || kind_known {
            self.unplaced.push(id);
            return;
        }
        let error = TaskError {
            key: self.task(id).key.to_string(),
            kind: "Unsupported".into(),
            message: format!(
                "no worker of this cluster can run {kind:?} tasks: its workers were started from the Rust `shoal` binary. Start workers that can, from the Python package (`python -m shoal worker ...`, `python -m shoal local`, `python -m shoal mpi` under mpirun)"
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
    /// the least loaded. `None` if no worker can run it.
    fn choose_worker(
        &self,
        id: TaskId,
        local_bytes: &mut FxHashMap<WorkerId, u64>,
    ) -> Option<WorkerId> {
        let task = self.task(id);
        local_bytes.clear();
        for dep in task.deps.iter() {
            let d = self.task(*dep);
            if let TaskState::Memory(holders) = &d.state {
                for h in holders {
                    // A spilled input counts half: a holder with it in memory is better.
                    let spilled = self.workers.get(h).is_some_and(|w| w.spilled.contains(dep));
                    let bytes = d.size.max(1);
                    *local_bytes.entry(*h).or_default() += if spilled { bytes / 2 } else { bytes };
                }
            }
        }
        let (resources, allowed) = (task.resources(), task.allowed_workers());
        let unconstrained = resources.is_empty() && allowed.is_empty();
        let mut best: Option<(u64, f64, WorkerId)> = None;
        for w in self.workers.values() {
            if !w.accepts_work() {
                continue;
            }
            if !(unconstrained && w.registration.executors.contains(&task.kind)
                || w.can_run(task.kind, resources, allowed))
            {
                continue;
            }
            let bytes = local_bytes.get(&w.id).copied().unwrap_or(0);
            let load = w.load();
            let better = match best {
                None => true,
                Some((b, l, bid)) => {
                    bytes > b || (bytes == b && (load < l || (load == l && w.id < bid)))
                }
            };
            if better {
                best = Some((bytes, load, w.id));
            }
        }
        best.map(|(_, _, w)| w)
    }

    /// Send a ready task to a worker, with where each input lives.
    pub(crate) fn assign(&mut self, id: TaskId, worker: WorkerId, comm: &mut impl Comm) {
        let task = self.task(id);
        let inputs = task
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
        out.sort_by_key(|h| self.workers.get(h).is_some_and(|w| w.spilled.contains(&id)));
        out
    }

    /// Move queued (not started) tasks from the busiest workers to idle ones.
    pub fn balance(&mut self, comm: &mut impl Comm) {
        let mut idle: Vec<(WorkerId, usize)> = self
            .workers
            .values()
            .filter(|w| w.is_idle() && w.accepts_work())
            .map(|w| (w.id, w.nthreads() as usize - w.assigned.len()))
            .collect();
        if idle.is_empty() {
            return;
        }
        idle.sort_by_key(|(w, _)| *w);
        for (thief, free) in idle {
            // The victim with most queued work per thread beyond what it is running.
            let Some(victim) = self
                .workers
                .values()
                .filter(|w| w.id != thief && w.surplus() > 0)
                .max_by(|a, b| a.load().total_cmp(&b.load()).then(b.id.cmp(&a.id)))
                .map(|w| w.id)
            else {
                return;
            };
            let victim_state = &self.workers[&victim];
            let surplus = victim_state.surplus();
            let want = free.max(surplus / 2).min(MAX_STEAL_PER_WORKER).min(surplus);
            let thief_state = &self.workers[&thief];
            let picked: Vec<TaskId> = victim_state
                .assigned
                .iter()
                .copied()
                .filter(|t| {
                    let task = self.task(*t);
                    task.state == TaskState::Queued(victim)
                        && !self.steals.contains_key(t)
                        && thief_state.can_run(task.kind, task.resources(), task.allowed_workers())
                })
                .take(want)
                .collect();
            for t in picked {
                self.steals.insert(t, thief);
                comm.steal(victim, t);
            }
        }
    }
}
