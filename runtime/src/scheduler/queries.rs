//! Questions clients and the server ask the core: where a key is, what the cluster looks
//! like, whether anything is left to do. Read-only.

use super::core::Core;
use super::task::TaskState;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{ClientId, WorkerId};
use shoal_comm::message::{ClusterStatus, KeyLocation, KeyState};

impl Core {
    /// Where the results of `keys` are held and their states if final: the holders'
    /// data addresses (each once) and a location per key, in order, referring to them.
    pub fn locate(&self, keys: &[String]) -> (Vec<String>, Vec<KeyLocation>) {
        let mut addresses = Vec::new();
        let mut index: FxHashMap<WorkerId, u32> = FxHashMap::default();
        let locations = keys
            .iter()
            .map(|key| {
                let Some(id) = self.find_key(key) else {
                    return KeyLocation {
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
                            .filter_map(|w| {
                                let worker = self.workers.get(w)?;
                                Some(*index.entry(*w).or_insert_with(|| {
                                    addresses.push(worker.registration.data_address.clone());
                                    (addresses.len() - 1) as u32
                                }))
                            })
                            .collect(),
                        Some(KeyState::Memory { size: task.size }),
                    ),
                    TaskState::Erred(e) => (Vec::new(), Some(KeyState::Erred((**e).clone()))),
                    _ => (Vec::new(), None),
                };
                KeyLocation {
                    task: Some(id),
                    holders,
                    state,
                    computing: task.state.is_unfinished(),
                }
            })
            .collect();
        (addresses, locations)
    }

    /// Workers, task counts by state and tasks finished; the server fills in who it is,
    /// its clients and the workers that failed to start.
    pub fn status(&self) -> ClusterStatus {
        // From the counts kept as tasks move: O(1), not a walk over every task.
        let mut tasks: Vec<(String, u64)> = super::tally::STATES
            .iter()
            .zip(self.tally.totals())
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k.to_string(), n))
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

    /// Whether a client other than `internal` is connected or a task is unfinished. O(1)
    /// in the tasks: from the counts kept as tasks move.
    pub fn is_busy(&self, internal: ClientId) -> bool {
        self.clients.keys().any(|c| *c != internal) || self.tally.unfinished() > 0
    }
}
