//! Test harness: real `shoal` processes on loopback, each stopped by pid when its guard
//! drops (also when a test fails), every wait bounded.
#![allow(dead_code)]

pub mod slurm;
pub mod testbed;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A child process killed (SIGKILL, by pid) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal by pid.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Wait for exit, at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Wait for `child` to exit, at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `shoal ARGS` with stdout and stderr to a log file in `dir`.
pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(SHOAL)
        .args(args)
        .env("SHOAL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Proc {
        child,
        name: name.into(),
        log,
    }
}

/// Run `shoal ARGS` to completion, killed after `timeout`.
pub fn run(args: &[&str], timeout: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path(), "cmd", args);
    let status = p.wait_timeout(timeout).unwrap_or_else(|| {
        panic!(
            "shoal {args:?} did not finish in {timeout:?}:\n{}",
            p.log_text()
        )
    });
    let text = p.log_text();
    Output {
        status,
        stdout: text.clone().into_bytes(),
        stderr: text.into_bytes(),
    }
}

/// A scheduler and workers, each a real process.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub scheduler: Proc,
    pub workers: Vec<Proc>,
}

impl Cluster {
    /// Scheduler plus `n` workers with `threads` threads each and extra worker flags.
    pub fn start(
        n: usize,
        threads: u32,
        extra_worker: &[&str],
        extra_scheduler: &[&str],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scheduler.json");
        let f = file.to_str().unwrap().to_string();
        let mut args = vec!["scheduler", "--scheduler-file", &f, "--host", "127.0.0.1"];
        args.extend_from_slice(extra_scheduler);
        let scheduler = spawn(dir.path(), "scheduler", &args);
        let mut cluster = Cluster {
            dir,
            file,
            scheduler,
            workers: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_worker(threads, extra_worker);
        }
        cluster.wait_for_workers(n);
        cluster
    }

    pub fn file_arg(&self) -> String {
        self.file.to_str().unwrap().to_string()
    }

    pub fn add_worker(&mut self, threads: u32, extra: &[&str]) -> usize {
        let i = self.workers.len();
        let name = format!("w{i}");
        let (f, t) = (self.file_arg(), threads.to_string());
        let mut args = vec![
            "worker",
            "--scheduler-file",
            &f,
            "--nthreads",
            &t,
            "--name",
            &name,
            "--host",
            "127.0.0.1",
            "--memory-limit",
            "0",
        ];
        args.extend_from_slice(extra);
        let p = spawn(self.dir.path(), &name, &args);
        self.workers.push(p);
        i
    }

    /// `shoal status --json`.
    pub fn status(&self) -> Value {
        let out = run(
            &["status", "--json", "--scheduler-file", &self.file_arg()],
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        json_after_log(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn wait_for_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.file.exists() {
                let s = self.status();
                if s["workers"].as_array().map_or(0, Vec::len) >= n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{n} workers did not connect:\n{}",
                self.scheduler.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `shoal run --json` with a graph file or generator; returns (exit ok, json).
    pub fn run_graph(&self, graph: &Value) -> (bool, Value) {
        let path = self.write_graph(graph);
        self.run_args(&[path.to_str().unwrap()])
    }

    /// `shoal run --json` of `graph` in a background thread, so a test can act meanwhile.
    pub fn spawn_run_graph(&self, graph: &Value) -> std::thread::JoinHandle<Output> {
        let (path, file) = (self.write_graph(graph), self.file_arg());
        std::thread::spawn(move || {
            run(
                &[
                    "run",
                    "--json",
                    "--scheduler-file",
                    &file,
                    path.to_str().unwrap(),
                ],
                Duration::from_secs(60),
            )
        })
    }

    fn write_graph(&self, graph: &Value) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("graph-{}.json", rand_suffix()));
        std::fs::write(&path, serde_json::to_vec(graph).unwrap()).unwrap();
        path
    }

    pub fn run_args(&self, extra: &[&str]) -> (bool, Value) {
        let f = self.file_arg();
        let mut args = vec!["run", "--json", "--scheduler-file", &f];
        args.extend_from_slice(extra);
        let out = run(&args, Duration::from_secs(120));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let json = text
            .lines()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or(Value::Null);
        (
            out.status.success(),
            if json.is_null() {
                Value::String(text)
            } else {
                json
            },
        )
    }
}

/// Runs `shell` (a shell command line, with `env` set) on a pseudo-terminal of `rows`
/// lines made by util-linux's script(1), killed after 120 s; its exit status and what it
/// wrote to the terminal (line ends as `\n`).
pub fn on_terminal(rows: u16, shell: &str, env: &[(&str, &Path)]) -> (ExitStatus, String) {
    let line = format!("stty rows {rows} cols 200; {shell}");
    let out = Command::new("timeout")
        .args(["120", "script", "-q", "-e", "-c", &line, "/dev/null"])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run script(1) (util-linux)");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A `sum` task.
pub fn sum(key: &str, deps: &[&str], add: u64, sleep_ms: u64) -> Value {
    serde_json::json!({"key": key, "kind": "sum", "deps": deps, "args": {"add": add, "sleep_ms": sleep_ms}})
}

/// The JSON object a command printed after any log lines (`shoal status --json`).
pub fn json_after_log(text: &str) -> Result<Value, serde_json::Error> {
    let json = text
        .lines()
        .skip_while(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json)
}

/// Where `got` first differs from the patterned payload seeded with `seed`.
pub fn first_wrong_byte(got: &[u8], seed: u8) -> Option<usize> {
    got.iter()
        .enumerate()
        .position(|(i, b)| *b != shoal_runtime::executor::builtin::pattern_byte(i as u64, seed))
}

/// Produce a patterned payload of `size` bytes on worker `from`, hand it to a one-input
/// concat pinned to worker `to` (which fetches it), and return what the client then reads
/// from `to`.
pub async fn move_payload(
    client: &shoal_runtime::client::Client,
    key: &str,
    size: u64,
    from: &str,
    to: &str,
) -> bytes::Bytes {
    use shoal_comm::message::{ExecutorKind, KeyState, TaskSpec};
    use shoal_runtime::executor::builtin::{encode_args, BytesArgs};
    let (made, moved) = (format!("{key}-made"), format!("{key}-moved"));
    let mut produce = TaskSpec::new(&made, ExecutorKind::Bytes, vec![]);
    produce.payload = Some(0);
    produce.workers = vec![from.to_string()];
    let mut consume = TaskSpec::new(&moved, ExecutorKind::Concat, vec![made.clone()]);
    consume.workers = vec![to.to_string()];
    let args = BytesArgs {
        size,
        fill: size as u8,
        pattern: true,
    };
    let keys = vec![moved.clone()];
    client
        .submit(
            vec![produce, consume],
            vec![encode_args(&args)],
            keys.clone(),
        )
        .await
        .unwrap();
    let state = client
        .wait(&keys, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(state, vec![KeyState::Memory { size }], "{key}");
    let mut values = client.fetch(&keys).await.unwrap();
    client.release(keys).unwrap();
    values.remove(0)
}
