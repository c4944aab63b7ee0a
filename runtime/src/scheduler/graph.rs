//! Accepting a submitted graph: validation, then insertion in topological order.
//!
//! A submission is all or nothing: every check runs before the first task is inserted.

use super::comm::Comm;
use super::core::Core;
use super::task::{Constraints, Task, TaskState};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{ClientId, TaskId};
use shoal_comm::message::{KeyState, KeyUpdate, TaskSpec};
use smallvec::SmallVec;

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Two tasks of the submission share a key.
    #[error("duplicate key {0:?} in the submitted graph: every task needs its own key")]
    DuplicateKey(String),
    /// A dependency names a key that is neither in the submission nor in the cluster.
    #[error(
        "task {task:?} depends on {dep:?}, which is neither in this graph nor held by the cluster"
    )]
    UnknownDependency { task: String, dep: String },
    /// The submitted tasks depend on each other in a cycle.
    #[error("the graph has a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A wanted key names nothing.
    #[error("wanted key {0:?} is neither in this graph nor in the cluster")]
    UnknownWanted(String),
    /// A payload index points past the message's data frames.
    #[error(
        "task {task:?} refers to payload frame {index}, but the message carries {frames} frames"
    )]
    BadPayload {
        task: String,
        index: u32,
        frames: usize,
    },
    /// A resource request is not a positive finite amount.
    #[error(
        "task {task:?} requests {amount} of resource {name:?}: amounts must be positive numbers"
    )]
    BadResource {
        task: String,
        name: String,
        amount: f64,
    },
    /// An empty key.
    #[error("a task has an empty key")]
    EmptyKey,
}

impl Core {
    /// Add a client's graph and its wants. Nothing is added if anything is wrong.
    ///
    /// # Errors
    /// See [`GraphError`]; each names the offending key.
    pub fn on_submit(
        &mut self,
        client: ClientId,
        specs: Vec<TaskSpec>,
        wants: Vec<String>,
        frames: &[Bytes],
        comm: &mut impl Comm,
    ) -> Result<(), GraphError> {
        let order = self.validate(&specs, &wants, frames)?;
        let mut new_ids: FxHashMap<&str, TaskId> = FxHashMap::default();
        new_ids.reserve(order.len());
        let mut inserted = Vec::with_capacity(order.len());
        for index in order {
            let spec = &specs[index];
            if self.tasks.find(&spec.key).is_some() {
                continue; // same key already in the cluster: reuse it
            }
            let deps: Box<[TaskId]> = spec
                .deps
                .iter()
                .map(|d| {
                    new_ids
                        .get(d.as_str())
                        .copied()
                        .or_else(|| self.tasks.find(d))
                        .expect("validated: every dependency exists")
                })
                .collect();
            let constraints = (!spec.resources.is_empty() || !spec.workers.is_empty()).then(|| {
                Box::new(Constraints {
                    resources: spec.resources.clone(),
                    workers: spec.workers.clone(),
                })
            });
            let id = self.tasks.insert(Task {
                key: spec.key.as_str().into(),
                state: TaskState::Released,
                deps,
                dependents: Vec::new(),
                pending_dependents: 0,
                missing_deps: 0,
                wanted_by: SmallVec::new(),
                kind: spec.kind,
                payload: spec.payload.map(|i| frames[i as usize].clone()),
                priority: spec.priority,
                retries_left: spec.retries,
                worker_deaths: 0,
                size: 0,
                constraints,
            });
            new_ids.insert(spec.key.as_str(), id);
            let deps = std::mem::take(&mut self.task_mut(id).deps);
            for dep in deps.iter() {
                self.task_mut(*dep).dependents.push(id);
            }
            self.task_mut(id).deps = deps;
            inserted.push(id);
        }
        for key in &wants {
            let id = self
                .tasks
                .find(key)
                .expect("validated: every wanted key exists");
            self.add_want(client, id, comm);
        }
        // New tasks nobody wants and nothing needs are dropped again by settle.
        self.mark_dirty(inserted);
        self.settle(comm);
        Ok(())
    }

    /// One bounded slice of the submission being accepted, if any. Returns whether work
    /// remains.
    pub(crate) fn submit_slice(&mut self, _budget: &mut usize, _comm: &mut impl Comm) -> bool {
        false
    }

