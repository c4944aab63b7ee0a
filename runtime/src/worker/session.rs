//! The worker's life: connect to the scheduler, register, run the event loop, and on a
//! lost connection try again until the death timeout.

use super::data_server;
use super::fetch::{FetchDone, PeerFetcher};
use super::local::{Actions, Local};
use super::memory::{assess, ManagedStore};
use super::options::{SchedulerSource, WorkerOptions};
use super::scratch::{self, WorkerDir};
use super::spill::SpillOptions;
use super::store::{DataStore, Value};
use super::transfers::Transfers;
use crate::executor::builtin;
use crate::executor::pool::{ExecutorPool, Job, JobResult, PoolEvent, Runner};
use crate::net::{connect, format_address, spawn_writer, Outbox};
use crate::scheduler_file;
use anyhow::Context;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::auth::Role;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{
    FromWorker, Registration, TaskFailed, TaskFinished, ToWorker, WorkerMetrics,
};
use shoal_comm::transport::{Listener, Service};
use shoal_comm::transport::{MessageRead, TcpReader};
use shoal_comm::{RawMessage, Secret};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The scheduler told it to stop, or it was asked to stop locally.
    Shutdown,
    /// The scheduler was unreachable for longer than the death timeout.
    SchedulerLost(String),
}

/// Why a session with the scheduler ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
    /// RSS passed the terminate threshold (this many bytes) with no nanny to restart
    /// the process: the worker restarts itself.
    MemoryExceeded(u64),
    /// The scheduler asked for a restart (`Client.restart`).
    Restart,
}

