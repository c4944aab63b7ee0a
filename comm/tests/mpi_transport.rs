//! The MPI transport between two real ranks: `mpirun -np 2` of the `mpi_echo` example
//! (built by `cargo test` with the tests). Each mpirun runs in its own process group, killed
//! when its guard drops, so nothing outlives a failed test.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn echo_example() -> PathBuf {
    // target/<profile>/deps/this-test → target/<profile>/examples/mpi_echo
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join("mpi_echo");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p shoal-comm --examples`",
        path.display()
    );
    path
}

/// An mpirun process group, killed when dropped.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe {
            libc::killpg(self.0.id() as i32, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// Run the echo example under `mpirun -np 2` with extra environment, within 120 s.
fn run_echo(env: &[(&str, &str)], args: &[&str]) -> Output {
    let child = Command::new("mpirun")
        .args(["-np", "2"])
        .arg(echo_example())
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("mpirun must be installed (scripts/setup installs Open MPI)");
    let mut job = Job(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while job.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "mpirun of the echo example hung");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Output {
        status: job.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = job.0.stdout.take() {
        let _ = s.read_to_end(&mut out.stdout);
    }
    if let Some(mut s) = job.0.stderr.take() {
        let _ = s.read_to_end(&mut out.stderr);
    }
    out
}

#[test]
fn frames_of_every_size_cross_intact_and_in_order_in_many_mpi_messages() {
    // An odd, small largest MPI message: the 8 MiB frame travels in 9 pieces, the 1 MiB
    // frame in 2.
    let out = run_echo(&[("SHOAL_MPI_MAX_MESSAGE", "1000003")], &["8", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap();
    let report: serde_json::Value = serde_json::from_str(line).unwrap();
    let per_round = 1 + 4093 + (1u64 << 20) + (8u64 << 20) + 3;
    assert_eq!(report["checked_bytes"], serde_json::json!(2 * per_round));
}

#[test]
fn a_bad_largest_message_setting_is_refused_with_the_fix() {
    let out = run_echo(&[("SHOAL_MPI_MAX_MESSAGE", "lots")], &["1", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SHOAL_MPI_MAX_MESSAGE=\"lots\" is not a positive number of bytes"),
        "{stderr}"
    );
}
