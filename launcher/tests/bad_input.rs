//! Bad input is refused before anything starts: every command with a bad value of each of
//! its flags and config files exits non-zero within 3 s, with a message naming the value
//! and the accepted forms, and leaves no process, scheduler file or scratch directory.
//!
//! Each row is one test: `name: "ARGS" => ["text the message must hold", ...]`, with
//! optional `files [(PATH, CONTENT)]` written first and `env [(NAME, VALUE)]`. In ARGS,
//! `{d}` is the row's own directory, which is also the command's `HOME`, `TMPDIR` and
//! `XDG_CONFIG_HOME` (`{d}/config`), so its config files are the row's and anything the
//! command would create lands in `{d}`.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the issue allows.
const BOUND: Duration = Duration::from_secs(3);
/// How long a row's command may run before it is killed (the bound is asserted apart).
const KILL_AFTER: Duration = Duration::from_secs(20);

const BAD_JSON: &str = "{\"type\": \"Sched";
const NOT_A_SCHEDULER_FILE: &str = "{\"tasks\": []}";

struct Row<'a> {
    args: &'a str,
    files: &'a [(&'a str, &'a str)],
    env: &'a [(&'a str, &'a str)],
    expect: &'a [&'a str],
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// Pids of live processes whose environment holds `marker` (the command and anything
/// it started inherit it).
fn marked_processes(marker: &str) -> Vec<i32> {
    let needle = format!("SHOAL_BAD_INPUT_ROW={marker}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        });
        if !zombie && env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn check(name: &str, row: Row) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    std::fs::create_dir_all(dir.path().join("config/shoal")).unwrap();
    for (path, content) in row.files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let before = tree(dir.path());
    let args: Vec<String> = row
        .args
        .split_whitespace()
        .map(|a| a.replace("{d}", &d))
        .collect();
    let marker = format!("{name}-{}", std::process::id());
    let started = Instant::now();
    let mut child = Command::new(common::SHOAL)
        .args(&args)
        .env("HOME", &d)
        .env("TMPDIR", &d)
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env_remove("SHOAL_SECRET")
        .envs(row.env.iter().copied())
        .env("SHOAL_BAD_INPUT_ROW", &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let status = common::wait_child(&mut child, KILL_AFTER);
    let took = started.elapsed();
    if status.is_none() {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let left: Vec<i32> = marked_processes(&marker);
    for p in &left {
        // SAFETY: as above; these processes carry this row's marker.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    let status =
        status.unwrap_or_else(|| panic!("shoal {args:?} still ran after {KILL_AFTER:?}:\n{text}"));
    assert!(!status.success(), "shoal {args:?} succeeded:\n{text}");
    assert!(took < BOUND, "shoal {args:?} took {took:?}:\n{text}");
    for needle in row.expect {
        let needle = needle.replace("{d}", &d);
        assert!(
            text.contains(&needle),
            "shoal {args:?}: no {needle:?} in:\n{text}"
        );
    }
    assert!(
        left.is_empty(),
        "shoal {args:?} left processes {left:?} behind"
    );
    let after = tree(dir.path());
    let created: Vec<&String> = after.difference(&before).collect();
    assert!(created.is_empty(), "shoal {args:?} left {created:?} behind");
}

macro_rules! rows {
    ($($name:ident: $args:literal $(files $files:tt)? $(env $env:tt)? => [$($expect:literal),* $(,)?],)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), Row {
                    args: $args,
                    files: &rows!(@list $($files)?),
                    env: &rows!(@list $($env)?),
                    expect: &[$($expect),*],
                });
            }
        )*
    };
    (@list) => { [] };
    (@list $list:tt) => { $list };
}