/// Run a worker until it is told to stop, `stop` resolves, or the scheduler is gone for
/// longer than the death timeout.
///
/// # Errors
/// The data server cannot bind.
pub async fn run_worker(
    options: WorkerOptions,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<WorkerExit> {
    let listener = TcpListener::bind((options.host.as_str(), 0))
        .await
        .with_context(|| format!("cannot start the data server on {}", options.host))?;
    if options.memory_limit > 0 {
        // Reused receive buffers are unmanaged memory: a tenth of the limit at most, as for
        // transfers in flight.
        shoal_comm::buffer::set_pool_limit((options.memory_limit / 10) as usize);
    }
    let connector = if options.data_over_mpi {
        crate::net::data_connector()
    } else {
        shoal_comm::transport::Connector::tcp()
    };
    let tcp_address = format_address(listener.local_addr()?);
    let listener = Listener::new(listener, &connector, Service::Data)?;
    let data_address = listener.address().to_string();
    // Declared before the store: dropped after it, removing the spill directory last.
    let (_scratch, store) = open_store(&options)?;
    tokio::pin!(stop);
    let mut last_contact = Instant::now();
    let mut data_server: Option<(Secret, tokio::task::JoinHandle<()>)> = None;
    let mut attempt_error = String::new();
    let mut listener = Some(listener);
    loop {
        if last_contact.elapsed() > options.death_timeout {
            let reason = format!(
                "no scheduler for {:?} (--death-timeout): {attempt_error}",
                options.death_timeout
            );
            return Ok(WorkerExit::SchedulerLost(reason));
        }
        let connected = tokio::select! {
            r = connect_scheduler(&options, last_contact) => r,
            () = &mut stop => return Ok(WorkerExit::Shutdown),
        };
        let (reader, writer, secret, scheduler_address) = match connected {
            Ok(c) => c,
            Err(e) => {
                attempt_error = format!("{e:#}");
                tracing::debug!(error = %attempt_error, "cannot reach the scheduler; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {},
                    () = &mut stop => return Ok(WorkerExit::Shutdown),
                }
                continue;
            }
        };
        // The data server authenticates with the cluster secret of the current scheduler.
        if data_server.as_ref().is_none_or(|(s, _)| *s != secret) {
            let listener = match listener.take() {
                Some(l) => l,
                None => {
                    if let Some((_, h)) = data_server.take() {
                        h.abort();
                    }
                    let tcp = TcpListener::bind(tcp_address.trim_start_matches("tcp://")).await?;
                    Listener::new(tcp, &connector, Service::Data)?
                }
            };
            let handle = tokio::spawn(data_server::serve(
                listener,
                store.clone() as Arc<dyn DataStore>,
                secret.clone(),
                options.name.clone(),
            ));
            data_server = Some((secret.clone(), handle));
        }
        super::identity::set(super::identity::WorkerIdentity {
            name: options.name.clone(),
            data_address: data_address.clone(),
            scheduler_address,
            secret: secret.clone(),
            nthreads: options.nthreads,
        });
        let mut session = Session::new(&options, store.clone(), secret, &data_address);
        let end = session.run(reader, writer, &mut stop).await;
        last_contact = session.last_heard;
        match end {
            SessionEnd::Shutdown => return Ok(WorkerExit::Shutdown),
            SessionEnd::Lost(reason) => {
                tracing::warn!(%reason, "lost the scheduler; reconnecting until the death timeout");
                attempt_error = reason;
                // Results held for the old session are meaningless to a new one.
                drop(session);
                store.clear();
            }
            SessionEnd::MemoryExceeded(_) | SessionEnd::Restart => {
                if let SessionEnd::MemoryExceeded(rss) = end {
                    tracing::error!(
                        worker = %options.name,
                        pid = std::process::id(),
                        rss,
                        limit = options.memory_limit,
                        "memory above the terminate threshold: restarting the worker; the scheduler recomputes its results elsewhere"
                    );
                }
                // A fresh start in this process: no results, memory handed back.
                drop(session);
                store.clear();
                crate::scheduler::server::release_freed_memory();
                last_contact = Instant::now();
            }
        }
    }
}

/// The store for results: spilling into a fresh directory on node-local storage when a
/// memory limit and a spill threshold are set, in memory only otherwise.
fn open_store(options: &WorkerOptions) -> anyhow::Result<(Option<WorkerDir>, Arc<ManagedStore>)> {
    let policy = &options.memory;
    if options.memory_limit == 0 || !policy.thresholds.spills() {
        return Ok((None, Arc::new(ManagedStore::in_memory())));
    }
    let (base, filesystem) = scratch::choose_base(
        options.local_directory.as_deref(),
        policy.allow_network_spill,
    )?;
    let dir = WorkerDir::create(&base, &options.name)?;
    let spill_options = SpillOptions {
        compress: policy.compress,
        max_spill: policy.max_spill,
        ..SpillOptions::default()
    };
    let store = ManagedStore::spilling(&dir.spill_dir(), spill_options)
        .with_context(|| format!("cannot spill into {}", dir.path().display()))?;
    tracing::info!(directory = %dir.path().display(), %filesystem, "results spill to node-local storage");
    Ok((Some(dir), Arc::new(store)))
}

async fn connect_scheduler(
    options: &WorkerOptions,
    last_contact: Instant,
) -> anyhow::Result<(TcpReader, shoal_comm::transport::TcpWriter, Secret, String)> {
    let remaining = options.death_timeout.saturating_sub(last_contact.elapsed());
    let (address, secret) = match &options.scheduler {
        SchedulerSource::Address { address, secret } => (address.clone(), secret.clone()),
        SchedulerSource::File(path) => {
            let path = path.clone();
            let file = tokio::task::spawn_blocking(move || {
                scheduler_file::read(&path, remaining.min(Duration::from_secs(1)))
            })
            .await??;
            let secret = file.secret(&path_of(options))?;
            (file.address, secret)
        }
    };
    let timeout = remaining.clamp(Duration::from_millis(100), Duration::from_secs(10));
    let (reader, writer, _) =
        connect(&address, &secret, Role::Worker, &options.name, timeout).await?;
    Ok((reader, writer, secret, address))
}

fn path_of(options: &WorkerOptions) -> std::path::PathBuf {
    match &options.scheduler {
        SchedulerSource::File(p) => p.clone(),
        SchedulerSource::Address { .. } => Default::default(),
    }
}

struct Session<'a> {
    options: &'a WorkerOptions,
    store: Arc<ManagedStore>,
    secret: Secret,
    data_address: String,
    last_heard: Instant,
    peers: FxHashMap<WorkerId, String>,
    fetchers: FxHashMap<WorkerId, PeerFetcher>,
    out_started: Vec<TaskId>,
    out_finished: Vec<TaskFinished>,
    out_failed: Vec<TaskFailed>,
    out_other: Vec<FromWorker>,
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
    /// When memory was last sampled (also sampled between timer ticks as results arrive).
    last_sample: Instant,
}

