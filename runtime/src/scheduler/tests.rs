//! Scenario tests of the scheduling core: events in, recorded effects out, invariants
//! checked after every step.
//!
//! Over 600 lines: one file of scenarios sharing one `Env` and recorder, each test a short
//! story; split by topic (placement, failures, retirement) when it grows further.

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

#[test]
fn diamond_runs_in_dependency_order_and_frees_intermediates() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.submit(
        vec![
            t("a", &[]),
            t("b", &["a"]),
            t("c", &["a"]),
            t("d", &["b", "c"]),
        ],
        &["d"],
    )
    .unwrap();
    assert_eq!(env.take_computes(), vec![(w, "a".to_string())]);
    assert_eq!(env.state("b"), TaskState::Waiting);
    env.finish(w, "a", 8);
    let mut next: Vec<String> = env.take_computes().into_iter().map(|(_, k)| k).collect();
    next.sort();
    assert_eq!(next, ["b", "c"]);
    env.finish(w, "b", 8);
    assert!(env.comm.releases.is_empty(), "a is still needed by c");
    env.finish(w, "c", 8);
    let a = env.id("a");
    assert!(
        env.comm.releases.contains(&(w, a)),
        "a freed once b and c finished"
    );
    env.finish(w, "d", 8);
    assert_eq!(
        env.updates(),
        vec![("d".to_string(), KeyState::Memory { size: 8 })]
    );
    // b and c freed, records kept for lineage while d is wanted.
    assert_eq!(env.state("b"), TaskState::Released);
    env.core
        .on_release(env.client, &["d".into()], &mut env.comm);
    env.step();
    assert!(
        env.core.tasks.is_empty(),
        "everything forgotten after release"
    );
}

#[test]
fn locality_places_dependents_with_their_largest_input() {
    let mut env = Env::new();
    let w1 = env.worker("a", 1);
    let w2 = env.worker("b", 1);
    env.submit(vec![t("x", &[]), t("y", &[])], &["x", "y"])
        .unwrap();
    let placed = env.take_computes();
    assert_eq!(placed.len(), 2);
    assert_ne!(placed[0].0, placed[1].0, "independent tasks spread by load");
    let wx = placed.iter().find(|(_, k)| k == "x").unwrap().0;
    let wy = if wx == w1 { w2 } else { w1 };
    env.finish(wx, "x", 1000);
    env.finish(wy, "y", 10);
    env.submit(vec![t("z", &["x", "y"])], &["z"]).unwrap();
    assert_eq!(env.take_computes(), vec![(wx, "z".to_string())]);
    let compute = &env.core.task(env.id("z"));
    assert_eq!(compute.state, TaskState::Queued(wx));
}

#[test]
fn inputs_name_their_holders() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.submit(vec![t("x", &[]), t("y", &["x"])], &["y"])
        .unwrap();
    env.take_computes();
    env.finish(w, "x", 5);
    let (_, c, _) = env.comm.computes.pop().unwrap();
    assert_eq!(
        c.inputs,
        vec![Input {
            id: env.id("x"),
            holders: vec![w],
            size: 5,
        }]
    );
}

#[test]
fn bad_graphs_are_refused_whole() {
    let mut env = Env::new();
    env.worker("a", 1);
    let err = env
        .submit(vec![t("a", &["b"]), t("b", &["c"]), t("c", &["a"])], &["a"])
        .unwrap_err();
    let GraphError::Cycle(cycle) = &err else {
        panic!("{err}")
    };
    assert_eq!(cycle.first(), cycle.last());
    assert!(err.to_string().contains("cycle"));
    assert!(
        matches!(env.submit(vec![t("a", &[]), t("a", &[])], &[]), Err(GraphError::DuplicateKey(k)) if k == "a")
    );
    let err = env.submit(vec![t("a", &["nope"])], &["a"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "task \"a\" depends on \"nope\", which is neither in this graph nor held by the cluster"
    );
    let mut p = t("p", &[]);
    p.payload = Some(3);
    assert!(matches!(
        env.submit(vec![p], &[]),
        Err(GraphError::BadPayload { .. })
    ));
    let mut r = t("r", &[]);
    r.resources.push(Resource {
        name: "GPU".into(),
        amount: -1.0,
    });
    assert!(matches!(
        env.submit(vec![r], &[]),
        Err(GraphError::BadResource { .. })
    ));
    assert!(
        env.core.tasks.is_empty(),
        "nothing of a refused graph was added"
    );
    assert!(env.take_computes().is_empty());
}

#[test]
fn keys_already_in_the_cluster_can_be_inputs() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.submit(vec![t("x", &[])], &["x"]).unwrap();
    env.take_computes();
    env.finish(w, "x", 8);
    env.submit(vec![t("y", &["x"])], &["y"]).unwrap();
    assert_eq!(env.take_computes(), vec![(w, "y".to_string())]);
}

