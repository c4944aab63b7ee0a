//! Bad input and failures: each gives a clear error, the cluster keeps serving, nothing
//! hangs.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::{run, spawn, sum, Cluster};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn scheduler_port(c: &Cluster) -> String {
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    file["address"]
        .as_str()
        .unwrap()
        .trim_start_matches("tcp://")
        .to_string()
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let c = Cluster::start(0, 1, &[], &[]);
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    file["secret"] = json!("00".repeat(32));
    let forged = c.dir.path().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&file).unwrap()).unwrap();
    let out = run(
        &[
            "status",
            "--scheduler-file",
            forged.to_str().unwrap(),
            "--timeout",
            "2",
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("authentication failed: wrong cluster secret"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        c.scheduler.log_text().contains("refused connection"),
        "{}",
        c.scheduler.log_text()
    );
    // A worker with the wrong secret never joins and says why.
    let f = forged.to_str().unwrap();
    let mut w = spawn(
        c.dir.path(),
        "forged-worker",
        &[
            "-v",
            "worker",
            "--scheduler-file",
            f,
            "--death-timeout",
            "1",
            "--host",
            "127.0.0.1",
        ],
    );
    let status = w
        .wait_timeout(Duration::from_secs(10))
        .expect("worker with a wrong secret must give up");
    assert_eq!(status.code(), Some(3));
    assert!(
        w.log_text().contains("wrong cluster secret"),
        "{}",
        w.log_text()
    );
    assert_eq!(c.status()["workers"], json!([]));
}

#[test]
fn each_bad_scheduler_file_gets_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let p = path.to_str().unwrap();
    let status = |p: &str| {
        text(&run(
            &["status", "--scheduler-file", p, "--timeout", "0.3"],
            Duration::from_secs(20),
        ))
    };
    assert!(status(p).contains("does not exist"), "{}", status(p));
    std::fs::write(&path, "{\"type\": ").unwrap();
    assert!(status(p).contains("is not valid JSON"), "{}", status(p));
    std::fs::write(&path, r#"{"type": "Scheduler", "id": "Scheduler-x", "address": "tcp://127.0.0.1:1", "services": {}, "started": 0, "n_workers": 0, "total_threads": 0, "total_memory": 0, "workers": {}}"#).unwrap();
    assert!(
        status(p).contains("is malformed: missing field `protocol_version`"),
        "{}",
        status(p)
    );
    // A file left by a scheduler that died: nothing listens any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let stale = json!({"type": "Scheduler", "id": "Scheduler-gone", "address": format!("tcp://127.0.0.1:{port}"), "services": {}, "started": 0.0,
        "n_workers": 0, "total_threads": 0, "total_memory": 0, "workers": {}, "protocol_version": shoal_comm::PROTOCOL_VERSION, "secret": "ab".repeat(32)});
    std::fs::write(&path, serde_json::to_vec(&stale).unwrap()).unwrap();
    let out = status(p);
    assert!(
        out.contains("is stale: nothing listens at") && out.contains("Scheduler-gone"),
        "{out}"
    );
    // `~` is expanded.
    let home_rel = run(
        &[
            "status",
            "--scheduler-file",
            "~/.shoal-test-no-such-file.json",
            "--timeout",
            "0.1",
        ],
        Duration::from_secs(10),
    );
    let home = std::env::var("HOME").unwrap();
    assert!(
        text(&home_rel).contains(&format!("{home}/.shoal-test-no-such-file.json")),
        "{}",
        text(&home_rel)
    );
}

#[test]
fn another_scheduler_at_the_same_address_makes_the_file_stale() {
    let c = Cluster::start(0, 1, &[], &[]);
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.file).unwrap()).unwrap();
    file["id"] = json!("Scheduler-older-run");
    let old = c.dir.path().join("old.json");
    std::fs::write(&old, serde_json::to_vec(&file).unwrap()).unwrap();
    let out = text(&run(
        &["status", "--scheduler-file", old.to_str().unwrap()],
        Duration::from_secs(20),
    ));
    assert!(out.contains("is stale: another scheduler"), "{out}");
}

#[test]
fn worker_exits_nonzero_after_death_timeout_when_the_scheduler_dies() {
    let mut c = Cluster::start(1, 1, &["--death-timeout", "2"], &[]);
    c.scheduler.signal(libc::SIGKILL);
    let started = std::time::Instant::now();
    let status = c.workers[0]
        .wait_timeout(Duration::from_secs(15))
        .expect("worker must exit after its death timeout");
    let waited = started.elapsed();
    assert_eq!(status.code(), Some(3), "{}", c.workers[0].log_text());
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(c.workers[0].log_text().contains("scheduler lost"));
}

