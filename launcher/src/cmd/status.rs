//! `shoal status` and `shoal shutdown`.

use crate::cli::{ConnectArgs, StatusArgs};
use shoal_comm::message::ClusterStatus;
use shoal_runtime::client::Client;

/// Connect through the scheduler file.
///
/// # Errors
/// The file is missing, malformed or stale, or the connection fails.
pub async fn connect(args: &ConnectArgs) -> anyhow::Result<Client> {
    Ok(Client::from_scheduler_file(&args.scheduler_file, args.timeout).await?)
}

/// Print workers and task counts.
///
/// # Errors
/// Connection failures.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = connect(&args.connect).await?;
    let status = client.status().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// Stop the cluster.
///
/// # Errors
/// Connection failures.
pub async fn shutdown(args: ConnectArgs) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    client.shutdown().await?;
    eprintln!("shoal: cluster {} shut down", client.scheduler_id());
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn render(s: &ClusterStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let threads: u32 = s.workers.iter().map(|w| w.nthreads).sum();
    let memory: u64 = s.workers.iter().map(|w| w.memory_limit).sum();
    let _ = writeln!(out, "scheduler {} at {}", s.scheduler_id, s.address);
    let _ = writeln!(
        out,
        "workers {}  threads {}  memory {}  clients {}  tasks finished {}",
        s.workers.len(),
        threads,
        human_bytes(memory),
        s.clients,
        s.tasks_finished
    );
    let _ = writeln!(
        out,
        "{:<16} {:<24} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "NAME", "ADDRESS", "THREADS", "LIMIT", "RSS", "STORED", "RUNNING", "QUEUED"
    );
    for w in &s.workers {
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8}",
            w.name,
            w.address,
            w.nthreads,
            human_bytes(w.memory_limit),
            human_bytes(w.metrics.rss),
            w.metrics.stored_count,
            w.metrics.executing,
            w.metrics.queued
        );
    }
    let tasks: Vec<String> = s.tasks.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "tasks: {}",
        if tasks.is_empty() {
            "none".into()
        } else {
            tasks.join(", ")
        }
    );
    out
}

fn status_json(s: &ClusterStatus) -> serde_json::Value {
    serde_json::json!({
        "scheduler_id": s.scheduler_id,
        "address": s.address,
        "clients": s.clients,
        "tasks_finished": s.tasks_finished,
        "tasks": s.tasks.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "workers": s.workers.iter().map(|w| serde_json::json!({
            "id": w.id.as_raw(), "name": w.name, "address": w.address, "nthreads": w.nthreads,
            "memory_limit": w.memory_limit, "rss": w.metrics.rss, "stored_bytes": w.metrics.stored_bytes,
            "stored_count": w.metrics.stored_count, "executing": w.metrics.executing, "queued": w.metrics.queued,
            "finished": w.finished, "host": w.host, "pid": w.pid,
        })).collect::<Vec<_>>(),
    })
}
