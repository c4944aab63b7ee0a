//! Scheduler simulator: drives the scheduling core with W simulated workers (4 threads
//! each) and no sockets, and reports how fast it decides and how long its slowest single
//! call took. Prints one JSON line per workload.
//!
//! Workloads: `independent` (N tasks without inputs, all wanted) and `tree` (a binary
//! reduction over N/2 leaves, only the root wanted). Simulated workers finish between 1
//! and 32 queued tasks per event (in a random worker order), report the next ones as
//! started, hand back stolen tasks they have not started, and the cluster loses one
//! worker and gains a new one every few rounds. `balance` runs once per round, as the
//! server runs it on a timer.
//!
//! Each workload runs twice on the same core and workers (`"graph": "first"`, then
//! `"again"`: a scheduler that has run a graph before, its tables grown). Each line also
//! splits the core's time by the kind of call (`seconds_by_call`: seconds and calls) and
//! counts the inputs a worker had to fetch from another worker (`remote_inputs`:
//! transfers, what placement's locality saves).
//!
//! Also measured: the time to register the W workers, and the scheduler's heap bytes
//! per queued task (N independent tasks submitted to a core without workers, measured
//! with a counting allocator).
//!
//! `cargo run --release -p shoal-runtime --example sim -- WORKERS [TASKS] [MEMORY_TASKS]
//! [WORKLOADS]` (WORKLOADS: `independent`, `tree` or both, comma-separated; default both,
//! to profile one alone).

use bytes::Bytes;
use mimalloc::MiMalloc;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{
    ComputeTask, ExecutorKind, KeyUpdate, Registration, TaskFinished, TaskSpec, ToClient, ToWorker,
};
use shoal_runtime::scheduler::{Comm, Core, CoreConfig};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes, for the memory-per-task figure, over mimalloc (the `shoal`
/// binary's allocator).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const THREADS: u32 = 4;
const MAX_BATCH: usize = 32;
/// One worker is lost and one joins every this many rounds, at most `CHURN_MAX` times.
const CHURN_EVERY: u64 = 20;
const CHURN_MAX: u64 = 8;

/// xorshift64*: a deterministic source of batch sizes and worker orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the core asked for, collected until the simulated workers act on it.
#[derive(Default)]
struct SimComm {
    computes: Vec<(WorkerId, TaskId)>,
    /// Compute requests sent: the placement decisions.
    decisions: u64,
    /// Inputs of those tasks that their worker had to fetch from another (transfers).
    remote_inputs: u64,
    steals: Vec<(WorkerId, TaskId)>,
    updates: usize,
    messages: u64,
    /// Submissions accepted.
    replies: usize,
}

impl Comm for SimComm {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, _: Option<Bytes>) {
        self.computes.push((worker, task.id));
        self.decisions += 1;
        self.remote_inputs += task
            .inputs
            .iter()
            .filter(|i| !i.holders.contains(&worker))
            .count() as u64;
    }
    fn release(&mut self, _: WorkerId, _: TaskId) {
        self.messages += 1;
    }
    fn steal(&mut self, worker: WorkerId, task: TaskId) {
        self.steals.push((worker, task));
    }
    fn send_worker(&mut self, _: WorkerId, _: ToWorker) {
        self.messages += 1;
    }
    fn key_update(&mut self, _: ClientId, _: KeyUpdate) {
        self.updates += 1;
    }
    fn send_client(&mut self, _: ClientId, msg: ToClient) {
        match msg {
            ToClient::SubmitReply { error: None, .. } => self.replies += 1,
            ToClient::SubmitReply { error: Some(e), .. } => panic!("graph refused: {e}"),
            _ => self.messages += 1,
        }
    }
}

/// A simulated worker: tasks it was sent and not finished, the first `started` of them
/// reported as running.
#[derive(Default)]
struct SimWorker {
    queue: VecDeque<TaskId>,
    started: usize,
}

