//! Many nodes on one machine: `scripts/testbed` nodes (network + UTS namespaces) for tests.
//! A [`TestBed`] is torn down (`scripts/testbed down`, by its own name prefix) when it
//! drops, also when the test fails; processes started in it are [`Proc`]s killed by pid.

use super::{wait_child, Proc, SHOAL};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `scripts/testbed` of this repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed")
}

/// A new directory all nodes share: under /var/tmp (each node has its own /tmp).
pub fn shared_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shoal-testbed-")
        .tempdir_in("/var/tmp")
        .expect("cannot create a directory under /var/tmp")
}

/// Exit status of `scripts/testbed` where nodes cannot be made.
const SKIP: i32 = 77;

pub struct TestBed {
    pub prefix: String,
    pub net: u32,
    pub nodes: u32,
    /// A directory every node sees (not under /tmp, which is each node's own), for
    /// scheduler files and logs.
    pub dir: tempfile::TempDir,
}

impl TestBed {
    /// `up nodes FLAGS` (`--ib`, `--no-hosts`) under `prefix`, on subnet index `net` (each test its own, so they
    /// can run in parallel). `None` (with the reason printed) where namespaces cannot be
    /// made and this is not root; as root, a bed that cannot be made fails the test.
    pub fn up(prefix: &str, net: u32, nodes: u32, flags: &[&str]) -> Option<TestBed> {
        let mut cmd = Self::command(prefix, net);
        cmd.arg("up").arg(nodes.to_string()).args(flags);
        let out = cmd.output().expect("cannot run scripts/testbed");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.code() == Some(SKIP) {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            assert!(
                !root && std::env::var_os("SHOAL_REQUIRE_TESTBED").is_none(),
                "running as root (or SHOAL_REQUIRE_TESTBED set) but the test bed cannot be made: {stderr}"
            );
            eprintln!("SKIPPED (many-node test bed): {stderr}");
            return None;
        }
        let bed = TestBed {
            prefix: prefix.into(),
            net,
            nodes,
            dir: shared_dir(),
        };
        assert!(out.status.success(), "scripts/testbed up failed: {stderr}");
        Some(bed)
    }

    fn command(prefix: &str, net: u32) -> Command {
        let mut cmd = Command::new(script());
        cmd.env("SHOAL_TESTBED_PREFIX", prefix)
            .env("SHOAL_TESTBED_NET", net.to_string())
            .stdin(Stdio::null());
        cmd
    }

    /// `scripts/testbed ARGS` of this bed, to completion.
    pub fn testbed(&self, args: &[&str]) -> Output {
        let out = Self::command(&self.prefix, self.net)
            .args(args)
            .output()
            .expect("cannot run scripts/testbed");
        assert!(
            out.status.success(),
            "scripts/testbed {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Host name of node `i` (1-based).
    pub fn host(&self, i: u32) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Address of node `i` on eth0 (or ib0).
    pub fn addr(&self, i: u32, ib: bool) -> String {
        format!("198.18.{}.{i}", 2 * self.net + u32::from(ib))
    }

    /// The /24 of eth0 (or ib0), e.g. for Open MPI's `btl_tcp_if_include`.
    pub fn subnet(&self, ib: bool) -> String {
        format!("198.18.{}.0/24", 2 * self.net + u32::from(ib))
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// Start `program ARGS` on node `i` with stdout and stderr to `NAME.log` in the shared
    /// directory. The pid is the program's (`scripts/testbed run` execs it).
    pub fn spawn_program(&self, i: u32, name: &str, program: &str, args: &[&str]) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Self::command(&self.prefix, self.net)
            .arg("run")
            .arg(i.to_string())
            .arg(program)
            .args(args)
            .env("SHOAL_LOG", "info")
            // Tests run as root; Open MPI refuses that without these.
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot run scripts/testbed");
        Proc {
            child,
            name: name.into(),
            log,
        }
    }

    /// Start `shoal ARGS` on node `i`.
    pub fn spawn(&self, i: u32, name: &str, args: &[&str]) -> Proc {
        self.spawn_program(i, name, SHOAL, args)
    }

    /// Run `shoal ARGS` on node `i` to completion, killed after `timeout`; (success, output).
    pub fn run(&self, i: u32, args: &[&str], timeout: Duration) -> (bool, String) {
        let name = format!("cmd-{}", super::rand_suffix());
        let mut p = self.spawn(i, &name, args);
        let status = wait_child(&mut p.child, timeout).unwrap_or_else(|| {
            panic!(
                "shoal {args:?} on node {i} did not finish in {timeout:?}:\n{}",
                p.log_text()
            )
        });
        (status.success(), p.log_text())
    }

    /// `shoal status --json` from node `i`.
    pub fn status(&self, i: u32, file: &str) -> Value {
        let (ok, text) = self.run(
            i,
            &["status", "--json", "--scheduler-file", file],
            Duration::from_secs(20),
        );
        assert!(ok, "status failed: {text}");
        let json = text
            .lines()
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Wait (at most `timeout`) until the cluster of `file` has `n` workers; its status.
    pub fn wait_for_workers(&self, i: u32, file: &str, n: usize, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if Path::new(file).exists() {
                let s = self.status(i, file);
                if s["workers"].as_array().map_or(0, Vec::len) == n {
                    return s;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} workers did not connect in {timeout:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `shoal run --json GRAPH` from node `i`: (success, the JSON line or the whole output).
    pub fn run_graph(&self, i: u32, file: &str, graph: &Value, timeout: Duration) -> (bool, Value) {
        let path = self.path(&format!("graph-{}.json", super::rand_suffix()));
        std::fs::write(&path, serde_json::to_vec(graph).unwrap()).unwrap();
        let (ok, text) = self.run(
            i,
            &["run", "--json", "--scheduler-file", file, &path],
            timeout,
        );
        let json = text
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::String(text));
        (ok, json)
    }

    /// Every log in the shared directory, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out += &format!("--- {}\n", p.display());
                for l in tail.into_iter().rev() {
                    out += l;
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = Self::command(&self.prefix, self.net)
            .arg("down")
            .stdout(Stdio::null())
            .status();
    }
}

/// A 1 MiB pattern of `scripts`' `bytes` task and the sum of its bytes (the `checksum`
/// task's result), so results moved between nodes are checked exactly.
pub fn pattern_sum(size: u64, seed: u8) -> u64 {
    (0..size)
        .map(|i| u64::from(shoal_runtime::executor::builtin::pattern_byte(i, seed)))
        .sum()
}
