//! Retiring workers on request (`Client.retire_workers`) without losing data: nothing new
//! is placed on them and their queued work moves at once (as when a worker leaves on its
//! own); results only they hold are copied to workers that stay; a worker is told to
//! shut down once nothing runs there and nothing only it holds is left.
//!
//! Plain state next to the core (the server owns both), advanced on every heartbeat tick
//! and whenever copies arrive.

use super::comm::Comm;
use super::core::Core;
use super::task::TaskState;
use rustc_hash::{FxHashMap, FxHashSet};
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{Input, ToWorker};

/// Workers being retired, and the copies asked for on their behalf.
#[derive(Debug, Default)]
pub struct Retirements {
    retiring: FxHashSet<WorkerId>,
    /// Results being copied off retiring workers: task → the worker copying it.
    copies: FxHashMap<TaskId, WorkerId>,
}

impl Retirements {
    /// Whether any retirement is under way.
    pub fn is_empty(&self) -> bool {
        self.retiring.is_empty()
    }

    /// Start retiring the workers named (by name or data address); returns their ids.
    pub fn on_retire(
        &mut self,
        core: &mut Core,
        names: &[String],
        comm: &mut impl Comm,
    ) -> Vec<WorkerId> {
        let ids: Vec<WorkerId> = core
            .workers
            .values()
            .filter(|w| {
                names.iter().any(|n| {
                    *n == w.registration.name
                        || w.registration.data_address.split(' ').any(|a| a == n)
                })
            })
            .map(|w| w.id)
            .collect();
        for &id in &ids {
            core.on_worker_retiring(id, comm);
            self.retiring.insert(id);
        }
        self.progress(core, comm);
        ids
    }

    /// Copy results only retiring workers hold to workers that stay; tell retiring
    /// workers with nothing left to shut down.
    pub fn progress(&mut self, core: &mut Core, comm: &mut impl Comm) {
        if self.retiring.is_empty() {
            return;
        }
        self.retiring.retain(|w| core.workers.contains_key(w));
        self.copies
            .retain(|_, target| core.workers.contains_key(target));
        let staying: Vec<WorkerId> = core
            .workers
            .values()
            .filter(|w| !self.retiring.contains(&w.id) && w.accepts_work())
            .map(|w| w.id)
            .collect();
        // Results whose every holder is retiring, by the first of those holders (from the
        // retiring workers' own lists of held results: no scan of every task).
        let mut unique: FxHashMap<WorkerId, Vec<TaskId>> = FxHashMap::default();
        for w in &self.retiring {
            let Some(state) = core.workers.get(w) else {
                continue;
            };
            for &id in &state.holds {
                if let Some(TaskState::Memory(holders)) = core.tasks.get(&id).map(|t| &t.state) {
                    if holders[0] == *w && holders.iter().all(|h| self.retiring.contains(h)) {
                        unique.entry(*w).or_default().push(id);
                    }
                }
            }
        }
        let mut asks: FxHashMap<WorkerId, Vec<Input>> = FxHashMap::default();
        let mut turn = 0;
        for ids in unique.values() {
            for &id in ids {
                if self.copies.contains_key(&id) || staying.is_empty() {
                    continue;
                }
                let target = staying[turn % staying.len()];
                turn += 1;
                let task = core.task(id);
                let TaskState::Memory(holders) = &task.state else {
                    continue;
                };
                asks.entry(target).or_default().push(Input {
                    id,
                    holders: holders.to_vec(),
                    size: task.size,
                });
                self.copies.insert(id, target);
            }
        }
        for (target, inputs) in asks {
            core.ask_to_copy(target, inputs, comm);
        }
        let mut done = Vec::new();
        for &w in &self.retiring {
            let idle = core.workers.get(&w).is_none_or(|s| s.assigned.is_empty());
            if idle && !unique.contains_key(&w) {
                done.push(w);
            } else if staying.is_empty() {
                tracing::warn!(worker = %w, "cannot retire the worker yet: no other worker can take the results only it holds");
            }
        }
        for w in done {
            tracing::info!(worker = %w, "retired: its results are held elsewhere; shutting it down");
            comm.send_worker(w, ToWorker::Shutdown);
            self.retiring.remove(&w);
        }
    }

    /// Copies arrived: those results are no longer only on retiring workers.
    pub fn on_replicated(&mut self, ids: &[TaskId]) {
        for id in ids {
            self.copies.remove(id);
        }
    }
}
