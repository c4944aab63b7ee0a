//! `shoal run`: submit a graph of built-in tasks, print results and timing.

use crate::cli::RunArgs;
use crate::graph::Graph;
use shoal_comm::message::KeyState;
use std::time::Instant;

/// How one output is shown.
fn show(value: &[u8]) -> serde_json::Value {
    match <[u8; 8]>::try_from(value) {
        Ok(bytes) => serde_json::json!(u64::from_le_bytes(bytes)),
        Err(_) => serde_json::json!(format!("<{} bytes>", value.len())),
    }
}

/// Submit, wait, fetch small results, print.
///
/// # Errors
/// Connection failures, a refused graph, a failed output.
pub async fn run(args: RunArgs, graph: Graph) -> anyhow::Result<bool> {
    let client = super::status::connect(&args.connect).await?;
    let n_tasks = graph.tasks.len();
    let outputs = graph.outputs.clone();
    let start = Instant::now();
    client
        .submit(graph.tasks, graph.frames, outputs.clone())
        .await?;
    let submitted = start.elapsed();
    let states = client.wait(&outputs, Some(args.wait)).await?;
    let elapsed = start.elapsed();
    let mut results = serde_json::Map::new();
    let mut ok = true;
    // Fetch at most a few small results to print; big graphs only report states.
    let fetchable: Vec<String> = outputs
        .iter()
        .zip(&states)
        .filter(|(_, s)| matches!(s, KeyState::Memory { size } if (1..=1 << 20).contains(size)))
        .map(|(k, _)| k.clone())
        .take(100)
        .collect();
    let values = if fetchable.is_empty() {
        Vec::new()
    } else {
        client.fetch(&fetchable).await?
    };
    let fetched: std::collections::HashMap<&String, &bytes::Bytes> =
        fetchable.iter().zip(&values).collect();
    for (key, state) in outputs.iter().zip(&states) {
        let shown = match state {
            KeyState::Memory { size } => match fetched.get(key) {
                Some(v) => show(v),
                None => serde_json::json!(format!("<{size} bytes>")),
            },
            KeyState::Erred(e) => {
                ok = false;
                serde_json::json!({"error": crate::task_error_message(e), "kind": e.kind.name(), "failed_key": e.key})
            }
            KeyState::Cancelled => {
                ok = false;
                serde_json::json!("cancelled")
            }
        };
        if results.len() < 100 {
            results.insert(key.clone(), shown);
        }
    }
    client.release(outputs.clone())?;
    let rate = n_tasks as f64 / elapsed.as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "tasks": n_tasks, "outputs": outputs.len(), "seconds": elapsed.as_secs_f64(),
            "submit_seconds": submitted.as_secs_f64(), "tasks_per_second": rate, "ok": ok, "results": results,
        });
        println!("{out}");
    } else {
        for (key, value) in &results {
            println!("{key} = {value}");
        }
        if outputs.len() > results.len() {
            println!("... {} more outputs", outputs.len() - results.len());
        }
        println!(
            "{n_tasks} tasks in {:.3} s ({rate:.0} tasks/s; submit {:.3} s)",
            elapsed.as_secs_f64(),
            submitted.as_secs_f64()
        );
    }
    Ok(ok)
}
