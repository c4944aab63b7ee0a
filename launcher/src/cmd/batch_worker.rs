//! What a worker in a batch job needs beyond `shoal worker`'s basics: waiting for the
//! scheduler file (`--scheduler-file-timeout`), leaving before the walltime
//! (`--lifetime`, `--lifetime-stagger`), and several worker processes from one command
//! (`--nworkers`), as the scripts of `shoal jobqueue` ask for.

use super::nanny::{self, ChildSpec};
use crate::cli::{BatchWorkerArgs, WorkerArgs};
use crate::settings::ValidWorker;
use crate::worker_process::WorkerCommand;
use anyhow::Context;
use shoal_runtime::scheduler_file;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::time::Duration;

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

/// The arguments a supervised worker process gets: the same flags, its own name, its
/// memory limit in bytes, and no nanny of its own.
fn child_args(args: &WorkerArgs, settings: &ValidWorker, name: &str) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["worker".into(), "--no-nanny".into()];
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
    v.extend(settings.to_args());
    if let Some(address) = &args.address {
        v.push(address.into());
    }
    v
}

/// Runs the worker processes of this command under a nanny: one (the default for
/// `shoal worker`) or `--nworkers` named `NAME-0..P-1`. Without `--no-nanny`, a child
/// above the terminate threshold is killed and restarted.
///
/// # Errors
/// Bad options, or a worker process cannot be started.
pub async fn supervise(
    args: &WorkerArgs,
    settings: &ValidWorker,
    hooks: &crate::Hooks,
) -> anyhow::Result<u8> {
    let command = WorkerCommand::resolve(hooks)?;
    let processes = args.batch.nworkers.max(1);
    let options = super::worker::options(args, settings)?;
    let terminate_at = options
        .memory
        .thresholds
        .terminate
        .filter(|_| !args.no_nanny && options.memory_limit > 0)
        .map(|t| (options.memory_limit as f64 * t) as u64);
    let children = (0..processes)
        .map(|i| {
            let name = if processes == 1 {
                options.name.clone()
            } else {
                format!("{}-{i}", options.name)
            };
            let args = child_args(args, settings, &name);
            ChildSpec {
                name,
                command: command.clone(),
                args,
                terminate_at,
                interval: options.memory.monitor_interval,
            }
        })
        .collect();
    nanny::supervise(children).await
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
