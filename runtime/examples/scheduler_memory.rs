//! Scheduler memory per queued task: connect to a running scheduler (with no workers)
//! through its scheduler file, submit N independent tasks that stay queued, and read the
//! scheduler's resident memory before and after from /proc. Prints one JSON line.
//!
//! `cargo run --release -p shoal-runtime --example scheduler_memory -- SCHEDULER_FILE 1000000`

use shoal_comm::message::{ExecutorKind, TaskSpec};
use shoal_runtime::client::Client;
use std::time::Duration;

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("scheduler runs on this machine");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: scheduler_memory SCHEDULER_FILE [N]");
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let file = shoal_runtime::scheduler_file::read(path.as_ref(), Duration::from_secs(10))?;
    let client = Client::from_scheduler_file(path.as_ref(), Duration::from_secs(10)).await?;
    let before = rss_of(file.pid);
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|i| TaskSpec::new(format!("queued-{i}"), ExecutorKind::Noop, vec![]))
        .collect();
    let wants = tasks.iter().map(|t| t.key.clone()).collect();
    client.submit(tasks, Vec::new(), wants).await?;
    let status = client.status().await?;
    let peak = rss_of(file.pid);
    // Steady state: the decoded submission is freed; give the allocator time to return it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_of(file.pid);
    let queued: u64 = status.tasks.iter().map(|(_, c)| c).sum();
    assert_eq!(queued as usize, n, "all tasks held by the scheduler");
    let per_task = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "{{\"tasks\": {n}, \"rss_before\": {before}, \"rss_peak\": {peak}, \"rss_after\": {after}, \"bytes_per_task\": {per_task:.0}, \"peak_bytes_per_task\": {:.0}, \"mib_per_million\": {:.1}}}",
        peak.saturating_sub(before) as f64 / n as f64,
        per_task * 1e6 / (1 << 20) as f64
    );
    Ok(())
}
