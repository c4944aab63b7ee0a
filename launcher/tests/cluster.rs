//! A real scheduler and real workers on loopback computing real graphs.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::{sum, Cluster};
use serde_json::json;
use std::time::Duration;

#[test]
fn diamond_graph_computes_the_expected_value() {
    let c = Cluster::start(2, 1, &[], &[]);
    let graph = json!({
        "tasks": [sum("a", &[], 1, 0), sum("b", &["a"], 10, 0), sum("c", &["a"], 100, 0), sum("d", &["b", "c"], 0, 0)],
        "outputs": ["d"],
    });
    let (ok, out) = c.run_graph(&graph);
    assert!(ok, "{out}");
    assert_eq!(out["results"]["d"], json!(112));
}

#[test]
fn merge_of_ten_thousand_and_tree_of_4096_leaves() {
    let c = Cluster::start(2, 1, &[], &[]);
    let (ok, out) = c.run_args(&["--generate", "merge:10000"]);
    assert!(ok, "{out}");
    assert_eq!(out["results"]["merge"], json!(49_995_000u64));
    assert_eq!(out["tasks"], json!(10_001));
    let (ok, out) = c.run_args(&["--generate", "tree:4096"]);
    assert!(ok, "{out}");
    assert_eq!(out["results"]["tree-12-0"], json!(4096u64 * 4095 / 2));
    // Both workers took part, and every intermediate result was released again.
    let status = c.status();
    let workers = status["workers"].as_array().unwrap();
    assert!(
        workers
            .iter()
            .all(|w| w["finished"].as_u64().unwrap() > 100),
        "{status}"
    );
    assert!(status["tasks"].as_object().unwrap().is_empty(), "{status}");
}

