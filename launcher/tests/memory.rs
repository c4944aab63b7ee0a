//! Worker memory management with real processes: spilling a computation three times the
//! workers' memory, pausing when spilling is off, a full spill disk, and the nanny
//! restarting a worker above the terminate threshold.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::{spawn, Cluster};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// `n` producers of `size` bytes (filled with `i % 200 + 1`), each read back by a checksum
/// of itself and its neighbour, all summed: `total` checks every byte produced.
fn neighbour_checksums(n: u64, size: u64, keep_producers: bool) -> (Value, u64) {
    let mut tasks = Vec::new();
    let mut expected = 0u64;
    for i in 0..n {
        tasks.push(json!({"key": format!("p{i}"), "kind": "bytes", "args": {"size": size, "fill": i % 200 + 1}}));
    }
    for i in 0..n {
        let j = (i + 1) % n;
        tasks.push(json!({"key": format!("c{i}"), "kind": "checksum", "deps": [format!("p{i}"), format!("p{j}")]}));
        expected += size * (i % 200 + 1 + j % 200 + 1);
    }
    let checks: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    tasks.push(json!({"key": "total", "kind": "sum", "deps": checks}));
    let mut outputs = vec!["total".to_string()];
    if keep_producers {
        outputs.extend((0..n).map(|i| format!("p{i}")));
    }
    (json!({"tasks": tasks, "outputs": outputs}), expected)
}

/// Run [`neighbour_checksums`] on `c` and check that it succeeds with the right total.
fn run_neighbour_checksums(c: &Cluster, n: u64, size: u64, keep_producers: bool) {
    let (graph, expected) = neighbour_checksums(n, size, keep_producers);
    let (ok, out) = c.run_graph(&graph);
    assert!(ok, "{out}");
    assert_eq!(out["results"]["total"], json!(expected), "{out}");
}

fn workers(status: &Value) -> Vec<Value> {
    status["workers"].as_array().cloned().unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_computation_three_times_the_memory_limit_completes_by_spilling() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_str().unwrap().to_string();
    let c = Cluster::start(
        2,
        1,
        &["--memory-limit", "320MiB", "--local-directory", &dir],
        &[],
    );
    // 240 × 8 MiB held at once = 1.9 GiB, three times the 2 × 320 MiB of the workers.
    run_neighbour_checksums(&c, 240, 8 * MIB, true);
    let status = c.status();
    let spilled: u64 = workers(&status)
        .iter()
        .map(|w| w["memory"]["spill_bytes"].as_u64().unwrap())
        .sum();
    let read_back: u64 = workers(&status)
        .iter()
        .map(|w| w["memory"]["unspill_count"].as_u64().unwrap())
        .sum();
    assert!(
        spilled >= 1200 * MIB,
        "spilled only {spilled} bytes: {status}"
    );
    let restarted = c
        .workers
        .iter()
        .filter(|w| w.log_text().contains("terminate threshold"))
        .count();
    assert_eq!(
        restarted, 0,
        "a worker passed the terminate threshold while spilling"
    );
    assert!(read_back > 0, "nothing was read back: {status}");
    // Spill files live in one directory per worker, a few large files each, all of them
    // removed with the data once it was released.
    let space = scratch.path().join("shoal-worker-space");
    let worker_dirs: Vec<_> = std::fs::read_dir(&space).unwrap().collect();
    assert_eq!(worker_dirs.len(), 2, "one directory per worker");
}

