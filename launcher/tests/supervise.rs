//! Supervisors never leave a half-started cluster: `shoal local` stops everything when a
//! worker fails at start or when all workers are gone, and the nanny does not restart a
//! worker that died before it registered. Real processes, each stopped by pid.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::{spawn, Proc};
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous bound on how long a supervisor may take to give up (asserted: it must not
/// hang or loop).
const GIVE_UP: Duration = Duration::from_secs(15);

/// Live processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) && state != Some("Z") {
            out.push(p);
        }
    }
    out
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    p.wait_timeout(GIVE_UP)
        .unwrap_or_else(|| panic!("{} did not give up:\n{}", p.name, p.log_text()))
}

#[test]
fn local_stops_everything_when_a_worker_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // The base directory is fine, but the workers' space in it is a file: only the
    // worker finds out, when it creates its directory.
    let base = dir.path().join("scratch");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("shoal-worker-space"), "in the way").unwrap();
    let file = dir.path().join("s.json");
    let mut local = spawn(
        dir.path(),
        "local",
        &[
            "local",
            "--workers",
            "2",
            "--scheduler-file",
            file.to_str().unwrap(),
            "--local-directory",
            base.to_str().unwrap(),
        ],
    );
    let status = wait_exit(&mut local);
    let log = local.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("during start-up, before it registered")
            && log.contains("shoal-worker-space")
            && log.contains("scheduler file removed"),
        "{log}"
    );
    assert!(!file.exists(), "scheduler file left behind");
    assert!(children_of(local.pid()).is_empty());
}

/// The pids of the `n` workers registered with the scheduler of `file`, once they are.
fn registered_pids(file: &Path, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let out = common::run(
            &[
                "status",
                "--json",
                "--scheduler-file",
                file.to_str().unwrap(),
                "--timeout",
                "5",
            ],
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if let Ok(status) = common::json_after_log(&text) {
            let pids: Vec<i32> = status["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["pid"].as_i64())
                .map(|p| p as i32)
                .collect();
            if pids.len() >= n {
                return pids;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{n} workers did not register: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn local_stops_when_all_its_workers_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let mut local = spawn(
        dir.path(),
        "local",
        &[
            "local",
            "--workers",
            "2",
            "--nthreads",
            "1",
            "--memory-limit",
            "0",
            "--scheduler-file",
            file.to_str().unwrap(),
        ],
    );
    let pids = registered_pids(&file, 2);
    assert_eq!(pids.len(), 2);
    for pid in &pids {
        assert!(
            children_of(local.pid()).contains(pid),
            "{pid} is not local's worker"
        );
        // SAFETY: kill has no memory-safety preconditions; the pid is local's worker.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let status = wait_exit(&mut local);
    let log = local.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("all 2 workers have exited"), "{log}");
    assert!(!file.exists(), "scheduler file left behind");
}

#[test]
fn nanny_does_not_restart_a_worker_that_dies_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    // No scheduler: the worker never registers, and its terminate threshold (1% of
    // 256 MiB) is below its start-up memory, so the nanny kills it at the first check.
    let missing = dir.path().join("none.json");
    let mut worker = spawn(
        dir.path(),
        "worker",
        &[
            "worker",
            "--scheduler-file",
            missing.to_str().unwrap(),
            "--memory-limit",
            "256MiB",
            "--memory-terminate",
            "0.01",
            "--local-directory",
            dir.path().join("scratch").to_str().unwrap(),
        ],
    );
    let started = Instant::now();
    let status = wait_exit(&mut worker);
    let log = worker.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("before it registered") && log.contains("not restarting"),
        "{log}"
    );
    assert!(!log.contains("; restarting it"), "restarted:\n{log}");
    assert!(started.elapsed() < GIVE_UP);
}

#[test]
fn a_worker_that_cannot_start_tells_the_scheduler_why() {
    let cluster = common::Cluster::start(0, 1, &[], &[]);
    let f = cluster.file_arg();
    let started = Instant::now();
    let out = common::run(
        &[
            "worker",
            "--scheduler-file",
            &f,
            "--name",
            "job-17",
            "--local-directory",
            "/proc/nope",
        ],
        GIVE_UP,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let status = cluster.status();
    let failed = status["failed_starts"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    assert_eq!(failed[0]["name"], "job-17");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("/proc/nope") && error.contains("--local-directory"),
        "{error}"
    );
    assert!(status["workers"].as_array().unwrap().is_empty());
    let text = common::run(&["status", "--scheduler-file", &f], GIVE_UP);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("failed to start: job-17"), "{text}");
}

#[test]
fn supervised_workers_that_fail_at_start_tell_the_scheduler_why() {
    let cluster = common::Cluster::start(0, 1, &[], &[]);
    let base = cluster.dir.path().join("scratch");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("shoal-worker-space"), "in the way").unwrap();
    let out = common::run(
        &[
            "worker",
            "--scheduler-file",
            &cluster.file_arg(),
            "--name",
            "job-18",
            "--nworkers",
            "2",
            "--local-directory",
            base.to_str().unwrap(),
        ],
        GIVE_UP,
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{log}");
    assert!(!log.contains("; restarting it"), "{log}");
    let status = cluster.status();
    let names: Vec<&str> = status["failed_starts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    // The first child to fail reports; the nanny then stops the other.
    assert!(names.iter().any(|n| n.starts_with("job-18-")), "{status}");
    assert!(status["failed_starts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("shoal-worker-space"));
}