/// Work (in seconds of the average job) each executor thread may have handed over ahead.
const AHEAD_SECONDS: f64 = 0.005;
/// Most jobs handed over per thread.
const MAX_DEPTH: u32 = 64;
/// Shortest time between two memory samples taken as results arrive.
const RESULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

impl<'a> Session<'a> {
    fn new(
        options: &'a WorkerOptions,
        store: Arc<ManagedStore>,
        secret: Secret,
        data_address: &str,
    ) -> Self {
        Session {
            options,
            store,
            secret,
            data_address: data_address.to_string(),
            last_heard: Instant::now(),
            peers: FxHashMap::default(),
            fetchers: FxHashMap::default(),
            out_started: Vec::new(),
            out_finished: Vec::new(),
            out_failed: Vec::new(),
            out_other: Vec::new(),
            avg_run: None,
            depth: 1,
            paused: false,
            over_target: false,
            transfers: Transfers::new(Transfers::budget_for(options.memory_limit)),
            last_sample: Instant::now(),
        }
    }

    async fn run(
        &mut self,
        reader: TcpReader,
        writer: shoal_comm::transport::TcpWriter,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> SessionEnd {
        let (outbox, writer_task) = spawn_writer(writer, "scheduler".into());
        let options = self.options;
        let registration = Registration {
            name: options.name.clone(),
            nthreads: options.nthreads,
            memory_limit: options.memory_limit,
            resources: options.resources.clone(),
            data_address: self.data_address.clone(),
            // The machine's name (the address says which interface): a pid is found by it.
            host: crate::sys::hostname(),
            pid: std::process::id(),
            executors: options.executors.clone(),
        };
        if send(&outbox, &FromWorker::Register(registration)).is_err() {
            return SessionEnd::Lost("connection closed during registration".into());
        }
        let (from_scheduler, mut inbox) = mpsc::unbounded_channel();
        let reader_task = tokio::spawn(read_scheduler(reader, from_scheduler));
        let (results_tx, mut results) = mpsc::unbounded_channel::<PoolEvent>();
        let runner: Runner = options
            .runner
            .clone()
            .unwrap_or_else(|| Arc::new(builtin::run_job));
        let pool = ExecutorPool::start(options.nthreads, runner, results_tx);
        let (fetch_tx, mut fetched) = mpsc::unbounded_channel::<FetchDone>();
        let mut local: Option<Local> = None;
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        let mut death_check = tokio::time::interval(Duration::from_millis(200));
        let mut memory_check = tokio::time::interval(options.memory.monitor_interval);
        memory_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let manage_memory = options.memory_limit > 0;
        let end = loop {
            tokio::select! {
                msg = inbox.recv() => {
                    let Some(msg) = msg else { break SessionEnd::Lost("connection to the scheduler closed".into()) };
                    self.last_heard = Instant::now();
                    let mut next = Some(msg);
                    while let Some(msg) = next {
                        match msg {
                            Err(reason) => return self.finish(reader_task, SessionEnd::Lost(reason)),
                            Ok((msg, frames)) => {
                                if let Some(end) = self.on_scheduler(msg, frames, &mut local, &mut heartbeat, &fetch_tx) {
                                    return self.finish(reader_task, end);
                                }
                            }
                        }
                        next = inbox.try_recv().ok();
                    }
                }
                Some(event) = results.recv() => {
                    if let Some(local) = local.as_mut() {
                        self.on_pool_event(event, local);
                        while let Ok(event) = results.try_recv() {
                            self.on_pool_event(event, local);
                        }
                    }
                    // Results can pile up faster than the timer ticks: sample now and then.
                    if manage_memory
                        && (self.memory_tight()
                            || self.last_sample.elapsed() >= RESULT_SAMPLE_INTERVAL)
                    {
                        if let Some(end) = self.on_memory_sample(&fetch_tx) {
                            break end;
                        }
                    }
                }
                Some(done) = fetched.recv() => {
                    if let Some(local) = local.as_mut() {
                        self.on_fetched(done, local, &fetch_tx);
                    }
                }
                _ = heartbeat.tick() => {
                    let metrics = self.metrics(local.as_ref());
                    self.out_other.push(FromWorker::Heartbeat(metrics));
                }
                _ = memory_check.tick(), if manage_memory => {
                    if let Some(end) = self.on_memory_sample(&fetch_tx) {
                        break end;
                    }
                }
                _ = death_check.tick() => {
                    if self.last_heard.elapsed() > options.death_timeout {
                        break SessionEnd::Lost(format!("the scheduler was silent for {:?}", options.death_timeout));
                    }
                }
                () = stop.as_mut() => {
                    // Leaving on our own: say so, and let the writer deliver it before closing.
                    self.out_other.push(FromWorker::Retiring);
                    let _ = self.flush(&outbox);
                    drop(outbox);
                    let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
                    return self.finish(reader_task, SessionEnd::Shutdown);
                }
            }
            if let Some(local) = local.as_mut() {
                self.start_ready(local, &pool);
            }
            if self.flush(&outbox).is_err() {
                break SessionEnd::Lost("connection to the scheduler closed".into());
            }
        };
        self.finish(reader_task, end)
    }

    fn finish(&mut self, reader_task: tokio::task::JoinHandle<()>, end: SessionEnd) -> SessionEnd {
        reader_task.abort();
        end
    }

    /// Handle one scheduler message; `Some` ends the session.
    fn on_scheduler(
        &mut self,
        msg: ToWorker,
        frames: Vec<Bytes>,
        local: &mut Option<Local>,
        heartbeat: &mut tokio::time::Interval,
        fetch_tx: &mpsc::UnboundedSender<FetchDone>,
    ) -> Option<SessionEnd> {
        let store = self.store.clone();
        match msg {
            ToWorker::Registered {
                id,
                heartbeat_ms,
                peers,
            } => {
                tracing::info!(worker = %id, name = %self.options.name, "registered with the scheduler");
                if let Some(registered) = &self.options.on_registered {
                    registered();
                }
                *heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(10)));
                self.peers = peers.into_iter().collect();
                *local = Some(Local::new(
                    id,
                    self.options.nthreads,
                    self.options.resources.clone(),
                ));
            }
            ToWorker::Compute(tasks) => {
                let local = local.as_mut()?;
                if self.options.zero {
                    self.out_finished.extend(
                        tasks
                            .into_iter()
                            .map(|t| TaskFinished { id: t.id, size: 0 }),
                    );
                    return None;
                }
                let mut actions = Actions::default();
                for mut task in tasks {
                    let payload = task
                        .payload
                        .take()
                        .and_then(|i| frames.get(i as usize).cloned());
                    local.accept(task, payload, store.as_ref(), &mut actions);
                }
                self.act(actions, fetch_tx);
            }
            ToWorker::Steal(ids) => {
                let local = local.as_mut()?;
                let replies = ids
                    .into_iter()
                    .map(|id| (id, local.remove_queued(id, store.as_ref())))
                    .collect();
                self.out_other.push(FromWorker::StealReply(replies));
            }
            ToWorker::Release(ids) => {
                let local = local.as_mut()?;
                for id in ids {
                    if !local.remove_queued(id, store.as_ref()) && local.running.contains_key(&id) {
                        local.discard.insert(id);
                    }
                    if !local.replicas.contains_key(&id) {
                        store.remove(id);
                    }
                }
            }
            ToWorker::Replicate(inputs) => {
                let local = local.as_mut()?;
                let mut actions = Actions::default();
                let held = local.replicate(inputs, store.as_ref(), &mut actions);
                if !held.is_empty() {
                    self.out_other.push(FromWorker::Replicated(held));
                }
                self.act(actions, fetch_tx);
            }
            ToWorker::PeerJoined(id, address) => {
                self.peers.insert(id, address);
            }
            ToWorker::PeerLeft(id) => {
                // A peer left: tell the fabrics (MPI does not notice).
                if let Some(address) = self.peers.remove(&id) {
                    crate::net::data_connector().note_peer_lost(&address);
                }
                self.fetchers.remove(&id);
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
            ToWorker::HasPlugins => super::identity::set_has_plugins(),
        }
        None
    }

