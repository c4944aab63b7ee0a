//! Where tasks run: dependency order, locality, inputs named by holder, peers' addresses, the worker index, locating results.

use super::*;

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