/// A client (`shoal run`, in the background) wanting `n` results of 8 MiB at once, and
/// with `slow`, a 30 s task after them that keeps it waiting with the results held.
fn hold_big_results(c: &Cluster, n: usize, slow: bool) -> common::Proc {
    let mut tasks: Vec<Value> = (0..n)
        .map(|i| json!({"key": format!("big{i}"), "kind": "bytes", "args": {"size": 8 * MIB, "fill": 1}}))
        .collect();
    let mut outputs: Vec<String> = (0..n).map(|i| format!("big{i}")).collect();
    if slow {
        tasks.push(json!({"key": "slow", "kind": "sleep", "args": {"ms": 30_000}}));
        outputs.push("slow".into());
    }
    let graph_path = c.dir.path().join("big.json");
    std::fs::write(
        &graph_path,
        json!({"tasks": tasks, "outputs": outputs}).to_string(),
    )
    .unwrap();
    let file = c.file_arg();
    spawn(
        c.dir.path(),
        "runner",
        &[
            "run",
            "--json",
            "--scheduler-file",
            &file,
            "--wait",
            "600",
            graph_path.to_str().unwrap(),
        ],
    )
}

#[test]
fn with_spilling_off_a_worker_pauses_instead_of_dying_and_resumes() {
    let c = Cluster::start(
        1,
        1,
        &[
            "--memory-limit",
            "256MiB",
            "--memory-target",
            "false",
            "--memory-spill",
            "false",
        ],
        &[],
    );
    // Twice the memory limit, all wanted at once: without pausing the worker would pass
    // the terminate threshold.
    let mut runner = hold_big_results(&c, 64, false);
    wait_until("the worker pauses", Duration::from_secs(30), || {
        workers(&c.status())
            .first()
            .is_some_and(|w| w["memory"]["paused"] == json!(true))
    });
    // Paused, it holds its results and starts nothing more: the rest stays queued.
    std::thread::sleep(Duration::from_secs(1));
    let status = c.status();
    let w = &workers(&status)[0];
    assert!(w["memory"]["paused"] == json!(true), "{status}");
    let done = status["tasks"]["memory"].as_u64().unwrap_or(0);
    assert!((10..64).contains(&done), "{status}");
    assert!(status["tasks"].get("erred").is_none(), "{status}");
    let rss = w["rss"].as_u64().unwrap();
    assert!(
        rss < 243 * MIB,
        "RSS {rss} reached the terminate threshold: {status}"
    );
    // The client goes away: its data is freed, the worker resumes and computes again.
    runner.signal(libc::SIGKILL);
    let _ = runner.wait_timeout(Duration::from_secs(5));
    wait_until("the worker resumes", Duration::from_secs(30), || {
        workers(&c.status())
            .first()
            .is_some_and(|w| w["memory"]["paused"] == json!(false))
    });
    run_neighbour_checksums(&c, 4, MIB, false);
    let log = c.workers[0].log_text();
    assert!(log.contains("pause threshold"), "{log}");
    assert!(!log.contains("terminate threshold"), "{log}");
}

/// A tmpfs of `size`, unmounted when dropped; `None` when mounting is not allowed here.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_spill_disk_loses_nothing() {
    let Some(disk) = Tmpfs::mount("24m") else {
        eprintln!("cannot mount a tmpfs here (not root?): skipped");
        return;
    };
    let dir = disk.0.path().to_str().unwrap().to_string();
    let c = Cluster::start(
        1,
        1,
        &[
            "--memory-limit",
            "224MiB",
            "--local-directory",
            &dir,
            "--memory-terminate",
            "false",
            "--memory-pause",
            "false",
        ],
        &[],
    );
    // 160 MiB held against a 134 MiB target: at least four 8 MiB results must leave
    // memory whatever the timing, and only two fit on the 24 MiB disk. (No pause: with the
    // disk full, nothing could bring memory back under a pause threshold.)
    run_neighbour_checksums(&c, 20, 8 * MIB, true);
    let status = c.status();
    let w = &workers(&status)[0];
    assert!(w["memory"]["spill_count"].as_u64().unwrap() > 0, "{status}");
    let log = c.workers[0].log_text();
    assert!(log.contains("results stay in memory"), "{log}");
}

