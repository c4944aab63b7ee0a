//! Workers leaving on purpose: queued work handed back, sole copies moved before shutdown.

use super::*;

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
fn retiring_a_worker_copies_what_only_it_holds_then_shuts_it_down() {
    use crate::scheduler::retirement::Retirements;
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