    fn act(&mut self, actions: Actions, fetch_tx: &mpsc::UnboundedSender<FetchDone>) {
        self.transfers.push(actions.fetch);
        self.dispatch_fetches(fetch_tx);
        for (task, missing, holders) in actions.missing {
            self.out_other.push(FromWorker::MissingData {
                task,
                missing,
                holders,
            });
        }
    }

    /// Start the fetches the transfer budget allows, batched per peer.
    fn dispatch_fetches(&mut self, fetch_tx: &mpsc::UnboundedSender<FetchDone>) {
        let by_peer = self.transfers.start(self.paused);
        for (peer, ids) in by_peer {
            let fetcher = match self.fetchers.get(&peer) {
                Some(f) => f,
                None => {
                    let Some(address) = self.peers.get(&peer) else {
                        let _ = fetch_tx.send(FetchDone::failed(peer, ids));
                        continue;
                    };
                    let f = PeerFetcher::start(
                        peer,
                        address.clone(),
                        self.secret.clone(),
                        self.options.name.clone(),
                        fetch_tx.clone(),
                    );
                    self.fetchers.entry(peer).or_insert(f)
                }
            };
            if let Err(ids) = fetcher.request(ids) {
                let _ = fetch_tx.send(FetchDone::failed(peer, ids));
            }
        }
    }

