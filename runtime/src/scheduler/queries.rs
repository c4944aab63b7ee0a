//! Questions clients and the server ask the core: where a key is, what the cluster looks
//! like, whether anything is left to do. Read-only.

use super::core::Core;
use super::task::TaskState;
use rustc_hash::FxHashMap;
use shoal_comm::ids::ClientId;
use shoal_comm::message::{ClusterStatus, KeyLocation, KeyState};

impl Core {
    /// Where the result of `key` is held (data addresses), and its state if final.
    pub fn locate(&self, key: String) -> KeyLocation {
        let Some(id) = self.find_key(&key) else {
            return KeyLocation {
                key,
                task: None,
                holders: Vec::new(),
                state: None,
                computing: false,
            };
        };
        let task = self.task(id);
        let (holders, state) = match &task.state {
            TaskState::Memory(h) => (
                h.iter()
                    .filter_map(|w| self.workers.get(w))
                    .map(|w| w.registration.data_address.clone())
                    .collect(),
                Some(KeyState::Memory { size: task.size }),
            ),
            TaskState::Erred(e) => (Vec::new(), Some(KeyState::Erred((**e).clone()))),
            _ => (Vec::new(), None),
        };
        KeyLocation {
            key,
            task: Some(id),
            holders,
            state,
            computing: task.state.is_unfinished(),
        }
    }

    /// Workers, task counts by state and tasks finished; the server fills in who it is,
    /// its clients and the workers that failed to start.
    pub fn status(&self) -> ClusterStatus {
        let mut counts: FxHashMap<&'static str, u64> = FxHashMap::default();
        for task in self.tasks.values() {
            *counts.entry(task.state.name()).or_default() += 1;
        }
        let mut tasks: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        tasks.sort();
        let mut workers: Vec<_> = self.workers.values().map(|w| w.info()).collect();
        workers.sort_by_key(|w| w.id);
        ClusterStatus {
            workers,
            tasks,
            tasks_finished: self.finished_count,
            ..ClusterStatus::default()
        }
    }

    /// Whether a client other than `internal` is connected or a task is unfinished.
    pub fn is_busy(&self, internal: ClientId) -> bool {
        self.clients.keys().any(|c| *c != internal)
            || self.tasks.values().any(|t| t.state.is_unfinished())
    }
}
