//! The worker's decisions, as plain state and event functions: what to run and how many
//! tasks to hand the executor threads at once, what to fetch and when, when to spill, pause
//! or restart, when the scheduler counts as gone. No I/O and no clock: time and memory
//! samples are passed in, effects go through [`WorkerComm`], and the session (sockets,
//! timers, threads) calls one `on_*` function per event and then [`WorkerCore::settle`].

use super::comm::WorkerComm;
use super::fetch::FetchDone;
use super::fetched::{threshold_fractions, Fetched};
use super::local::{Actions, Local};
use super::memory::{assess, first_rss_threshold, ManagedStore, MemoryPolicy};
use super::options::WorkerOptions;
use super::store::{DataStore, Value};
use super::transfers::Transfers;
use crate::executor::pool::{Job, JobResult, PoolEvent};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{
    ComputeTask, FromWorker, Input, MemoryMetrics, Resource, TaskError, TaskErrorKind, TaskFailed,
    TaskFinished, ToWorker, WorkerMetrics,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work (in seconds of the average job) each executor thread may have handed over ahead.
const AHEAD_SECONDS: f64 = 0.005;
/// Most jobs handed over per thread.
pub const MAX_DEPTH: u32 = 64;
/// Shortest time between two memory samples taken as results arrive.
pub const RESULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// Shortest heartbeat interval, whatever the scheduler asks for.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// What the core needs of the worker's configuration.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// The worker's name (for logs).
    pub name: String,
    /// Executor threads.
    pub nthreads: u32,
    /// Resources the worker offers.
    pub resources: Vec<Resource>,
    /// Bytes; 0 = no memory management.
    pub memory_limit: u64,
    /// Spill, pause and terminate thresholds.
    pub memory: MemoryPolicy,
    /// The session ends after the scheduler was silent this long.
    pub death_timeout: Duration,
    /// Report every task done at once without running it (scheduler benchmarks).
    pub zero: bool,
}

impl From<&WorkerOptions> for CoreSettings {
    fn from(o: &WorkerOptions) -> Self {
        CoreSettings {
            name: o.name.clone(),
            nthreads: o.nthreads,
            resources: o.resources.clone(),
            memory_limit: o.memory_limit,
            memory: o.memory.clone(),
            death_timeout: o.death_timeout,
            zero: o.zero,
        }
    }
}

/// Why a session with the scheduler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The scheduler told the worker to stop, or it retired on its own.
    Shutdown,
    /// The connection failed or the scheduler was silent too long.
    Lost(String),
    /// RSS passed the terminate threshold (this many bytes) with no nanny to restart
    /// the process: the worker restarts itself.
    MemoryExceeded(u64),
    /// The scheduler asked for a restart (`Client.restart`).
    Restart,
}

/// One session's worth of worker state.
pub struct WorkerCore {
    settings: CoreSettings,
    store: Arc<ManagedStore>,
    /// The task bookkeeping, from registration on.
    local: Option<Local>,
    /// When the scheduler was last heard from.
    last_heard: Instant,
    /// Data addresses of the other workers.
    peers: FxHashMap<WorkerId, String>,
    /// Moving average of how long a job runs, in seconds (`None` before the first).
    avg_run: Option<f64>,
    /// Jobs per thread handed to the executor at once.
    depth: u32,
    /// Memory is above the pause threshold: start nothing, fetch nothing.
    paused: bool,
    /// Managed memory was above the spill target at the last result or sample.
    over_target: bool,
    /// Inputs to fetch, bounded in bytes in flight, held back while paused.
    transfers: Transfers,
    /// Results fetched from peers, by transport.
    fetched: Fetched,
    /// When memory was last sampled (also sampled between timer ticks as results arrive).
    last_sample: Instant,
}

impl WorkerCore {
    /// A session starting at `now`, keeping results in `store`.
    pub fn new(settings: CoreSettings, store: Arc<ManagedStore>, now: Instant) -> Self {
        let transfers = Transfers::new(Transfers::budget_for(settings.memory_limit));
        WorkerCore {
            settings,
            store,
            local: None,
            last_heard: now,
            peers: FxHashMap::default(),
            avg_run: None,
            depth: 1,
            paused: false,
            over_target: false,
            transfers,
            fetched: Fetched::default(),
            last_sample: now,
        }
    }

