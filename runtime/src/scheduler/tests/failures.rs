//! What goes wrong: refused graphs, failed tasks and retries, lost and silent workers, tasks that kill workers or that no worker can run.

use super::*;

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
