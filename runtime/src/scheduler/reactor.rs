//! Event handlers: what happens when workers and clients report something.

use super::comm::Comm;
use super::core::{ClientState, Core};
use super::jobs::Job;
use super::task::TaskState;
use super::worker::WorkerState;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{
    Input, KeyState, KeyUpdate, Registration, TaskError, TaskFailed, TaskFinished, ToWorker,
    WorkerMetrics,
};
use smallvec::smallvec;
use std::sync::Arc;
use std::time::Instant;

impl Core {
    /// A worker registered. Returns its id. O(log W): it learns a peer's address when it
    /// is first sent a task with an input there (see [`Core::introduce`]), so nobody is
    /// told of everybody.
    pub fn on_worker_added(
        &mut self,
        id: WorkerId,
        registration: Registration,
        now: Instant,
        heartbeat_ms: u64,
        comm: &mut impl Comm,
    ) {
        assert!(
            id.0 <= self.last_worker_id().0 && !self.workers.contains_key(&id),
            "worker id {id} was not allocated by new_worker_id, or is in use"
        );
        tracing::info!(worker = %id, name = %registration.name, address = %registration.data_address, nthreads = registration.nthreads, "worker joined");
        let worker = WorkerState::new(id, registration, now);
        self.index.insert(&worker);
        self.workers.insert(id, worker);
        comm.send_worker(
            id,
            ToWorker::Registered {
                id,
                heartbeat_ms,
                peers: Vec::new(),
            },
        );
        self.requeue_unplaced();
    }

