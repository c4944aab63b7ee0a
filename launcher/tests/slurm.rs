//! `shoal jobqueue` against a real single-node SLURM started by the test (munged,
//! slurmctld, slurmd; see `common/slurm.rs`), and the worker flags its scripts use.
//!
//! Without SLURM installed the SLURM tests print "skipped" and pass, unless
//! `SHOAL_REQUIRE_SLURM` is set (`scripts/test` sets it where setup installed SLURM).

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::slurm::{Slurm, Unavailable};
use common::{Cluster, SHOAL};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sum of 0..1024, what `--generate tree:1024` computes.
const TREE_1024: u64 = 523_776;

fn slurm_or_skip(test: &str) -> Option<Slurm> {
    match Slurm::start() {
        Ok(s) => Some(s),
        Err(Unavailable::NotInstalled(why)) => {
            assert!(
                std::env::var_os("SHOAL_REQUIRE_SLURM").is_none(),
                "{test}: SHOAL_REQUIRE_SLURM is set but {why}"
            );
            eprintln!("{test}: skipped: SLURM not installed (run scripts/setup): {why}");
            None
        }
    }
}

/// Runs `shoal ARGS` (killed after 60 s) with this SLURM's config; (success, stdout, stderr).
fn shoal(slurm: Option<&Slurm>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg(SHOAL).args(args).stdin(Stdio::null());
    if let Some(s) = slurm {
        cmd.env("SLURM_CONF", &s.conf);
    }
    let out = cmd.output().expect("cannot run shoal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(slurm: Option<&Slurm>, args: &[&str]) -> String {
    let (success, stdout, stderr) = shoal(slurm, args);
    assert!(
        success,
        "shoal {args:?} failed:\n{stdout}\n{stderr}\n{}",
        slurm.map(Slurm::logs).unwrap_or_default()
    );
    stdout
}

fn json(text: &str) -> Value {
    let start = text.find('{').unwrap_or(0);
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Worker names the scheduler knows (empty while the file is missing).
fn worker_names(file: &Path) -> Vec<String> {
    if !file.exists() {
        return Vec::new();
    }
    let (success, stdout, _) = shoal(
        None,
        &[
            "status",
            "--json",
            "--timeout",
            "5",
            "--scheduler-file",
            path(file),
        ],
    );
    if !success {
        return Vec::new();
    }
    let mut names: Vec<String> = json(&stdout)["workers"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `shoal jobqueue cancel --all`, then wait until squeue is empty.
fn cancel_all(slurm: &Slurm, file: &Path) {
    ok(
        Some(slurm),
        &[
            "jobqueue",
            "cancel",
            "--all",
            "--scheduler-file",
            path(file),
        ],
    );
    slurm.wait_until("an empty squeue", Duration::from_secs(30), |s| {
        s.queue().is_empty()
    });
}

fn check_tree(file: &Path) {
    let out = ok(
        None,
        &[
            "run",
            "--json",
            "--wait",
            "60",
            "--generate",
            "tree:1024",
            "--scheduler-file",
            path(file),
        ],
    );
    let result = json(&out);
    assert_eq!(result["ok"], Value::Bool(true), "{out}");
    assert_eq!(
        result["results"]["tree-10-0"],
        Value::from(TREE_1024),
        "{out}"
    );
}

/// Job parameters small enough for this machine, logs in `dir`.
fn params(dir: &Path) -> Vec<String> {
    [
        "--cores",
        "1",
        "--memory",
        "512MiB",
        "--walltime",
        "00:10:00",
        "--param",
        &format!("log_directory={}", dir.join("logs").display()),
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn args<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(tail.iter().map(String::as_str))
        .collect()
}

/// A scheduler writing `scheduler.json` into a new temporary directory.
fn scheduler_in_temp_dir() -> (tempfile::TempDir, PathBuf, common::Proc) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scheduler.json");
    let scheduler = common::spawn(
        dir.path(),
        "scheduler",
        &["scheduler", "--scheduler-file", path(&file)],
    );
    (dir, file, scheduler)
}

#[test]
fn worker_array_connects_computes_scales_down_and_cancels() {
    let Some(slurm) = slurm_or_skip("worker_array") else {
        return;
    };
    let s = Some(&slurm);
    let (dir, file, scheduler) = scheduler_in_temp_dir();
    let p = params(dir.path());
    let out = ok(
        s,
        &args(
            &[
                "jobqueue",
                "submit",
                "slurm",
                "--scheduler-file",
                path(&file),
                "--jobs",
                "2",
            ],
            &p,
        ),
    );
    assert!(out.contains("submitted 2 worker job(s)"), "{out}");
    let state =
        json(&std::fs::read_to_string(dir.path().join("scheduler.json.jobs.json")).unwrap());
    assert_eq!(
        state["workers"].as_array().map(Vec::len),
        Some(2),
        "{state}"
    );
    slurm.wait_until(
        "2 array workers to connect",
        Duration::from_secs(60),
        |_| worker_names(&file).len() == 2,
    );
    let names = worker_names(&file);
    assert_ne!(names[0], names[1]);
    assert!(
        names.iter().all(|n| n.starts_with("shoal-worker-")),
        "{names:?}"
    );
    check_tree(&file);

    let status = json(&ok(
        s,
        &[
            "jobqueue",
            "status",
            "--json",
            "--scheduler-file",
            path(&file),
        ],
    ));
    assert_eq!(status["worker_jobs"], Value::from(2), "{status}");

    let out = ok(
        s,
        &["jobqueue", "scale", "--scheduler-file", path(&file), "1"],
    );
    assert!(out.contains("cancelled"), "{out}");
    slurm.wait_until("one job left in squeue", Duration::from_secs(30), |s| {
        s.queue().len() == 1
    });
    slurm.wait_until("one worker left", Duration::from_secs(30), |_| {
        worker_names(&file).len() == 1
    });
    check_tree(&file);

    cancel_all(&slurm, &file);
    for leftover in [
        "scheduler.json.jobs.json",
        "scheduler.json.jobs.lock",
        "scheduler.json.jobs.d",
    ] {
        assert!(
            !dir.path().join(leftover).exists(),
            "cancel --all left {leftover}"
        );
    }
    drop(scheduler);
}

#[test]
fn scale_wait_shows_workers_connecting_and_names_the_jobs_still_pending() {
    let Some(slurm) = slurm_or_skip("scale_wait") else {
        return;
    };
    let s = Some(&slurm);
    let (dir, file, scheduler) = scheduler_in_temp_dir();
    let p = params(dir.path());
    let submit = |file: &Path, p: &[String]| {
        ok(
            s,
            &args(
                &[
                    "jobqueue",
                    "submit",
                    "slurm",
                    "--scheduler-file",
                    path(file),
                    "--jobs",
                    "1",
                ],
                p,
            ),
        )
    };
    submit(&file, &p);
    // Up, on a terminal: a bar of the workers connected and the jobs by state, until both
    // workers are there.
    let (status, text) = common::on_terminal(
        24,
        &format!(
            "{SHOAL} jobqueue scale 2 --wait --timeout 90 --scheduler-file {}",
            path(&file)
        ),
        &[("SLURM_CONF", &slurm.conf)],
    );
    assert!(status.success(), "{status}: {text}\n{}", slurm.logs());
    assert!(
        text.contains("/2 workers connected (jobs: "),
        "no bar:\n{text:?}"
    );
    assert!(text.contains("2 worker(s) connected, 2 wanted"), "{text}");
    assert_eq!(
        worker_names(&file).len(),
        2,
        "returned before the workers came"
    );

    // Down, without a terminal: no bar, back once the cancelled job's worker has left.
    let (success, stdout, stderr) = shoal(
        s,
        &[
            "jobqueue",
            "scale",
            "1",
            "--wait",
            "--timeout",
            "60",
            "--scheduler-file",
            path(&file),
        ],
    );
    assert!(success, "{stdout}\n{stderr}\n{}", slurm.logs());
    assert!(stdout.contains("cancelled"), "{stdout}");
    assert!(
        stdout.contains("1 worker(s) connected, 1 wanted"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("workers connected"),
        "a bar without a terminal: {stderr}"
    );
    assert_eq!(worker_names(&file).len(), 1);
    cancel_all(&slurm, &file);
    drop(scheduler);

    // Jobs that may not start for an hour: the timeout names them as pending.
    let later = dir.path().join("later.json");
    let _scheduler = common::spawn(
        dir.path(),
        "scheduler-later",
        &["scheduler", "--scheduler-file", path(&later)],
    );
    let mut p_later = p.clone();
    p_later.extend([
        "--param".into(),
        "job_extra_directives=--begin=now+1hour".into(),
    ]);
    submit(&later, &p_later);
    let (success, stdout, stderr) = shoal(
        s,
        &[
            "jobqueue",
            "scale",
            "2",
            "--wait",
            "--timeout",
            "3",
            "--scheduler-file",
            path(&later),
        ],
    );
    assert!(!success, "the wait succeeded:\n{stdout}\n{stderr}");
    let state = json(&std::fs::read_to_string(dir.path().join("later.json.jobs.json")).unwrap());
    let jobs: Vec<&str> = state["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["job"]["id"].as_str())
        .collect();
    assert_eq!(jobs.len(), 2, "{state}");
    assert!(
        stderr.contains("only 0 of 2 workers connected to the scheduler of")
            && stderr.contains(&format!("still pending in slurm: {} {}", jobs[0], jobs[1]))
            && stderr.contains("`squeue` shows why"),
        "{stderr}"
    );
    cancel_all(&slurm, &later);
}

#[test]
fn scheduler_as_its_own_batch_job_with_a_worker_job() {
    let Some(slurm) = slurm_or_skip("scheduler_job") else {
        return;
    };
    let s = Some(&slurm);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sched.json");
    let p = params(dir.path());
    let out = ok(
        s,
        &args(
            &[
                "jobqueue",
                "submit",
                "slurm",
                "--scheduler",
                "--scheduler-file",
                path(&file),
            ],
            &p,
        ),
    );
    assert!(out.contains("submitted the scheduler job"), "{out}");
    ok(
        s,
        &args(
            &[
                "jobqueue",
                "submit",
                "slurm",
                "--scheduler-file",
                path(&file),
            ],
            &p,
        ),
    );
    slurm.wait_until(
        "the worker job to connect to the scheduler job",
        Duration::from_secs(60),
        |_| worker_names(&file).len() == 1,
    );
    check_tree(&file);
    let status = ok(s, &["jobqueue", "status", "--scheduler-file", path(&file)]);
    assert!(
        status.contains("scheduler") && status.contains("running"),
        "{status}"
    );
    cancel_all(&slurm, &file);
    // The scheduler left cleanly on SIGTERM: its file is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!file.exists(), "the scheduler job left its file behind");
}

#[test]
fn bad_parameters_submit_nothing_and_name_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let cases: [(&[&str], &str); 4] = [
        (&["--memory", "10 GB"], "\"10 GB\""),
        (&["--memory", "1e9"], "\"1e9\""),
        (&["--memory", "1GB", "--walltime", "25:61:00"], "25:61:00"),
        (&["--memory", "1GB", "--param", "processes=2"], "processes"),
    ];
    for (extra, expect) in cases {
        let mut a = vec![
            "jobqueue",
            "submit",
            "slurm",
            "--scheduler-file",
            path(&file),
        ];
        a.extend(["--cores", "1"]);
        a.extend_from_slice(extra);
        let (success, _, stderr) = shoal(None, &a);
        assert!(!success, "{extra:?} was accepted");
        assert!(stderr.contains(expect), "{extra:?}: {stderr}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "files written: {leftovers:?}");
}

#[test]
fn missing_sbatch_names_the_command_and_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let out = Command::new(SHOAL)
        .args([
            "jobqueue",
            "submit",
            "slurm",
            "--scheduler-file",
            path(&file),
        ])
        .args(["--cores", "1", "--memory", "1GB"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`sbatch` was not found on PATH") && stderr.contains("module load slurm"),
        "{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "files written: {leftovers:?}");
}

#[test]
fn nworkers_start_named_processes_that_leave_after_their_lifetime() {
    let c = Cluster::start(0, 1, &[], &[]);
    let f = c.file_arg();
    let mut w = common::spawn(
        c.dir.path(),
        "batch-worker",
        &[
            "worker",
            "--scheduler-file",
            &f,
            "--scheduler-file-timeout",
            "10",
            "--name",
            "job7",
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--memory-limit",
            "0",
            "--host",
            "127.0.0.1",
            "--lifetime",
            "3",
            "--lifetime-stagger",
            "1",
        ],
    );
    c.wait_for_workers(2);
    let names: Vec<String> = c.status()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str().map(str::to_string))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["job7-0", "job7-1"]);
    let status = w
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("workers outlived their lifetime:\n{}", w.log_text()));
    assert!(status.success(), "{status}: {}", w.log_text());
    assert!(
        w.log_text().contains("lifetime reached"),
        "{}",
        w.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.status()["workers"].as_array().is_some_and(Vec::is_empty) {
        assert!(
            Instant::now() < deadline,
            "the scheduler still lists the workers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn scheduler_file_timeout_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.json");
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("30")
        .arg(SHOAL)
        .args(["worker", "--scheduler-file", path(&missing)])
        .args(["--scheduler-file-timeout", "0.5", "--memory-limit", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        stderr.contains(path(&missing)) && stderr.contains("--scheduler-file-timeout"),
        "{stderr}"
    );
}