rows! {
    // The rows.
    local_memory_limit_bad_unit: "local --memory-limit 10XB" => ["\"10XB\"", "GiB", "auto"],
    local_transport_mpi: "local --transport mpi" => ["--transport mpi", "inside an MPI job", "ucx, tcp or auto"],
    worker_transport_mpi: "worker --scheduler-file {d}/s.json --transport mpi" => ["--transport mpi", "inside an MPI job"],
    local_local_directory_unusable: "local --local-directory /proc/nope" => ["/proc/nope", "--local-directory"],
    local_memory_limit_below_start: "local --nthreads 3 --memory-limit 1B" => ["1B", "64 MiB", "0 for no limit"],

    // shoal local
    local_memory_limit_negative: "local --memory-limit -1" => ["-1", "bytes"],
    local_memory_limit_fraction_too_large: "local --memory-limit 1.5" => ["1.5", "(0, 1]"],
    local_memory_limit_words: "local --memory-limit lots" => ["lots", "auto"],
    local_workers_zero: "local --workers 0" => ["0", "1 or more"],
    local_workers_not_a_number: "local --workers two" => ["\"two\"", "whole number"],
    local_nthreads_zero: "local --nthreads 0" => ["0", "1 or more"],
    local_nthreads_negative: "local --nthreads -3" => ["-3"],
    local_port_too_large: "local --port 70000" => ["70000", "0 to 65535"],
    local_interface_unknown: "local --interface nosuch0" => ["nosuch0", "lo (127.0.0.1)"],
    local_scheduler_file_directory: "local --scheduler-file {d}" => ["{d}", "is a directory"],
    local_scheduler_file_unwritable: "local --scheduler-file /proc/s.json" => ["/proc/s.json", "writable directory"],
    local_scheduler_file_no_directory: "local --scheduler-file {d}/no/s.json" => ["{d}/no/s.json", "create it first"],
    local_local_directory_is_a_file: "local --local-directory {d}/f/sub" files [("f", "x")] => ["{d}/f/sub", "not a directory"],
    local_resources_no_amount: "local --resources GPU" => ["GPU", "NAME=AMOUNT"],
    local_resources_zero: "local --resources GPU=0" => ["GPU=0", "positive amount"],
    local_memory_target_too_large: "local --memory-target 2" => ["2", "(0, 1]"],
    local_memory_pause_words: "local --memory-pause high" => ["high", "e.g. 0.7"],
    local_idle_timeout_negative: "local --idle-timeout -5" => ["-5", "seconds"],
    local_heartbeat_words: "local --heartbeat often" => ["often", "e.g. 30"],
    local_allowed_failures_zero: "local --allowed-failures 0" => ["0", "1 or more"],
    local_worker_toml_malformed: "local" files [("config/shoal/worker.toml", "[memory\n")] => ["worker.toml", "[memory] table"],
    local_worker_toml_bad_value: "local" files [("config/shoal/worker.toml", "[memory]\nspill = 7\n")] => ["memory.spill", "(0, 1]"],
    local_secret_not_hex: "local" env [("SHOAL_SECRET", "zz")] => ["SHOAL_SECRET", "openssl rand -hex 32"],
    local_host_unknown: "local --host no-such-host.invalid" => ["no-such-host.invalid", "--interface"],
    local_death_timeout_words: "local --death-timeout soon" => ["soon", "e.g. 30"],
    local_max_spill_words: "local --max-spill huge" => ["huge", "--max-spill", "false"],
    local_memory_limit_zero_fraction: "local --memory-limit 0.0" => ["0.0", "(0, 1]"],
    local_memory_terminate_negative: "local --memory-terminate -1" => ["-1", "(0, 1]"],
    local_default_scheduler_file_unwritable: "local" env [("TMPDIR", "/proc")] => ["/proc/shoal-scheduler-", "writable directory"],
    local_unknown_flag: "local --worker 2" => ["--worker", "--workers"],

    // shoal worker
    worker_memory_limit_bad_unit: "worker --scheduler-file {d}/s.json --memory-limit 10XB" => ["\"10XB\"", "GiB"],
    worker_memory_limit_below_start: "worker --scheduler-file {d}/s.json --memory-limit 1MiB" => ["1MiB", "64 MiB"],
    worker_memory_limit_too_large_number: "worker --scheduler-file {d}/s.json --memory-limit 99999999999999999999PB" => ["99999999999999999999PB"],
    worker_nthreads_zero: "worker --scheduler-file {d}/s.json --nthreads 0" => ["0", "1 or more"],
    worker_nworkers_zero: "worker --scheduler-file {d}/s.json --nworkers 0" => ["0", "1 or more"],
    worker_death_timeout_negative: "worker --scheduler-file {d}/s.json --death-timeout -1" => ["-1", "seconds"],
    worker_lifetime_words: "worker --scheduler-file {d}/s.json --lifetime long" => ["long", "e.g. 30"],
    worker_scheduler_file_timeout_words: "worker --scheduler-file {d}/s.json --scheduler-file-timeout x" => ["\"x\"", "e.g. 30"],
    worker_local_directory_unusable: "worker --scheduler-file {d}/s.json --local-directory /proc/nope" => ["/proc/nope", "--local-directory"],
    worker_resources_not_a_number: "worker --scheduler-file {d}/s.json --resources GPU=two" => ["GPU=two", "not a number"],
    worker_interface_unknown: "worker --scheduler-file {d}/s.json --interface nosuch0" => ["nosuch0", "lo (127.0.0.1)"],
    worker_memory_spill_negative: "worker --scheduler-file {d}/s.json --memory-spill -0.1" => ["-0.1"],
    worker_memory_terminate_too_large: "worker --scheduler-file {d}/s.json --memory-terminate 1.01" => ["1.01", "(0, 1]"],
    worker_max_spill_bad_unit: "worker --scheduler-file {d}/s.json --max-spill 10XB" => ["10XB", "--max-spill", "false"],
    worker_monitor_interval_words: "worker --scheduler-file {d}/s.json --memory-monitor-interval often" => ["often", "e.g. 30"],
    worker_scheduler_file_directory: "worker --scheduler-file {d}" => ["{d}", "is a directory"],
    worker_scheduler_file_not_json: "worker --scheduler-file {d}/s.json" files [("s.json", BAD_JSON)] => ["{d}/s.json", "not valid JSON"],
    worker_scheduler_file_wrong_kind: "worker --scheduler-file {d}/s.json" files [("s.json", NOT_A_SCHEDULER_FILE)] => ["{d}/s.json", "malformed"],
    worker_address_wrong_form: "worker http://localhost:8786" env [("SHOAL_SECRET", "00")] => ["http://localhost:8786", "tcp://HOST:PORT"],
    worker_address_bad_port: "worker tcp://localhost:99999" env [("SHOAL_SECRET", "00")] => ["tcp://localhost:99999", "tcp://HOST:PORT"],
    worker_host_unknown: "worker --scheduler-file {d}/s.json --host no-such-host.invalid" => ["no-such-host.invalid", "--interface"],
    worker_max_spill_negative: "worker --scheduler-file {d}/s.json --max-spill -1" => ["-1", "--max-spill"],
    worker_lifetime_stagger_without_lifetime: "worker --scheduler-file {d}/s.json --lifetime-stagger 5" => ["--lifetime-stagger", "--lifetime"],
    worker_nowhere: "worker" => ["--scheduler-file F", "tcp://host:port"],
    worker_address_without_secret: "worker tcp://127.0.0.1:8786" => ["SHOAL_SECRET"],
    worker_worker_toml_unknown_key: "worker --scheduler-file {d}/s.json" files [("config/shoal/worker.toml", "[memory]\ntargett = 0.5\n")] => ["worker.toml", "targett"],
    worker_worker_toml_max_spill: "worker --scheduler-file {d}/s.json" files [("config/shoal/worker.toml", "[memory]\nmax-spill = true\n")] => ["memory.max-spill", "false"],
    worker_worker_toml_interval: "worker --scheduler-file {d}/s.json" files [("config/shoal/worker.toml", "[memory]\nmonitor-interval = -1\n")] => ["memory.monitor-interval", "positive number of seconds"],

    // shoal scheduler
    scheduler_port_too_large: "scheduler --scheduler-file {d}/s.json --port 65536" => ["65536", "0 to 65535"],
    scheduler_port_negative: "scheduler --scheduler-file {d}/s.json --port -1" => ["-1"],
    scheduler_scheduler_file_directory: "scheduler --scheduler-file {d}" => ["{d}", "is a directory"],
    scheduler_scheduler_file_unwritable: "scheduler --scheduler-file /proc/s.json" => ["/proc/s.json", "writable directory"],
    scheduler_interface_unknown: "scheduler --scheduler-file {d}/s.json --interface nosuch0" => ["nosuch0", "lo (127.0.0.1)"],
    scheduler_worker_timeout_words: "scheduler --scheduler-file {d}/s.json --worker-timeout x" => ["\"x\"", "e.g. 30"],
    scheduler_no_way_to_learn_the_secret: "scheduler --port 0" => ["--scheduler-file F", "SHOAL_SECRET"],
    scheduler_host_unknown: "scheduler --scheduler-file {d}/s.json --host no-such-host.invalid" => ["no-such-host.invalid", "--interface"],
    scheduler_idle_timeout_negative: "scheduler --scheduler-file {d}/s.json --idle-timeout -1" => ["-1", "non-negative"],
    scheduler_heartbeat_words: "scheduler --scheduler-file {d}/s.json --heartbeat often" => ["often", "e.g. 30"],
    scheduler_allowed_failures_words: "scheduler --scheduler-file {d}/s.json --allowed-failures many" => ["many", "1 or more"],
    scheduler_worker_saturation_zero: "scheduler --scheduler-file {d}/s.json --worker-saturation 0" => ["\"0\"", "above 0", "inf"],
    scheduler_min_worker_queue_negative: "scheduler --scheduler-file {d}/s.json --min-worker-queue -1" => ["-1", "0 or more"],
    scheduler_interface_and_host: "scheduler --scheduler-file {d}/s.json --interface lo --host 127.0.0.1" => ["--interface", "--host"],
    scheduler_secret_not_hex: "scheduler --scheduler-file {d}/s.json" env [("SHOAL_SECRET", "not-hex")] => ["SHOAL_SECRET", "openssl rand -hex 32"],

    // shoal mpi (outside mpirun: refused before MPI starts)
    mpi_memory_limit_bad_unit: "mpi --memory-limit 10XB" => ["\"10XB\"", "GiB"],
    mpi_transport_unknown: "mpi --transport pigeon" => ["pigeon", "auto, tcp, mpi, ucx"],
    mpi_bind_unknown: "mpi --bind everywhere" => ["everywhere", "none"],
    mpi_scheduler_rank_negative: "mpi --scheduler-rank -1" => ["-1", "0 or more"],
    mpi_no_scheduler_without_file: "mpi --no-scheduler" => ["--no-scheduler", "--scheduler-file F"],
    mpi_scheduler_file_directory: "mpi --scheduler-file {d}" => ["{d}", "is a directory"],
    mpi_join_scheduler_file_wrong_kind: "mpi --no-scheduler --scheduler-file {d}/s.json" files [("s.json", NOT_A_SCHEDULER_FILE)] => ["{d}/s.json", "malformed"],
    mpi_local_directory_unusable: "mpi --local-directory /proc/nope" => ["/proc/nope", "--local-directory"],
    mpi_scheduler_port_too_large: "mpi --scheduler-port 70000" => ["70000", "0 to 65535"],
    mpi_nthreads_zero: "mpi --nthreads 0" => ["\"0\"", "1 or more"],
    mpi_memory_target_too_large: "mpi --memory-target 2" => ["2", "(0, 1]"],
    mpi_resources_no_amount: "mpi --resources GPU" => ["GPU", "NAME=AMOUNT"],
    mpi_worker_toml_malformed: "mpi" files [("config/shoal/worker.toml", "memory = 3\n")] => ["worker.toml"],
    mpi_interface_unknown: "mpi --interface nosuch0" => ["nosuch0", "lo (127.0.0.1)"],

    // shoal status, shutdown, run
    status_scheduler_file_directory: "status --scheduler-file {d}" => ["{d}", "is a directory"],
    status_scheduler_file_not_json: "status --scheduler-file {d}/s.json" files [("s.json", BAD_JSON)] => ["{d}/s.json", "not valid JSON"],
    status_timeout_negative: "status --scheduler-file {d}/s.json --timeout -1" => ["-1", "seconds"],
    shutdown_scheduler_file_wrong_kind: "shutdown --scheduler-file {d}/s.json" files [("s.json", NOT_A_SCHEDULER_FILE)] => ["{d}/s.json", "malformed"],
    shutdown_scheduler_file_missing: "shutdown --scheduler-file {d}/s.json --timeout 0.2" => ["{d}/s.json", "does not exist"],
    run_graph_malformed: "run --scheduler-file {d}/s.json {d}/g.json" files [("g.json", "{\"tasks\": [")] => ["{d}/g.json"],
    run_graph_unknown_executor: "run --scheduler-file {d}/s.json {d}/g.json" files [("g.json", "{\"tasks\": [{\"key\": \"a\", \"kind\": \"teleport\"}], \"outputs\": [\"a\"]}")] => ["teleport", "sum"],
    run_graph_missing: "run --scheduler-file {d}/s.json {d}/none.json" => ["{d}/none.json"],
    run_generate_unknown: "run --scheduler-file {d}/s.json --generate star:3" => ["star:3", "independent:N"],
    run_generate_zero: "run --scheduler-file {d}/s.json --generate tree:0" => ["tree:0", "positive integer"],
    run_wait_words: "run --scheduler-file {d}/s.json --generate tree:4 --wait forever" => ["forever", "e.g. 30"],

    // shoal info
    info_unknown_flag: "info --jsn" => ["--jsn", "--json"],
    shutdown_timeout_words: "shutdown --scheduler-file {d}/s.json --timeout soon" => ["soon", "e.g. 30"],
    unknown_command: "locl" => ["locl", "local"],

    // shoal jobqueue
    jobqueue_system_unknown: "jobqueue script slorm" => ["slorm", "slurm"],
    jobqueue_cores_zero: "jobqueue script slurm --cores 0" => ["cores", "0"],
    jobqueue_memory_bad_unit: "jobqueue script slurm --memory 10XB" => ["10XB", "GiB"],
    jobqueue_walltime_malformed: "jobqueue script slurm --cores 4 --memory 8GiB --walltime 1:2:3:4:5" => ["1:2:3:4:5"],
    jobqueue_param_malformed: "jobqueue script slurm -p cores" => ["cores", "KEY=VALUE"],
    jobqueue_param_unknown: "jobqueue script slurm -p coers=4" => ["coers"],
    jobqueue_jobs_zero: "jobqueue script slurm --jobs 0" => ["0", "1 or more"],
    jobqueue_config_malformed: "jobqueue script slurm --config {d}/jq.toml" files [("jq.toml", "[slurm\ncores = 4\n")] => ["{d}/jq.toml"],
    jobqueue_user_config_bad_value: "jobqueue script slurm" files [("config/shoal/jobqueue.toml", "[slurm]\ncores = \"many\"\n")] => ["jobqueue.toml", "many"],
    jobqueue_memory_negative: "jobqueue script slurm --cores 4 --memory -5GB" => ["-5GB"],
    jobqueue_config_missing: "jobqueue script slurm --config {d}/none.toml" => ["{d}/none.toml"],
    jobqueue_status_scheduler_file_directory: "jobqueue status --scheduler-file {d}" => ["{d}"],
    jobqueue_submit_unknown_system: "jobqueue submit lsff --scheduler-file {d}/s.json" => ["lsff", "lsf"],
    jobqueue_worker_memory_below_start: "jobqueue script slurm --cores 4 --memory 100MB -p processes=4" => ["100", "64 MiB", "fewer processes"],
    jobqueue_scale_negative: "jobqueue scale --scheduler-file {d}/s.json -1" => ["-1"],
}
