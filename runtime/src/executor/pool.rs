//! The executor threads of a worker. The worker's event loop hands a job over only when a
//! thread is free, so the queue never grows beyond the thread count.

use crate::worker::store::Value;
use bytes::Bytes;
use shoal_comm::ids::TaskId;
use shoal_comm::message::{ExecutorKind, TaskError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// A task ready to run, with its inputs in dependency order.
pub struct Job {
    pub id: TaskId,
    pub kind: ExecutorKind,
    pub payload: Option<Bytes>,
    pub inputs: Vec<Value>,
}

/// What a job produced.
pub struct JobResult {
    pub id: TaskId,
    pub result: Result<Value, TaskError>,
}

/// Runs one job; the built-in runner is [`super::builtin::run_job`].
pub type Runner = Arc<dyn Fn(&Job) -> Result<Value, TaskError> + Send + Sync>;

struct Shared {
    queue: Mutex<(VecDeque<Job>, bool)>,
    wake: Condvar,
}

/// A fixed set of executor threads.
pub struct ExecutorPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ExecutorPool {
    /// Start `nthreads` threads that run jobs with `runner` and report to `results`.
    pub fn start(nthreads: u32, runner: Runner, results: UnboundedSender<JobResult>) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new((VecDeque::new(), false)),
            wake: Condvar::new(),
        });
        let threads = (0..nthreads.max(1))
            .map(|i| {
                let (shared, runner, results) = (shared.clone(), runner.clone(), results.clone());
                std::thread::Builder::new()
                    .name(format!("shoal-exec-{i}"))
                    .spawn(move || executor_thread(&shared, &runner, &results))
                    .expect("cannot spawn executor thread")
            })
            .collect();
        ExecutorPool { shared, threads }
    }

    /// Queue a job for the next free thread.
    pub fn submit(&self, job: Job) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push_back(job);
        self.shared.wake.notify_one();
    }
}

impl Drop for ExecutorPool {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.shared.wake.notify_all();
        // Threads still running a long task are left to finish on their own.
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn executor_thread(shared: &Shared, runner: &Runner, results: &UnboundedSender<JobResult>) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.0.pop_front() {
                    break job;
                }
                if q.1 {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner(&job)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "executor panicked".into());
                Err(TaskError {
                    key: String::new(),
                    kind: "TaskFailed".into(),
                    message,
                    traceback: None,
                    exception: Vec::new(),
                })
            });
        if results.send(JobResult { id: job.id, result }).is_err() {
            return;
        }
    }
}
