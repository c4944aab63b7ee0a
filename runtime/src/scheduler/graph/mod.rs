//! Accepting a submitted graph: validation, then insertion in topological order, one
//! bounded slice at a time (a [`Submission`] in progress), so a graph of millions of tasks
//! never stops the scheduler from answering anyone.
//!
//! A submission is all or nothing: every check runs before the first task is inserted.
//! Submissions are accepted one after another, in arrival order. While one is accepted,
//! the existing tasks it refers to are pinned (counted as one more pending dependent) so
//! that nothing releases or forgets them between slices.
//!
//! New tasks are inserted released, then the wants are recorded, then the new tasks are
//! activated in reverse topological order: a task is put on its way to memory only once
//! every new task that reads it is, so a result never finishes before the tasks needing
//! it are known. Tasks with every input at hand are made ready last, in topological order,
//! so root tasks of equal priority are released in submission order.
//!
//! Submissions are [`Job`]s: releases and cancels arriving meanwhile wait behind them,
//! so they apply to what was submitted before them.
//!
//! This module holds the acceptance steps (`impl Core`); `submission` the graph being
//! accepted and its tables; `error` [`GraphError`].

mod error;
mod submission;

pub use error::GraphError;
pub use submission::Submission;

use super::comm::Comm;
use super::core::Core;
use super::jobs::Job;
use super::task::{Constraints, Task, TaskState};
use bytes::Bytes;
use hashbrown::HashTable;
use shoal_comm::ids::{ClientId, TaskId};
use shoal_comm::message::{KeyState, KeyUpdate, TaskSpec, ToClient};
use smallvec::SmallVec;
use submission::{find_cycle, key_hash, Input, Phase};

