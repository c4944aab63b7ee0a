//! The UCX transport between two real processes (the `ucx_peer` example, built by
//! `cargo test` with the tests), over UCX's shared-memory transports (`UCX_TLS=sm`) and
//! over its TCP transport (`UCX_TLS=tcp`). Every process runs in its own process group,
//! killed when its guard drops, so nothing outlives a failed test.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn peer_example() -> PathBuf {
    // target/<profile>/deps/this-test → target/<profile>/examples/ucx_peer
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join("ucx_peer");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p shoal-comm --examples`",
        path.display()
    );
    path
}

/// A process group, killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe {
            libc::killpg(self.0.id() as i32, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn spawn(tls: &str, args: &[&str]) -> Peer {
    let child = Command::new(peer_example())
        .args(args)
        .env("UCX_TLS", tls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    Peer(child)
}

/// Lines of a child's stdout, read on a thread so waits can time out.
fn lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A serving peer (`echo` or `stream`) and its `ucx://` address.
fn serve(tls: &str, mode: &str) -> (Peer, String) {
    let mut peer = spawn(tls, &[mode]);
    let out = lines(peer.0.stdout.take().unwrap());
    let line = out
        .recv_timeout(Duration::from_secs(30))
        .expect("the serving peer printed no address within 30 s");
    let address = line
        .strip_prefix("address ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(address.starts_with("ucx://"), "{address}");
    (peer, address)
}

/// Wait for `peer` to exit within `limit`; its stdout and exit code.
fn finish(mut peer: Peer, limit: Duration) -> (String, Option<i32>) {
    let deadline = Instant::now() + limit;
    while peer.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the peer did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = peer.0.wait().unwrap().code();
    let mut out = String::new();
    if let Some(mut s) = peer.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    (out, code)
}

fn frames_cross_intact_and_in_order(tls: &str) {
    let (_echo, address) = serve(tls, "echo");
    let check = spawn(tls, &["check", &address, "2"]);
    let (out, code) = finish(check, Duration::from_secs(120));
    assert_eq!(code, Some(0), "UCX_TLS={tls}: the check failed: {out}");
    // UCX writes its own warnings to stdout: the report is the last line.
    let last = out.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["frames"],
        serde_json::json!([0, 1, 4093, 1 << 20, (64 << 20) + 3])
    );
    let per_round: u64 = 1 + 4093 + (1 << 20) + (64 << 20) + 3;
    // Two rounds of all frames, then every size once more on its own.
    assert_eq!(report["bytes_checked"], 3 * per_round);
}

#[test]
fn frames_of_every_size_cross_intact_and_in_order_over_shared_memory() {
    frames_cross_intact_and_in_order("sm");
}

#[test]
fn frames_of_every_size_cross_intact_and_in_order_over_tcp() {
    frames_cross_intact_and_in_order("tcp");
}

/// A reader in the middle of a stream of 16 MiB messages sees an error (not a clean end,
/// not a hang) when the sending process is killed.
fn a_killed_peer_fails_the_reader(tls: &str) {
    let (mut stream, address) = serve(tls, "stream");
    let mut drain = spawn(tls, &["drain", &address]);
    let out = lines(drain.0.stdout.take().unwrap());
    for _ in 0..3 {
        let line = out
            .recv_timeout(Duration::from_secs(30))
            .expect("no message streamed within 30 s");
        assert_eq!(line, format!("got {}", 16 << 20));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe { libc::killpg(stream.0.id() as i32, libc::SIGKILL) };
    let _ = stream.0.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let line = out
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect(
                "UCX_TLS={tls}: the reader neither failed nor ended 60 s after its peer was killed",
            );
        if !line.starts_with("got ") {
            break line;
        }
    };
    assert!(last.starts_with("error: "), "UCX_TLS={tls}: {last}");
    let (_, code) = finish(drain, Duration::from_secs(10));
    assert_eq!(code, Some(3));
}

#[test]
fn a_peer_killed_mid_transfer_fails_the_reader_over_shared_memory() {
    a_killed_peer_fails_the_reader("sm");
}

#[test]
fn a_peer_killed_mid_transfer_fails_the_reader_over_tcp() {
    a_killed_peer_fails_the_reader("tcp");
}
