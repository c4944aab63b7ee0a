//! A real single-node SLURM for tests: munged, slurmctld and slurmd with every file in a
//! temporary directory, stopped by pid when the guard drops (also when a test fails).
//! Every wait is bounded.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One SLURM at a time: tests in this binary take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A program on PATH or in the sbin directories (not on PATH for every user).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The running daemons; dropping stops them.
pub struct Slurm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pids: Vec<PathBuf>,
    _turn: MutexGuard<'static, ()>,
}

/// Why no SLURM could be started.
pub enum Unavailable {
    /// slurmctld, slurmd or munged is not installed.
    NotInstalled(&'static str),
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Slurm {
    /// Starts munged, slurmctld and slurmd and waits (at most 30 s) for the node to be idle.
    ///
    /// # Errors
    /// [`Unavailable::NotInstalled`] when a daemon is missing.
    pub fn start() -> Result<Slurm, Unavailable> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(munged), Some(slurmctld), Some(slurmd)) = (
            find_program("munged"),
            find_program("slurmctld"),
            find_program("slurmd"),
        ) else {
            return Err(Unavailable::NotInstalled(
                "slurmctld, slurmd or munged not found",
            ));
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let munge = d.join("munge");
        let slurm = d.join("slurm");
        for sub in ["run", "etc"] {
            std::fs::create_dir_all(munge.join(sub)).unwrap();
        }
        for sub in ["state", "spool", "log", "run"] {
            std::fs::create_dir_all(slurm.join(sub)).unwrap();
        }
        // munged runs as `munge`: it must reach its socket directory (0711, not 0700).
        for p in [d, munge.as_path(), munge.join("run").as_path()] {
            set_mode(p, 0o711);
        }
        set_mode(&munge.join("etc"), 0o700);
        let key = munge.join("etc/munge.key");
        run_checked(
            Command::new("dd")
                .arg("if=/dev/urandom")
                .arg(format!("of={}", key.display()))
                .args(["bs=1024", "count=1", "status=none"]),
            "dd (munge key)",
        );
        set_mode(&key, 0o400);
        run_checked(
            Command::new("chown")
                .args(["-R", "munge:munge"])
                .arg(&munge),
            "chown munge",
        );
        let socket = munge.join("run/munge.socket");
        let munged_pid = munge.join("run/munged.pid");
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "munge", "--"]).arg(&munged).args([
            format!("--key-file={}", key.display()),
            format!("--socket={}", socket.display()),
            format!("--pid-file={}", munged_pid.display()),
            format!("--log-file={}", munge.join("munged.log").display()),
            format!("--seed-file={}", munge.join("seed").display()),
        ]);
        let mut guard = Slurm {
            conf: slurm.join("slurm.conf"),
            pids: vec![munged_pid],
            dir,
            _turn: turn,
        };
        run_checked(&mut cmd, "munged");
        let host = hostname();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = format!(
            "ClusterName=shoaltest\n\
             SlurmctldHost={host}\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={socket}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={s}/state\n\
             SlurmdSpoolDir={s}/spool\n\
             SlurmctldPidFile={s}/run/slurmctld.pid\n\
             SlurmdPidFile={s}/run/slurmd.pid\n\
             SlurmctldLogFile={s}/log/slurmctld.log\n\
             SlurmdLogFile={s}/log/slurmd.log\n\
             SlurmctldPort={ctld}\n\
             SlurmdPort={slurmd}\n\
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
             NodeName={host} CPUs={cpus} RealMemory=4096 State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            socket = socket.display(),
            s = slurm.display(),
            ctld = free_port(),
            slurmd = free_port(),
        );
        std::fs::write(&guard.conf, conf).unwrap();
        guard.pids.push(slurm.join("run/slurmctld.pid"));
        run_checked(
            Command::new(&slurmctld).env("SLURM_CONF", &guard.conf),
            "slurmctld",
        );
        guard.pids.push(slurm.join("run/slurmd.pid"));
        run_checked(
            Command::new(&slurmd).env("SLURM_CONF", &guard.conf),
            "slurmd",
        );
        guard.wait_until("the node to be idle", Duration::from_secs(30), |s| {
            let out = s.command("sinfo", &["--noheader", "--format=%t"]);
            String::from_utf8_lossy(&out.stdout).trim() == "idle"
        });
        Ok(guard)
    }

    /// Runs a SLURM client command against this cluster (bounded by its own timeout).
    pub fn command(&self, program: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("20")
            .arg(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// The job ids `squeue` lists (array elements separately).
    pub fn queue(&self) -> Vec<String> {
        let out = self.command("squeue", &["--noheader", "--array", "--format=%i %T"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Polls `ready` every 200 ms; panics with the daemon logs after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, mut ready: impl FnMut(&Slurm) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}\nqueue: {:?}\n{}",
                self.queue(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let d = self.dir.path();
        [
            "slurm/log/slurmctld.log",
            "slurm/log/slurmd.log",
            "munge/munged.log",
        ]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(d.join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {f} ---\n{}\n", tail.join("\n"))
        })
        .collect()
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Jobs first (their steps outlive slurmd otherwise), bounded.
        let _ = self.command("scancel", &["--partition=debug"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.queue().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        // slurmd, slurmctld, munged: SIGTERM, then SIGKILL after 5 s.
        for pidfile in self.pids.iter().rev() {
            let Some(pid) = read_pid(pidfile) else {
                continue;
            };
            // SAFETY: kill has no memory-safety preconditions; the pid is our daemon's.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