/// Times every call into the core (wall clock: on a shared machine, take the best of a
/// few runs).
struct Clock {
    busy: Duration,
    slowest: Duration,
    slowest_what: &'static str,
    calls: u64,
    /// Time and calls per kind of call, in the order first seen.
    by_call: Vec<(&'static str, Duration, u64)>,
}

impl Clock {
    fn time<T>(&mut self, what: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        self.busy += took;
        self.calls += 1;
        match self.by_call.iter_mut().find(|(w, _, _)| *w == what) {
            Some((_, total, calls)) => {
                *total += took;
                *calls += 1;
            }
            None => self.by_call.push((what, took, 1)),
        }
        if took > self.slowest {
            self.slowest = took;
            self.slowest_what = what;
        }
        out
    }
}

fn registration(i: usize) -> Registration {
    Registration {
        name: format!("sim-{i}"),
        nthreads: THREADS,
        memory_limit: 0,
        resources: vec![],
        data_address: format!("tcp://10.{}.{}.{}:4000", i >> 16, (i >> 8) & 255, i & 255),
        host: format!("node{}", i / 4),
        pid: i as u32,
        executors: vec![ExecutorKind::Noop, ExecutorKind::Sum],
    }
}

struct Sim {
    core: Core,
    comm: SimComm,
    clock: Clock,
    workers: Vec<(WorkerId, SimWorker)>,
    now: Instant,
    joined: usize,
}

impl Sim {
    fn new(config: CoreConfig) -> Self {
        Sim {
            core: Core::new(config),
            comm: SimComm::default(),
            clock: Clock {
                busy: Duration::ZERO,
                slowest: Duration::ZERO,
                slowest_what: "",
                calls: 0,
                by_call: Vec::new(),
            },
            workers: Vec::new(),
            now: Instant::now(),
            joined: 0,
        }
    }

    fn add_worker(&mut self) {
        let reg = registration(self.joined);
        self.joined += 1;
        let (core, comm, now) = (&mut self.core, &mut self.comm, self.now);
        let id = self.clock.time("worker added", || {
            let id = core.new_worker_id();
            core.on_worker_added(id, reg, now, 1000, comm);
            id
        });
        self.workers.push((id, SimWorker::default()));
    }

    /// Run the core's pending work to the end, one slice per call, as the server does.
    fn schedule(&mut self) {
        self.schedule_as("schedule");
    }

    /// [`Sim::schedule`], timed under its own name.
    fn schedule_as(&mut self, what: &'static str) {
        let (core, comm) = (&mut self.core, &mut self.comm);
        while self.clock.time(what, || core.schedule(comm)) {}
    }

    /// Hand the computes sent so far to the simulated workers.
    fn deliver(&mut self) {
        let index: rustc_hash::FxHashMap<WorkerId, usize> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (w, _))| (*w, i))
            .collect();
        for (w, t) in self.comm.computes.drain(..) {
            if let Some(&i) = index.get(&w) {
                self.workers[i].1.queue.push_back(t);
            }
        }
    }

    fn answer_steals(&mut self) {
        let steals = std::mem::take(&mut self.comm.steals);
        for (victim, task) in steals {
            let Some(pos) = self.workers.iter().position(|(w, _)| *w == victim) else {
                continue;
            };
            let sw = &mut self.workers[pos].1;
            let handed = match sw.queue.iter().position(|t| *t == task) {
                Some(i) if i >= sw.started => {
                    sw.queue.remove(i);
                    true
                }
                _ => false,
            };
            let (core, comm) = (&mut self.core, &mut self.comm);
            self.clock.time("steal reply", || {
                core.on_steal_reply(victim, &[(task, handed)], comm)
            });
        }
    }

    /// One round: every worker with work (in random order) finishes a batch and reports
    /// the next tasks as started; the core schedules after each event.
    fn round(&mut self, rng: &mut Rng) {
        let mut order: Vec<usize> = (0..self.workers.len())
            .filter(|&i| !self.workers[i].1.queue.is_empty())
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for i in order {
            let batch = 1 + rng.below(MAX_BATCH);
            let (w, sw) = &mut self.workers[i];
            let w = *w;
            let n = batch.min(sw.queue.len());
            let done: Vec<TaskFinished> = sw
                .queue
                .drain(..n)
                .map(|id| TaskFinished { id, size: 8 })
                .collect();
            sw.started = sw.started.saturating_sub(n);
            let start = sw.started;
            let upto = (THREADS as usize).min(sw.queue.len());
            let started: Vec<TaskId> = sw.queue.range(start..upto.max(start)).copied().collect();
            sw.started = upto.max(start);
            let (core, comm) = (&mut self.core, &mut self.comm);
            self.clock
                .time("tasks finished", || core.on_tasks_finished(w, &done, comm));
            if !started.is_empty() {
                self.clock
                    .time("tasks started", || core.on_tasks_started(w, &started, comm));
            }
            self.schedule();
        }
        let (core, comm) = (&mut self.core, &mut self.comm);
        self.clock.time("balance", || core.balance(comm));
        self.deliver();
        self.answer_steals();
        self.schedule();
        self.deliver();
    }

    fn churn(&mut self, rng: &mut Rng) {
        if self.workers.len() > 1 {
            let (lost, _) = self.workers.swap_remove(rng.below(self.workers.len()));
            let (core, comm) = (&mut self.core, &mut self.comm);
            self.clock.time("worker lost", || {
                core.on_worker_lost(lost, "simulated", comm)
            });
        }
        self.add_worker();
        self.schedule();
        self.deliver();
    }
}

