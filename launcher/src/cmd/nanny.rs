//! The nanny: `shoal worker` (by default) and `--nworkers P` run each worker in a child
//! process and watch it. A child whose RSS passes the terminate threshold is killed and
//! started again, with an event naming the worker, its pid and its RSS; the scheduler
//! recomputes what the child held. A child killed by SIGKILL (the kernel's OOM killer)
//! is restarted too. SIGINT/SIGTERM are passed on and the nanny leaves with its
//! children.
//!
//! A child that dies before it registered with the scheduler is never restarted: it
//! would only die again (a bad setting, an unusable directory, a limit below its
//! start-up memory). The nanny then stops the other children and exits with that
//! child's status. Once every child has registered, the nanny tells its own supervisor
//! (see [`super::ready`]).

use crate::worker_process::{self, WorkerCommand};
use anyhow::Context;
use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::watch;

/// How long children get to leave after SIGTERM before they are killed.
const CHILD_GRACE: Duration = Duration::from_secs(10);
/// Set in a supervised worker's environment: the nanny decides on termination.
pub const SUPERVISED_ENV: &str = "SHOAL_NANNY_CHILD";
/// More restarts than this within [`RESTART_WINDOW`] and the nanny gives up.
const MAX_RESTARTS: usize = 10;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// One worker process to keep alive.
pub struct ChildSpec {
    pub name: String,
    /// What runs `shoal`; `args` follow its leading arguments.
    pub command: WorkerCommand,
    pub args: Vec<OsString>,
    /// Kill and restart the child above this RSS; `None`: never.
    pub terminate_at: Option<u64>,
    /// How often the child's RSS is read.
    pub interval: Duration,
}

/// Run every child until all have ended; SIGINT/SIGTERM end them. Returns 0 when all
/// exited with 0, else the first non-zero status.
///
/// # Errors
/// A child cannot be started.
pub async fn supervise(children: Vec<ChildSpec>) -> anyhow::Result<u8> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watchers = tokio::task::JoinSet::new();
    let total = children.len();
    for spec in children {
        watchers.spawn(watch_child(spec, stop_rx.clone(), ready_tx.clone()));
    }
    drop(ready_tx);
    tracing::info!(workers = total, "supervising worker processes");
    let ready_signal = super::ready::ReadySignal::from_env();
    let mut ready = 0;
    let mut codes = Vec::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            joined = watchers.join_next() => match joined {
                Some(Ok(Ok(Ended::Exited(code)))) => codes.push(code),
                Some(Ok(Ok(Ended::BeforeRegistering(code)))) => {
                    codes.push(code.max(1));
                    if !stopping {
                        stopping = true;
                        let _ = stop_tx.send(true);
                    }
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => anyhow::bail!("a worker watcher failed: {e}"),
                None => break,
            },
            Some(()) = ready_rx.recv() => {
                ready += 1;
                if ready == total {
                    ready_signal.send();
                }
            }
            () = crate::signals::terminated(), if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    Ok(codes.into_iter().find(|c| *c != 0).unwrap_or(0))
}

/// How a child's watch ended.
enum Ended {
    /// The child exited (or was stopped) with this status.
    Exited(u8),
    /// The child died before it registered, with this status: not restarted.
    BeforeRegistering(u8),
}

async fn watch_child(
    spec: ChildSpec,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<Ended> {
    let mut restarts: Vec<tokio::time::Instant> = Vec::new();
    let mut announced = false;
    loop {
        let pipe = super::ready::ReadyPipe::new().context("cannot create a pipe for a worker")?;
        let mut child = spawn(&spec, &pipe)?;
        let pid = child.id().unwrap_or(0);
        let mut registration = tokio::spawn(pipe.registered());
        let mut registered: Option<bool> = None;
        let mut check = tokio::time::interval(spec.interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let restart_reason = loop {
            tokio::select! {
                yes = &mut registration, if registered.is_none() => {
                    let yes = yes.unwrap_or(false);
                    registered = Some(yes);
                    if yes && !announced {
                        announced = true;
                        let _ = ready.send(());
                    }
                }
                status = child.wait() => {
                    let status = status.with_context(|| format!("cannot wait for worker {}", spec.name))?;
                    if *stop.borrow() {
                        return Ok(Ended::Exited(exit_code(status)));
                    }
                    let yes = match registered {
                        Some(yes) => yes,
                        // The child is gone: the pipe's end of file (or the byte) is there.
                        None => (&mut registration).await.unwrap_or(false),
                    };
                    if !yes {
                        tracing::error!(worker = %spec.name, pid, "worker process exited ({status}) before it registered with the scheduler: not restarting it");
                        return Ok(Ended::BeforeRegistering(exit_code(status)));
                    }
                    if !killed_by_oom(status) {
                        return Ok(Ended::Exited(exit_code(status)));
                    }
                    break format!("worker {} (pid {pid}) was killed by SIGKILL, probably the kernel's out-of-memory killer", spec.name);
                }
                _ = check.tick(), if spec.terminate_at.is_some() => {
                    let (Some(limit), Some(rss)) = (spec.terminate_at, shoal_runtime::sys::process_rss(pid)) else { continue };
                    if rss > limit {
                        let _ = child.kill().await;
                        if registered != Some(true) {
                            tracing::error!(worker = %spec.name, pid, rss, terminate_at = limit, "worker memory passed the terminate threshold before it registered with the scheduler: not restarting it; raise --memory-limit or --memory-terminate");
                            return Ok(Ended::BeforeRegistering(1));
                        }
                        tracing::error!(worker = %spec.name, pid, rss, terminate_at = limit, "worker memory above the terminate threshold: killing and restarting it");
                        break format!("worker {} (pid {pid}) passed the terminate threshold with {rss} bytes", spec.name);
                    }
                }
                _ = stop.changed() => return Ok(Ended::Exited(stop_child(&mut child, &spec.name).await)),
            }
        };
        let now = tokio::time::Instant::now();
        restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if restarts.len() >= MAX_RESTARTS {
            tracing::error!(worker = %spec.name, "{restart_reason}; it was restarted {MAX_RESTARTS} times within {RESTART_WINDOW:?}: giving up");
            return Ok(Ended::Exited(1));
        }
        restarts.push(now);
        tracing::warn!(worker = %spec.name, "{restart_reason}; restarting it");
    }
}

fn spawn(spec: &ChildSpec, pipe: &super::ready::ReadyPipe) -> anyhow::Result<Child> {
    let mut command = spec.command.command(spec.args.iter().cloned());
    pipe.attach(&mut command);
    if spec.terminate_at.is_some() {
        command.env(SUPERVISED_ENV, "1");
    }
    command
        .spawn()
        .with_context(|| format!("cannot start worker process {}", spec.name))
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop_child(child: &mut Child, name: &str) -> u8 {
    worker_process::stop(child, name, CHILD_GRACE)
        .await
        .map_or(1, exit_code)
}

fn killed_by_oom(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

fn exit_code(status: ExitStatus) -> u8 {
    status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1))
}
