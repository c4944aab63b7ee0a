//! Small facts about this process and machine.

use std::path::Path;

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> Option<u64> {
    rss_from_statm("/proc/self/statm")
}

/// CPU time (user + system) this process used since it started.
pub fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the buffer it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Resident set size of process `pid` (a supervised worker), from `/proc/PID/statm`.
pub fn process_rss(pid: u32) -> Option<u64> {
    rss_from_statm(&format!("/proc/{pid}/statm"))
}

fn rss_from_statm(path: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(path).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Hand freed heap memory back to the system: the pool of received frame buffers,
/// glibc's `malloc_trim` (for memory the C allocator holds, e.g. in a Python-hosted worker)
/// and the binary's own allocator hook.
pub fn trim_heap() {
    shoal_comm::buffer::release_pool();
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe { libc::malloc_trim(0) };
    release_freed_memory();
}

/// glibc malloc settings of a worker, set once at its start unless the user set their own
/// (`MALLOC_*_` variables or `glibc.malloc` tunables).
///
/// glibc's defaults map every allocation above 128 KiB (a numpy chunk, a dataframe column)
/// freshly from the kernel and unmap it when freed, and hand the top of a heap back early:
/// each new array then costs a page fault per 4 KiB, which profiles showed as half of a
/// worker's CPU time on array and dataframe graphs. Kept here instead: allocations up to
/// [`MMAP_THRESHOLD`] come from the heap, and up to [`TRIM_THRESHOLD`] of free memory stays
/// at a heap's top for the next task. A worker gives it back when it matters: before it
/// judges its memory over a threshold (see [`trim_heap`]).
pub fn tune_c_allocator() {
    let user_set = std::env::vars_os().any(|(name, value)| {
        let name = name.to_string_lossy();
        (name.starts_with("MALLOC_") && name.ends_with('_'))
            || (name == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc."))
    });
    if !user_set {
        set_c_allocator_thresholds();
    }
}

/// Allocations at most this large come from malloc's heap (glibc's largest allowed).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at a heap's top that malloc keeps instead of handing it back.
pub const TRIM_THRESHOLD: usize = 128 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_c_allocator_thresholds() {
    // SAFETY: mallopt only changes glibc's tuning parameters; it has no preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_c_allocator_thresholds() {}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Physical memory of this machine in bytes, from `/proc/meminfo`.
pub fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Cores available to this process.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The memory this process can use: the machine's RAM and any limits placed on the process.
///
/// On a shared cluster node the batch system usually confines a job to a cgroup with a
/// memory limit far below the machine's RAM, so memory budgets must come from
/// [`MachineMemory::effective`], not from the physical size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineMemory {
    /// Physical memory in bytes (`MemTotal` in `/proc/meminfo`); 0 if unknown.
    pub physical: u64,
    /// The tightest cgroup memory limit of this process or its ancestors (v2 `memory.max`
    /// and `memory.high`, v1 `memory.limit_in_bytes`), if any.
    pub cgroup: Option<u64>,
    /// The soft limit `RLIMIT_RSS`, if set. Linux no longer enforces it, but a site that sets
    /// it states its intent.
    pub rlimit_rss: Option<u64>,
}

impl MachineMemory {
    /// The smallest of the known sizes and limits (0 only if nothing is known).
    pub fn effective(&self) -> u64 {
        let physical = (self.physical > 0).then_some(self.physical);
        [physical, self.cgroup, self.rlimit_rss]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0)
    }

    /// A one-line account for logs, e.g. "24.0 GiB physical, cgroup limit 8.0 GiB".
    pub fn describe(&self) -> String {
        let mut text = if self.physical > 0 {
            format!("{} physical", gib(self.physical))
        } else {
            "unknown physical".to_string()
        };
        if let Some(limit) = self.cgroup {
            text.push_str(&format!(", cgroup limit {}", gib(limit)));
        }
        if let Some(limit) = self.rlimit_rss {
            text.push_str(&format!(", RSS rlimit {}", gib(limit)));
        }
        text
    }
}

/// `bytes` in GiB with one decimal, e.g. "8.0 GiB".
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The memory of this machine and the limits on this process; see [`MachineMemory`].
pub fn machine_memory() -> MachineMemory {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|listing| cgroup_memory_limit(Path::new(CGROUP_ROOT), &listing));
    MachineMemory {
        physical: total_memory().or_else(sysconf_memory).unwrap_or(0),
        cgroup,
        rlimit_rss: rlimit_rss(),
    }
}

/// Where the cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// cgroup v1 writes a page-rounded `i64::MAX` (or similar) for "no limit"; anything this
/// large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// Physical memory from `sysconf`, for when `/proc/meminfo` cannot be read.
fn sysconf_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(pages)
        .ok()?
        .checked_mul(u64::try_from(page).ok()?)
}