impl Core {
    /// Add a client's graph and its wants, all at once. Nothing is added if anything is
    /// wrong. Submissions queued with [`Core::on_submit_request`] are accepted first.
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
        let mut budget = usize::MAX;
        self.jobs_slice(&mut budget, comm);
        self.jobs.push_back(Job::Submit(Box::new(Submission::new(
            client,
            None,
            specs,
            wants,
            frames.to_vec(),
        ))));
        loop {
            let mut budget = usize::MAX;
            if let Some(result) = self.submission_step(&mut budget, comm) {
                return result;
            }
        }
    }

    /// Queue a client's graph to be accepted slice by slice by [`Core::schedule`]; the
    /// client gets `SubmitReply { request, error }` when it is in (or refused).
    pub fn on_submit_request(
        &mut self,
        client: ClientId,
        request: u64,
        specs: Vec<TaskSpec>,
        wants: Vec<String>,
        frames: Vec<Bytes>,
    ) {
        self.jobs.push_back(Job::Submit(Box::new(Submission::new(
            client,
            Some(request),
            specs,
            wants,
            frames,
        ))));
    }

    /// Advance the first job, a submission, within `budget`; returns its outcome once it
    /// is done (and removed).
    pub(crate) fn submission_step(
        &mut self,
        budget: &mut usize,
        comm: &mut impl Comm,
    ) -> Option<Result<(), GraphError>> {
        let Some(Job::Submit(mut job)) = self.jobs.pop_front() else {
            unreachable!("the first job is a submission");
        };
        if let Err(e) = self.advance(&mut job, budget, comm) {
            self.unpin(&mut job, comm);
            job.result = Some(Err(e));
        }
        let Some(result) = job.result.take() else {
            self.jobs.push_front(Job::Submit(job));
            return None;
        };
        match &result {
            Ok(()) => {
                tracing::debug!(client = %job.client, tasks = job.specs.len(), "graph accepted")
            }
            Err(e) => tracing::warn!(client = %job.client, error = %e, "refused a graph"),
        }
        if let Some(request) = job.request {
            let error = result.as_ref().err().map(|e| e.to_string());
            comm.send_client(job.client, ToClient::SubmitReply { request, error });
        }
        self.settle(comm);
        Some(result)
    }

    /// Run phases of `job` until the budget is spent or it is done (`job.result` set).
    fn advance(
        &mut self,
        job: &mut Submission,
        budget: &mut usize,
        comm: &mut impl Comm,
    ) -> Result<(), GraphError> {
        let n = job.specs.len();
        while *budget > 0 && job.result.is_none() {
            let i = job.pos;
            // Each arm does one unit of work, or moves to the next phase.
            match job.phase {
                Phase::Check if i < n => {
                    self.check_spec(job, i)?;
                    job.pos += 1;
                }
                Phase::Wants if i < job.wants.len() => {
                    let key = &job.wants[i];
                    if job.find(key).is_none() && self.tasks.find(key).is_none() {
                        return Err(GraphError::UnknownWanted(key.clone()));
                    }
                    job.pos += 1;
                }
                Phase::Count if i < n => {
                    for d in 0..job.specs[i].deps.len() {
                        let dep = &job.specs[i].deps[d];
                        if let Some(j) = job.find(dep) {
                            job.missing[i] += 1;
                            job.offsets[j + 1] += 1;
                            job.inputs.push(Input::New(j as u32));
                        } else if let Some(id) = self.tasks.find(dep) {
                            self.pin(job, id);
                            job.inputs.push(Input::Existing(id));
                        } else {
                            return Err(GraphError::UnknownDependency {
                                task: job.specs[i].key.clone(),
                                dep: dep.clone(),
                            });
                        }
                    }
                    job.input_ends.push(job.inputs.len() as u32);
                    job.pos += 1;
                }
                Phase::Offsets if i < n => {
                    let end = (i + 4096).min(n);
                    for k in i..end {
                        job.offsets[k + 1] += job.offsets[k];
                    }
                    job.pos = end;
                }
                Phase::Fill if i < n => {
                    if i == 0 {
                        job.targets = vec![0; job.offsets[n] as usize];
                    }
                    for d in 0..job.inputs_of(i).len() {
                        if let Input::New(j) = job.inputs_of(i)[d] {
                            // offsets[j] is the next free slot of j until Roots restores it.
                            let j = j as usize;
                            job.targets[job.offsets[j] as usize] = i as u32;
                            job.offsets[j] += 1;
                        }
                    }
                    job.pos += 1;
                }
                Phase::Roots if i < n => {
                    if job.missing[i] == 0 {
                        job.order.push(i as u32);
                    }
                    job.pos += 1;
                }
                Phase::Order if i < job.order.len() => {
                    let at = job.order[i] as usize;
                    let start = if at == 0 { 0 } else { job.offsets[at - 1] };
                    for k in start..job.offsets[at] {
                        let d = job.targets[k as usize] as usize;
                        job.missing[d] -= 1;
                        if job.missing[d] == 0 {
                            job.order.push(d as u32);
                        }
                    }
                    job.pos += 1;
                }
                Phase::Insert if i < n => {
                    self.insert_spec(job, job.order[i] as usize);
                    job.pos += 1;
                }
                Phase::Want if i < job.wants.len() => {
                    let key = std::mem::take(&mut job.wants[i]);
                    match job.find_inserted(&self.tasks, &key) {
                        Some(j) if job.inserted_new(j) => {
                            let alive = self.clients.contains_key(&job.client);
                            let task = self.task_mut(job.ids[j]);
                            if alive && !task.wanted_by.contains(&job.client) {
                                task.wanted_by.push(job.client);
                                self.note_want(job.client, job.ids[j]);
                            }
                        }
                        found => {
                            let id = found
                                .map(|j| job.ids[j])
                                .or_else(|| self.tasks.find(&key))
                                .expect("validated: every wanted key exists");
                            self.add_want(job.client, id, comm);
                        }
                    }
                    job.pos += 1;
                }
                Phase::Free if i < n && !job.reused.is_empty() => {
                    job.specs[i].key = String::new();
                    job.pos += 1;
                }
                Phase::Activate if i < job.inserted.len() => {
                    let id = job.inserted[job.inserted.len() - 1 - i];
                    self.activate(id, false, comm);
                    job.pos += 1;
                }
                Phase::Ready if i < job.inserted.len() => {
                    self.activate(job.inserted[i], true, comm);
                    job.pos += 1;
                }
                Phase::Unpin if i < job.pinned.len() => {
                    let id = job.pinned[i];
                    if matches!(self.task(id).state, TaskState::Released)
                        && self.task(id).is_needed()
                    {
                        self.revive(id, comm);
                    }
                    job.pos += 1;
                }
                Phase::Drop if i < job.inserted.len() => {
                    let id = job.inserted[i];
                    if self.tasks.get(&id).is_some_and(|t| !t.is_needed()) {
                        self.mark_dirty([id]);
                    }
                    job.pos += 1;
                }
                phase => {
                    // The phase is complete.
                    job.pos = 0;
                    job.phase = match phase {
                        Phase::Check => Phase::Wants,
                        Phase::Wants => Phase::Count,
                        Phase::Count => Phase::Offsets,
                        Phase::Offsets => Phase::Fill,
                        Phase::Fill => {
                            // Fill advanced each offset to the end of its range: now
                            // offsets[j] ends the dependents of j (and starts j + 1's).
                            job.offsets.pop();
                            Phase::Roots
                        }
                        Phase::Roots => Phase::Order,
                        Phase::Order => {
                            if job.order.len() < n {
                                return Err(GraphError::Cycle(find_cycle(job)));
                            }
                            job.missing = Vec::new();
                            job.offsets = Vec::new();
                            job.targets = Vec::new();
                            job.ids = vec![TaskId(0); n];
                            self.tasks.reserve(n);
                            Phase::Insert
                        }
                        Phase::Insert => {
                            if let Some(c) = self.clients.get_mut(&job.client) {
                                c.wanted.reserve_exact(job.wants.len());
                            }
                            job.order = Vec::new();
                            job.inputs = Vec::new();
                            job.input_ends = Vec::new();
                            Phase::Want
                        }
                        Phase::Want => {
                            job.index = HashTable::new();
                            Phase::Free
                        }
                        Phase::Free => Phase::Activate,
                        Phase::Activate => Phase::Ready,
                        Phase::Ready => Phase::Unpin,
                        Phase::Unpin => {
                            self.unpin(job, comm);
                            Phase::Drop
                        }
                        Phase::Drop => {
                            job.result = Some(Ok(()));
                            Phase::Drop
                        }
                    };
                }
            }
            *budget -= 1;
        }
        Ok(())
    }

    fn check_spec(&self, job: &mut Submission, i: usize) -> Result<(), GraphError> {
        let spec = &job.specs[i];
        if spec.key.is_empty() {
            return Err(GraphError::EmptyKey);
        }
        if job.find(&spec.key).is_some() {
            return Err(GraphError::DuplicateKey(spec.key.clone()));
        }
        if let Some(p) = spec.payload {
            if p as usize >= job.frames.len() {
                return Err(GraphError::BadPayload {
                    task: spec.key.clone(),
                    index: p,
                    frames: job.frames.len(),
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
        let specs = &job.specs;
        job.index
            .insert_unique(key_hash(&spec.key), i as u32, |&k| {
                key_hash(&specs[k as usize].key)
            });
        Ok(())
    }

    fn pin(&mut self, job: &mut Submission, id: TaskId) {
        self.task_mut(id).pending_dependents += 1;
        job.pinned.push(id);
    }

    /// Drop the pins of `job` (once: the list is emptied).
    fn unpin(&mut self, job: &mut Submission, comm: &mut impl Comm) {
        for id in std::mem::take(&mut job.pinned) {
            let task = self.task_mut(id);
            task.pending_dependents -= 1;
            if !task.is_needed() {
                self.mark_dirty([id]);
            }
        }
        self.settle(comm);
    }

    /// Insert spec `i` released (or reuse the task already under its key).
    fn insert_spec(&mut self, job: &mut Submission, i: usize) {
        if let Some(existing) = self.tasks.find(&job.specs[i].key) {
            job.ids[i] = existing; // same key already in the cluster: reuse it
            job.reused.insert(i as u32);
            self.pin(job, existing);
            return;
        }
        let deps: Box<[TaskId]> = job
            .inputs_of(i)
            .iter()
            .map(|input| match *input {
                Input::New(k) => job.ids[k as usize],
                Input::Existing(id) => id,
            })
            .collect();
        let spec = &mut job.specs[i];
        let constraints = (!spec.resources.is_empty() || !spec.workers.is_empty()).then(|| {
            Box::new(Constraints {
                resources: std::mem::take(&mut spec.resources),
                workers: std::mem::take(&mut spec.workers),
            })
        });
        let payload = spec.payload.map(|p| job.frames[p as usize].clone());
        spec.deps = Vec::new(); // resolved: freed now rather than all at the end
        let prefix = self.tally.add(&spec.key);
        // The key moves into the task (later phases compare keys through `job.ids`).
        let key = std::mem::take(&mut spec.key).into_boxed_str();
        let id = self.tasks.insert(Task {
            key,
            prefix,
            state: TaskState::Released,
            deps,
            dependents: SmallVec::new(),
            pending_dependents: 0,
            missing_deps: 0,
            wanted_by: SmallVec::new(),
            kind: spec.kind,
            payload,
            priority: spec.priority,
            retries_left: spec.retries,
            worker_deaths: 0,
            assigned_slot: 0,
            size: 0,
            constraints,
        });
        job.ids[i] = id;
        let deps = std::mem::take(&mut self.task_mut(id).deps);
        for dep in deps.iter() {
            self.task_mut(*dep).dependents.push(id);
        }
        self.task_mut(id).deps = deps;
        job.inserted.push(id);
    }

    /// Put a new (released) task on its way to memory if anything needs it: its new
    /// dependents are active already; inputs still released wait for their activation.
    /// Unless `ready_too`, a task with every input at hand is left for the ready pass.
    fn activate(&mut self, id: TaskId, ready_too: bool, comm: &mut impl Comm) {
        let task = self.task(id);
        if !matches!(task.state, TaskState::Released) || !task.is_needed() {
            return;
        }
        let (missing, erred) = self.tally_inputs(id, |_| {});
        if let Some(err) = erred {
            self.fail_with_dependents(id, err, comm);
            return;
        }
        if missing > 0 || ready_too {
            self.await_inputs(id, missing, comm);
        }
    }

    /// `client` holds a future on `id`: keep it and its lineage alive and report its end.
    pub(crate) fn add_want(&mut self, client: ClientId, id: TaskId, comm: &mut impl Comm) {
        if !self.clients.contains_key(&client) || self.task(id).wanted_by.contains(&client) {
            return;
        }
        self.task_mut(id).wanted_by.push(client);
        self.note_want(client, id);
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
}