    /// When the scheduler was last heard from.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Whether new tasks and transfers are held back (memory above the pause threshold).
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Jobs per thread handed to the executor threads at once.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The task bookkeeping (`None` before registration).
    pub fn local(&self) -> Option<&Local> {
        self.local.as_ref()
    }

    /// One message from the scheduler, at `now`; `Some` ends the session.
    pub fn on_message(
        &mut self,
        now: Instant,
        msg: ToWorker,
        frames: Vec<Bytes>,
        comm: &mut impl WorkerComm,
    ) -> Option<SessionEnd> {
        self.last_heard = now;
        match msg {
            ToWorker::Registered {
                id,
                heartbeat_ms,
                peers,
            } => self.on_registered(id, Duration::from_millis(heartbeat_ms), peers, comm),
            ToWorker::Compute(tasks) => self.on_compute(tasks, frames, comm),
            ToWorker::Steal(ids) => self.on_steal(ids, comm),
            ToWorker::Release(ids) => self.on_release(ids),
            ToWorker::Replicate(inputs) => self.on_replicate(inputs, comm),
            ToWorker::PeerJoined(id, address) => {
                self.peers.insert(id, address);
            }
            ToWorker::PeerLeft(id) => {
                let address = self.peers.remove(&id);
                comm.peer_left(id, address.as_deref());
            }
            ToWorker::Heartbeat => {}
            ToWorker::Shutdown => {
                tracing::info!("shutdown requested by the scheduler");
                return Some(SessionEnd::Shutdown);
            }
            ToWorker::Restart => {
                tracing::info!("restart requested by the scheduler: dropping every result");
                return Some(SessionEnd::Restart);
            }
            ToWorker::HasPlugins => comm.has_plugins(),
        }
        None
    }

    fn on_registered(
        &mut self,
        id: WorkerId,
        heartbeat: Duration,
        peers: Vec<(WorkerId, String)>,
        comm: &mut impl WorkerComm,
    ) {
        tracing::info!(worker = %id, name = %self.settings.name, "registered with the scheduler");
        comm.registered(id, heartbeat.max(MIN_HEARTBEAT));
        self.peers = peers.into_iter().collect();
        let mut local = Local::new(id, self.settings.nthreads, self.settings.resources.clone());
        local.set_depth(self.depth);
        self.local = Some(local);
    }

    fn on_compute(
        &mut self,
        tasks: Vec<ComputeTask>,
        frames: Vec<Bytes>,
        comm: &mut impl WorkerComm,
    ) {
        let Some(local) = self.local.as_mut() else {
            return;
        };
        if self.settings.zero {
            for t in tasks {
                comm.finished(TaskFinished { id: t.id, size: 0 });
            }
            return;
        }
        let mut actions = Actions::default();
        for mut task in tasks {
            let payload = task
                .payload
                .take()
                .and_then(|i| frames.get(i as usize).cloned());
            local.accept(task, payload, self.store.as_ref(), &mut actions);
        }
        self.act(actions, comm);
    }

    fn on_steal(&mut self, ids: Vec<TaskId>, comm: &mut impl WorkerComm) {
        let Some(local) = self.local.as_mut() else {
            return;
        };
        let replies = ids
            .into_iter()
            .map(|id| (id, local.remove_queued(id, self.store.as_ref())))
            .collect();
        comm.send(FromWorker::StealReply(replies));
    }

    fn on_release(&mut self, ids: Vec<TaskId>) {
        let Some(local) = self.local.as_mut() else {
            return;
        };
        for id in ids {
            if !local.remove_queued(id, self.store.as_ref()) && local.running.contains_key(&id) {
                local.discard.insert(id);
            }
            if !local.replicas.contains_key(&id) {
                self.store.remove(id);
            }
        }
    }

