//! `shoal local`: a scheduler in this process and N worker processes on this machine.
//!
//! The workers are supervised: one that exits before it registered with the scheduler
//! (or all of them, however they ended) stops the whole cluster. The scheduler file is
//! then removed, the worker's last error lines are printed, and the exit status is 1.

use super::ready::ReadyPipe;
use crate::cli::LocalArgs;
use crate::settings::ValidWorker;
use crate::worker_process::{self, WorkerCommand};
use anyhow::Context;
use shoal_runtime::scheduler_file;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long workers get to leave once the scheduler told them to, before they are killed.
const WORKER_GRACE: Duration = Duration::from_secs(3);
/// Lines of a worker's standard error kept for the message when it fails.
const TAIL_LINES: usize = 5;

/// Run until a client asks for shutdown, a signal arrives, the idle timeout passes, or the
/// workers fail; then stop every worker (by pid if it does not exit in time).
///
/// # Errors
/// The scheduler cannot start, a worker process cannot be spawned, or a worker failed
/// to start (its error is in the message).
pub async fn run(
    args: LocalArgs,
    settings: ValidWorker,
    hooks: &crate::Hooks,
) -> anyhow::Result<u8> {
    let scheduler_file = args
        .scheduler_file
        .clone()
        .unwrap_or_else(default_scheduler_file);
    let options = super::scheduler::options(
        &args.listen,
        Some(scheduler_file.clone()),
        args.idle_timeout,
        &args.tuning,
    )?;
    let (mut scheduler, _dashboard) =
        super::scheduler::bind_with_dashboard(options, &args.tuning, "shoal local").await?;
    crate::progress::watch_start_up(&mut scheduler, u64::from(args.workers), "(shoal local)");
    eprintln!(
        "shoal local: scheduler at {}, scheduler file {}",
        scheduler.address(),
        scheduler_file.display()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = JoinSet::new();
    for i in 0..args.workers {
        let name = format!("local-{i}");
        match spawn_worker(&settings, hooks, &scheduler_file, &name) {
            Ok(started) => {
                workers.spawn(watch_worker(name, started, stop_rx.clone()));
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                while workers.join_next().await.is_some() {}
                scheduler_file::remove_if_ours(&scheduler_file, scheduler.id());
                return Err(e);
            }
        }
    }
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let total = args.workers;
    let shutdown = async {
        tokio::select! {
            () = crate::signals::terminated() => {}
            outcome = until_workers_fail(&mut workers, total) => {
                if let Ok(mut f) = failure.lock() {
                    *f = outcome;
                }
            }
        }
    };
    scheduler.run(shutdown).await;
    let _ = stop_tx.send(true);
    while workers.join_next().await.is_some() {}
    if let Some(message) = failure.into_inner().ok().flatten() {
        anyhow::bail!("{message}; the cluster was stopped and its scheduler file removed");
    }
    Ok(0)
}

/// Where `shoal local` writes its scheduler file without `--scheduler-file`.
pub fn default_scheduler_file() -> PathBuf {
    std::env::temp_dir().join(format!("shoal-scheduler-{}.json", std::process::id()))
}

/// A worker process and what is needed to tell how its start went.
struct Started {
    child: Child,
    registered: tokio::task::JoinHandle<bool>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// How a worker's watch ended.
struct WorkerEnd {
    name: String,
    /// `None`: stopped by this process.
    status: Option<ExitStatus>,
    registered: bool,
    /// Its last lines of standard error.
    tail: Vec<String>,
    /// Those of them that are errors.
    errors: Vec<String>,
}

fn spawn_worker(
    settings: &ValidWorker,
    hooks: &crate::Hooks,
    scheduler_file: &std::path::Path,
    name: &str,
) -> anyhow::Result<Started> {
    // Hosted in Python, workers are the same interpreter (`python -m shoal worker`).
    let mut args: Vec<OsString> = vec!["worker".into(), "--scheduler-file".into()];
    args.push(scheduler_file.into());
    args.extend(["--name", name, "--host", "127.0.0.1"].map(OsString::from));
    args.extend(settings.to_args());
    let mut cmd = WorkerCommand::resolve(hooks)?.command(args);
    let pipe = ReadyPipe::new().context("cannot create a pipe for a worker")?;
    pipe.attach(&mut cmd);
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start a worker process")?;
    let registered = tokio::spawn(pipe.registered());
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_stderr(stderr, tail.clone()));
    }
    Ok(Started {
        child,
        registered,
        tail,
    })
}

/// Copy a worker's standard error to ours, keeping its last lines.
async fn forward_stderr(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

async fn watch_worker(name: String, mut s: Started, mut stop: watch::Receiver<bool>) -> WorkerEnd {
    let status = tokio::select! {
        status = s.child.wait() => status.ok(),
        _ = stop.changed() => {
            // The scheduler already told every worker to exit; give them a moment.
            worker_process::stop(&mut s.child, &name, WORKER_GRACE).await;
            None
        }
    };
    // The child is gone: its pipe holds the byte or the end of file.
    let registered = (&mut s.registered).await.unwrap_or(false);
    // Let the last lines of its standard error arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tail: Vec<String> = s
        .tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let errors: Vec<String> = tail
        .iter()
        .filter(|l| l.starts_with("shoal:") || l.contains(" ERROR "))
        .cloned()
        .collect();
    WorkerEnd {
        name,
        status,
        registered,
        tail,
        errors,
    }
}

/// Resolves when a worker exited before it registered (`Some`, the message), or when
/// every worker has exited (`Some` if any failed, `None` if all left with status 0, as
/// when the scheduler told them to).
async fn until_workers_fail(workers: &mut JoinSet<WorkerEnd>, total: u32) -> Option<String> {
    let mut failed: Option<String> = None;
    while let Some(joined) = workers.join_next().await {
        let Ok(end) = joined else { continue };
        let Some(status) = end.status else { continue };
        let said = |lines: &[String]| {
            if lines.is_empty() {
                String::new()
            } else {
                format!(": {}", lines.join(" | "))
            }
        };
        if !end.registered {
            // Its errors, else whatever it said last.
            let said = said(if end.errors.is_empty() {
                &end.tail
            } else {
                &end.errors
            });
            return Some(format!(
                "worker {} exited ({status}) during start-up, before it registered with the scheduler{said}",
                end.name
            ));
        }
        if !status.success() {
            let said = said(&end.errors);
            failed = Some(format!("worker {} exited ({status}){said}", end.name));
        }
        tracing::warn!(worker = %end.name, %status, "worker exited");
    }
    failed.map(|f| format!("all {total} workers have exited and none will be restarted; {f}"))
}
