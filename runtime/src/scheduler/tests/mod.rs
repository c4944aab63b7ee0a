//! Scenario tests of the scheduling core: events in, recorded effects out, invariants
//! checked after every step.
//!
//! The harness (the recorder and `Env`) is here; the scenarios are grouped by topic in
//! the submodules.

use super::batching::{client_message, worker_message, Queued};
use super::comm::Comm;
use super::core::{Core, CoreConfig};
use super::task::TaskState;
use super::GraphError;
use bytes::Bytes;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::*;
use std::time::{Duration, Instant};

/// Records every effect after sending it through the server's batching encoder and the
/// wire codec and back, so the tests see what a worker or client would decode.
#[derive(Default)]
struct Recorder {
    computes: Vec<(WorkerId, ComputeTask, Option<Bytes>)>,
    releases: Vec<(WorkerId, TaskId)>,
    steals: Vec<(WorkerId, TaskId)>,
    updates: Vec<(ClientId, KeyUpdate)>,
    to_workers: Vec<(WorkerId, ToWorker)>,
    to_clients: Vec<(ClientId, ToClient)>,
}

/// One queued item as a worker decodes it: the message and its data frames.
fn to_worker(item: Queued<ToWorker>) -> (ToWorker, Vec<Bytes>) {
    let raw = worker_message(vec![item]).expect("the batching encoder encodes it");
    let msg = raw.decode().expect("a worker decodes it");
    (msg, raw.frames)
}

/// One queued item as a client decodes it.
fn to_client(item: Queued<ToClient>) -> ToClient {
    let raw = client_message(vec![item]).expect("the batching encoder encodes it");
    raw.decode().expect("a client decodes it")
}

/// The one id of a release or steal message.
fn single_id(msg: ToWorker) -> TaskId {
    match msg {
        ToWorker::Release(ids) | ToWorker::Steal(ids) if ids.len() == 1 => ids[0],
        other => panic!("expected one id: {other:?}"),
    }
}

impl Comm for Recorder {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, payload: Option<Bytes>) {
        let (msg, frames) = to_worker(Queued::Compute(task.clone(), payload.clone()));
        let ToWorker::Compute(mut tasks) = msg else {
            panic!("a compute became {msg:?}")
        };
        assert_eq!(tasks.len(), 1);
        let mut decoded = tasks.remove(0);
        let frame = decoded.payload.take().map(|i| frames[i as usize].clone());
        decoded.payload = task.payload;
        assert_eq!((&decoded, &frame), (&task, &payload), "changed on the wire");
        self.computes.push((worker, decoded, frame));
    }
    fn release(&mut self, worker: WorkerId, task: TaskId) {
        let id = single_id(to_worker(Queued::Release(task)).0);
        assert_eq!(id, task);
        self.releases.push((worker, id));
    }
    fn steal(&mut self, worker: WorkerId, task: TaskId) {
        let id = single_id(to_worker(Queued::Steal(task)).0);
        assert_eq!(id, task);
        self.steals.push((worker, id));
    }
    fn send_worker(&mut self, worker: WorkerId, msg: ToWorker) {
        let sent = format!("{msg:?}");
        let (decoded, _) = to_worker(Queued::Other(msg));
        assert_eq!(format!("{decoded:?}"), sent, "changed on the wire");
        self.to_workers.push((worker, decoded));
    }
    fn key_update(&mut self, client: ClientId, update: KeyUpdate) {
        let ToClient::Updates(mut updates) = to_client(Queued::Update(update.clone())) else {
            panic!("a key update became another message")
        };
        assert_eq!(updates, vec![update], "changed on the wire");
        self.updates.push((client, updates.remove(0)));
    }
    fn send_client(&mut self, client: ClientId, msg: ToClient) {
        let sent = format!("{msg:?}");
        let decoded = to_client(Queued::Other(msg));
        assert_eq!(format!("{decoded:?}"), sent, "changed on the wire");
        self.to_clients.push((client, decoded));
    }
}

struct Env {
    core: Core,
    comm: Recorder,
    client: ClientId,
    now: Instant,
}