    fn on_replicate(&mut self, inputs: Vec<Input>, comm: &mut impl WorkerComm) {
        let Some(local) = self.local.as_mut() else {
            return;
        };
        let mut actions = Actions::default();
        let held = local.replicate(inputs, self.store.as_ref(), &mut actions);
        if !held.is_empty() {
            comm.send(FromWorker::Replicated(held));
        }
        self.act(actions, comm);
    }

    /// A batch fetched from a peer (or failed to be).
    pub fn on_fetch_done(&mut self, done: FetchDone, comm: &mut impl WorkerComm) {
        let Some(local) = self.local.as_mut() else {
            return;
        };
        let mut actions = Actions::default();
        let mut kept = Vec::new();
        self.fetched.add(done.transport, &done.found);
        for (id, value) in done.found {
            self.transfers.done(id);
            if local.fetched(id, value.into(), self.store.as_ref()) {
                kept.push(id);
            }
        }
        if !kept.is_empty() {
            comm.send(FromWorker::Replicated(kept));
        }
        for id in done.failed {
            self.transfers.done(id);
            local.fetch_failed(id, self.store.as_ref(), &mut actions);
        }
        self.act(actions, comm);
    }

    /// What the executor threads reported.
    pub fn on_pool_event(&mut self, event: PoolEvent, comm: &mut impl WorkerComm) {
        match event {
            PoolEvent::Done(result) => self.on_task_finished(result, comm),
            PoolEvent::Seceded(id) => {
                if let Some(local) = self.local.as_mut() {
                    local.secede(id);
                }
            }
            PoolEvent::Rejoined(id) => {
                if let Some(local) = self.local.as_mut() {
                    local.rejoin(id);
                }
            }
        }
    }

    /// A job ended: adapt the work depth, keep the result and report it.
    pub fn on_task_finished(&mut self, result: JobResult, comm: &mut impl WorkerComm) {
        if self.local.is_none() {
            return;
        }
        let run = result.elapsed.as_secs_f64();
        let avg = self.avg_run.map_or(run, |avg| 0.8 * avg + 0.2 * run);
        self.avg_run = Some(avg);
        // Short tasks: hand several per thread over at once (bounded to a few ms of work).
        // The depth shrinks at once but grows at most twofold per result: one fast task
        // must not hand a batch of long ones to this worker, out of reach of stealing.
        let mut target = (AHEAD_SECONDS / avg.max(1e-7)).clamp(1.0, f64::from(MAX_DEPTH)) as u32;
        if self.memory_tight() {
            // Under memory pressure, start a task only once a thread is free: results
            // handed over ahead would land in memory before the next sample.
            target = 1;
        }
        self.depth = target.min(self.depth.saturating_mul(2)).max(1);
        let Some(local) = self.local.as_mut() else {
            return;
        };
        local.set_depth(self.depth);
        if !local.finished(result.id, self.store.as_ref()) {
            return;
        }
        match result
            .result
            .and_then(|value| self.keep(result.id, value, comm))
        {
            Ok(size) => comm.finished(TaskFinished {
                id: result.id,
                size,
            }),
            Err(error) => comm.failed(TaskFailed {
                id: result.id,
                error,
            }),
        }
    }

    /// Whether memory should be sampled now, between timer ticks, as results arrive:
    /// always while memory is tight, otherwise at most every [`RESULT_SAMPLE_INTERVAL`].
    pub fn sample_due(&self, now: Instant) -> bool {
        self.settings.memory_limit > 0
            && (self.memory_tight()
                || now.saturating_duration_since(self.last_sample) >= RESULT_SAMPLE_INTERVAL)
    }

    /// Whether `rss` is over a threshold this worker acts on, so that memory the
    /// allocators keep for reuse should be handed back and RSS read again first.
    pub fn rss_over_a_threshold(&self, rss: u64) -> bool {
        first_rss_threshold(self.settings.memory_limit, &self.settings.memory.thresholds)
            .is_some_and(|first| rss > first)
    }

