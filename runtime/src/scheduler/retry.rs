//! `Client.retry`: computing failed keys again.

use super::comm::Comm;
use super::core::Core;
use super::task::TaskState;
use shoal_comm::ids::TaskId;

impl Core {
    /// Compute these failed keys again: every failed task in their lineage (the one that
    /// raised and the dependents that failed because of it) goes back to released with
    /// its worker-death count reset (not its `retries` budget), then the keys are revived. Keys
    /// that did not fail are left alone.
    pub fn on_retry(&mut self, keys: &[String], comm: &mut impl Comm) {
        let roots: Vec<TaskId> = keys
            .iter()
            .filter_map(|k| self.find_key(k))
            .filter(|id| matches!(self.task(*id).state, TaskState::Erred(_)))
            .collect();
        let mut stack = roots.clone();
        let mut failed = Vec::new();
        while let Some(id) = stack.pop() {
            if !matches!(self.task(id).state, TaskState::Erred(_)) || failed.contains(&id) {
                continue;
            }
            failed.push(id);
            stack.extend(self.task(id).deps.iter().copied());
        }
        for &id in &failed {
            self.task_mut(id).worker_deaths = 0;
            self.set_state(id, TaskState::Released, comm);
        }
        for id in roots {
            self.revive(id, comm);
        }
        self.settle(comm);
    }
}