fn independent(n: usize) -> (Vec<TaskSpec>, Vec<String>) {
    let specs: Vec<TaskSpec> = (0..n)
        .map(|i| TaskSpec::new(format!("ind-{i}"), ExecutorKind::Noop, vec![]))
        .collect();
    let wants = specs.iter().map(|s| s.key.clone()).collect();
    (specs, wants)
}

/// A binary reduction over `leaves` leaves; only the root is wanted.
fn tree(leaves: usize) -> (Vec<TaskSpec>, Vec<String>) {
    let mut specs: Vec<TaskSpec> = (0..leaves)
        .map(|i| TaskSpec::new(format!("t0-{i}"), ExecutorKind::Noop, vec![]))
        .collect();
    let mut level: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let next: Vec<String> = level
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let key = format!("t{depth}-{i}");
                specs.push(TaskSpec::new(key.clone(), ExecutorKind::Sum, pair.to_vec()));
                key
            })
            .collect();
        level = next;
    }
    (specs, level)
}

/// Register `workers` workers, then compute the graph twice on the same core: the first
/// time as a fresh scheduler meets it (its tables and the workers' sets grow, its memory is
/// new to the process), then again as a scheduler that has run graphs before. One line each.
fn run(workload: &str, workers: usize, specs: Vec<TaskSpec>, wants: Vec<String>) {
    let mut sim = Sim::new(CoreConfig::default());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ workers as u64);
    let client = sim.core.on_client_added();
    let reg_start = sim.clock.busy;
    for _ in 0..workers {
        sim.add_worker();
        sim.schedule();
    }
    let registration = sim.clock.busy - reg_start;
    let slowest_registration = sim.clock.slowest;
    for (request, graph) in [(1, "first"), (2, "again")] {
        let figures = sim.compute(client, request, &mut rng, specs.clone(), wants.clone());
        println!(
            "{{\"workload\": \"{workload}\", \"graph\": \"{graph}\", \"workers\": {workers}, {figures}, \"registration_ms\": {:.3}, \"slowest_registration_ms\": {:.3}}}",
            registration.as_secs_f64() * 1e3,
            slowest_registration.as_secs_f64() * 1e3,
        );
    }
}