    /// A memory sample (the process's RSS) at `now`: spill, pause or resume; `Some` ends
    /// the session to restart the worker.
    pub fn on_memory_sample(
        &mut self,
        now: Instant,
        rss: u64,
        comm: &mut impl WorkerComm,
    ) -> Option<SessionEnd> {
        self.last_sample = now;
        let limit = self.settings.memory_limit;
        let managed = self.store.managed();
        self.over_target = limit > 0 && managed > self.target_bytes();
        let verdict = assess(limit, &self.settings.memory.thresholds, rss, managed);
        if let Some(goal) = verdict.evict_to {
            self.evict(goal, comm);
        }
        if verdict.pause != self.paused {
            self.paused = verdict.pause;
            comm.send(FromWorker::Paused(verdict.pause));
            if verdict.pause {
                tracing::warn!(
                    rss,
                    limit,
                    "memory above the pause threshold: no new tasks or transfers until it falls"
                );
            } else {
                tracing::info!(
                    rss,
                    limit,
                    "memory back under the pause threshold: resuming"
                );
                self.dispatch_fetches(comm);
            }
        }
        (verdict.terminate && !self.settings.memory.supervised)
            .then_some(SessionEnd::MemoryExceeded(rss))
    }

    /// Time for a heartbeat, with the process's RSS.
    pub fn on_heartbeat(&mut self, rss: u64, comm: &mut impl WorkerComm) {
        comm.send(FromWorker::Heartbeat(self.metrics(rss)));
    }

    /// The clock ticked: `Some` if the scheduler has been silent past the death timeout.
    pub fn on_tick(&mut self, now: Instant) -> Option<SessionEnd> {
        let timeout = self.settings.death_timeout;
        (now.saturating_duration_since(self.last_heard) > timeout)
            .then(|| SessionEnd::Lost(format!("the scheduler was silent for {timeout:?}")))
    }

    /// The worker leaves on its own: tell the scheduler.
    pub fn on_retire(&mut self, comm: &mut impl WorkerComm) -> SessionEnd {
        comm.send(FromWorker::Retiring);
        SessionEnd::Shutdown
    }

    /// After every event: start what may run and report results that moved to or from
    /// disk.
    pub fn settle(&mut self, comm: &mut impl WorkerComm) {
        self.start_ready(comm);
        let moves = self.store.take_moves();
        for on_disk in [true, false] {
            let ids: Vec<TaskId> = moves
                .iter()
                .filter(|m| m.1 == on_disk)
                .map(|m| m.0)
                .collect();
            if !ids.is_empty() {
                comm.send(FromWorker::Spilled { ids, on_disk });
            }
        }
    }

    /// Queue the fetches `Local` asked for, start what the budget allows, and report
    /// inputs no holder could deliver.
    fn act(&mut self, actions: Actions, comm: &mut impl WorkerComm) {
        self.transfers.push(actions.fetch);
        self.dispatch_fetches(comm);
        Self::report_missing(actions.missing, comm);
    }

    fn report_missing(missing: Vec<(TaskId, TaskId, Vec<WorkerId>)>, comm: &mut impl WorkerComm) {
        for (task, missing, holders) in missing {
            comm.send(FromWorker::MissingData {
                task,
                missing,
                holders,
            });
        }
    }

    /// Start the fetches the transfer budget allows, batched per peer. A holder whose
    /// address is unknown fails at once: the next holder is tried.
    fn dispatch_fetches(&mut self, comm: &mut impl WorkerComm) {
        loop {
            let mut unreachable = Vec::new();
            for (peer, ids) in self.transfers.start(self.paused) {
                match self.peers.get(&peer) {
                    Some(address) => comm.fetch(peer, address, ids),
                    None => unreachable.extend(ids),
                }
            }
            let Some(local) = self.local.as_mut().filter(|_| !unreachable.is_empty()) else {
                return;
            };
            let mut actions = Actions::default();
            for id in unreachable {
                self.transfers.done(id);
                local.fetch_failed(id, self.store.as_ref(), &mut actions);
            }
            self.transfers.push(actions.fetch);
            Self::report_missing(actions.missing, comm);
        }
    }

