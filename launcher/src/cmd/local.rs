//! `shoal local`: a scheduler in this process and N worker processes on this machine.

use crate::cli::LocalArgs;
use anyhow::Context;
use shoal_runtime::scheduler::server::Scheduler;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Run until a client asks for shutdown, a signal arrives, or the idle timeout passes;
/// then stop every worker (by pid if it does not exit in time).
///
/// # Errors
/// The scheduler cannot start or a worker process cannot be spawned.
pub async fn run(args: LocalArgs, hooks: &crate::Hooks) -> anyhow::Result<()> {
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
    let scheduler = Scheduler::bind(options).await?;
    eprintln!(
        "shoal local: scheduler at {}, scheduler file {}",
        scheduler.address(),
        scheduler_file.display()
    );
    let mut workers = Vec::new();
    for i in 0..args.workers {
        workers.push(spawn_worker(&args, hooks, &scheduler_file, i)?);
    }
    let result = scheduler.run(crate::signals::terminated()).await.map(drop);
    stop_workers(workers).await;
    result
}

fn default_scheduler_file() -> PathBuf {
    std::env::temp_dir().join(format!("shoal-scheduler-{}.json", std::process::id()))
}

fn spawn_worker(
    args: &LocalArgs,
    hooks: &crate::Hooks,
    scheduler_file: &std::path::Path,
    index: u32,
) -> anyhow::Result<Child> {
    // Hosted in Python, workers are the same interpreter (`python -m shoal worker`).
    let (exe, leading) = match hooks.worker_command.as_deref() {
        Some([program, rest @ ..]) => (program.into(), rest.to_vec()),
        _ => (
            std::env::current_exe().context("cannot find the shoal executable")?,
            Vec::new(),
        ),
    };
    let w = &args.worker;
    let cores = shoal_runtime::sys::cpu_count();
    let settings = crate::cli::WorkerSettings {
        nthreads: Some(w.nthreads.unwrap_or_else(|| (cores / args.workers).max(1))),
        ..w.clone()
    };
    let mut cmd = Command::new(exe);
    cmd.args(leading)
        .arg("worker")
        .arg("--scheduler-file")
        .arg(scheduler_file)
        .args(["--name", &format!("local-{index}")])
        .args(["--host", "127.0.0.1"])
        .args(settings.to_args());
    if let Some(dir) = &w.local_directory {
        cmd.arg("--local-directory").arg(dir);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd.spawn().context("cannot start a worker process")
}

async fn stop_workers(workers: Vec<Child>) {
    for mut child in workers {
        // The scheduler already told every worker to exit; give them a moment.
        match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(pid = child.id(), "worker did not exit; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