#[test]
fn garbage_and_oversized_frames_are_refused_and_the_scheduler_keeps_serving() {
    let c = Cluster::start(1, 1, &[], &[]);
    let addr = scheduler_port(&c);
    // An HTTP request.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // the scheduler closes the connection
                                     // A frame header announcing 3 GiB.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[0, 0, 0, 0xC0, 0, 0, 0, 0]).unwrap();
    let _ = s.read_to_end(&mut buf);
    // Random bytes, then silence until the handshake times out is not waited for here.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let log = c.scheduler.log_text();
    assert!(log.contains("exceeds the limit"), "{log}");
    let (ok, out) = c.run_graph(
        &json!({"tasks": [sum("x", &[], 41, 0), sum("y", &["x"], 1, 0)], "outputs": ["y"]}),
    );
    assert!(ok, "{out}");
    assert_eq!(out["results"]["y"], json!(42));
}

#[test]
fn malformed_graphs_get_clear_errors_and_nothing_is_lost() {
    let c = Cluster::start(1, 1, &[], &[]);
    let (ok, out) = c.run_graph(
        &json!({"tasks": [sum("a", &["b"], 0, 0), sum("b", &["a"], 0, 0)], "outputs": ["a"]}),
    );
    assert!(!ok);
    assert!(
        out.as_str().unwrap().contains("the graph has a cycle"),
        "{out}"
    );
    let (ok, out) = c
        .run_graph(&json!({"tasks": [sum("a", &[], 0, 0), sum("a", &[], 1, 0)], "outputs": ["a"]}));
    assert!(!ok);
    assert!(
        out.as_str().unwrap().contains("duplicate key \"a\""),
        "{out}"
    );
    let (ok, out) = c.run_graph(&json!({"tasks": [sum("a", &["ghost"], 0, 0)], "outputs": ["a"]}));
    assert!(!ok);
    assert!(
        out.as_str().unwrap().contains(
            "depends on \"ghost\", which is neither in this graph nor held by the cluster"
        ),
        "{out}"
    );
    let (ok, out) =
        c.run_graph(&json!({"tasks": [{"key": "a", "kind": "teleport"}], "outputs": ["a"]}));
    assert!(!ok);
    let msg = out.as_str().unwrap();
    assert!(
        msg.contains("unknown variant `teleport`") && msg.contains("noop"),
        "{msg}"
    );
    // The cluster kept a result computed before and still serves.
    let (ok, out) = c.run_graph(&json!({"tasks": [sum("keep", &[], 7, 0)], "outputs": ["keep"]}));
    assert!(ok && out["results"]["keep"] == json!(7), "{out}");
}

#[test]
fn invalid_flag_values_are_named() {
    let out = run(
        &[
            "worker",
            "--scheduler-file",
            "/nonexistent",
            "--memory-limit",
            "lots",
        ],
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("--memory-limit"), "{}", text(&out));
    let out = run(
        &["worker", "--scheduler-file", "/x", "--interface", "nosuch0"],
        Duration::from_secs(10),
    );
    assert!(
        text(&out).contains("network interface \"nosuch0\" does not exist"),
        "{}",
        text(&out)
    );
    let out = run(&["scheduler", "--port", "0"], Duration::from_secs(10));
    assert!(text(&out).contains("--scheduler-file F"), "{}", text(&out));
    let out = run(&["worker", "tcp://127.0.0.1:1"], Duration::from_secs(10));
    assert!(text(&out).contains("SHOAL_SECRET"), "{}", text(&out));
    let out = run(
        &["run", "--scheduler-file", "/x", "--generate", "ring:5"],
        Duration::from_secs(10),
    );
    assert!(
        text(&out).contains("independent:N, merge:N, tree:N"),
        "{}",
        text(&out)
    );
}

#[test]
fn task_that_kills_its_workers_fails_with_killed_worker() {
    // allowed-failures 2: the task is retried once on a fresh worker, then fails.
    let mut c = Cluster::start(1, 1, &[], &["--allowed-failures", "2"]);
    let runner =
        c.spawn_run_graph(&json!({"tasks": [sum("doom", &[], 0, 60_000)], "outputs": ["doom"]}));
    for round in 0..2 {
        // Kill only once the task runs on the newest worker.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.status()["tasks"]["running"] != json!(1)
            || c.status()["workers"].as_array().unwrap().len() != 1
        {
            assert!(
                std::time::Instant::now() < deadline,
                "task never ran: {}",
                c.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let victim = c.workers.len() - 1;
        c.workers[victim].signal(libc::SIGKILL);
        if round == 0 {
            c.add_worker(1, &[]);
        }
    }
    let out = runner.join().unwrap();
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains("KilledWorker") && t.contains("2 workers that died"),
        "{t}"
    );
}
