//! What a worker in a batch job needs beyond `shoal worker`'s basics: waiting for the
//! scheduler file (`--scheduler-file-timeout`), leaving before the walltime
//! (`--lifetime`, `--lifetime-stagger`), and several worker processes from one command
//! (`--nworkers`), as the scripts of `shoal jobqueue` ask for.

use crate::cli::{BatchWorkerArgs, WorkerArgs};
use anyhow::Context;
use shoal_runtime::scheduler_file;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long supervised workers get to leave after SIGTERM before they are killed.
const CHILD_GRACE: Duration = Duration::from_secs(10);

/// Waits for the scheduler file to appear, up to `--scheduler-file-timeout` (no wait
/// without the flag: the worker's own retries within `--death-timeout` apply).
///
/// # Errors
/// The file did not appear (or stayed unreadable) within the timeout.
pub async fn wait_for_scheduler_file(args: &WorkerArgs) -> anyhow::Result<()> {
    let (Some(path), Some(timeout)) = (&args.scheduler_file, args.batch.scheduler_file_timeout)
    else {
        return Ok(());
    };
    let owned = path.clone();
    tokio::task::spawn_blocking(move || scheduler_file::read(&owned, timeout))
        .await
        .context("the scheduler-file wait was interrupted")?
        .with_context(|| {
            format!(
                "no usable scheduler file at {} within --scheduler-file-timeout {}s; is the scheduler (job) running and writing it there?",
                path.display(),
                timeout.as_secs_f64()
            )
        })?;
    Ok(())
}

/// A number in `[0, 1)`, different in every process (std's per-process random hash
/// keys; good enough to spread worker departures).
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(std::process::id());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `lifetime ± stagger`, uniformly, never negative.
pub fn staggered_lifetime(lifetime: Duration, stagger: Duration, unit: f64) -> Duration {
    let offset = (2.0 * unit - 1.0) * stagger.as_secs_f64();
    Duration::from_secs_f64((lifetime.as_secs_f64() + offset).max(0.0))
}

/// Resolves on SIGINT/SIGTERM, or when the lifetime (with its stagger) has passed: the
/// worker then closes its connection, the scheduler reschedules what it had queued, and
/// the process exits with status 0 before the batch system kills it.
pub async fn stop(batch: &BatchWorkerArgs) {
    let Some(lifetime) = batch.lifetime else {
        return crate::signals::terminated().await;
    };
    let after = staggered_lifetime(lifetime, batch.lifetime_stagger, unit_random());
    tracing::info!(
        seconds = after.as_secs_f64(),
        "worker leaves after its lifetime"
    );
    tokio::select! {
        () = crate::signals::terminated() => {}
        () = tokio::time::sleep(after) => tracing::info!("lifetime reached; leaving the cluster"),
    }
}

/// The arguments a supervised worker process gets: the same flags, its own name, and no
/// `--nworkers`.
fn child_args(args: &WorkerArgs, name: &str) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["worker".into()];
    let mut flag = |f: &str, value: OsString| {
        v.push(f.into());
        v.push(value);
    };
    if let Some(path) = &args.scheduler_file {
        flag("--scheduler-file", path.into());
    }
    flag("--name", name.into());
    if let Some(host) = &args.host {
        flag("--host", host.into());
    }
    if let Some(iface) = &args.interface {
        flag("--interface", iface.into());
    }
    let s = &args.settings;
    if let Some(n) = s.nthreads {
        flag("--nthreads", n.to_string().into());
    }
    flag("--memory-limit", s.memory_limit.clone().into());
    flag(
        "--death-timeout",
        s.death_timeout.as_secs_f64().to_string().into(),
    );
    if let Some(dir) = &s.local_directory {
        flag("--local-directory", dir.join(name).into());
    }
    for r in &s.resources {
        flag("--resources", format!("{}={}", r.name, r.amount).into());
    }
    let b = &args.batch;
    if let Some(t) = b.scheduler_file_timeout {
        flag(
            "--scheduler-file-timeout",
            t.as_secs_f64().to_string().into(),
        );
    }
    if let Some(l) = b.lifetime {
        flag("--lifetime", l.as_secs_f64().to_string().into());
        flag(
            "--lifetime-stagger",
            b.lifetime_stagger.as_secs_f64().to_string().into(),
        );
    }
    if s.zero {
        v.push("--zero".into());
    }
    if let Some(address) = &args.address {
        v.push(address.into());
    }
    v
}

/// Starts `--nworkers` worker processes named `NAME-0..P-1`, forwards SIGINT/SIGTERM to
/// them, and returns when all have exited: 0 when all exited with 0, else the first
/// non-zero status.
///
/// # Errors
/// A worker process cannot be started.
pub async fn supervise(args: &WorkerArgs, hooks: &crate::Hooks) -> anyhow::Result<u8> {
    let (exe, leading): (OsString, Vec<OsString>) = match hooks.worker_command.as_deref() {
        Some([program, rest @ ..]) => (program.clone(), rest.to_vec()),
        _ => (
            std::env::current_exe()
                .context("cannot find the shoal executable")?
                .into(),
            Vec::new(),
        ),
    };
    let base = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", shoal_runtime::sys::hostname(), std::process::id()));
    let mut children: Vec<Child> = Vec::new();
    for i in 0..args.batch.nworkers {
        let name = format!("{base}-{i}");
        let child = Command::new(&exe)
            .args(&leading)
            .args(child_args(args, &name))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start worker process {name}"))?;
        children.push(child);
    }
    tracing::info!(workers = children.len(), "supervising worker processes");
    let codes = tokio::select! {
        codes = wait_all(&mut children) => codes,
        () = crate::signals::terminated() => {
            for child in &children {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            match tokio::time::timeout(CHILD_GRACE, wait_all(&mut children)).await {
                Ok(codes) => codes,
                Err(_) => {
                    tracing::warn!("worker processes did not leave in {CHILD_GRACE:?}; killing them");
                    for child in &mut children {
                        let _ = child.kill().await;
                    }
                    vec![1]
                }
            }
        }
    };
    Ok(codes.into_iter().find(|c| *c != 0).unwrap_or(0))
}

async fn wait_all(children: &mut [Child]) -> Vec<u8> {
    let mut codes = Vec::with_capacity(children.len());
    for child in children.iter_mut() {
        let code = match child.wait().await {
            Ok(status) => status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
            Err(_) => 1,
        };
        codes.push(code);
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_is_spread_evenly_and_never_negative() {
        let l = Duration::from_secs(100);
        let s = Duration::from_secs(10);
        assert_eq!(staggered_lifetime(l, s, 0.0), Duration::from_secs(90));
        assert_eq!(staggered_lifetime(l, s, 0.5), Duration::from_secs(100));
        assert!(staggered_lifetime(l, s, 0.999_999) <= Duration::from_secs(110));
        assert_eq!(
            staggered_lifetime(Duration::from_secs(1), s, 0.0),
            Duration::ZERO
        );
        let u = unit_random();
        assert!((0.0..1.0).contains(&u));
    }
}