fn reg(name: &str, nthreads: u32) -> Registration {
    Registration {
        name: name.into(),
        nthreads,
        memory_limit: 0,
        resources: vec![],
        data_address: format!("tcp://{name}"),
        host: "h".into(),
        pid: 1,
        executors: vec![ExecutorKind::Noop, ExecutorKind::Sum, ExecutorKind::Sleep],
    }
}

fn t(key: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec::new(
        key,
        ExecutorKind::Sum,
        deps.iter().map(|d| d.to_string()).collect(),
    )
}

impl Env {
    /// A core whose slices are tiny, so every test also runs its scheduling in many
    /// slices with the invariants checked in between.
    ///
    /// Queueing of root tasks by threads only (no minimum queue), so small tests see it.
    fn new() -> Self {
        Env::with_config(CoreConfig {
            slice_budget: 3,
            min_worker_queue: 0,
            ..CoreConfig::default()
        })
    }
    fn with_config(config: CoreConfig) -> Self {
        let mut core = Core::new(config);
        let client = core.on_client_added();
        Env {
            core,
            comm: Recorder::default(),
            client,
            now: Instant::now(),
        }
    }
    fn worker(&mut self, name: &str, nthreads: u32) -> WorkerId {
        let w = self.core.new_worker_id();
        self.core
            .on_worker_added(w, reg(name, nthreads), self.now, 1000, &mut self.comm);
        self.step();
        w
    }
    /// Run the core's pending work slice by slice, checking every invariant in between.
    fn step(&mut self) {
        self.core.sanity_check();
        while self.core.schedule(&mut self.comm) {
            self.core.sanity_check();
        }
        self.core.sanity_check();
    }
    fn submit(&mut self, tasks: Vec<TaskSpec>, wants: &[&str]) -> Result<(), GraphError> {
        let r = self.core.on_submit(
            self.client,
            tasks,
            wants.iter().map(|s| s.to_string()).collect(),
            &[],
            &mut self.comm,
        );
        self.step();
        r
    }
    fn id(&self, key: &str) -> TaskId {
        self.core
            .find_key(key)
            .unwrap_or_else(|| panic!("no key {key}"))
    }
    fn state(&self, key: &str) -> TaskState {
        self.core.task(self.id(key)).state.clone()
    }
    /// Drain computes sent so far: (worker, key).
    fn take_computes(&mut self) -> Vec<(WorkerId, String)> {
        self.comm
            .computes
            .drain(..)
            .map(|(w, c, _)| (w, self.core.task(c.id).key.to_string()))
            .collect()
    }
    fn finish(&mut self, w: WorkerId, key: &str, size: u64) {
        let id = self.id(key);
        self.core
            .on_tasks_finished(w, &[TaskFinished { id, size }], &mut self.comm);
        self.step();
    }
    fn fail(&mut self, w: WorkerId, key: &str, msg: &str) {
        let id = self.id(key);
        let error = TaskError {
            key: String::new(),
            kind: TaskErrorKind::TaskFailed,
            message: msg.into(),
            traceback: None,
            exception: vec![],
        };
        self.core
            .on_tasks_failed(w, vec![TaskFailed { id, error }], &mut self.comm);
        self.step();
    }
    fn updates(&mut self) -> Vec<(String, KeyState)> {
        self.comm
            .updates
            .drain(..)
            .map(|(_, u)| (u.key, u.state))
            .collect()
    }
}

/// Tasks queued or running on `w`.
fn held(env: &Env, w: WorkerId) -> usize {
    env.core.workers[&w].assigned.len()
}

fn finish_all(env: &mut Env, computes: &[(WorkerId, String)]) {
    for (w, k) in computes {
        env.finish(*w, k, 8);
    }
}

/// The reply to a queued submission, if it came.
fn submit_reply(env: &Env, request: u64) -> Option<Option<String>> {
    env.comm.to_clients.iter().find_map(|(_, m)| match m {
        ToClient::SubmitReply { request: r, error } if *r == request => Some(error.clone()),
        _ => None,
    })
}

mod failures;
mod placement;
mod queueing;
mod retirement;