impl Sim {
    /// Submit a graph, run it to the end and release it: its figures as JSON fields.
    fn compute(
        &mut self,
        client: ClientId,
        request: u64,
        rng: &mut Rng,
        specs: Vec<TaskSpec>,
        wants: Vec<String>,
    ) -> String {
        let n = specs.len();
        self.clock.slowest = Duration::ZERO;
        self.clock.by_call.clear();
        let (busy_start, calls_start) = (self.clock.busy, self.clock.calls);
        let (decisions_start, updates_start) = (self.comm.decisions, self.comm.updates);
        let remote_start = self.comm.remote_inputs;
        let core = &mut self.core;
        let submitted = wants.clone();
        self.clock.time("submit", || {
            core.on_submit_request(client, request, specs, submitted, Vec::new())
        });
        // Accepting the graph in slices, and the first placements.
        let replies = self.comm.replies;
        self.schedule_as("accept");
        assert_eq!(self.comm.replies, replies + 1, "the graph was accepted");
        self.deliver();
        let mut rounds = 0u64;
        while self.comm.updates - updates_start < wants.len() {
            rounds += 1;
            self.round(rng);
            if rounds.is_multiple_of(CHURN_EVERY) && rounds / CHURN_EVERY <= CHURN_MAX {
                self.churn(rng);
            }
            assert!(rounds < 10_000_000, "the simulation makes no progress");
        }
        let compute = self.clock.busy - busy_start;
        let calls = self.clock.calls - calls_start;
        let decisions = self.comm.decisions - decisions_start;
        let remote_inputs = self.comm.remote_inputs - remote_start;
        let by_call: Vec<String> = self
            .clock
            .by_call
            .iter()
            .map(|(what, took, calls)| format!("\"{what}\": [{:.4}, {calls}]", took.as_secs_f64()))
            .collect();
        let (slowest, slowest_what) = (self.clock.slowest, self.clock.slowest_what);
        let (core, comm) = (&mut self.core, &mut self.comm);
        self.clock
            .time("release", || core.on_release_keys(client, wants, comm));
        self.schedule();
        assert!(
            self.core.task_count() == 0,
            "everything released at the end"
        );
        format!(
            "\"tasks\": {n}, \"rounds\": {rounds}, \"core_seconds\": {:.4}, \"tasks_per_second\": {:.0}, \"decisions_per_second\": {:.0}, \"slowest_call_ms\": {:.3}, \"slowest_call\": \"{slowest_what}\", \"remote_inputs\": {remote_inputs}, \"calls\": {calls}, \"seconds_by_call\": {{{}}}",
            compute.as_secs_f64(),
            n as f64 / compute.as_secs_f64(),
            decisions as f64 / compute.as_secs_f64(),
            slowest.as_secs_f64() * 1e3,
            by_call.join(", "),
        )
    }
}

/// Heap bytes the core holds per queued task: N independent tasks, no workers.
fn memory(n: usize) {
    let mut core = Core::new(CoreConfig::default());
    let mut comm = SimComm::default();
    let client = core.on_client_added();
    let (specs, wants) = independent(n);
    let before = LIVE.load(Ordering::Relaxed);
    let specs_bytes = {
        // What the submission itself occupies, freed by the core after insertion.
        let keys: usize = specs.iter().map(|s| s.key.capacity()).sum::<usize>();
        let wants_bytes: usize = wants.iter().map(|s| s.capacity()).sum::<usize>();
        keys + wants_bytes
            + (specs.capacity() * std::mem::size_of::<TaskSpec>())
            + (wants.capacity() * std::mem::size_of::<String>())
    };
    core.on_submit(client, specs, wants, &[], &mut comm)
        .expect("valid graph");
    while core.schedule(&mut comm) {}
    let after = LIVE.load(Ordering::Relaxed);
    let held = (after + specs_bytes).saturating_sub(before);
    println!(
        "{{\"workload\": \"memory\", \"tasks\": {n}, \"bytes_per_task\": {:.0}, \"tasks_held\": {}}}",
        held as f64 / n as f64,
        core.task_count()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let memory_tasks: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let workloads = args
        .next()
        .unwrap_or_else(|| "independent,tree".to_string());
    let chosen = |name: &str| workloads.split(',').any(|w| w == name);
    if chosen("independent") {
        let (specs, wants) = independent(n);
        run("independent", workers, specs, wants);
    }
    if chosen("tree") {
        let (specs, wants) = tree(n);
        run("tree", workers, specs, wants);
    }
    if memory_tasks > 0 {
        memory(memory_tasks);
    }
}
