//! Many real worker connections from one process: `N` zero-mode workers (each its own
//! session, data server and scheduler connection, as separate processes would have) join
//! the scheduler named by a scheduler file and stay until the scheduler shuts down.
//! For the many-connection benchmark (`scripts/bench scheduler`): a thousand worker
//! processes would not fit this machine's memory, a thousand sessions do.
//!
//! `cargo run --release -p shoal-runtime --example many_workers -- SCHEDULER_FILE N`

use shoal_runtime::executor::builtin;
use shoal_runtime::worker::memory::MemoryPolicy;
use shoal_runtime::worker::{run_worker, SchedulerSource, WorkerOptions};
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: many_workers SCHEDULER_FILE N");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let exits = rt.block_on(async {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                let options = WorkerOptions {
                    scheduler: SchedulerSource::File(PathBuf::from(&file)),
                    name: format!("many-{i}"),
                    nthreads: 1,
                    memory_limit: 0,
                    resources: Vec::new(),
                    death_timeout: Duration::from_secs(60),
                    host: "127.0.0.1".into(),
                    zero: true,
                    runner: None,
                    executors: builtin::KINDS.to_vec(),
                    local_directory: None,
                    memory: MemoryPolicy::default(),
                    transports: shoal_comm::transport::Connector::tcp(),
                    on_registered: None,
                };
                tokio::spawn(run_worker(options, std::future::pending()))
            })
            .collect();
        let mut failed = 0;
        for w in workers {
            if !matches!(w.await, Ok(Ok(_))) {
                failed += 1;
            }
        }
        failed
    });
    eprintln!("many_workers: {n} workers ended, {exits} with an error");
    std::process::exit(i32::from(exits > 0));
}