#[test]
fn failure_propagates_to_dependents_naming_the_failed_key() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.submit(vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])], &["c"])
        .unwrap();
    env.fail(w, "a", "boom");
    let updates = env.updates();
    assert_eq!(updates.len(), 1);
    let (key, KeyState::Erred(e)) = &updates[0] else {
        panic!("{updates:?}")
    };
    assert_eq!(key, "c");
    assert_eq!(e.key, "a");
    assert_eq!(e.message, "boom");
}

#[test]
fn retries_rerun_before_failing() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    let mut spec = t("a", &[]);
    spec.retries = 1;
    env.submit(vec![spec], &["a"]).unwrap();
    env.take_computes();
    env.fail(w, "a", "flaky");
    assert_eq!(env.take_computes(), vec![(w, "a".to_string())], "retried");
    env.fail(w, "a", "flaky");
    assert!(matches!(env.state("a"), TaskState::Erred(_)));
}

#[test]
fn lost_worker_work_is_rescheduled_and_lost_data_recomputed() {
    let mut env = Env::new();
    let w1 = env.worker("a", 1);
    env.submit(vec![t("x", &[]), t("y", &["x"]), t("z", &["y"])], &["z"])
        .unwrap();
    env.take_computes();
    env.finish(w1, "x", 8);
    env.take_computes();
    env.finish(w1, "y", 8);
    assert_eq!(env.state("x"), TaskState::Released, "x freed after y");
    assert_eq!(env.take_computes(), vec![(w1, "z".to_string())]);
    let w2 = env.worker("b", 1);
    // z queued on w1; w1 dies holding y: z waits, y and x are recomputed on w2.
    env.core.on_worker_lost(w1, "killed", &mut env.comm);
    env.step();
    assert_eq!(env.take_computes(), vec![(w2, "x".to_string())]);
    assert_eq!(env.state("z"), TaskState::Waiting);
    assert_eq!(env.state("y"), TaskState::Waiting);
    env.finish(w2, "x", 8);
    env.finish(w2, "y", 8);
    env.finish(w2, "z", 8);
    assert_eq!(
        env.updates(),
        vec![("z".to_string(), KeyState::Memory { size: 8 })]
    );
}

#[test]
fn task_that_kills_workers_fails_after_allowed_failures() {
    let mut env = Env::new();
    env.submit(vec![t("bad", &[]), t("after", &["bad"])], &["after"])
        .unwrap();
    for i in 0..3 {
        let w = env.worker(&format!("w{i}"), 1);
        let id = env.id("bad");
        env.take_computes();
        env.core.on_tasks_started(w, &[id], &mut env.comm);
        env.core.on_worker_lost(w, "killed", &mut env.comm);
        env.step();
    }
    let updates = env.updates();
    let (_, KeyState::Erred(e)) = &updates[0] else {
        panic!("{updates:?}")
    };
    assert_eq!(e.kind, TaskErrorKind::KilledWorker);
    assert!(e.message.contains("3 workers that died"), "{}", e.message);
}

