//! The executor threads of a worker. The worker's event loop hands jobs over only up to
//! its slot count (a few per thread when tasks are short, see `worker::local`), so the
//! queue stays short. A thread takes every queued job (up to [`MAX_BATCH`]) at once and
//! runs consecutive jobs of an interpreted kind inside one [`BatchScope`] (for Python:
//! one interpreter attach for the whole batch instead of one per task). A job that waits
//! on other tasks [`secede`]s: its thread stops counting and another takes its place.

use crate::worker::store::Value;
use bytes::Bytes;
use shoal_comm::ids::TaskId;
use shoal_comm::message::{ExecutorKind, TaskError};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// A task ready to run, with its inputs in dependency order.
pub struct Job {
    /// The task.
    pub id: TaskId,
    /// How to run it.
    pub kind: ExecutorKind,
    /// Its payload, if it has one.
    pub payload: Option<Bytes>,
    /// Its inputs' values.
    pub inputs: Vec<Value>,
}

/// What a job produced.
pub struct JobResult {
    /// The task that ran.
    pub id: TaskId,
    /// Its value, or why it failed.
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

/// What the executor threads tell the worker's event loop.
pub enum PoolEvent {
    /// A job ended.
    Done(JobResult),
    /// The running job left the thread pool ([`secede`]): its thread no longer counts
    /// against the worker's threads, another thread took its place.
    Seceded(TaskId),
    /// A seceded job counts against the worker's threads again ([`rejoin`]).
    Rejoined(TaskId),
}

struct Shared {
    /// (queued jobs, shutting down, threads to retire after their current job)
    queue: Mutex<Queue>,
    wake: Condvar,
    runner: Runner,
    events: UnboundedSender<PoolEvent>,
    next_thread: AtomicU32,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closing: bool,
    /// Threads too many since a seceded job rejoined: the next ones to finish a job exit.
    surplus: u32,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The executor thread's own state, reachable from the job it runs (for [`secede`]).
struct ThreadState {
    shared: Arc<Shared>,
    /// Jobs taken from the queue and not started yet.
    batch: VecDeque<Job>,
    /// The job running now.
    current: Option<TaskId>,
    /// The running job seceded: this thread ends with it.
    seceded: bool,
}

thread_local! {
    static THREAD: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
}

/// A set of executor threads: `nthreads` of them count at any time; a job that waits on
/// other tasks can [`secede`] so that another thread takes its place.
pub struct ExecutorPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ExecutorPool {
    /// Start `nthreads` threads that run jobs with `runner` and report to `events`.
    pub fn start(nthreads: u32, runner: Runner, events: UnboundedSender<PoolEvent>) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            runner,
            events,
            next_thread: AtomicU32::new(0),
        });
        let threads = (0..nthreads.max(1))
            .map(|_| spawn_thread(shared.clone()))
            .collect();
        ExecutorPool { shared, threads }
    }

    /// Queue a job for the next free thread.
    pub fn submit(&self, job: Job) {
        self.shared.lock().jobs.push_back(job);
        self.shared.wake.notify_one();
    }
}

impl Drop for ExecutorPool {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        // Threads still running a long task are left to finish on their own.
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn spawn_thread(shared: Arc<Shared>) -> JoinHandle<()> {
    let i = shared.next_thread.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name(format!("shoal-exec-{i}"))
        .spawn(move || executor_thread(shared))
        .expect("cannot spawn executor thread")
}

/// The running job leaves the pool's thread count: its thread is replaced, jobs queued
/// behind it go back to the queue, and the worker may start another task. For a task
/// that waits on tasks it submitted (`worker_client`), so that a worker whose threads all
/// wait still runs the tasks they wait for. `false` outside an executor thread or when
/// the job seceded already.
pub fn secede() -> bool {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        let Some(state) = t.as_mut() else {
            return false;
        };
        let Some(id) = state.current else {
            return false;
        };
        if state.seceded {
            return false;
        }
        state.seceded = true;
        {
            let mut q = state.shared.lock();
            for job in state.batch.drain(..).rev() {
                q.jobs.push_front(job);
            }
        }
        state.shared.wake.notify_all();
        spawn_thread(state.shared.clone());
        let _ = state.shared.events.send(PoolEvent::Seceded(id));
        true
    })
}

