//! A 100k-task merge whose inputs live on another worker: N `sum` leaves pinned to worker
//! A, then one `sum` of all of them pinned to worker B, which fetches the N small results
//! from A (one batched round trip over the transport both workers share). Each round times
//! the leaves (submission to all done) and the merge (submission to done, the fetch and the
//! sum) and checks the merged value; prints the best round as JSON: the whole graph's
//! tasks per second and the merge phase's seconds.
//!
//! `remote_merge SCHEDULER_FILE WORKER_A WORKER_B [N] [ROUNDS]`

use bytes::Bytes;
use shoal_comm::message::{ExecutorKind, KeyState, TaskSpec};
use shoal_runtime::client::Client;
use shoal_runtime::executor::builtin::{encode_args, SumArgs};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, a, b, ..] = args.as_slice() else {
        anyhow::bail!("usage: remote_merge SCHEDULER_FILE WORKER_A WORKER_B [N] [ROUNDS]");
    };
    let n: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(3);
    let client = Client::from_scheduler_file(file.as_ref(), Duration::from_secs(10)).await?;
    let limit = Some(Duration::from_secs(300));
    let (mut best_total, mut best_merge) = (f64::MAX, f64::MAX);
    for round in 0..rounds {
        let mut leaves = Vec::with_capacity(n as usize);
        let mut frames = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut leaf = TaskSpec::new(format!("leaf-{round}-{i}"), ExecutorKind::Sum, vec![]);
            leaf.payload = Some(frames.len() as u32);
            leaf.workers = vec![a.clone()];
            frames.push(encode_args(&SumArgs {
                add: i,
                sleep_ms: 0,
            }));
            leaves.push(leaf);
        }
        let keys: Vec<String> = leaves.iter().map(|t| t.key.clone()).collect();
        let merge_key = format!("merge-{round}");
        let mut merge = TaskSpec::new(&merge_key, ExecutorKind::Sum, keys.clone());
        merge.workers = vec![b.clone()];

        let start = Instant::now();
        client.submit(leaves, frames, keys.clone()).await?;
        let states = client.wait(&keys, limit).await?;
        anyhow::ensure!(
            states.iter().all(|s| matches!(s, KeyState::Memory { .. })),
            "a leaf did not finish in memory"
        );
        let leaves_done = Instant::now();
        client
            .submit(vec![merge], Vec::<Bytes>::new(), vec![merge_key.clone()])
            .await?;
        let state = client.wait(std::slice::from_ref(&merge_key), limit).await?;
        let merged = Instant::now();
        anyhow::ensure!(
            state[0] == KeyState::Memory { size: 8 },
            "the merge ended as {:?}",
            state[0]
        );
        let value = client.fetch(std::slice::from_ref(&merge_key)).await?;
        let expected = (n * n.saturating_sub(1) / 2).to_le_bytes();
        anyhow::ensure!(
            value[0].as_ref() == expected,
            "the merge gave {:?}, expected {expected:?}",
            value[0]
        );
        best_total = best_total.min((merged - start).as_secs_f64());
        best_merge = best_merge.min((merged - leaves_done).as_secs_f64());
        let mut release = keys;
        release.push(merge_key);
        client.release(release)?;
    }
    println!(
        "{{\"tasks\": {}, \"tasks_per_second\": {:.0}, \"merge_seconds\": {best_merge:.5}}}",
        n + 1,
        (n + 1) as f64 / best_total
    );
    Ok(())
}