    /// `client` holds a future on `id`: keep it and its lineage alive and report its end.
    pub(crate) fn add_want(&mut self, client: ClientId, id: TaskId, comm: &mut impl Comm) {
        if !self.clients.contains_key(&client) || self.task(id).wanted_by.contains(&client) {
            return;
        }
        self.task_mut(id).wanted_by.push(client);
        match &self.task(id).state {
            TaskState::Released => self.revive(id, comm),
            TaskState::Memory(_) | TaskState::Erred(_) => {
                let task = self.task(id);
                let state = match &task.state {
                    TaskState::Memory(_) => KeyState::Memory { size: task.size },
                    TaskState::Erred(e) => KeyState::Erred((**e).clone()),
                    _ => unreachable!(),
                };
                comm.key_update(
                    client,
                    KeyUpdate {
                        key: task.key.to_string(),
                        state,
                    },
                );
            }
            _ => {}
        }
    }

    /// Check a submission and return the order in which to insert it (inputs first).
    fn validate(
        &self,
        specs: &[TaskSpec],
        wants: &[String],
        frames: &[Bytes],
    ) -> Result<Vec<usize>, GraphError> {
        let mut index: FxHashMap<&str, usize> = FxHashMap::default();
        index.reserve(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.key.is_empty() {
                return Err(GraphError::EmptyKey);
            }
            if index.insert(spec.key.as_str(), i).is_some() {
                return Err(GraphError::DuplicateKey(spec.key.clone()));
            }
            if let Some(p) = spec.payload {
                if p as usize >= frames.len() {
                    return Err(GraphError::BadPayload {
                        task: spec.key.clone(),
                        index: p,
                        frames: frames.len(),
                    });
                }
            }
            if let Some(r) = spec
                .resources
                .iter()
                .find(|r| !(r.amount.is_finite() && r.amount > 0.0))
            {
                return Err(GraphError::BadResource {
                    task: spec.key.clone(),
                    name: r.name.clone(),
                    amount: r.amount,
                });
            }
        }
        for key in wants {
            if !index.contains_key(key.as_str()) && self.tasks.find(key).is_none() {
                return Err(GraphError::UnknownWanted(key.clone()));
            }
        }
        // Kahn's algorithm over the new tasks (existing tasks cannot depend on new ones).
        let mut missing = vec![0u32; specs.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
        for (i, spec) in specs.iter().enumerate() {
            for dep in &spec.deps {
                match index.get(dep.as_str()) {
                    Some(&j) => {
                        missing[i] += 1;
                        dependents[j].push(i);
                    }
                    None if self.tasks.find(dep).is_some() => {}
                    None => {
                        return Err(GraphError::UnknownDependency {
                            task: spec.key.clone(),
                            dep: dep.clone(),
                        })
                    }
                }
            }
        }
        let mut order: Vec<usize> = (0..specs.len()).filter(|&i| missing[i] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let i = order[next];
            next += 1;
            for &d in &dependents[i] {
                missing[d] -= 1;
                if missing[d] == 0 {
                    order.push(d);
                }
            }
        }
        if order.len() < specs.len() {
            return Err(GraphError::Cycle(find_cycle(specs, &index, &missing)));
        }
        Ok(order)
    }
}

/// Walk from a task left over by Kahn's algorithm until a key repeats.
fn find_cycle(specs: &[TaskSpec], index: &FxHashMap<&str, usize>, missing: &[u32]) -> Vec<String> {
    let Some(mut at) = (0..specs.len()).find(|&i| missing[i] > 0) else {
        return Vec::new();
    };
    let mut seen: FxHashMap<usize, usize> = FxHashMap::default();
    let mut path = Vec::new();
    loop {
        if let Some(&start) = seen.get(&at) {
            let mut cycle: Vec<String> = path[start..]
                .iter()
                .map(|&i: &usize| specs[i].key.clone())
                .collect();
            cycle.push(specs[at].key.clone());
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        let Some(next) = specs[at]
            .deps
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .find(|&j| missing[j] > 0)
        else {
            return path.iter().map(|&i| specs[i].key.clone()).collect();
        };
        at = next;
    }
}