/// A seceded job counts against the thread count again (a thread retires after its
/// current job to make room). `false` if the running job had not seceded.
pub fn rejoin() -> bool {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        let Some(state) = t.as_mut() else {
            return false;
        };
        let Some(id) = state.current.filter(|_| state.seceded) else {
            return false;
        };
        state.seceded = false;
        state.shared.lock().surplus += 1;
        let _ = state.shared.events.send(PoolEvent::Rejoined(id));
        true
    })
}

fn executor_thread(shared: Arc<Shared>) {
    THREAD.with(|t| {
        *t.borrow_mut() = Some(ThreadState {
            shared: shared.clone(),
            batch: VecDeque::with_capacity(MAX_BATCH),
            current: None,
            seceded: false,
        })
    });
    while take_batch(&shared) {
        let mut keep_going = true;
        while keep_going {
            let Some(first_kind) = with_state(|s| s.batch.front().map(|j| j.kind)) else {
                break;
            };
            let scoped = first_kind == ExecutorKind::Python;
            let mut run = || {
                // Consecutive jobs of the same kind of scope share it.
                while let Some(job) = with_state(|s| {
                    let next = s.batch.front()?;
                    ((next.kind == ExecutorKind::Python) == scoped).then(|| s.batch.pop_front())?
                }) {
                    keep_going = run_one(&job, &shared) && !leaving(&shared);
                    if !keep_going {
                        return;
                    }
                }
            };
            if scoped {
                in_batch_scope(&mut run);
            } else {
                run();
            }
        }
        if with_state(|s| s.seceded) || !keep_going {
            return_batch(&shared);
            return;
        }
    }
}

fn with_state<T>(f: impl FnOnce(&mut ThreadState) -> T) -> T {
    THREAD.with(|t| f(t.borrow_mut().as_mut().expect("executor thread state")))
}

/// Wait for queued jobs and move up to [`MAX_BATCH`] into this thread's batch; `false`
/// when the pool closes.
fn take_batch(shared: &Shared) -> bool {
    let mut q = shared.lock();
    loop {
        if !q.jobs.is_empty() {
            let n = q.jobs.len().min(MAX_BATCH);
            let jobs: Vec<Job> = q.jobs.drain(..n).collect();
            drop(q);
            with_state(|s| s.batch.extend(jobs));
            return true;
        }
        if q.closing {
            return false;
        }
        q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// This thread should end after the job it just ran: the job seceded (another thread
/// replaced it), or a rejoined job made one thread too many.
fn leaving(shared: &Shared) -> bool {
    if with_state(|s| s.seceded) {
        return true;
    }
    let mut q = shared.lock();
    if q.surplus > 0 {
        q.surplus -= 1;
        return true;
    }
    false
}

/// Jobs this thread took but will not run go back to the queue, in order.
fn return_batch(shared: &Shared) {
    let rest: Vec<Job> = with_state(|s| s.batch.drain(..).collect());
    if rest.is_empty() {
        return;
    }
    let mut q = shared.lock();
    for job in rest.into_iter().rev() {
        q.jobs.push_front(job);
    }
    drop(q);
    shared.wake.notify_all();
}

/// Run one job and report it; `false` once nobody listens for results.
fn run_one(job: &Job, shared: &Shared) -> bool {
    with_state(|s| s.current = Some(job.id));
    let start = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.runner)(job)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "executor panicked".into());
            Err(TaskError {
                key: String::new(),
                kind: shoal_comm::message::TaskErrorKind::TaskFailed,
                message,
                traceback: None,
                exception: Vec::new(),
            })
        });
    with_state(|s| s.current = None);
    shared
        .events
        .send(PoolEvent::Done(JobResult {
            id: job.id,
            result,
            elapsed: start.elapsed(),
        }))
        .is_ok()
}
