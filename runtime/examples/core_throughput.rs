//! The scheduling core alone, without sockets: how many task transitions per second it
//! sustains for the merge graph and independent tasks, with workers that finish every
//! task at once. Prints one JSON line per workload.
//!
//! `cargo run --release -p shoal-runtime --example core_throughput -- 100000`

use bytes::Bytes;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{
    ComputeTask, ExecutorKind, KeyUpdate, Registration, TaskFinished, TaskSpec, ToClient, ToWorker,
};
use shoal_runtime::scheduler::{Comm, Core, CoreConfig};
use std::time::Instant;

#[derive(Default)]
struct Collect {
    computes: Vec<(WorkerId, TaskId)>,
    updates: usize,
}

impl Comm for Collect {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, _: Option<Bytes>) {
        self.computes.push((worker, task.id));
    }
    fn release(&mut self, _: WorkerId, _: TaskId) {}
    fn steal(&mut self, _: WorkerId, _: TaskId) {}
    fn send_worker(&mut self, _: WorkerId, _: ToWorker) {}
    fn key_update(&mut self, _: ClientId, _: KeyUpdate) {
        self.updates += 1;
    }
    fn send_client(&mut self, _: ClientId, _: ToClient) {}
}

fn run(name: &str, tasks: Vec<TaskSpec>, wants: Vec<String>) {
    let n = tasks.len();
    let mut core = Core::new(CoreConfig::default());
    let mut comm = Collect::default();
    let now = Instant::now();
    let client = core.on_client_added();
    for w in 0..2 {
        let reg = Registration {
            name: format!("w{w}"),
            nthreads: 1,
            memory_limit: 0,
            resources: vec![],
            data_address: format!("tcp://w{w}"),
            host: "h".into(),
            pid: 0,
            executors: vec![ExecutorKind::Noop, ExecutorKind::Sum],
        };
        let id = core.new_worker_id();
        core.on_worker_added(id, reg, now, 1000, &mut comm);
    }
    let start = Instant::now();
    core.on_submit(client, tasks, wants.clone(), &[], &mut comm)
        .expect("valid graph");
    while core.schedule(&mut comm) {}
    while !comm.computes.is_empty() {
        let batch = std::mem::take(&mut comm.computes);
        for chunk in batch.chunk_by(|a, b| a.0 == b.0) {
            let done: Vec<TaskFinished> = chunk
                .iter()
                .map(|(_, id)| TaskFinished { id: *id, size: 8 })
                .collect();
            core.on_tasks_finished(chunk[0].0, &done, &mut comm);
        }
        while core.schedule(&mut comm) {}
    }
    let compute = start.elapsed();
    core.on_release(client, &wants, &mut comm);
    while core.schedule(&mut comm) {}
    let total = start.elapsed();
    assert_eq!(comm.updates, wants.len(), "every wanted key finished");
    assert!(core.task_count() == 0, "everything released");
    println!(
        "{{\"workload\": \"{name}\", \"tasks\": {n}, \"seconds\": {:.4}, \"tasks_per_second\": {:.0}, \"us_per_task\": {:.3}, \"with_release_us_per_task\": {:.3}}}",
        compute.as_secs_f64(),
        n as f64 / compute.as_secs_f64(),
        compute.as_secs_f64() * 1e6 / n as f64,
        total.as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let leaves: Vec<TaskSpec> = (0..n)
        .map(|i| TaskSpec::new(format!("leaf-{i}"), ExecutorKind::Noop, vec![]))
        .collect();
    let keys: Vec<String> = leaves.iter().map(|t| t.key.clone()).collect();
    run("independent", leaves.clone(), keys.clone());
    let mut merge = leaves;
    merge.push(TaskSpec::new("merge", ExecutorKind::Sum, keys));
    run("merge", merge, vec!["merge".into()]);
}
