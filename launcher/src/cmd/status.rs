//! `shoal status` (once, or refreshed with `--watch`: see [`super::watch`]) and
//! `shoal shutdown`.

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
    if let Some(every) = args.watch {
        return super::watch::watch(&client, every).await;
    }
    let status = client.status().await?;
    let link = client.dashboard_link_of(&status);
    if args.json {
        let mut json = status_json(&status);
        json["dashboard"] = serde_json::json!(link);
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render(&status, None));
        if let Some(link) = link {
            println!("dashboard: {link}");
        }
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

/// The cluster as a table: a summary, one row per worker (at most `rows`, then a line
/// saying how many more), spill figures, failed starts and task counts by state.
pub(super) fn render(s: &ClusterStatus, rows: Option<usize>) -> String {
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
        "{:<16} {:<16} {:<24} {:>5} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "NAME",
        "HOST",
        "ADDRESS",
        "MPI",
        "THREADS",
        "LIMIT",
        "RSS",
        "MANAGED",
        "UNMANAGED",
        "SPILLED",
        "STORED",
        "RUNNING",
        "QUEUED"
    );
    let shown = rows.unwrap_or(usize::MAX).min(s.workers.len());
    for w in &s.workers[..shown] {
        let m = &w.metrics.memory;
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:<24} {:>5} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}{}",
            w.name,
            w.host,
            w.address.split_whitespace().next().unwrap_or_default(),
            // The worker's rank when peers of its MPI job fetch from it over MPI.
            shoal_runtime::net::mpi_alternative(&w.address)
                .map_or_else(|| "-".to_string(), |(_, rank)| rank.to_string()),
            w.nthreads,
            human_bytes(w.memory_limit),
            human_bytes(w.metrics.rss),
            human_bytes(m.managed),
            human_bytes(w.metrics.rss.saturating_sub(m.managed)),
            human_bytes(m.spilled),
            w.metrics.stored_count,
            w.metrics.executing,
            w.metrics.queued,
            if m.paused { "  paused" } else { "" }
        );
    }
    if shown < s.workers.len() {
        let _ = writeln!(
            out,
            "... and {} more workers (`shoal status` lists them all)",
            s.workers.len() - shown
        );
    }
    let spills: Vec<String> = s
        .workers
        .iter()
        .filter(|w| w.metrics.memory.spill_count + w.metrics.memory.unspill_count > 0)
        .map(|w| {
            let m = &w.metrics.memory;
            format!(
                "{}: spilled {} values ({}, {:.2} s), read back {} ({}, {:.2} s)",
                w.name,
                m.spill_count,
                human_bytes(m.spill_bytes),
                m.spill_seconds,
                m.unspill_count,
                human_bytes(m.unspill_bytes),
                m.unspill_seconds
            )
        })
        .collect();
    for line in spills {
        let _ = writeln!(out, "{line}");
    }
    for f in &s.failed_starts {
        let _ = writeln!(
            out,
            "failed to start: {} on {} (pid {}): {}",
            f.name, f.host, f.pid, f.error
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
        "failed_starts": s.failed_starts.iter().map(|f| serde_json::json!({
            "name": f.name, "host": f.host, "pid": f.pid, "error": f.error, "at": f.at,
        })).collect::<Vec<_>>(),
        "tasks": s.tasks.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "workers": s.workers.iter().map(|w| serde_json::json!({
            "id": w.id.as_raw(), "name": w.name, "address": w.address, "nthreads": w.nthreads,
            "memory_limit": w.memory_limit, "rss": w.metrics.rss, "stored_bytes": w.metrics.stored_bytes,
            "stored_count": w.metrics.stored_count, "executing": w.metrics.executing, "queued": w.metrics.queued,
            "finished": w.finished, "host": w.host, "pid": w.pid,
            "memory": {
                "managed": w.metrics.memory.managed,
                "unmanaged": w.metrics.rss.saturating_sub(w.metrics.memory.managed),
                "spilled": w.metrics.memory.spilled,
                "spilled_count": w.metrics.memory.spilled_count,
                "paused": w.metrics.memory.paused,
                "spill_count": w.metrics.memory.spill_count,
                "spill_bytes": w.metrics.memory.spill_bytes,
                "spill_seconds": w.metrics.memory.spill_seconds,
                "unspill_count": w.metrics.memory.unspill_count,
                "unspill_bytes": w.metrics.memory.unspill_bytes,
                "unspill_seconds": w.metrics.memory.unspill_seconds,
            },
        })).collect::<Vec<_>>(),
    })
}
