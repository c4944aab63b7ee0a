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
        super::json_after_log(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
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

/// SLURM across the nodes of a bed: munged (its socket in the shared directory),
/// slurmctld on node 1 and one slurmd per node with its own `NodeName`, every file in the
/// bed's shared directory. Daemons are stopped by their pid files when this drops, then
/// the bed is torn down.
pub struct SlurmBed {
    pub conf: String,
    pids: Vec<PathBuf>,
    pub bed: TestBed,
}

impl SlurmBed {
    /// `None` (saying why) where SLURM is not installed and not required
    /// (`SHOAL_REQUIRE_SLURM`, set by scripts/test where setup installed it).
    pub fn start(bed: TestBed) -> Option<SlurmBed> {
        use super::slurm::find_program;
        use std::os::unix::fs::PermissionsExt;
        let (Some(munged), Some(slurmctld), Some(slurmd)) = (
            find_program("munged"),
            find_program("slurmctld"),
            find_program("slurmd"),
        ) else {
            assert!(
                std::env::var_os("SHOAL_REQUIRE_SLURM").is_none(),
                "SHOAL_REQUIRE_SLURM is set but slurmctld, slurmd or munged is missing"
            );
            eprintln!("SKIPPED: slurmctld, slurmd or munged not installed");
            return None;
        };
        let d = bed.dir.path().to_path_buf();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        let munge = d.join("munge");
        for sub in ["etc", "run", "lib"] {
            std::fs::create_dir_all(munge.join(sub)).unwrap();
        }
        for p in [d.as_path(), munge.as_path(), munge.join("run").as_path()] {
            mode(p, 0o711);
        }
        mode(&munge.join("etc"), 0o700);
        let key: Vec<u8> = (0..1024).map(|_| rand_byte()).collect();
        std::fs::write(munge.join("etc/munge.key"), key).unwrap();
        mode(&munge.join("etc/munge.key"), 0o400);
        let ok = Command::new("chown")
            .args(["-R", "munge:munge"])
            .arg(&munge)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown munge failed");
        let socket = munge.join("run/munge.socket");
        let mut me = SlurmBed {
            conf: d.join("slurm.conf").to_str().unwrap().to_string(),
            pids: vec![munge.join("run/munged.pid")],
            bed,
        };
        let ok = Command::new("runuser")
            .args(["-u", "munge", "--"])
            .arg(&munged)
            .arg(format!(
                "--key-file={}",
                munge.join("etc/munge.key").display()
            ))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                munge.join("run/munged.pid").display()
            ))
            .arg(format!("--log-file={}", munge.join("munged.log").display()))
            .arg(format!("--seed-file={}", munge.join("lib/seed").display()))
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "munged did not start");
        let s = d.join("slurm");
        for sub in ["state", "run", "log", "spool"] {
            std::fs::create_dir_all(s.join(sub)).unwrap();
        }
        let n = me.bed.nodes;
        let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
        let p = &me.bed.prefix;
        let conf = format!(
            "ClusterName=shoaltb\n\
             SlurmctldHost={n1}({a1})\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={socket}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={s}/state\n\
             SlurmdSpoolDir={s}/spool/%n\n\
             SlurmctldPidFile={s}/run/slurmctld.pid\n\
             SlurmdPidFile={s}/run/slurmd-%n.pid\n\
             SlurmctldLogFile={s}/log/slurmctld.log\n\
             SlurmdLogFile={s}/log/slurmd-%n.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core_Memory\n\
             ReturnToService=2\n\
             MpiDefault=none\n\
             JobCompType=jobcomp/none\n\
             AccountingStorageType=accounting_storage/none\n\
             SchedulerParameters=sched_interval=1\n\
             MinJobAge=5\n\
             NodeName={p}n[1-{n}] NodeAddr=198.18.{k}.[1-{n}] CPUs={cpus} RealMemory=2048 State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            n1 = me.bed.host(1),
            a1 = me.bed.addr(1, false),
            socket = socket.display(),
            s = s.display(),
            k = 2 * me.bed.net,
        );
        std::fs::write(&me.conf, conf).unwrap();
        me.pids.push(s.join("run/slurmctld.pid"));
        let out = me.daemon(1, &slurmctld, &[]);
        assert!(out.status.success(), "slurmctld: {}", me.logs());
        for i in 1..=n {
            let host = me.bed.host(i);
            std::fs::create_dir_all(s.join("spool").join(&host)).unwrap();
            me.pids.push(s.join(format!("run/slurmd-{host}.pid")));
            let out = me.daemon(i, &slurmd, &["-N", &host]);
            assert!(out.status.success(), "slurmd on {host}: {}", me.logs());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let out = me.command("sinfo", &["--noheader", "--format=%t %D"]);
            if String::from_utf8_lossy(&out.stdout).trim() == format!("idle {n}") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} nodes not idle: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                me.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(me)
    }

    /// Start a daemon (it forks into the background) on node `i`.
    fn daemon(&self, i: u32, program: &Path, args: &[&str]) -> Output {
        TestBed::command(&self.bed.prefix, self.bed.net)
            .arg("run")
            .arg(i.to_string())
            .arg(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("cannot run scripts/testbed")
    }

    /// A SLURM client command on node 1, bounded at 20 s.
    pub fn command(&self, program: &str, args: &[&str]) -> Output {
        TestBed::command(&self.bed.prefix, self.bed.net)
            .args(["run", "1", "timeout", "20", program])
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("cannot run scripts/testbed")
    }

    /// Start a long-running SLURM client (srun) on node 1 as a [`Proc`].
    pub fn spawn(&self, name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = self.bed.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = TestBed::command(&self.bed.prefix, self.bed.net)
            .args(["run", "1", program])
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .env("SHOAL_LOG", "info")
            .envs(env.iter().copied())
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

    pub fn queue(&self) -> Vec<String> {
        let out = self.command("squeue", &["--noheader", "--array", "--format=%i %T %N"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect()
    }

    pub fn logs(&self) -> String {
        let s = self.bed.dir.path().join("slurm/log");
        let mut out = String::new();
        for e in std::fs::read_dir(&s)
            .map(|d| d.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("--- {}\n", e.path().display());
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out + &self.bed.logs()
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    // SAFETY: getrandom writes at most 1 byte into the buffer it is given.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
    b[0]
}

impl Drop for SlurmBed {
    fn drop(&mut self) {
        let _ = self.command("scancel", &["--partition=debug"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.queue().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        // slurmds, slurmctld, munged (pids are global: the nodes share the pid namespace).
        for pidfile in self.pids.iter().rev() {
            let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: kill has no memory-safety preconditions; the pid is our daemon's.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            // SAFETY: signal 0 only checks that the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            if unsafe { libc::kill(pid, 0) } == 0 {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