    fn on_fetched(
        &mut self,
        done: FetchDone,
        local: &mut Local,
        fetch_tx: &mpsc::UnboundedSender<FetchDone>,
    ) {
        let mut actions = Actions::default();
        let mut kept = Vec::new();
        for (id, value) in done.found {
            self.transfers.done(id);
            if local.fetched(id, value.into(), self.store.as_ref()) {
                kept.push(id);
            }
        }
        if !kept.is_empty() {
            self.out_other.push(FromWorker::Replicated(kept));
        }
        for id in done.failed {
            self.transfers.done(id);
            local.fetch_failed(id, self.store.as_ref(), &mut actions);
        }
        self.act(actions, fetch_tx);
    }

    fn on_pool_event(&mut self, event: PoolEvent, local: &mut Local) {
        match event {
            PoolEvent::Done(result) => self.on_result(result, local),
            PoolEvent::Seceded(id) => local.secede(id),
            PoolEvent::Rejoined(id) => local.rejoin(id),
        }
    }

    fn on_result(&mut self, result: JobResult, local: &mut Local) {
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
        local.set_depth(self.depth);
        if !local.finished(result.id, self.store.as_ref()) {
            return;
        }
        match result.result.and_then(|value| self.keep(result.id, value)) {
            Ok(size) => self.out_finished.push(TaskFinished {
                id: result.id,
                size,
            }),
            Err(error) => self.out_failed.push(TaskFailed {
                id: result.id,
                error,
            }),
        }
    }

