//! `shoal mpi` under a real `mpirun` (oversubscribed on this small machine). Every mpirun
//! runs in its own process group, killed as a group when its guard drops.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::SHOAL;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// An `mpirun` process group, killed with SIGKILL when dropped.
struct MpiJob {
    child: Child,
    log: PathBuf,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl MpiJob {
    fn start(np: u32, mpirun_opts: &[&str], shoal_opts: &[&str]) -> MpiJob {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scheduler.json");
        let log = dir.path().join("mpirun.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("mpirun")
            .args(mpirun_opts)
            .args([
                "-np",
                &np.to_string(),
                SHOAL,
                "mpi",
                "--scheduler-file",
                file.to_str().unwrap(),
            ])
            .args(shoal_opts)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("mpirun must be installed (scripts/setup installs Open MPI)");
        MpiJob {
            child,
            log,
            file,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn f(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        common::wait_child(&mut self.child, timeout)
    }

    fn status(&self) -> Value {
        let out = common::run(
            &["status", "--json", "--scheduler-file", self.f()],
            Duration::from_secs(20),
        );
        common::json_after_log(&String::from_utf8_lossy(&out.stdout)).unwrap_or(Value::Null)
    }

    /// One string field of every worker in `shoal status --json`.
    fn worker_field(&self, field: &str) -> Vec<String> {
        self.status()["workers"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .map(|w| w[field].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A Rust client of this job's cluster, through its scheduler file.
    async fn client(&self) -> shoal_runtime::client::Client {
        shoal_runtime::client::Client::from_scheduler_file(&self.file, Duration::from_secs(10))
            .await
            .unwrap()
    }

    fn wait_for_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status()["workers"].as_array().map_or(0, Vec::len) < n {
            assert!(
                Instant::now() < deadline,
                "{n} workers did not join:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Live shoal ranks of this job: mpirun's children (each rank has its own process
    /// group, so they are found by parent pid).
    fn ranks(&self) -> Vec<i32> {
        let parent = self.child.id() as i32;
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
                let state = fields.next();
                let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
                ppid == Some(parent) && state != Some("Z")
            })
            .collect()
    }
}

impl Drop for MpiJob {
    fn drop(&mut self) {
        for pid in self.ranks() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        // SAFETY: as above.
        unsafe {
            libc::killpg(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn run_tree(file: &str, leaves: u64) -> Value {
    let out = common::run(
        &[
            "run",
            "--json",
            "--scheduler-file",
            file,
            "--generate",
            &format!("tree:{leaves}"),
        ],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap()
}

fn shutdown(file: &str) {
    let out = common::run(
        &["shutdown", "--scheduler-file", file],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn wait_file(job: &MpiJob) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job.file.exists() {
        assert!(
            Instant::now() < deadline,
            "scheduler file never appeared:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_four_and_eight_ranks_compute_and_exit_cleanly() {
    for np in [2u32, 4, 8] {
        let mut job = MpiJob::start(np, &[], &[]);
        job.wait_for_workers(np as usize - 1);
        let out = run_tree(job.f(), 512);
        assert_eq!(
            out["results"]["tree-9-0"],
            serde_json::json!(512 * 511 / 2),
            "{np} ranks"
        );
        let names = job.worker_field("name");
        assert!(
            names.iter().all(|n| n.starts_with("shoal-mpi-")),
            "{names:?}"
        );
        shutdown(job.f());
        let status = job
            .wait(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{np} ranks did not exit:\n{}", job.log()));
        assert!(status.success(), "{np} ranks: {status:?}\n{}", job.log());
        assert!(!job.file.exists(), "scheduler file removed");
    }
}

#[test]
fn twenty_consecutive_launches_never_hang() {
    for i in 0..20 {
        let mut job = MpiJob::start(2, &[], &["--death-timeout", "5"]);
        wait_file(&job);
        shutdown(job.f());
        let status = job
            .wait(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("launch {i} hung:\n{}", job.log()));
        assert!(status.success(), "launch {i}: {status:?}\n{}", job.log());
    }
}

#[test]
fn inclusive_workers_use_the_scheduler_rank_too() {
    let mut job = MpiJob::start(2, &[], &["--inclusive-workers"]);
    job.wait_for_workers(2);
    shutdown(job.f());
    assert!(
        job.wait(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        job.log()
    );
}

#[test]
fn sigterm_ends_every_rank() {
    let mut job = MpiJob::start(4, &[], &[]);
    job.wait_for_workers(3);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(job.child.id() as i32, libc::SIGTERM);
    }
    let started = Instant::now();
    // mpirun forwards SIGTERM after about a second; every rank must be gone soon after.
    job.wait(Duration::from_secs(10))
        .expect("mpirun exits after SIGTERM");
    let took = started.elapsed();
    assert!(job.ranks().is_empty());
    assert!(took < Duration::from_secs(4), "{took:?}");
    let log = job.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn killed_worker_rank_does_not_stop_the_job_with_enable_recovery() {
    let mut job = MpiJob::start(4, &["--enable-recovery"], &[]);
    job.wait_for_workers(3);
    let victim = job.status()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "shoal-mpi-3")
        .cloned()
        .unwrap();
    let pid = victim["pid"].as_i64().unwrap() as i32;
    assert!(
        job.ranks().contains(&pid),
        "worker pid {pid} is a rank of this job"
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while job.status()["workers"].as_array().map_or(0, Vec::len) != 2 {
        assert!(
            Instant::now() < deadline,
            "the scheduler never dropped the dead rank:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run_tree(job.f(), 256);
    assert_eq!(out["results"]["tree-8-0"], serde_json::json!(256 * 255 / 2));
    let started = Instant::now();
    shutdown(job.f());
    let status = job.wait(Duration::from_secs(20));
    eprintln!("job ended {:?} after shutdown", started.elapsed());
    assert!(status.is_some(), "{}", job.log());
    // The survivors know a rank went: MPI_Finalize, which may wait for it, is cut short.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}:\n{}",
        started.elapsed(),
        job.log()
    );
}

#[test]
fn killed_scheduler_rank_makes_workers_exit_within_their_death_timeout() {
    let mut job = MpiJob::start(3, &["--enable-recovery"], &["--death-timeout", "2"]);
    job.wait_for_workers(2);
    let pid: i64 = serde_json::from_slice::<Value>(&std::fs::read(&job.file).unwrap()).unwrap()
        ["pid"]
        .as_i64()
        .unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let started = Instant::now();
    job.wait(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("workers outlived their death timeout:\n{}", job.log()));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(job.ranks().is_empty());
    assert!(job.log().contains("scheduler lost"), "{}", job.log());
}

#[test]
fn bad_worlds_and_flags_are_explained_not_hung() {
    let run_mpi = |np: u32, opts: &[&str]| {
        let mut job = MpiJob::start(np, &["--enable-recovery"], opts);
        job.wait(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("hung with {opts:?}:\n{}", job.log()));
        job.log()
    };
    let log = run_mpi(2, &["--scheduler-rank", "5"]);
    assert!(
        log.contains("--scheduler-rank 5 is outside the world of 2 ranks"),
        "{log}"
    );
    // Refused by every rank before MPI starts.
    let log = run_mpi(3, &["--interface", "nosuch0"]);
    assert_eq!(
        log.matches("--interface: network interface \"nosuch0\" does not exist")
            .count(),
        3,
        "{log}"
    );
    let log = run_mpi(1, &[]);
    assert!(
        log.contains("a world of 1 rank has no room for workers"),
        "{log}"
    );
    // A binary whose MPI differs from the launcher's sees a world of 1 while the launcher
    // announced more: simulated by running outside mpirun with the launcher's variable set.
    let out = Command::new(SHOAL)
        .args(["mpi"])
        .env("OMPI_COMM_WORLD_SIZE", "4")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("built against a different MPI than the mpirun that started it"),
        "{text}"
    );
}

#[test]
fn a_worker_rank_that_fails_at_start_stops_the_whole_job() {
    // The scratch base is fine, but the workers' space in it is a file: only the worker
    // ranks find out, after the scheduler rank listens and wrote its file.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("shoal-worker-space"), "in the way").unwrap();
    let mut job = MpiJob::start(
        3,
        &[],
        &["--local-directory", scratch.path().to_str().unwrap()],
    );
    let status = job
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the job ran on without workers:\n{}", job.log()));
    let log = job.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the worker failed to start") && log.contains("stopping the whole job"),
        "{log}"
    );
    assert!(!job.file.exists(), "scheduler file left behind:\n{log}");
}

#[test]
fn bind_cores_pins_each_worker_rank_to_its_share() {
    let mut job = MpiJob::start(3, &["--bind-to", "none"], &["--bind", "cores"]);
    job.wait_for_workers(2);
    for w in job.status()["workers"].as_array().unwrap() {
        let pid = w["pid"].as_i64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        let cpus = allowed.split_whitespace().nth(1).unwrap();
        assert!(
            !cpus.contains('-') && !cpus.contains(','),
            "{} not pinned to one core: {cpus}",
            w["name"]
        );
    }
    shutdown(job.f());
    assert!(
        job.wait(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "{}",
        job.log()
    );
}

/// Payloads of every awkward size between two worker ranks with `--transport transport`:
/// byte for byte, every fetch over `over` ("MPI" or "UCX"), none over TCP.
fn payloads_move_between_ranks_over(transport: &str, over: &str) {
    let mut job = MpiJob::start(3, &[], &["--transport", transport, "--memory-limit", "0"]);
    job.wait_for_workers(2);
    let addresses = job.worker_field("address");
    let scheme = format!(" {}://", over.to_lowercase());
    assert!(
        addresses.iter().all(|a| a.contains(&scheme)),
        "workers advertise a{scheme} address: {addresses:?}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = job.client().await;
        // Empty, tiny, odd, just over a MiB, and 64 MiB plus 3 (several MPI messages).
        let sizes = [0u64, 1, 4093, (1 << 20) + 5, (64 << 20) + 3];
        for (n, size) in sizes.into_iter().enumerate() {
            let (from, to) = if n % 2 == 0 {
                ("shoal-mpi-1", "shoal-mpi-2")
            } else {
                ("shoal-mpi-2", "shoal-mpi-1")
            };
            let got = common::move_payload(&client, &format!("p{n}"), size, from, to).await;
            assert_eq!(got.len() as u64, size);
            assert_eq!(
                common::first_wrong_byte(&got, size as u8),
                None,
                "payload of {size} bytes differs at this byte"
            );
        }
    });
    shutdown(job.f());
    assert!(
        job.wait(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        job.log()
    );
    let log = job.log();
    assert!(
        log.contains(&format!("fetching from peer over {over}")),
        "{log}"
    );
    for other in ["TCP", "MPI", "UCX"].into_iter().filter(|o| *o != over) {
        assert!(
            !log.contains(&format!("fetching from peer over {other}")),
            "{log}"
        );
    }
}

#[test]
fn mpi_transport_moves_large_payloads_between_workers_byte_for_byte() {
    payloads_move_between_ranks_over("mpi", "MPI");
}

#[test]
fn ucx_transport_moves_large_payloads_between_workers_byte_for_byte() {
    payloads_move_between_ranks_over("ucx", "UCX");
}

#[test]
fn a_fetch_over_mpi_from_a_rank_that_dies_is_abandoned_and_its_input_recomputed() {
    a_fetch_from_a_dying_rank_is_abandoned("mpi", "MPI");
}

#[test]
fn a_fetch_over_ucx_from_a_rank_that_dies_is_abandoned_and_its_input_recomputed() {
    a_fetch_from_a_dying_rank_is_abandoned("ucx", "UCX");
}

/// A reader waits on a fetch from a stopped holder; the holder is killed; the reader gives
/// up at once and the input is recomputed on a live worker.
fn a_fetch_from_a_dying_rank_is_abandoned(transport: &str, over: &str) {
    use shoal_comm::message::{ExecutorKind, KeyState, TaskSpec};
    use shoal_runtime::executor::builtin::{encode_args, BytesArgs};
    let mut job = MpiJob::start(
        4,
        &["--enable-recovery"],
        &["--transport", transport, "--memory-limit", "0"],
    );
    job.wait_for_workers(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = job.client().await;
        let size = 16u64 << 20;
        let mut produce = TaskSpec::new("made", ExecutorKind::Bytes, vec![]);
        produce.payload = Some(0);
        let args = BytesArgs {
            size,
            fill: 9,
            pattern: true,
        };
        let made = vec!["made".to_string()];
        client
            .submit(vec![produce], vec![encode_args(&args)], made.clone())
            .await
            .unwrap();
        client
            .wait(&made, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        // The holder stops answering: the fetch below is then surely in flight when it dies.
        let holder_address = client.who_has(&made).await.unwrap()[0][0].clone();
        let workers = job.status()["workers"].as_array().unwrap().clone();
        let holder = workers
            .iter()
            .find(|w| w["address"] == holder_address.as_str())
            .unwrap();
        let reader = workers
            .iter()
            .find(|w| w["name"] != holder["name"])
            .unwrap();
        let pid = holder["pid"].as_i64().unwrap() as i32;
        // A first small transfer opens the reader's connection to the holder: the fetch
        // below then waits on it for an answer, with no handshake timeout to end it.
        let warm = common::move_payload(
            &client,
            "warm",
            10,
            holder["name"].as_str().unwrap(),
            reader["name"].as_str().unwrap(),
        )
        .await;
        assert_eq!(warm.len(), 10);
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGSTOP);
        }
        let mut consume = TaskSpec::new("moved", ExecutorKind::Concat, made.clone());
        consume.workers = vec![reader["name"].as_str().unwrap().to_string()];
        let moved = vec!["moved".to_string()];
        client
            .submit(vec![consume], vec![], moved.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !matches!(client.state("moved"), Some(KeyState::Memory { .. })),
            "the reader cannot have the input while its holder is stopped"
        );
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        // The scheduler sees the rank's connection close at once and tells the reader,
        // which abandons the fetch; the input is recomputed on a live worker.
        let state = tokio::time::timeout(
            Duration::from_secs(8),
            client.wait(&moved, Some(Duration::from_secs(60))),
        )
        .await
        .expect("the reader must give up on the dead rank")
        .unwrap();
        assert_eq!(state, vec![KeyState::Memory { size }], "{}", job.log());
        let got = client.fetch(&moved).await.unwrap().remove(0);
        assert_eq!(common::first_wrong_byte(&got, 9), None);
    });
    shutdown(job.f());
    assert!(job.wait(Duration::from_secs(20)).is_some(), "{}", job.log());
    assert!(
        job.log()
            .contains(&format!("fetching from peer over {over}")),
        "{}",
        job.log()
    );
    // Both surviving worker ranks heard of the loss (the one that never fetched from the
    // dead rank has no other way to know), so neither waits long in MPI_Finalize.
    assert_eq!(
        job.log()
            .matches("the scheduler rank lost a worker rank")
            .count(),
        2,
        "{}",
        job.log()
    );
}

#[test]
fn workers_of_another_mpi_job_exchange_data_over_tcp() {
    let job = MpiJob::start(2, &[], &["--memory-limit", "0"]);
    job.wait_for_workers(1);
    // A second mpirun adds a worker to the first job's cluster (the later flag wins).
    let mut other = MpiJob::start(
        1,
        &[],
        &[
            "--no-scheduler",
            "--name",
            "other",
            "--memory-limit",
            "0",
            "--scheduler-file",
            job.f(),
        ],
    );
    job.wait_for_workers(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = job.client().await;
        let size = (4 << 20) + 1;
        for (key, from, to) in [
            ("ab", "shoal-mpi-1", "other-0"),
            ("ba", "other-0", "shoal-mpi-1"),
        ] {
            let got = common::move_payload(&client, key, size, from, to).await;
            assert_eq!(common::first_wrong_byte(&got, size as u8), None);
        }
    });
    shutdown(job.f());
    assert!(
        other.wait(Duration::from_secs(20)).is_some(),
        "{}",
        other.log()
    );
    let logs = format!("{}\n{}", job.log(), other.log());
    assert_eq!(
        logs.matches("fetching from peer over TCP").count(),
        2,
        "{logs}"
    );
    assert!(!logs.contains("fetching from peer over MPI"), "{logs}");
}