    /// Managed memory is above the spill target (or the worker is paused).
    fn memory_tight(&self) -> bool {
        self.paused || self.over_target
    }

    /// Managed bytes at the spill target (0.6 of the limit when spilling is off).
    fn target_bytes(&self) -> u64 {
        let target = self.settings.memory.thresholds.target.unwrap_or(0.6);
        (self.settings.memory_limit as f64 * target) as u64
    }

    /// Spill in the background until managed memory is at most `goal` (one round at a time).
    fn evict(&self, goal: u64, comm: &mut impl WorkerComm) {
        if self.store.can_spill() && self.store.start_eviction() {
            comm.spill(goal);
        }
    }

    /// Keep a new result: spill at once what alone exceeds the memory limit, and start
    /// spilling when managed memory passes the target. `Err` if the result can be held
    /// neither in memory nor on disk.
    fn keep(
        &mut self,
        id: TaskId,
        value: Value,
        comm: &mut impl WorkerComm,
    ) -> Result<u64, TaskError> {
        let size = value.size();
        let limit = self.settings.memory_limit;
        self.store.put(id, value);
        if limit > 0 && size > limit {
            if let Err(e) = self.store.spill_one(id) {
                self.store.remove(id);
                return Err(TaskError {
                    key: String::new(),
                    kind: TaskErrorKind::MemoryError,
                    message: format!("the result is {size} bytes, more than this worker's memory limit of {limit} bytes, and could not be spilled to disk ({e}); raise --memory-limit or split the task"),
                    traceback: None,
                    exception: Vec::new(),
                });
            }
        }
        if limit > 0 {
            let goal = self.target_bytes();
            self.over_target = self.store.managed() > goal;
            if self.over_target && self.settings.memory.thresholds.target.is_some() {
                self.evict(goal, comm);
            }
        }
        Ok(size)
    }

    /// Hand ready tasks to the executor threads while slots are free (none while paused).
    fn start_ready(&mut self, comm: &mut impl WorkerComm) {
        if self.paused {
            return;
        }
        let Some(local) = self.local.as_mut() else {
            return;
        };
        while let Some((id, task)) = local.next_to_run() {
            let inputs: Option<Vec<Value>> =
                task.inputs.iter().map(|i| self.store.get(*i)).collect();
            comm.started(id);
            match inputs {
                Some(inputs) => comm.run(Job {
                    id,
                    kind: task.kind,
                    payload: task.payload,
                    inputs,
                }),
                None => {
                    local.finished(id, self.store.as_ref());
                    comm.failed(TaskFailed {
                        id,
                        error: TaskError {
                            key: String::new(),
                            kind: TaskErrorKind::MissingData,
                            message: "an input vanished from the worker before the task started"
                                .into(),
                            traceback: None,
                            exception: Vec::new(),
                        },
                    });
                }
            }
        }
    }

    /// The figures a heartbeat carries.
    pub fn metrics(&self, rss: u64) -> WorkerMetrics {
        let (stored_count, stored_bytes) = self.store.usage();
        let local = self.local.as_ref();
        WorkerMetrics {
            rss,
            stored_bytes,
            stored_count,
            executing: local.map_or(0, |l| l.running.len() as u32),
            queued: local.map_or(0, |l| l.queued() as u32),
            memory: MemoryMetrics {
                paused: self.paused,
                thresholds: threshold_fractions(&self.settings.memory.thresholds),
                ..self.store.metrics()
            },
            transfers: self.fetched.metrics(),
        }
    }

    /// Check every invariant of the state; panics naming the first one broken.
    pub fn sanity_check(&self) {
        assert!(
            (1..=MAX_DEPTH).contains(&self.depth),
            "depth {} out of range",
            self.depth
        );
        self.transfers.sanity_check();
        let Some(local) = &self.local else {
            return;
        };
        local.sanity_check(self.store.as_ref());
        assert_eq!(
            local.slots,
            local.nthreads.saturating_mul(self.depth),
            "slots follow the depth"
        );
    }
}
