//! How much work goes where and when: stealing, root tasks queued in the scheduler, huge submissions in slices.

use super::*;

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
fn root_tasks_go_out_in_runs_of_a_workers_threads_to_the_least_loaded() {
    // Workers of 1, 2 and 4 threads. The least loaded worker (tasks per thread, then
    // lowest id) takes the next roots in order: as many as it has threads, then more
    // while it stays the least loaded, up to its saturation limit. Slices big enough
    // that no run is cut by the slice budget.
    let mut env = Env::with_config(CoreConfig {
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    let threads = [
        (env.worker("a", 1), 1u32),
        (env.worker("b", 2), 2),
        (env.worker("c", 4), 4),
    ];
    let keys: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    let specs = keys.iter().map(|k| t(k, &[])).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    // The rule, replayed: (worker, tasks held, threads, limit).
    let mut load: Vec<(WorkerId, u32, u32, u32)> = threads
        .iter()
        .map(|&(w, n)| (w, 0, n, env.core.saturation_limit(n)))
        .collect();
    let least = |load: &[(WorkerId, u32, u32, u32)]| {
        load.iter()
            .enumerate()
            .filter(|(_, l)| l.1 < l.3)
            .min_by(|(_, a), (_, b)| {
                (u64::from(a.1) * u64::from(b.2))
                    .cmp(&(u64::from(b.1) * u64::from(a.2)))
                    .then(a.0.cmp(&b.0))
            })
            .map(|(i, _)| i)
    };
    let mut expected = Vec::new();
    let mut queue = keys.iter();
    'runs: while let Some(i) = least(&load) {
        let mut run = 0;
        while load[i].1 < load[i].3 && (run < load[i].2 || least(&load) == Some(i)) {
            let Some(key) = queue.next() else {
                break 'runs;
            };
            expected.push((load[i].0, key.clone()));
            load[i].1 += 1;
            run += 1;
        }
    }
    assert_eq!(env.take_computes(), expected);
    assert_eq!(expected.len(), 2 + 4 + 8, "every worker full");
    assert_eq!(
        &expected[..7].iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        &[
            threads[0].0,
            threads[1].0,
            threads[1].0,
            threads[2].0,
            threads[2].0,
            threads[2].0,
            threads[2].0
        ],
        "the first runs: one, two and four roots"
    );
    assert_eq!(env.core.root_queue.len(), 40 - expected.len());
}

#[test]
fn neighbouring_roots_share_a_worker_so_their_reduction_needs_no_transfer() {
    // Two workers of 4 threads, a binary tree over 16 leaves: each run of 4 consecutive
    // leaves lands on one worker, so the first two levels of the reduction read only
    // inputs their worker holds.
    let mut env = Env::with_config(CoreConfig {
        min_worker_queue: 0,
        ..CoreConfig::default()
    });
    env.worker("a", 4);
    env.worker("b", 4);
    let mut specs: Vec<TaskSpec> = (0..16).map(|i| t(&format!("l{i}"), &[])).collect();
    for i in 0..8 {
        let (x, y) = (format!("l{}", 2 * i), format!("l{}", 2 * i + 1));
        specs.push(t(&format!("m{i}"), &[&x, &y]));
    }
    for i in 0..4 {
        let (x, y) = (format!("m{}", 2 * i), format!("m{}", 2 * i + 1));
        specs.push(t(&format!("n{i}"), &[&x, &y]));
    }
    let wants: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = wants.iter().map(String::as_str).collect();
    env.submit(specs, &refs).unwrap();
    let mut remote = 0;
    let mut placed = 0;
    loop {
        let computes: Vec<(WorkerId, ComputeTask)> = env
            .comm
            .computes
            .drain(..)
            .map(|(w, c, _)| (w, c))
            .collect();
        if computes.is_empty() {
            break;
        }
        for (w, c) in &computes {
            placed += 1;
            remote += c.inputs.iter().filter(|i| !i.holders.contains(w)).count();
        }
        for (w, c) in computes {
            let key = env.core.task(c.id).key.to_string();
            env.finish(w, &key, 8);
        }
    }
    assert_eq!(placed, 16 + 8 + 4, "every task ran");
    assert_eq!(remote, 0, "no input was fetched from the other worker");
}

#[test]
fn a_lost_client_with_many_wanted_tasks_is_released_in_slices_between_other_events() {
    let mut env = Env::new(); // slices of 3
    let w = env.worker("a", 1);
    let leaving = env.core.on_client_added();
    // `leaving` wants 30 results; the test client shares one of them.
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    env.core
        .on_submit(
            leaving,
            keys.iter().map(|k| t(k, &[])).collect(),
            keys.clone(),
            &[],
            &mut env.comm,
        )
        .unwrap();
    env.step();
    env.core
        .on_submit(env.client, vec![], vec!["k7".into()], &[], &mut env.comm)
        .unwrap();
    env.step();
    loop {
        let computes = env.take_computes();
        if computes.is_empty() {
            break;
        }
        finish_all(&mut env, &computes);
    }
    assert_eq!(env.core.tasks.len(), 30);
    env.core.on_client_lost(leaving, &mut env.comm);
    assert!(
        !env.core.jobs.is_empty(),
        "30 wanted tasks > 3 per slice: a job"
    );
    let mut slices = 0;
    while env.core.schedule(&mut env.comm) {
        slices += 1;
        env.core.sanity_check();
        if slices == 2 {
            // Another client event between slices: the test client wants k3 too.
            env.core
                .on_submit(env.client, vec![], vec!["k3".into()], &[], &mut env.comm)
                .unwrap();
            env.core.sanity_check();
        }
    }
    assert!(slices >= 10, "{slices} slices");
    env.step();
    assert!(
        !env.core.clients.contains_key(&leaving),
        "forgotten at the end"
    );
    let mut left: Vec<String> = env.core.tasks.values().map(|t| t.key.to_string()).collect();
    left.sort();
    assert_eq!(left, ["k3", "k7"], "only what the other client wants stays");
    assert!(
        env.core.is_busy(leaving),
        "the test client is still connected"
    );
    env.core.on_client_lost(env.client, &mut env.comm);
    env.step();
    assert_eq!(env.core.tasks.len(), 0);
    assert!(!env.core.is_busy(ClientId(0)), "no client, no work");
    assert!(env.comm.releases.iter().all(|(r, _)| *r == w));
}