    /// Restart workers (all when `names` is empty: a name or any of a worker's data
    /// addresses selects it) in their process; with `cancel_all`, every key is cancelled
    /// first. Restarted workers count as leaving, not dying. Returns the workers restarted.
    pub fn on_restart(
        &mut self,
        names: &[String],
        cancel_all: bool,
        comm: &mut impl Comm,
    ) -> Vec<WorkerId> {
        if cancel_all {
            let keys: Vec<String> = self.tasks.values().map(|t| t.key.to_string()).collect();
            self.on_cancel(&keys, comm);
        }
        let targets: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| {
                names.is_empty()
                    || names.iter().any(|n| {
                        *n == w.registration.name
                            || w.registration.data_address.split(' ').any(|a| a == n)
                    })
            })
            .map(|w| w.id)
            .collect();
        for &w in &targets {
            self.on_worker_retiring(w, comm);
            comm.send_worker(w, ToWorker::Restart);
        }
        targets
    }

    /// A worker left (closed, timed out or died): reschedule its work, recompute lost data.
    pub fn on_worker_lost(&mut self, id: WorkerId, reason: &str, comm: &mut impl Comm) {
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        tracing::warn!(worker = %id, name = %worker.registration.name, %reason, "worker lost");
        self.index.remove(&worker);
        for other in &worker.known_by {
            if let Some(w) = self.workers.get_mut(other) {
                w.knows.remove(&id);
                comm.send_worker(*other, ToWorker::PeerLeft(id));
            }
        }
        for peer in &worker.knows {
            if let Some(p) = self.workers.get_mut(peer) {
                p.known_by.remove(&id);
            }
        }
        if !self.steals.is_empty() {
            self.steals.retain(|_, thief| *thief != id);
        }
        for task_id in worker.assigned {
            let Some(task) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            if task.state.assigned_worker() != Some(id) {
                continue; // failed meanwhile as a dependent of a KilledWorker task
            }
            if let (TaskState::Running(_), false) = (&task.state, worker.retiring) {
                task.worker_deaths += 1;
                if task.worker_deaths >= self.config.allowed_failures {
                    let error = Arc::new(TaskError {
                        key: task.key.to_string(),
                        kind: shoal_comm::message::TaskErrorKind::KilledWorker,
                        message: format!(
                            "task {:?} was running on {} workers that died; it is probably what kills them (allowed-failures = {})",
                            task.key, task.worker_deaths, self.config.allowed_failures
                        ),
                        traceback: None,
                        exception: Vec::new(),
                    });
                    self.fail_with_dependents(task_id, error, comm);
                    continue;
                }
            }
            self.set_state(task_id, TaskState::Ready, comm);
        }
        // Results only this worker held are lost.
        for task_id in worker.holds {
            if self.tasks.contains_key(&task_id) {
                self.drop_holder(task_id, id, comm);
            }
        }
        self.settle(comm);
    }

    /// `worker` no longer holds `task`'s result; if nobody does, recompute it where needed.
    fn drop_holder(&mut self, task_id: TaskId, worker: WorkerId, comm: &mut impl Comm) {
        let TaskState::Memory(holders) = &mut self.task_mut(task_id).state else {
            return;
        };
        holders.retain(|w| *w != worker);
        let lost = holders.is_empty();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.forget_result(task_id);
        }
        if !lost {
            return;
        }
        // Lost: dependents not yet sent to a worker wait for it again; queued ones report
        // missing data themselves.
        let old = std::mem::replace(&mut self.task_mut(task_id).state, TaskState::Released);
        let prefix = self.task(task_id).prefix;
        self.tally.moved(prefix, &old, &TaskState::Released);
        let dependents = self.task(task_id).dependents.clone();
        for d in dependents {
            if matches!(self.task(d).state, TaskState::Waiting | TaskState::Ready) {
                let missing = self.missing_inputs(d);
                self.await_inputs(d, missing, comm);
            }
        }
        if self.task(task_id).is_needed() {
            self.revive(task_id, comm);
        }
        self.mark_dirty([task_id]);
    }

    /// Tasks started running on `worker`.
    pub fn on_tasks_started(&mut self, worker: WorkerId, ids: &[TaskId], comm: &mut impl Comm) {
        for &id in ids {
            if let Some(task) = self.tasks.get(&id) {
                if task.state.is_queued_on(worker) {
                    self.set_state(id, TaskState::Running(worker), comm);
                }
            }
        }
    }

    /// Tasks finished on `worker`.
    pub fn on_tasks_finished(
        &mut self,
        worker: WorkerId,
        finished: &[TaskFinished],
        comm: &mut impl Comm,
    ) {
        let mut finished_here = 0;
        for f in finished {
            let Some(task) = self.tasks.get_mut(&f.id) else {
                comm.release(worker, f.id);
                continue;
            };
            match task.state {
                TaskState::Queued(w) | TaskState::Running(w) if w == worker => {}
                TaskState::Memory(ref mut holders) => {
                    // A stolen or re-run task finished twice: keep the extra copy.
                    if !holders.contains(&worker) {
                        holders.push(worker);
                        if let Some(w) = self.workers.get_mut(&worker) {
                            w.holds.insert(f.id);
                        }
                    }
                    continue;
                }
                _ => {
                    comm.release(worker, f.id);
                    continue;
                }
            }
            task.size = f.size;
            finished_here += 1;
            self.set_state(f.id, TaskState::Memory(smallvec![worker]), comm);
            let dependents = std::mem::take(&mut self.task_mut(f.id).dependents);
            for &d in &dependents {
                let dt = self.task_mut(d);
                if matches!(dt.state, TaskState::Waiting) {
                    dt.missing_deps -= 1;
                    if dt.missing_deps == 0 {
                        self.set_state(d, TaskState::Ready, comm);
                    }
                }
            }
            self.task_mut(f.id).dependents = dependents;
            self.notify_wanters(f.id, comm);
        }
        self.finished_count += finished_here;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.finished += finished_here;
        }
        self.settle(comm);
    }

    /// Tasks failed on `worker`: retry, or fail them and their dependents.
    pub fn on_tasks_failed(
        &mut self,
        worker: WorkerId,
        failed: Vec<TaskFailed>,
        comm: &mut impl Comm,
    ) {
        for f in failed {
            let Some(task) = self.tasks.get_mut(&f.id) else {
                continue;
            };
            if task.state.assigned_worker() != Some(worker) {
                continue;
            }
            if task.retries_left > 0 {
                task.retries_left -= 1;
                tracing::info!(key = %task.key, retries_left = task.retries_left, "task failed, retrying");
                self.set_state(f.id, TaskState::Ready, comm);
                continue;
            }
            let mut error = f.error;
            error.key = task.key.to_string();
            self.fail_with_dependents(f.id, Arc::new(error), comm);
        }
        self.settle(comm);
    }

    /// A worker could not fetch an input of a queued task from the holders named.
    pub fn on_missing_data(
        &mut self,
        worker: WorkerId,
        task: TaskId,
        missing: TaskId,
        holders: &[WorkerId],
        comm: &mut impl Comm,
    ) {
        for &h in holders {
            if self.tasks.contains_key(&missing) {
                self.drop_holder(missing, h, comm);
                if self.workers.contains_key(&h) {
                    comm.release(h, missing); // unreachable for now: drop it there too
                }
            }
        }
        if let Some(t) = self.tasks.get(&task) {
            if t.state.assigned_worker() == Some(worker) {
                let missing = self.missing_inputs(task);
                self.await_inputs(task, missing, comm);
            }
        }
        self.settle(comm);
    }

    /// A worker answered a steal request.
    pub fn on_steal_reply(
        &mut self,
        victim: WorkerId,
        replies: &[(TaskId, bool)],
        comm: &mut impl Comm,
    ) {
        for &(id, handed_back) in replies {
            let Some(thief) = self.steals.remove(&id) else {
                continue;
            };
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if !handed_back || !task.state.is_queued_on(victim) {
                continue;
            }
            if self.workers.contains_key(&thief) {
                self.assign(id, thief, comm);
            } else {
                self.set_state(id, TaskState::Ready, comm);
            }
        }
        self.settle(comm);
    }

    /// A worker announced it is leaving on its own: nothing new goes there, its queued
    /// work is placed elsewhere now, and its departure will not count as a death.
    pub fn on_worker_retiring(&mut self, worker: WorkerId, comm: &mut impl Comm) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.retiring = true;
        self.index.update(w);
        tracing::info!(worker = %worker, name = %w.registration.name, "worker retiring");
        let assigned: Vec<TaskId> = w.assigned.to_vec();
        for id in assigned {
            if self.task(id).state.is_queued_on(worker) {
                comm.release(worker, id);
                self.set_state(id, TaskState::Ready, comm);
            }
        }
        self.settle(comm);
    }

    /// A worker's memory passed its pause threshold (`true`) or fell back under it.
    pub fn on_worker_paused(&mut self, worker: WorkerId, paused: bool, comm: &mut impl Comm) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.metrics.memory.paused = paused;
        self.index.update(w);
        tracing::info!(worker = %worker, name = %w.registration.name, paused, "worker memory pause state");
        if paused {
            self.balance(comm);
        } else {
            self.requeue_unplaced();
            self.schedule(comm);
        }
    }

    /// Results moved to a worker's disk (`on_disk`) or back into its memory.
    pub fn on_worker_spilled(&mut self, worker: WorkerId, ids: &[TaskId], on_disk: bool) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        for id in ids {
            if on_disk {
                w.spilled.insert(*id);
            } else {
                w.spilled.remove(id);
            }
        }
    }

    /// A worker's heartbeat.
    pub fn on_worker_heartbeat(&mut self, worker: WorkerId, metrics: WorkerMetrics, now: Instant) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.metrics = metrics;
            w.last_seen = now;
            self.index.update(w);
        }
    }

    /// Any message from a worker proves it alive.
    pub fn touch_worker(&mut self, worker: WorkerId, now: Instant) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
        }
    }

    /// Periodic check: drop workers silent for longer than the timeout.
    pub fn on_tick(&mut self, now: Instant, comm: &mut impl Comm) {
        let timeout = self.config.worker_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| now.duration_since(w.last_seen) > timeout)
            .map(|w| w.id)
            .collect();
        for id in silent {
            self.on_worker_lost(id, &format!("no heartbeat for {timeout:?}"), comm);
        }
    }

    /// A client connected.
    pub fn on_client_added(&mut self) -> ClientId {
        let id = self.new_client_id();
        self.clients.insert(id, ClientState::default());
        id
    }

    /// A client left: everything it wanted is released, O(its wanted tasks). Many, or
    /// jobs before them, make it a job done in slices; the client is forgotten at its end.
    pub fn on_client_lost(&mut self, client: ClientId, comm: &mut impl Comm) {
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        if !self.jobs.is_empty() || c.wanted.len() > self.config.slice_budget {
            if !self
                .jobs
                .iter()
                .any(|j| matches!(j, Job::ClientLost(c) if *c == client))
            {
                self.jobs.push_back(Job::ClientLost(client));
            }
            return;
        }
        let mut unlimited = usize::MAX;
        self.drop_client_wants(client, &mut unlimited);
        self.settle(comm);
    }

    /// Release up to `budget` of the tasks `client` wants; once none is left, forget the
    /// client. Returns whether it is forgotten.
    pub(crate) fn drop_client_wants(&mut self, client: ClientId, budget: &mut usize) -> bool {
        while *budget > 0 {
            let Some(id) = self.clients.get_mut(&client).and_then(|c| c.wanted.pop()) else {
                break;
            };
            *budget -= 1;
            let Some(task) = self.tasks.get_mut(&id) else {
                continue; // a stale entry
            };
            if let Some(pos) = task.wanted_by.iter().position(|c| *c == client) {
                task.wanted_by.swap_remove(pos);
                self.mark_dirty([id]);
            } // else stale: released since
        }
        let done = self
            .clients
            .get(&client)
            .is_none_or(|c| c.wanted.is_empty());
        if done {
            self.clients.remove(&client);
        }
        done
    }

    /// The client drops its futures on these keys. Many keys, or jobs before them, make
    /// it a job done in slices.
    pub fn on_release(&mut self, client: ClientId, keys: &[String], comm: &mut impl Comm) {
        if !self.jobs.is_empty() || keys.len() > self.config.slice_budget {
            self.on_release_keys(client, keys.to_vec(), comm);
            return;
        }
        for key in keys {
            self.release_key(client, key);
        }
        self.settle(comm);
    }

    /// [`Core::on_release`] taking the keys (no copy of a long list).
    pub fn on_release_keys(&mut self, client: ClientId, keys: Vec<String>, comm: &mut impl Comm) {
        if !self.jobs.is_empty() || keys.len() > self.config.slice_budget {
            self.jobs.push_back(Job::Release {
                client,
                keys,
                pos: 0,
            });
            return;
        }
        for key in &keys {
            self.release_key(client, key);
        }
        self.settle(comm);
    }

    /// `client` no longer wants `key`.
    pub(crate) fn release_key(&mut self, client: ClientId, key: &str) {
        let Some(id) = self.find_key(key) else {
            return;
        };
        let task = self.task_mut(id);
        if let Some(pos) = task.wanted_by.iter().position(|c| *c == client) {
            task.wanted_by.swap_remove(pos);
            self.mark_dirty([id]);
        }
    }

    /// Copy results in memory to every worker that lacks them and accepts work.
    pub fn on_replicate(&mut self, keys: &[String], comm: &mut impl Comm) {
        let mut by_worker: FxHashMap<WorkerId, Vec<Input>> = FxHashMap::default();
        for key in keys {
            let Some(id) = self.find_key(key) else {
                continue;
            };
            let task = self.task(id);
            let TaskState::Memory(holders) = &task.state else {
                continue;
            };
            for w in self.workers.values() {
                if w.accepts_work() && !holders.contains(&w.id) {
                    by_worker.entry(w.id).or_default().push(Input {
                        id,
                        holders: holders.to_vec(),
                        size: task.size,
                    });
                }
            }
        }
        for (worker, inputs) in by_worker {
            self.ask_to_copy(worker, inputs, comm);
        }
    }

    /// Ask `worker` to fetch copies of these results from their holders (introduced to it
    /// first) and keep them as held; it answers `Replicated`.
    pub fn ask_to_copy(&mut self, worker: WorkerId, inputs: Vec<Input>, comm: &mut impl Comm) {
        for input in &inputs {
            for h in &input.holders {
                self.introduce(worker, *h, comm);
            }
        }
        comm.send_worker(worker, ToWorker::Replicate(inputs));
    }

    /// A worker holds copies it was asked to make: it is a holder now, or it drops those
    /// no longer wanted.
    pub fn on_worker_replicated(&mut self, worker: WorkerId, ids: &[TaskId], comm: &mut impl Comm) {
        for &id in ids {
            match self.tasks.get_mut(&id).map(|t| &mut t.state) {
                Some(TaskState::Memory(holders)) => {
                    if !holders.contains(&worker) {
                        holders.push(worker);
                        if let Some(w) = self.workers.get_mut(&worker) {
                            w.holds.insert(id);
                        }
                    }
                }
                _ => comm.release(worker, id),
            }
        }
    }

    /// Cancel keys for every client that wants them; work only they needed stops. Many
    /// keys, or jobs before them, make it a job done in slices.
    pub fn on_cancel(&mut self, keys: &[String], comm: &mut impl Comm) {
        if !self.jobs.is_empty() || keys.len() > self.config.slice_budget {
            self.jobs.push_back(Job::Cancel {
                keys: keys.to_vec(),
                pos: 0,
            });
            return;
        }
        for key in keys {
            self.cancel_key(key, comm);
        }
        self.settle(comm);
    }

    /// Nobody wants `key` any more; its wanters hear it was cancelled.
    pub(crate) fn cancel_key(&mut self, key: &str, comm: &mut impl Comm) {
        let Some(id) = self.find_key(key) else {
            return;
        };
        let wanters = std::mem::take(&mut self.task_mut(id).wanted_by);
        for client in wanters {
            comm.key_update(
                client,
                KeyUpdate {
                    key: key.to_string(),
                    state: KeyState::Cancelled,
                },
            );
        }
        self.mark_dirty([id]);
    }
}
