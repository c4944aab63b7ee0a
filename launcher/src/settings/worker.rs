//! [`ValidWorker`]: a worker's settings, validated once by the command the user typed
//! (`shoal worker`, `local`, `mpi`, the nanny's parent) and turned into the flags of the
//! worker processes it starts.

use crate::cli::WorkerSettings;
use shoal_comm::message::Resource;
use shoal_runtime::worker::memory::MemoryPolicy;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The smallest `--memory-limit` accepted (other than 0 for none): 64 MiB. A worker's
/// resident memory right after it registered is about 19 MiB for the `shoal` binary
/// (release build, 4 threads; 24 MiB in a debug build) and about 28 MiB for a worker in a
/// Python interpreter (`ps -o rss`, x86-64 Linux). 64 MiB is over twice that, so a
/// started worker is below the default pause (0.8) and terminate (0.95) thresholds with
/// room for its first results. Below it a worker passes its thresholds before it runs
/// anything, and the nanny would restart it for ever.
pub const MIN_MEMORY_LIMIT: u64 = 64 << 20;

/// A worker's settings after validation; children's flags are derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidWorker {
    pub nthreads: u32,
    /// Bytes; 0: no limit.
    pub memory_limit: u64,
    pub memory: MemoryPolicy,
    pub resources: Vec<Resource>,
    pub death_timeout: Duration,
    pub local_directory: Option<PathBuf>,
    pub zero: bool,
    pub transport: crate::cli::Transport,
}

impl ValidWorker {
    /// Validate `s` for one of `processes_on_node` worker processes on this node: the
    /// memory limit (and its minimum), thresholds over `worker.toml`, the scratch
    /// directory (writable, node-local), resources.
    ///
    /// # Errors
    /// The first bad value, with the flag or config key, the accepted forms and the fix.
    pub fn validate(s: &WorkerSettings, processes_on_node: u32) -> anyhow::Result<ValidWorker> {
        let cores = shoal_runtime::sys::cpu_count();
        let nthreads = s
            .nthreads
            .unwrap_or_else(|| (cores / processes_on_node.max(1)).max(1));
        let machine = shoal_runtime::sys::machine_memory().effective();
        // `auto`: this process's threads' share of the machine, and never more than an
        // equal share among the worker processes on this node (oversubscribed MPI ranks).
        let share = (f64::from(nthreads) / f64::from(cores.max(1)))
            .min(1.0 / f64::from(processes_on_node.max(1)));
        let memory_limit = crate::parse::memory_limit(&s.memory_limit, machine, share)
            .map_err(anyhow::Error::msg)?;
        check_minimum(&s.memory_limit, memory_limit)?;
        let memory = crate::memory::policy(&s.memory, crate::memory::config_path().as_deref())?;
        if let Some(dir) = &s.local_directory {
            // The error's message already holds its cause: no chain.
            shoal_runtime::worker::scratch::check_base(dir, memory.allow_network_spill)
                .map_err(|e| anyhow::anyhow!("--local-directory {}: {e}", dir.display()))?;
        }
        Ok(ValidWorker {
            nthreads,
            memory_limit,
            memory,
            resources: s.resources.clone(),
            death_timeout: s.death_timeout,
            local_directory: s.local_directory.clone(),
            zero: s.zero,
            transport: s.transport,
        })
    }

    /// These settings as flags for a worker process started by this one: every value
    /// resolved (the memory limit in bytes, thresholds from flags and `worker.toml`), so
    /// the child decides nothing differently.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        let mut flag = |f: &str, value: OsString| {
            v.push(f.into());
            v.push(value);
        };
        flag("--nthreads", self.nthreads.to_string().into());
        flag("--transport", self.transport.name().into());
        flag("--memory-limit", self.memory_limit.to_string().into());
        flag(
            "--death-timeout",
            self.death_timeout.as_secs_f64().to_string().into(),
        );
        for r in &self.resources {
            flag("--resources", format!("{}={}", r.name, r.amount).into());
        }
        let m = &self.memory;
        let t = &m.thresholds;
        let off = |t: Option<f64>| t.map_or("false".to_string(), |f| f.to_string());
        for (name, value) in [
            ("--memory-target", t.target),
            ("--memory-spill", t.spill),
            ("--memory-pause", t.pause),
            ("--memory-terminate", t.terminate),
        ] {
            flag(name, off(value).into());
        }
        flag(
            "--max-spill",
            m.max_spill
                .map_or("false".to_string(), |b| b.to_string())
                .into(),
        );
        flag(
            "--memory-monitor-interval",
            m.monitor_interval.as_secs_f64().to_string().into(),
        );
        if let Some(dir) = &self.local_directory {
            flag("--local-directory", dir.into());
        }
        if m.compress {
            v.push("--spill-compression".into());
        }
        if m.allow_network_spill {
            v.push("--allow-network-spill".into());
        }
        if self.zero {
            v.push("--zero".into());
        }
        v
    }
}