/// One worker (2 threads, 96 MiB, spilling and pausing off) is given twelve 8 MiB
/// results wanted at once, more than 0.95 × 96 MiB, and a slow task that keeps the client
/// waiting (on one thread; the other stays free). Waits until the worker is replaced as
/// `replaced(first worker, current worker)` says, then lets the client go (its data is
/// freed), checks the log and that a new graph completes.
fn pass_the_terminate_threshold(
    extra: &[&str],
    replaced: impl Fn(&Value, &Value) -> bool,
) -> Cluster {
    let mut flags = extra.to_vec();
    flags.extend([
        "--memory-limit",
        "96MiB",
        "--memory-target",
        "false",
        "--memory-spill",
        "false",
        "--memory-pause",
        "false",
    ]);
    let c = Cluster::start(1, 2, &flags, &["--allowed-failures", "10"]);
    let first = workers(&c.status())[0].clone();
    let mut runner = hold_big_results(&c, 12, true);
    wait_until("the worker is replaced", Duration::from_secs(30), || {
        workers(&c.status())
            .first()
            .is_some_and(|now| replaced(&first, now))
    });
    // Nothing can hold all of that: the client gives up, and its data is freed.
    runner.signal(libc::SIGKILL);
    let _ = runner.wait_timeout(Duration::from_secs(5));
    let log = c.workers[0].log_text();
    assert!(log.contains("terminate threshold"), "{log}");
    run_neighbour_checksums(&c, 4, MIB, false);
    c
}

#[test]
fn the_nanny_restarts_a_worker_above_the_terminate_threshold_and_the_graph_completes() {
    // The nanny kills the worker process and starts a new one; the scheduler recomputes.
    pass_the_terminate_threshold(&[], |first, now| now["pid"] != first["pid"]);
}

#[test]
fn without_a_nanny_the_worker_restarts_itself_in_process_above_terminate() {
    // As MPI ranks do: the process stays, its worker clears its results and rejoins.
    let c = pass_the_terminate_threshold(&["--no-nanny"], |first, now| {
        now["id"] != first["id"] && now["pid"] == first["pid"]
    });
    let log = c.workers[0].log_text();
    assert!(log.contains("restarting the worker"), "{log}");
}

#[test]
fn a_result_larger_than_the_limit_goes_to_disk_or_fails_saying_why() {
    // Pause and terminate off: only the size of the one result matters here.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_str().unwrap().to_string();
    let flags = [
        "--memory-limit",
        "64MiB",
        "--memory-pause",
        "false",
        "--memory-terminate",
        "false",
        "--local-directory",
        &dir,
    ];
    let huge = json!({"tasks": [
        {"key": "huge", "kind": "bytes", "args": {"size": 96 * MIB, "fill": 3}},
        {"key": "check", "kind": "checksum", "deps": ["huge"]}],
        "outputs": ["check"]});
    let spilling = Cluster::start(1, 1, &flags, &[]);
    let (ok, out) = spilling.run_graph(&huge);
    assert!(ok, "{out}");
    assert_eq!(out["results"]["check"], json!(96 * MIB * 3));
    drop(spilling);
    let mut no_spill = flags.to_vec();
    no_spill.extend(["--memory-target", "false", "--memory-spill", "false"]);
    let memory_only = Cluster::start(1, 1, &no_spill, &[]);
    let (ok, out) = memory_only.run_graph(&huge);
    assert!(!ok, "{out}");
    let text = out.to_string();
    assert!(
        text.contains("MemoryError") && text.contains("more than this worker's memory limit"),
        "{text}"
    );
}

#[test]
fn a_worker_leaving_cleanly_removes_its_scratch_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_str().unwrap().to_string();
    let mut c = Cluster::start(
        1,
        1,
        &["--memory-limit", "128MiB", "--local-directory", &dir],
        &[],
    );
    let space = scratch.path().join("shoal-worker-space");
    let entries = || std::fs::read_dir(&space).map_or(0, |d| d.count());
    assert_eq!(entries(), 1, "the worker's own directory");
    c.workers[0].signal(libc::SIGTERM);
    let status = c.workers[0].wait_timeout(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(entries(), 0, "removed on a clean exit");
}