#[test]
fn idle_worker_steals_queued_work() {
    let mut env = Env::new();
    let w1 = env.worker("a", 1);
    env.submit(vec![t("root", &[])], &["root"]).unwrap();
    env.take_computes();
    env.finish(w1, "root", 1 << 20);
    let leaves: Vec<TaskSpec> = (0..10).map(|i| t(&format!("leaf{i}"), &["root"])).collect();
    let keys: Vec<String> = leaves.iter().map(|s| s.key.clone()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let w2 = env.worker("b", 1);
    env.submit(leaves, &key_refs).unwrap();
    assert!(
        env.take_computes().iter().all(|(w, _)| *w == w1),
        "locality puts every leaf with root"
    );
    env.core.balance(&mut env.comm);
    let steals: Vec<TaskId> = env
        .comm
        .steals
        .drain(..)
        .map(|(w, t)| {
            assert_eq!(w, w1);
            t
        })
        .collect();
    assert!(!steals.is_empty() && steals.len() <= 5, "{}", steals.len());
    let replies: Vec<(TaskId, bool)> = steals.iter().map(|t| (*t, true)).collect();
    env.core.on_steal_reply(w1, &replies, &mut env.comm);
    env.step();
    let moved = env.take_computes();
    assert_eq!(moved.len(), steals.len());
    assert!(moved.iter().all(|(w, _)| *w == w2));
}

#[test]
fn release_of_unfinished_work_cancels_it() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.submit(vec![t("a", &[]), t("b", &["a"])], &["b"])
        .unwrap();
    env.take_computes();
    env.core.on_cancel(&["b".into()], &mut env.comm);
    env.step();
    assert_eq!(env.updates(), vec![("b".to_string(), KeyState::Cancelled)]);
    assert!(env.core.tasks.is_empty());
    assert_eq!(
        env.comm.releases.len(),
        1,
        "queued a released on its worker"
    );
    assert_eq!(env.comm.releases[0].0, w);
}

#[test]
fn silent_worker_is_dropped() {
    let mut env = Env::new();
    let w = env.worker("a", 1);
    env.core
        .on_tick(env.now + Duration::from_secs(5), &mut env.comm);
    assert!(env.core.workers.contains_key(&w));
    env.core.on_tick(
        env.now + env.core.config.worker_timeout + Duration::from_secs(1),
        &mut env.comm,
    );
    assert!(!env.core.workers.contains_key(&w));
}

#[test]
fn resource_constrained_task_waits_for_a_capable_worker() {
    let mut env = Env::new();
    env.worker("cpu", 1);
    let mut spec = t("g", &[]);
    spec.resources.push(Resource {
        name: "GPU".into(),
        amount: 1.0,
    });
    env.submit(vec![spec], &["g"]).unwrap();
    assert!(env.take_computes().is_empty());
    let mut r = reg("gpu", 1);
    r.resources.push(Resource {
        name: "GPU".into(),
        amount: 2.0,
    });
    let g = env.core.new_worker_id();
    env.core.on_worker_added(g, r, env.now, 1000, &mut env.comm);
    env.step();
    assert_eq!(env.take_computes(), vec![(g, "g".to_string())]);
}

#[test]
fn retiring_worker_hands_back_queued_work_and_its_exit_is_no_death() {
    let mut env = Env::new();
    let w1 = env.worker("old", 1);
    env.submit(vec![t("run", &[]), t("queued", &[])], &["run", "queued"])
        .unwrap();
    env.take_computes();
    let run = env.id("run");
    env.core.on_tasks_started(w1, &[run], &mut env.comm);
    let w2 = env.worker("new", 1);
    env.core.on_worker_retiring(w1, &mut env.comm);
    env.step();
    assert_eq!(env.take_computes(), vec![(w2, "queued".to_string())]);
    env.core.on_worker_lost(w1, "lifetime ended", &mut env.comm);
    env.step();
    assert_eq!(
        env.core.task(run).worker_deaths,
        0,
        "a retiring worker's exit is not a death"
    );
    assert_eq!(env.state("run"), TaskState::Queued(w2));
}

#[test]
fn task_no_worker_can_ever_run_fails_with_advice() {
    let mut env = Env::new();
    env.worker("rust-only", 1);
    let spec = TaskSpec::new("py", ExecutorKind::Python, vec![]);
    env.submit(vec![spec, t("after", &["py"])], &["after"])
        .unwrap();
    let updates = env.updates();
    let (_, KeyState::Erred(e)) = &updates[0] else {
        panic!("{updates:?}")
    };
    assert_eq!(e.kind, TaskErrorKind::Unsupported);
    assert_eq!(e.key, "py");
    // What happened, not which command to type (the launcher adds that).
    assert!(
        e.message.contains("Rust `shoal` binary") && !e.message.contains("python -m"),
        "{}",
        e.message
    );
}