/// A limit of 0 is none; anything else must reach [`MIN_MEMORY_LIMIT`].
fn check_minimum(text: &str, limit: u64) -> anyhow::Result<()> {
    if limit == 0 || limit >= MIN_MEMORY_LIMIT {
        return Ok(());
    }
    anyhow::bail!(
        "--memory-limit {text}: {limit} B is below the {} MiB a worker needs to start (its memory right after start-up, with room for threads and buffers); give at least 64MiB (bytes, a size like 4GiB, a fraction like 0.5, or auto), or 0 for no limit",
        MIN_MEMORY_LIMIT >> 20
    )
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerSettings,
    }

    fn settings(flags: &[&str]) -> WorkerSettings {
        let mut argv = vec!["test"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv).worker
    }

    #[test]
    fn limits_below_the_minimum_are_refused_with_the_minimum() {
        let e = format!(
            "{:#}",
            ValidWorker::validate(&settings(&["--memory-limit", "1B"]), 1).unwrap_err()
        );
        assert!(e.contains("1B") && e.contains("64 MiB"), "{e}");
        let ok = ValidWorker::validate(&settings(&["--memory-limit", "0"]), 1).unwrap();
        assert_eq!(ok.memory_limit, 0);
    }

    #[test]
    fn children_get_every_value_resolved() {
        let v = ValidWorker::validate(
            &settings(&[
                "--memory-limit",
                "1GiB",
                "--nthreads",
                "3",
                "--memory-pause",
                "off",
            ]),
            1,
        )
        .unwrap();
        let args: Vec<String> = v
            .to_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--nthreads 3"), "{joined}");
        assert!(
            joined.contains(&format!("--memory-limit {}", 1u64 << 30)),
            "{joined}"
        );
        assert!(joined.contains("--memory-pause false"), "{joined}");
        // The child's flags parse and validate to the same settings.
        let again = ValidWorker::validate(
            &settings(&args.iter().map(String::as_str).collect::<Vec<_>>()),
            1,
        )
        .unwrap();
        assert_eq!(again, v);
    }

    /// Parse, derive a child's flags, parse those: the same settings, for every flag a
    /// child gets.
    fn round_trip(flags: &[&str]) {
        let v = ValidWorker::validate(&settings(flags), 1).expect("valid");
        let args: Vec<String> = v
            .to_args()
            .into_iter()
            .map(|a| a.into_string().expect("text"))
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let again =
            ValidWorker::validate(&settings(&argv), 1).expect("the child's flags are valid");
        assert_eq!(again, v, "{flags:?} became {args:?}");
    }

    #[test]
    fn every_setting_survives_the_trip_to_a_child() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let dir = dir.path().to_str().expect("text");
        round_trip(&[]);
        round_trip(&["--memory-limit", "0", "--zero"]);
        round_trip(&[
            "--nthreads",
            "2",
            "--memory-limit",
            "256MiB",
            "--death-timeout",
            "7.5",
            "--resources",
            "GPU=2",
            "--resources",
            "MEM=0.5",
            "--memory-target",
            "0.5",
            "--memory-spill",
            "false",
            "--memory-pause",
            "0.9",
            "--memory-terminate",
            "off",
            "--max-spill",
            "1GiB",
            "--memory-monitor-interval",
            "0.25",
            "--spill-compression",
            "--local-directory",
            dir,
        ]);
    }
}