#[test]
fn killed_worker_midway_the_graph_still_completes() {
    let c = Cluster::start(2, 1, &[], &[]);
    let mut tasks: Vec<_> = (0..30)
        .map(|i| sum(&format!("leaf{i}"), &[], i, 100))
        .collect();
    let keys: Vec<String> = (0..30).map(|i| format!("leaf{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    tasks.push(sum("total", &key_refs, 0, 0));
    let runner = c.spawn_run_graph(&json!({"tasks": tasks, "outputs": ["total"]}));
    std::thread::sleep(Duration::from_millis(700));
    c.workers[0].signal(libc::SIGKILL);
    let out = runner.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", c.scheduler.log_text());
    assert!(text.contains("\"total\":435"), "{text}");
    assert!(c.scheduler.log_text().contains("worker lost"));
}

#[test]
fn idle_worker_steals_from_a_skewed_graph() {
    let c = Cluster::start(2, 1, &[], &[]);
    // Every leaf reads `root`, so locality puts them all where root is; stealing must
    // move some to the other worker.
    let mut tasks = vec![sum("root", &[], 1, 0)];
    let keys: Vec<String> = (0..20).map(|i| format!("leaf{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        tasks.push(sum(k, &["root"], i as u64, 100));
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    tasks.push(sum("total", &key_refs, 0, 0));
    let (ok, out) = c.run_graph(&json!({"tasks": tasks, "outputs": ["total"]}));
    assert!(ok, "{out}");
    assert_eq!(out["results"]["total"], json!(20 + 190));
    let status = c.status();
    let finished: Vec<u64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["finished"].as_u64().unwrap())
        .collect();
    assert!(
        finished.iter().all(|f| *f >= 3),
        "stealing moved no work: {finished:?}"
    );
    assert!(
        out["seconds"].as_f64().unwrap() < 1.9,
        "20 × 100 ms on one worker would take 2 s: {out}"
    );
}

#[test]
fn failure_reaches_the_client_naming_the_failed_key() {
    let c = Cluster::start(1, 1, &[], &[]);
    let graph = json!({
        "tasks": [{"key": "bad", "kind": "fail", "args": {"message": "disk on fire"}}, sum("after", &["bad"], 0, 0)],
        "outputs": ["after"],
    });
    let (ok, out) = c.run_graph(&graph);
    assert!(!ok);
    assert_eq!(out["results"]["after"]["failed_key"], json!("bad"));
    assert_eq!(out["results"]["after"]["error"], json!("disk on fire"));
}

#[test]
fn resources_route_tasks_to_capable_workers() {
    let mut c = Cluster::start(1, 1, &[], &[]);
    c.add_worker(1, &["--resources", "GPU=1"]);
    c.wait_for_workers(2);
    let tasks: Vec<_> = (0..6)
        .map(|i| json!({"key": format!("g{i}"), "kind": "sum", "args": {"add": i}, "resources": {"GPU": 1}}))
        .collect();
    let (ok, out) =
        c.run_graph(&json!({"tasks": tasks, "outputs": ["g0", "g1", "g2", "g3", "g4", "g5"]}));
    assert!(ok, "{out}");
    let status = c.status();
    for w in status["workers"].as_array().unwrap() {
        let expected = if w["name"] == "w1" { 6 } else { 0 };
        assert_eq!(w["finished"], json!(expected), "{status}");
    }
}

#[test]
fn shutdown_stops_every_process_and_removes_the_file() {
    let mut c = Cluster::start(2, 1, &[], &[]);
    let out = common::run(
        &["shutdown", "--scheduler-file", &c.file_arg()],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(c
        .scheduler
        .wait_timeout(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    for w in &mut c.workers {
        let status = w.wait_timeout(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "{:?}\n{}",
            status,
            w.log_text()
        );
    }
    assert!(!c.file.exists(), "scheduler file removed on clean shutdown");
}

#[test]
fn local_cluster_runs_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let f = file.to_str().unwrap();
    let mut local = common::spawn(
        dir.path(),
        "local",
        &[
            "local",
            "--workers",
            "2",
            "--nthreads",
            "1",
            "--scheduler-file",
            f,
            "--host",
            "127.0.0.1",
        ],
    );
    let out = common::run(
        &[
            "run",
            "--json",
            "--scheduler-file",
            f,
            "--generate",
            "tree:64",
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        local.log_text()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"tree-6-0\":2016"));
    let out = common::run(
        &["shutdown", "--scheduler-file", f],
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    let status = local.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        local.log_text()
    );
    assert!(!file.exists());
}

#[test]
fn result_lost_with_its_worker_after_finishing_is_recomputed_when_fetched() {
    use shoal_comm::message::{ExecutorKind, KeyState, TaskSpec};
    use shoal_runtime::client::Client;
    use shoal_runtime::executor::builtin::{encode_args, SumArgs};
    let mut c = Cluster::start(1, 1, &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::from_scheduler_file(&c.file, Duration::from_secs(10))
            .await
            .unwrap();
        let mut spec = TaskSpec::new("v", ExecutorKind::Sum, vec![]);
        spec.payload = Some(0);
        let keys = vec!["v".to_string()];
        client
            .submit(
                vec![spec],
                vec![encode_args(&SumArgs {
                    add: 41,
                    sleep_ms: 0,
                })],
                keys.clone(),
            )
            .await
            .unwrap();
        assert_eq!(
            client
                .wait(&keys, Some(Duration::from_secs(30)))
                .await
                .unwrap(),
            vec![KeyState::Memory { size: 8 }]
        );
        // The only holder dies after the client heard "done"; a new worker joins.
        c.workers[0].signal(libc::SIGKILL);
        c.add_worker(1, &[]);
        let values = tokio::time::timeout(Duration::from_secs(60), client.fetch(&keys))
            .await
            .expect("fetch must not hang")
            .unwrap();
        assert_eq!(values[0].as_ref(), 41u64.to_le_bytes());
    });
}

/// UCX prints its diagnostics to stdout by default; shoal routes them to its log on stderr,
/// so a command's JSON stays clean. A bad `UCX_*` value makes UCX print an error.
#[test]
fn ucx_diagnostics_go_to_stderr_and_leave_json_on_stdout_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = std::process::Command::new(common::SHOAL)
        .args(["info", "--json"])
        .env("UCX_RNDV_THRESH", "not-a-size")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = common::wait_child(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("shoal info did not finish in 30 s")
    });
    let (out, err) = (
        std::fs::read_to_string(&stdout).unwrap(),
        std::fs::read_to_string(&stderr).unwrap(),
    );
    assert!(status.success(), "{out}\n{err}");
    let info: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{out}"));
    assert_eq!(info["ucx"]["available"], json!(false), "{info}");
    assert!(
        err.contains("Invalid value for RNDV_THRESH") && err.contains("ERROR"),
        "UCX's diagnostic is not in the log on stderr:\n{err}"
    );
}

#[test]
fn local_cluster_moves_payloads_over_ucx_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let f = file.to_str().unwrap();
    let mut local = common::spawn(
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
            "--transport",
            "ucx",
            "--scheduler-file",
            f,
            "--host",
            "127.0.0.1",
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client =
            shoal_runtime::client::Client::from_scheduler_file(&file, Duration::from_secs(30))
                .await
                .unwrap();
        let sizes = [0u64, 1, 4093, (1 << 20) + 5, (64 << 20) + 3];
        for (n, size) in sizes.into_iter().enumerate() {
            let (from, to) = if n % 2 == 0 {
                ("local-0", "local-1")
            } else {
                ("local-1", "local-0")
            };
            let got = common::move_payload(&client, &format!("u{n}"), size, from, to).await;
            assert_eq!(got.len() as u64, size);
            assert_eq!(
                common::first_wrong_byte(&got, size as u8),
                None,
                "payload of {size} bytes differs at this byte"
            );
        }
    });
    let out = common::run(
        &["status", "--json", "--scheduler-file", f],
        Duration::from_secs(20),
    );
    let status = common::json_after_log(&String::from_utf8_lossy(&out.stdout)).unwrap();
    for w in status["workers"].as_array().unwrap() {
        let address = w["address"].as_str().unwrap();
        assert!(
            address.starts_with("tcp://") && address.contains(" ucx://"),
            "{address}"
        );
    }
    let out = common::run(
        &["shutdown", "--scheduler-file", f],
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    assert!(local.wait_timeout(Duration::from_secs(20)).is_some());
    let log = local.log_text();
    assert!(log.contains("fetching from peer over UCX"), "{log}");
    assert!(!log.contains("fetching from peer over TCP"), "{log}");
}