/// The soft limit on resident set size of this process, if any.
fn rlimit_rss() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_RSS, &mut limit) };
    if rc != 0 {
        return None;
    }
    rlimit_value(limit.rlim_cur)
}

/// An rlimit value in bytes; `RLIM_INFINITY` is no limit.
// `rlim_t` is `u64` on 64-bit targets but narrower on some 32-bit ones.
#[allow(clippy::useless_conversion)]
fn rlimit_value(raw: libc::rlim_t) -> Option<u64> {
    (raw != libc::RLIM_INFINITY).then(|| u64::from(raw))
}

/// The tightest memory limit of the cgroup named in `proc_self_cgroup` (the text of
/// `/proc/self/cgroup`), reading the cgroup tree mounted at `root` (normally
/// `/sys/fs/cgroup`). Both the v2 (unified) and the v1 `memory` hierarchy are consulted, so
/// hybrid systems work too; the smaller limit wins.
pub fn cgroup_memory_limit(root: &Path, proc_self_cgroup: &str) -> Option<u64> {
    let v2 = cgroup_v2_path(proc_self_cgroup).and_then(|path| {
        let files: &[&str] = &["memory.max", "memory.high"];
        smallest_limit_upwards(root, path, files, parse_cgroup_v2_limit)
    });
    let v1 = cgroup_v1_memory_path(proc_self_cgroup).and_then(|path| {
        let files: &[&str] = &["memory.limit_in_bytes"];
        smallest_limit_upwards(&root.join("memory"), path, files, parse_cgroup_v1_limit)
    });
    v2.into_iter().chain(v1).min()
}

/// The smallest limit in any of `files` of the cgroup `path` under `root` and of each of its
/// ancestors up to and including `root` itself. Walking up also covers a container that
/// sees only its own cgroup mounted at `root` while `/proc/self/cgroup` names the host path.
fn smallest_limit_upwards(
    root: &Path,
    path: &str,
    files: &[&str],
    parse: fn(&str) -> Option<u64>,
) -> Option<u64> {
    let relative = Path::new(path.trim_start_matches('/'));
    relative
        .ancestors()
        .flat_map(|dir| files.iter().map(move |file| root.join(dir).join(file)))
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|text| parse(&text))
        .min()
}

/// The cgroup v2 path of this process: the `0::/path` line of `/proc/self/cgroup`.
pub fn cgroup_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
}

/// The cgroup v1 path of the `memory` controller: the `N:...,memory,...:/path` line of
/// `/proc/self/cgroup`.
pub fn cgroup_v1_memory_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })
}

/// A cgroup v2 `memory.max` or `memory.high` value: bytes, or `max` for no limit.
pub fn parse_cgroup_v2_limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        value => value.parse().ok(),
    }
}

/// A cgroup v1 `memory.limit_in_bytes` value; the huge "unlimited" sentinel is no limit.
pub fn parse_cgroup_v1_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse()
        .ok()
        .filter(|&bytes| bytes < V1_UNLIMITED)
}