#[test]
fn merge_graph_of_ten_thousand() {
    // A limit of 1,000 tasks per worker keeps the steps (each checked in full) few.
    let mut env = Env::with_config(CoreConfig {
        worker_saturation: 500.0,
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    let w = env.worker("a", 2);
    let mut specs: Vec<TaskSpec> = (0..10_000).map(|i| t(&format!("l{i}"), &[])).collect();
    let keys: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
    specs.push(TaskSpec::new("merge", ExecutorKind::Sum, keys.clone()));
    env.submit(specs, &["merge"]).unwrap();
    // The leaves reach the worker a saturation limit at a time, each batch as the last
    // one finishes; then the merge goes to the one worker holding its inputs.
    let limit = env.core.saturation_limit(2) as usize;
    let mut leaves = 0;
    loop {
        let computes = std::mem::take(&mut env.comm.computes);
        assert!(!computes.is_empty(), "work continues");
        assert!(computes.len() <= limit, "{} > {limit}", computes.len());
        if env.core.task(computes[0].1.id).key.as_ref() == "merge" {
            assert_eq!(computes.len(), 1);
            assert_eq!(computes[0].0, w);
            break;
        }
        leaves += computes.len();
        let finished: Vec<TaskFinished> = computes
            .iter()
            .map(|(_, c, _)| TaskFinished { id: c.id, size: 8 })
            .collect();
        env.core.on_tasks_finished(w, &finished, &mut env.comm);
        env.step();
    }
    assert_eq!(leaves, 10_000);
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

#[test]
fn workers_never_hold_more_root_tasks_than_their_saturation_limit() {
    let mut env = Env::new();
    let a = env.worker("a", 2);
    let b = env.worker("b", 1);
    let keys: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let specs = keys.iter().map(|k| t(k, &[])).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    let (la, lb) = (
        env.core.saturation_limit(2) as usize,
        env.core.saturation_limit(1) as usize,
    );
    assert!(la < 50 && lb < 50, "the test needs queueing: {la} {lb}");
    let mut done = 0;
    loop {
        assert!(held(&env, a) <= la && held(&env, b) <= lb);
        let computes = env.take_computes();
        if computes.is_empty() {
            break;
        }
        // Both full (or nothing left to queue): the rest waits in the scheduler.
        let queued = env.core.root_queue.len();
        assert!(queued == 0 || (held(&env, a) == la && held(&env, b) == lb));
        done += computes.len();
        finish_all(&mut env, &computes);
    }
    assert_eq!(done, 100);
    assert_eq!(env.updates().len(), 100, "every root finished");
}

#[test]
fn saturation_limit_scales_with_threads_above_a_minimum_queue() {
    let core = Core::new(CoreConfig {
        worker_saturation: 2.0,
        min_worker_queue: 10,
        ..CoreConfig::default()
    });
    assert_eq!(core.saturation_limit(1), 10);
    assert_eq!(core.saturation_limit(8), 16);
    assert_eq!(
        core.saturation_limit(0),
        10,
        "a worker counts at least one thread"
    );
    let unlimited = Core::new(CoreConfig {
        worker_saturation: f64::INFINITY,
        ..CoreConfig::default()
    });
    assert_eq!(unlimited.saturation_limit(4), u32::MAX);
    let tiny = Core::new(CoreConfig {
        worker_saturation: 0.0,
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    assert_eq!(tiny.saturation_limit(4), 1, "never zero: work must flow");
}

#[test]
fn queued_root_tasks_are_released_highest_priority_first() {
    let mut env = Env::with_config(CoreConfig {
        worker_saturation: 1.0,
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    let w = env.worker("a", 1);
    let priorities = [0, 5, 1, 5, -2, 1];
    let specs: Vec<TaskSpec> = priorities
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = t(&format!("p{i}"), &[]);
            s.priority = *p;
            s
        })
        .collect();
    let keys: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    let mut order = Vec::new();
    loop {
        let computes = env.take_computes();
        if computes.is_empty() {
            break;
        }
        assert_eq!(computes.len(), 1, "one slot, one task at a time");
        order.push(computes[0].1.clone());
        env.finish(w, &computes[0].1, 8);
    }
    // Higher priority first; submission order among equals.
    assert_eq!(order, ["p1", "p3", "p2", "p5", "p0", "p4"]);
}

#[test]
fn dependents_go_to_their_inputs_even_when_roots_are_queued() {
    let mut env = Env::new();
    let w1 = env.worker("a", 1);
    let w2 = env.worker("b", 1);
    env.submit(vec![t("x", &[])], &["x"]).unwrap();
    let (wx, _) = env.take_computes()[0].clone();
    env.finish(wx, "x", 1000);
    // Saturate both workers with roots, then submit a dependent of x.
    let keys: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let specs = keys.iter().map(|k| t(k, &[])).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    assert!(!env.core.root_queue.is_empty(), "roots are queued");
    let full = held(&env, wx);
    env.take_computes();
    env.submit(vec![t("z", &["x"])], &["z"]).unwrap();
    assert_eq!(env.take_computes(), vec![(wx, "z".to_string())]);
    assert_eq!(held(&env, wx), full + 1, "placed at once, beyond the limit");
    let other = if wx == w1 { w2 } else { w1 };
    assert!(held(&env, other) <= env.core.saturation_limit(1) as usize);
}

#[test]
fn workers_learn_a_peer_address_once_and_only_when_they_need_it() {
    let mut env = Env::new();
    let w1 = env.worker("a", 1);
    let w2 = env.worker("b", 1);
    let peers = |env: &Env| {
        env.comm
            .to_workers
            .iter()
            .filter(|(_, m)| matches!(m, ToWorker::PeerJoined(..)))
            .count()
    };
    assert_eq!(peers(&env), 0, "joining tells nobody of anybody");
    env.submit(vec![t("x", &[]), t("y", &[])], &["x", "y"])
        .unwrap();
    let placed = env.take_computes();
    let wx = placed.iter().find(|(_, k)| k == "x").unwrap().0;
    let wy = if wx == w1 { w2 } else { w1 };
    env.finish(wx, "x", 1);
    env.finish(wy, "y", 1000);
    env.submit(vec![t("z", &["x", "y"])], &["z"]).unwrap();
    // z goes to y's holder, which must learn where x is, before the compute.
    assert_eq!(env.take_computes(), vec![(wy, "z".to_string())]);
    let joined: Vec<_> = env
        .comm
        .to_workers
        .iter()
        .filter_map(|(to, m)| match m {
            ToWorker::PeerJoined(p, addr) => Some((*to, *p, addr.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        joined,
        vec![(
            wy,
            wx,
            env.core.workers[&wx].registration.data_address.clone()
        )]
    );
    env.submit(vec![t("z2", &["x", "y"])], &["z2"]).unwrap();
    assert_eq!(peers(&env), 1, "told once");
    // When wx leaves, the worker that knows it hears of it.
    env.comm.to_workers.clear();
    env.core.on_worker_lost(wx, "gone", &mut env.comm);
    env.step();
    let left: Vec<_> = env
        .comm
        .to_workers
        .iter()
        .filter(|(_, m)| matches!(m, ToWorker::PeerLeft(_)))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(left, vec![wy]);
}

#[test]
fn index_stays_right_through_joins_losses_pause_retirement_and_steals() {
    let mut env = Env::new();
    let a = env.worker("a", 2);
    let b = env.worker("b", 1);
    // Pause b: roots go to a only.
    env.core.on_worker_paused(b, true, &mut env.comm);
    env.step();
    let keys: Vec<String> = (0..60).map(|i| format!("r{i}")).collect();
    let specs = keys.iter().map(|k| t(k, &[])).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    let first = env.take_computes();
    assert!(!first.is_empty() && first.iter().all(|(w, _)| *w == a));
    // A heartbeat saying b is no longer paused lets it take work.
    let mut metrics = WorkerMetrics::default();
    metrics.memory.paused = false;
    env.core.on_worker_heartbeat(b, metrics, env.now);
    env.step();
    assert!(env.take_computes().iter().any(|(w, _)| *w == b));
    // A newcomer is useful at once; a lost worker's tasks go elsewhere.
    finish_all(&mut env, &first);
    let c = env.worker("c", 4);
    assert!(held(&env, c) > 0, "queued roots went to the newcomer");
    env.core.on_worker_lost(a, "killed", &mut env.comm);
    env.step();
    env.core.on_worker_retiring(b, &mut env.comm);
    env.step();
    assert_eq!(held(&env, b), 0, "retiring b handed its queued work back");
    // Stealing: locality piles dependents on one worker, an idle one takes some.
    let d = env.worker("d", 1);
    loop {
        let computes = env.take_computes();
        if computes.is_empty() {
            break;
        }
        finish_all(&mut env, &computes);
    }
    env.submit(vec![t("big", &[])], &["big"]).unwrap();
    let (wbig, _) = env.take_computes()[0].clone();
    env.finish(wbig, "big", 1 << 20);
    let deps: Vec<TaskSpec> = (0..12).map(|i| t(&format!("d{i}"), &["big"])).collect();
    let dkeys: Vec<String> = deps.iter().map(|s| s.key.clone()).collect();
    let drefs: Vec<&str> = dkeys.iter().map(String::as_str).collect();
    env.submit(deps, &drefs).unwrap();
    assert!(env.take_computes().iter().all(|(w, _)| *w == wbig));
    env.core.balance(&mut env.comm);
    let steals: Vec<(TaskId, bool)> = env.comm.steals.drain(..).map(|(_, t)| (t, true)).collect();
    assert!(!steals.is_empty(), "an idle worker steals");
    env.core.on_steal_reply(wbig, &steals, &mut env.comm);
    env.step();
    let moved = env.take_computes();
    assert_eq!(moved.len(), steals.len());
    assert!(moved.iter().all(|(w, _)| *w != wbig && *w != b));
    let _ = d;
}

/// The reply to a queued submission, if it came.
fn submit_reply(env: &Env, request: u64) -> Option<Option<String>> {
    env.comm.to_clients.iter().find_map(|(_, m)| match m {
        ToClient::SubmitReply { request: r, error } if *r == request => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn a_huge_submission_is_accepted_in_slices_between_other_events() {
    let mut env = Env::with_config(CoreConfig {
        slice_budget: 32,
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    let w = env.worker("a", 2);
    let other = env.core.on_client_added();
    // x is in memory, wanted only by another client.
    env.core
        .on_submit(
            other,
            vec![t("x", &[])],
            vec!["x".into()],
            &[],
            &mut env.comm,
        )
        .unwrap();
    env.step();
    env.take_computes();
    env.finish(w, "x", 8);
    env.updates();
    // A chain of 300 tasks on top of x, and 1,000 independent ones.
    let mut specs: Vec<TaskSpec> = (0..300)
        .map(|i| {
            let dep = if i == 0 {
                "x".to_string()
            } else {
                format!("c{}", i - 1)
            };
            t(&format!("c{i}"), &[&dep])
        })
        .collect();
    specs.extend((0..1000).map(|i| t(&format!("i{i}"), &[])));
    let mut wants: Vec<String> = (0..1000).map(|i| format!("i{i}")).collect();
    wants.push("c299".into());
    env.core
        .on_submit_request(env.client, 7, specs, wants, Vec::new());
    let mut slices = 0;
    let mut released_x = false;
    while env.core.schedule(&mut env.comm) {
        slices += 1;
        env.core.sanity_check();
        if slices == 5 {
            // Between slices: a heartbeat, and the other client drops x.
            env.core
                .on_worker_heartbeat(w, WorkerMetrics::default(), env.now);
            env.core.on_release(other, &["x".into()], &mut env.comm);
            env.core.sanity_check();
            released_x = true;
            assert_eq!(submit_reply(&env, 7), None, "not yet accepted");
        }
    }
    assert!(released_x && slices > 20, "{slices} slices");
    assert_eq!(submit_reply(&env, 7), Some(None), "accepted");
    assert!(
        matches!(env.state("x"), TaskState::Memory(_)),
        "x stayed: the submission needs it"
    );
    // Everything computes to the end.
    loop {
        let computes = env.take_computes();
        if computes.is_empty() {
            break;
        }
        finish_all(&mut env, &computes);
    }
    let updates = env.updates();
    assert_eq!(updates.len(), 1001);
    assert!(updates
        .iter()
        .all(|(_, s)| matches!(s, KeyState::Memory { size: 8 })));
    // A refused one in slices adds nothing and says why.
    let before = env.core.tasks.len();
    env.core.on_submit_request(
        env.client,
        8,
        vec![t("p", &["q"]), t("q", &["p"]), t("ok", &[])],
        vec!["ok".into()],
        Vec::new(),
    );
    env.step();
    let error = submit_reply(&env, 8).expect("a reply").expect("an error");
    assert!(error.contains("cycle"), "{error}");
    assert_eq!(env.core.tasks.len(), before);
}

#[test]
fn retiring_a_worker_copies_what_only_it_holds_then_shuts_it_down() {
    use super::retirement::Retirements;
    let mut env = Env::new();
    let a = env.worker("a", 1);
    let b = env.worker("b", 1);
    env.submit(vec![t("x", &[])], &["x"]).unwrap();
    let placed = env.take_computes();
    assert_eq!(placed.len(), 1);
    let holder = placed[0].0;
    let other = if holder == a { b } else { a };
    env.finish(holder, "x", 8);
    env.comm.to_workers.clear();
    let mut retirements = Retirements::default();
    let name = if holder == a { "a" } else { "b" };
    let ids = retirements.on_retire(&mut env.core, &[name.to_string()], &mut env.comm);
    env.step();
    assert_eq!(ids, vec![holder]);
    // The other worker is introduced to the holder and asked for a copy; no shutdown yet.
    let x = env.id("x");
    let sent = std::mem::take(&mut env.comm.to_workers);
    assert!(
        sent.iter()
            .any(|(w, m)| *w == other && matches!(m, ToWorker::PeerJoined(p, _) if *p == holder)),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|(w, m)| *w == other
            && matches!(m, ToWorker::Replicate(inputs) if inputs.iter().any(|i| i.id == x))),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|(_, m)| matches!(m, ToWorker::Shutdown)));
    // Asking again (a heartbeat) does not ask for a second copy.
    retirements.progress(&mut env.core, &mut env.comm);
    assert!(!env
        .comm
        .to_workers
        .iter()
        .any(|(_, m)| matches!(m, ToWorker::Replicate(_))));
    // The copy arrives: the retiring worker holds nothing only it has, and is shut down.
    env.core.on_worker_replicated(other, &[x], &mut env.comm);
    retirements.on_replicated(&[x]);
    retirements.progress(&mut env.core, &mut env.comm);
    env.step();
    assert!(env
        .comm
        .to_workers
        .iter()
        .any(|(w, m)| *w == holder && matches!(m, ToWorker::Shutdown)));
    assert!(retirements.is_empty());
    // Its departure loses nothing.
    env.core.on_worker_lost(holder, "retired", &mut env.comm);
    env.step();
    assert_eq!(
        env.state("x"),
        TaskState::Memory(smallvec::smallvec![other])
    );
}

#[test]
fn locate_names_each_holder_once_and_answers_every_key_in_order() {
    let mut env = Env::new();
    let w1 = env.worker("w1", 1);
    let w2 = env.worker("w2", 1);
    env.submit(
        vec![t("a", &[]), t("b", &[]), t("c", &[])],
        &["a", "b", "c"],
    )
    .unwrap();
    let computes = env.take_computes();
    assert_eq!(computes.len(), 3, "{computes:?}");
    finish_all(&mut env, &computes);
    let holder = |key: &str| {
        computes
            .iter()
            .find(|(_, k)| k == key)
            .map(|(w, _)| if *w == w1 { "tcp://w1" } else { "tcp://w2" })
            .unwrap()
    };
    let keys: Vec<String> = ["c", "nothing", "a", "b", "a"].map(String::from).to_vec();
    let (addresses, locations) = env.core.locate(&keys);
    assert_eq!(locations.len(), keys.len());
    let mut sorted = addresses.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        addresses.len(),
        "each address once: {addresses:?}"
    );
    for (key, loc) in keys.iter().zip(&locations) {
        if key == "nothing" {
            assert!(loc.task.is_none() && loc.holders.is_empty() && loc.state.is_none());
            continue;
        }
        assert_eq!(loc.task, Some(env.id(key)));
        let named: Vec<&str> = loc
            .holders
            .iter()
            .map(|&h| addresses[h as usize].as_str())
            .collect();
        assert_eq!(named, vec![holder(key)], "{key}");
        assert!(matches!(loc.state, Some(KeyState::Memory { .. })));
    }
    let _ = w2;
}