    /// Sample memory: spill, pause or resume, or end the session to restart the worker.
    fn on_memory_sample(
        &mut self,
        fetch_tx: &mpsc::UnboundedSender<FetchDone>,
    ) -> Option<SessionEnd> {
        self.last_sample = Instant::now();
        let limit = self.options.memory_limit;
        let policy = &self.options.memory;
        let rss = crate::sys::rss_bytes().unwrap_or(0);
        let managed = self.store.managed();
        self.over_target = limit > 0 && managed > self.target_bytes();
        let verdict = assess(limit, &policy.thresholds, rss, managed);
        if let Some(goal) = verdict.evict_to {
            self.evict(goal);
        }
        if verdict.pause != self.paused {
            self.paused = verdict.pause;
            self.out_other.push(FromWorker::Paused(verdict.pause));
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
                self.dispatch_fetches(fetch_tx);
            }
        }
        (verdict.terminate && !policy.supervised).then_some(SessionEnd::MemoryExceeded(rss))
    }

    /// Managed memory is above the spill target (or the worker is paused).
    fn memory_tight(&self) -> bool {
        self.paused || self.over_target
    }

    /// Managed bytes at the spill target (0.6 of the limit when spilling is off).
    fn target_bytes(&self) -> u64 {
        let target = self.options.memory.thresholds.target.unwrap_or(0.6);
        (self.options.memory_limit as f64 * target) as u64
    }

    /// Spill in the background until managed memory is at most `goal` (one round at a time).
    fn evict(&self, goal: u64) {
        if self.store.can_spill() && self.store.start_eviction() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                if store.evict_to(goal) > 0 {
                    crate::sys::trim_heap();
                }
            });
        }
    }

    /// Keep a new result: spill at once what alone exceeds the memory limit, and start
    /// spilling when managed memory passes the target. `Err` if the result can be held
    /// neither in memory nor on disk.
    fn keep(&mut self, id: TaskId, value: Value) -> Result<u64, shoal_comm::message::TaskError> {
        let size = value.size();
        let limit = self.options.memory_limit;
        self.store.put(id, value);
        if limit > 0 && size > limit {
            if let Err(e) = self.store.spill_one(id) {
                self.store.remove(id);
                return Err(shoal_comm::message::TaskError {
                    key: String::new(),
                    kind: "MemoryError".into(),
                    message: format!("the result is {size} bytes, more than this worker's memory limit of {limit} bytes, and could not be spilled to disk ({e}); raise --memory-limit or split the task"),
                    traceback: None,
                    exception: Vec::new(),
                });
            }
        }
        if limit > 0 {
            let goal = self.target_bytes();
            self.over_target = self.store.managed() > goal;
            if self.over_target && self.options.memory.thresholds.target.is_some() {
                self.evict(goal);
            }
        }
        Ok(size)
    }

    fn start_ready(&mut self, local: &mut Local, pool: &ExecutorPool) {
        if self.paused {
            return;
        }
        while let Some((id, task)) = local.next_to_run() {
            let inputs: Option<Vec<Value>> =
                task.inputs.iter().map(|i| self.store.get(*i)).collect();
            self.out_started.push(id);
            match inputs {
                Some(inputs) => pool.submit(Job {
                    id,
                    kind: task.kind,
                    payload: task.payload,
                    inputs,
                }),
                None => {
                    local.finished(id, self.store.as_ref());
                    self.out_failed.push(TaskFailed {
                        id,
                        error: shoal_comm::message::TaskError {
                            key: String::new(),
                            kind: "MissingData".into(),
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

    fn metrics(&self, local: Option<&Local>) -> WorkerMetrics {
        let (stored_count, stored_bytes) = self.store.usage();
        WorkerMetrics {
            rss: crate::sys::rss_bytes().unwrap_or(0),
            stored_bytes,
            stored_count,
            executing: local.map_or(0, |l| l.running.len() as u32),
            queued: local.map_or(0, |l| l.queued() as u32),
            memory: shoal_comm::message::MemoryMetrics {
                paused: self.paused,
                ..self.store.metrics()
            },
        }
    }

    fn flush(&mut self, outbox: &Outbox) -> Result<(), ()> {
        if !self.out_started.is_empty() {
            send(
                outbox,
                &FromWorker::Started(std::mem::take(&mut self.out_started)),
            )?;
        }
        if !self.out_finished.is_empty() {
            send(
                outbox,
                &FromWorker::Finished(std::mem::take(&mut self.out_finished)),
            )?;
        }
        if !self.out_failed.is_empty() {
            send(
                outbox,
                &FromWorker::Failed(std::mem::take(&mut self.out_failed)),
            )?;
        }
        let moves = self.store.take_moves();
        if !moves.is_empty() {
            for on_disk in [true, false] {
                let ids: Vec<TaskId> = moves
                    .iter()
                    .filter(|m| m.1 == on_disk)
                    .map(|m| m.0)
                    .collect();
                if !ids.is_empty() {
                    self.out_other.push(FromWorker::Spilled { ids, on_disk });
                }
            }
        }
        for msg in std::mem::take(&mut self.out_other) {
            send(outbox, &msg)?;
        }
        Ok(())
    }
}

fn send(outbox: &Outbox, msg: &FromWorker) -> Result<(), ()> {
    let raw = RawMessage::encode(msg, Vec::new()).map_err(|_| ())?;
    outbox.send(raw).map_err(|_| ())
}

type Inbound = Result<(ToWorker, Vec<Bytes>), String>;

async fn read_scheduler(mut reader: TcpReader, tx: mpsc::UnboundedSender<Inbound>) {
    loop {
        let item = match reader.recv().await {
            Ok(Some(raw)) => match raw.decode::<ToWorker>() {
                Ok(msg) => Ok((msg, raw.frames)),
                Err(e) => Err(format!("the scheduler sent a malformed message: {e}")),
            },
            Ok(None) => Err("the scheduler closed the connection".into()),
            Err(e) => Err(format!("connection to the scheduler failed: {e}")),
        };
        let stop = item.is_err();
        if tx.send(item).is_err() || stop {
            return;
        }
    }
}