static MEMORY_RELEASE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Install the function that returns freed heap memory to the system (the binary knows
/// its allocator). The scheduler calls it on a heartbeat after large graphs were added or
/// freed, so a million-task submission does not stay resident after it is gone.
pub fn set_memory_release_hook(hook: fn()) {
    let _ = MEMORY_RELEASE_HOOK.set(hook);
}

/// Hand freed heap memory back to the system, if the binary installed a way to.
pub fn release_freed_memory() {
    if let Some(hook) = MEMORY_RELEASE_HOOK.get() {
        hook();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_is_read() {
        assert!(super::rss_bytes().unwrap() > 1 << 20);
    }

    mod machine_memory {
        use crate::sys::*;
        use std::fs;

        const GIB: u64 = 1 << 30;

        #[test]
        fn v2_path_is_the_unified_line() {
            let listing = "0::/user.slice/user-1000.slice/session-3.scope\n";
            assert_eq!(
                cgroup_v2_path(listing),
                Some("/user.slice/user-1000.slice/session-3.scope")
            );
            assert_eq!(cgroup_v1_memory_path(listing), None);
        }

        #[test]
        fn v1_path_is_the_memory_controller_line() {
            let listing = "12:cpu,cpuacct:/slurm/uid_1000/job_42\n\
                           7:memory:/slurm/uid_1000/job_42/step_0\n\
                           1:name=systemd:/user.slice\n";
            assert_eq!(
                cgroup_v1_memory_path(listing),
                Some("/slurm/uid_1000/job_42/step_0")
            );
            assert_eq!(cgroup_v2_path(listing), None);
            let shared = "4:memory,hugetlb:/job\n";
            assert_eq!(cgroup_v1_memory_path(shared), Some("/job"));
            assert_eq!(cgroup_v1_memory_path("4:memoryx:/job\n"), None);
        }

        #[test]
        fn limits_are_parsed() {
            assert_eq!(parse_cgroup_v2_limit("max\n"), None);
            assert_eq!(parse_cgroup_v2_limit("8589934592\n"), Some(8 * GIB));
            assert_eq!(parse_cgroup_v2_limit("garbage"), None);
            assert_eq!(parse_cgroup_v1_limit("9223372036854771712\n"), None);
            assert_eq!(parse_cgroup_v1_limit("4611686018427387904"), None);
            assert_eq!(parse_cgroup_v1_limit("4294967296\n"), Some(4 * GIB));
        }

        #[test]
        fn v2_tree_takes_the_smallest_limit_up_to_the_root() {
            let root = tempfile::tempdir().unwrap();
            let job = root.path().join("system.slice/slurmstepd.scope/job_7");
            let step = job.join("step_0");
            fs::create_dir_all(&step).unwrap();
            fs::write(step.join("memory.max"), "max\n").unwrap();
            fs::write(step.join("memory.high"), "max\n").unwrap();
            fs::write(job.join("memory.max"), format!("{}\n", 16 * GIB)).unwrap();
            fs::write(job.join("memory.high"), format!("{}\n", 12 * GIB)).unwrap();
            let scope = root.path().join("system.slice");
            fs::write(scope.join("memory.max"), format!("{}\n", 64 * GIB)).unwrap();
            let listing = "0::/system.slice/slurmstepd.scope/job_7/step_0\n";
            assert_eq!(cgroup_memory_limit(root.path(), listing), Some(12 * GIB));
        }

        #[test]
        fn v2_without_limits_is_none() {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("user.slice");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("memory.max"), "max\n").unwrap();
            assert_eq!(cgroup_memory_limit(root.path(), "0::/user.slice\n"), None);
            assert_eq!(cgroup_memory_limit(root.path(), "0::/\n"), None);
        }

        #[test]
        fn v2_container_sees_its_own_cgroup_at_the_root() {
            // No cgroup namespace: the host path is not mounted, the container's cgroup is.
            let root = tempfile::tempdir().unwrap();
            fs::write(root.path().join("memory.max"), format!("{}", 2 * GIB)).unwrap();
            let listing = "0::/docker/0123abcd\n";
            assert_eq!(cgroup_memory_limit(root.path(), listing), Some(2 * GIB));
        }

        #[test]
        fn v1_tree_is_read_under_the_memory_controller() {
            let root = tempfile::tempdir().unwrap();
            let job = root.path().join("memory/slurm/uid_1000/job_42");
            fs::create_dir_all(&job).unwrap();
            fs::write(job.join("memory.limit_in_bytes"), format!("{}\n", 3 * GIB)).unwrap();
            let top = root.path().join("memory");
            fs::write(top.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
            let listing = "9:memory:/slurm/uid_1000/job_42\n0::/\n";
            assert_eq!(cgroup_memory_limit(root.path(), listing), Some(3 * GIB));
            let unlimited = "9:memory:/\n";
            assert_eq!(cgroup_memory_limit(root.path(), unlimited), None);
        }

        #[test]
        fn effective_is_the_smallest_known() {
            let memory = MachineMemory {
                physical: 24 * GIB,
                cgroup: Some(8 * GIB),
                rlimit_rss: None,
            };
            assert_eq!(memory.effective(), 8 * GIB);
            assert_eq!(memory.describe(), "24.0 GiB physical, cgroup limit 8.0 GiB");
            let rss = MachineMemory {
                rlimit_rss: Some(GIB / 2),
                ..memory
            };
            assert_eq!(rss.effective(), GIB / 2);
            assert!(rss.describe().ends_with(", RSS rlimit 0.5 GiB"));
            let unknown = MachineMemory {
                physical: 0,
                cgroup: Some(GIB),
                rlimit_rss: None,
            };
            assert_eq!(unknown.effective(), GIB);
        }

        #[test]
        fn rlimit_infinity_is_none() {
            assert_eq!(rlimit_value(libc::RLIM_INFINITY), None);
            assert_eq!(rlimit_value(4096), Some(4096));
        }

        #[test]
        fn this_machine_is_read() {
            let memory = machine_memory();
            println!("{}", memory.describe());
            assert!(memory.physical > 0);
            assert!(memory.effective() <= memory.physical);
        }
    }
}
