//! Worker-to-worker transfer of one payload: a task on worker A produces N bytes, a task
//! restricted to worker B takes it as its input (the fetch from A; a one-input concat hands
//! the input on without copying), timed from submission to the client seeing it done. Prints the
//! best of several rounds as JSON. Needs a scheduler with two workers named in the args.
//!
//! `transfer SCHEDULER_FILE WORKER_A WORKER_B [MiB] [ROUNDS]`

use shoal_comm::message::{ExecutorKind, KeyState, TaskSpec};
use shoal_runtime::client::Client;
use shoal_runtime::executor::builtin::{encode_args, BytesArgs};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, a, b, ..] = args.as_slice() else {
        anyhow::bail!("usage: transfer SCHEDULER_FILE WORKER_A WORKER_B [MiB] [ROUNDS]");
    };
    let mib: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(5);
    let client = Client::from_scheduler_file(file.as_ref(), Duration::from_secs(10)).await?;
    let size = mib << 20;
    let mut best = f64::MAX;
    for round in 0..rounds {
        let (p, c) = (format!("produce-{round}"), format!("consume-{round}"));
        let mut produce = TaskSpec::new(&p, ExecutorKind::Bytes, vec![]);
        produce.payload = Some(0);
        produce.workers = vec![a.clone()];
        client
            .submit(
                vec![produce],
                vec![encode_args(&BytesArgs {
                    size,
                    fill: 7,
                    pattern: false,
                })],
                vec![p.clone()],
            )
            .await?;
        client
            .wait(std::slice::from_ref(&p), Some(Duration::from_secs(60)))
            .await?;
        let mut consume = TaskSpec::new(&c, ExecutorKind::Concat, vec![p.clone()]);
        consume.workers = vec![b.clone()];
        let start = Instant::now();
        client
            .submit(vec![consume], vec![], vec![c.clone()])
            .await?;
        let state = client
            .wait(std::slice::from_ref(&c), Some(Duration::from_secs(60)))
            .await?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            state[0] == KeyState::Memory { size },
            "consumer ended as {:?}",
            state[0]
        );
        best = best.min(seconds);
        client.release(vec![p, c])?;
    }
    println!(
        "{{\"mib\": {mib}, \"seconds\": {best:.5}, \"gb_per_s\": {:.2}}}",
        size as f64 / best / 1e9
    );
    Ok(())
}
