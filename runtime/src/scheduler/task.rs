//! A task as the scheduler tracks it.

use bytes::Bytes;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{ExecutorKind, Resource, TaskError};
use smallvec::SmallVec;
use std::sync::Arc;

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Some inputs are not in memory yet.
    Waiting,
    /// All inputs in memory; no worker took it yet.
    Ready,
    /// Sent to a worker, not started.
    Queued(WorkerId),
    /// Running on a worker.
    Running(WorkerId),
    /// Result held by these workers.
    Memory(SmallVec<[WorkerId; 1]>),
    /// Failed; dependents fail with the same error.
    Erred(Arc<TaskError>),
    /// No result and nobody needs one now; the record stays for lineage.
    Released,
}

impl TaskState {
    /// Waiting, ready, queued or running: the task still has to produce its result.
    pub fn is_unfinished(&self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Ready | TaskState::Queued(_) | TaskState::Running(_)
        )
    }

    /// Queued on `worker` and not started there yet.
    pub fn is_queued_on(&self, worker: WorkerId) -> bool {
        matches!(self, TaskState::Queued(w) if *w == worker)
    }

    /// The worker a queued or running task is on.
    pub fn assigned_worker(&self) -> Option<WorkerId> {
        match self {
            TaskState::Queued(w) | TaskState::Running(w) => Some(*w),
            _ => None,
        }
    }

    /// Name used by `shoal status`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Ready => "ready",
            TaskState::Queued(_) => "queued",
            TaskState::Running(_) => "running",
            TaskState::Memory(_) => "memory",
            TaskState::Erred(_) => "erred",
            TaskState::Released => "released",
        }
    }
}

/// Rarely used task properties, boxed to keep [`Task`] small.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Resources one run occupies.
    pub resources: Vec<Resource>,
    /// Names or addresses of the only workers allowed to run it.
    pub workers: Vec<String>,
}

/// One task.
#[derive(Debug)]
pub struct Task {
    /// The key clients know the task by.
    pub key: Box<str>,
    /// Where the task is in its life.
    pub state: TaskState,
    /// Inputs in the order the executor receives them (duplicates allowed).
    pub deps: Box<[TaskId]>,
    /// Tasks that list this one among their inputs (once per occurrence).
    pub dependents: SmallVec<[TaskId; 2]>,
    /// Unfinished dependents (with multiplicity): while non-zero the result is needed.
    pub pending_dependents: u32,
    /// Inputs not in memory (with multiplicity); meaningful while waiting.
    pub missing_deps: u32,
    /// Clients holding a future on this key.
    pub wanted_by: SmallVec<[ClientId; 1]>,
    /// How a worker runs it.
    pub kind: ExecutorKind,
    /// The payload the executor receives.
    pub payload: Option<Bytes>,
    /// Higher runs first.
    pub priority: i32,
    /// Failures still retried before the task errs.
    pub retries_left: u32,
    /// How many workers died while running it.
    pub worker_deaths: u32,
    /// Result size in bytes, once known.
    pub size: u64,
    /// Resources and workers it needs, if any.
    pub constraints: Option<Box<Constraints>>,
    /// Its prefix in the core's [`super::tally::TaskTally`].
    pub prefix: u32,
    /// Where the task is in its assigned worker's `assigned` list while it is queued or
    /// running there (meaningless otherwise).
    pub assigned_slot: u32,
}

impl Task {
    /// The result is needed: a client wants it or an unfinished dependent will read it.
    pub fn is_needed(&self) -> bool {
        !self.wanted_by.is_empty() || self.pending_dependents > 0
    }

    /// The resources one run occupies.
    pub fn resources(&self) -> &[Resource] {
        self.constraints.as_deref().map_or(&[], |c| &c.resources)
    }

    /// The worker restriction (empty: any worker).
    pub fn allowed_workers(&self) -> &[String] {
        self.constraints.as_deref().map_or(&[], |c| &c.workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_stays_small() {
        // The per-task memory budget is 500 bytes including maps and vectors.
        assert!(
            std::mem::size_of::<Task>() <= 192,
            "{}",
            std::mem::size_of::<Task>()
        );
    }
}
