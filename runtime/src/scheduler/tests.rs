//! Scenario tests of the scheduling core: events in, recorded effects out, invariants
//! checked after every step.

use super::comm::Comm;
use super::core::{Core, CoreConfig};
use super::task::TaskState;
use super::GraphError;
use bytes::Bytes;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::*;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recorder {
    computes: Vec<(WorkerId, ComputeTask, Option<Bytes>)>,
    releases: Vec<(WorkerId, TaskId)>,
    steals: Vec<(WorkerId, TaskId)>,
    updates: Vec<(ClientId, KeyUpdate)>,
}

impl Comm for Recorder {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, payload: Option<Bytes>) {
        self.computes.push((worker, task, payload));
    }
    fn release(&mut self, worker: WorkerId, task: TaskId) {
        self.releases.push((worker, task));
    }
    fn steal(&mut self, worker: WorkerId, task: TaskId) {
        self.steals.push((worker, task));
    }
    fn send_worker(&mut self, _: WorkerId, _: ToWorker) {}
    fn key_update(&mut self, client: ClientId, update: KeyUpdate) {
        self.updates.push((client, update));
    }
    fn send_client(&mut self, _: ClientId, _: ToClient) {}
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
    fn new() -> Self {
        Env::with_config(CoreConfig::default())
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
        let w = self
            .core
            .on_worker_added(reg(name, nthreads), self.now, 1000, &mut self.comm);
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
            kind: "TaskFailed".into(),
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
    assert_eq!(e.kind, "KilledWorker");
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
    let g = env.core.on_worker_added(r, env.now, 1000, &mut env.comm);
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
    assert_eq!(e.kind, "Unsupported");
    assert_eq!(e.key, "py");
    assert!(
        e.message.contains("python -m shoal worker"),
        "{}",
        e.message
    );
}

#[test]
fn merge_graph_of_ten_thousand() {
    // A limit of 1,000 tasks per worker keeps the steps (each checked in full) few.
    let mut env = Env::with_config(CoreConfig {
        worker_saturation: 500.0,
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
