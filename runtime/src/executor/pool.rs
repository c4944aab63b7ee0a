//! The executor threads of a worker. The worker's event loop hands jobs over only up to
//! its slot count (a few per thread when tasks are short, see `worker::local`), so the
//! queue stays short. A thread takes every queued job (up to [`MAX_BATCH`]) at once and
//! runs consecutive jobs of an interpreted kind inside one [`BatchScope`] (for Python:
//! one interpreter attach for the whole batch instead of one per task).

use crate::worker::store::Value;
use bytes::Bytes;
use shoal_comm::ids::TaskId;
use shoal_comm::message::{ExecutorKind, TaskError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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
    /// How long the job ran.
    pub elapsed: Duration,
}

/// Most jobs a thread takes from the queue at once.
pub const MAX_BATCH: usize = 64;

/// Runs `f` inside a scope shared by a batch of jobs (a host interpreter sets one up
/// once, e.g. attaching to Python, so the runner's own attach is nearly free).
pub type BatchScope = fn(&mut dyn FnMut());

static BATCH_SCOPE: OnceLock<BatchScope> = OnceLock::new();

/// Install the scope batches of [`ExecutorKind::Python`] jobs (and other batched work of
/// the host interpreter, like encoding many results) run in. First call wins.
pub fn set_batch_scope(scope: BatchScope) {
    let _ = BATCH_SCOPE.set(scope);
}

/// Run `f` inside the installed batch scope (directly if none is installed).
pub fn in_batch_scope(f: &mut dyn FnMut()) {
    match BATCH_SCOPE.get() {
        Some(scope) => scope(f),
        None => f(),
    }
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
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if !q.0.is_empty() {
                    let n = q.0.len().min(MAX_BATCH);
                    batch.extend(q.0.drain(..n));
                    break;
                }
                if q.1 {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
        let mut jobs = batch.drain(..).peekable();
        while let Some(first) = jobs.next() {
            let scoped = first.kind == ExecutorKind::Python;
            let mut alive = true;
            let mut next = Some(first);
            let mut run = || {
                while let Some(job) = next.take() {
                    alive = run_one(&job, runner, results);
                    if !alive {
                        return;
                    }
                    // Consecutive jobs of the same kind of scope share it.
                    next = jobs.next_if(|j| (j.kind == ExecutorKind::Python) == scoped);
                }
            };
            if scoped {
                in_batch_scope(&mut run);
            } else {
                run();
            }
            if !alive {
                return;
            }
        }
    }
}

/// Run one job and report it; `false` once nobody listens for results.
fn run_one(job: &Job, runner: &Runner, results: &UnboundedSender<JobResult>) -> bool {
    let start = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner(job)))
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
    results
        .send(JobResult {
            id: job.id,
            result,
            elapsed: start.elapsed(),
        })
        .is_ok()
}
