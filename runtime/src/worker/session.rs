//! The worker's life: connect to the scheduler, register, run the event loop, and on a
//! lost connection try again until the death timeout.

use super::comm::WorkerComm;
use super::core::{CoreSettings, SessionEnd, WorkerCore};
use super::data_server;
use super::fetch::{FetchDone, PeerFetcher};
use super::memory::ManagedStore;
use super::options::{SchedulerSource, WorkerOptions};
use super::reconnect::Reconnect;
use super::scratch::{self, ScratchError, WorkerDir};
use super::spill::{SpillError, SpillOptions};
use super::store::DataStore;
use crate::executor::builtin;
use crate::executor::pool::{ExecutorPool, Job, PoolEvent, Runner};
use crate::net::{connect, format_address, spawn_writer, Outbox};
use crate::scheduler_file::{self, SchedulerFileError};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::auth::Role;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{FromWorker, Registration, TaskFailed, TaskFinished, ToWorker};
use shoal_comm::transport::{
    ConnectError, Connector, Listener, MessageRead, MessageWrite, Reader, Service, Writer,
};
use shoal_comm::{RawMessage, Secret};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The scheduler told it to stop, or it was asked to stop locally.
    Shutdown,
    /// The scheduler was unreachable for longer than the death timeout.
    SchedulerLost(String),
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The data server's socket could not be opened.
    #[error("cannot start the data server on {host}")]
    DataServer {
        /// The host or address it was to listen on.
        host: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// No scratch directory for spilling could be chosen or created.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The spill files could not be opened.
    #[error("cannot spill into {}", path.display())]
    Spill {
        /// The worker's scratch directory.
        path: PathBuf,
        /// Why the spill files could not be opened.
        #[source]
        source: SpillError,
    },
}

/// Why the scheduler could not be reached this time (the worker tries again).
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    /// The scheduler file is missing, malformed or stale.
    #[error(transparent)]
    File(#[from] SchedulerFileError),
    /// The thread reading the scheduler file failed.
    #[error("reading the scheduler file failed")]
    Reading(#[from] tokio::task::JoinError),
    /// Connecting or authenticating failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Run a worker until it is told to stop, `stop` resolves, or the scheduler is gone for
/// longer than the death timeout.
///
/// # Errors
/// The data server cannot bind, or spilling was asked for and cannot be set up.
pub async fn run_worker(
    options: WorkerOptions,
    stop: impl Future<Output = ()>,
) -> Result<WorkerExit, WorkerError> {
    let data_server_error = |host: &str| {
        let host = host.to_owned();
        move |source| WorkerError::DataServer { host, source }
    };
    let listener = shoal_comm::transport::tcp::bind((options.host.as_str(), 0))
        .await
        .map_err(data_server_error(&options.host))?;
    crate::sys::tune_c_allocator();
    if options.memory_limit > 0 {
        // Reused receive buffers are unmanaged memory: a tenth of the limit at most, as for
        // transfers in flight.
        shoal_comm::buffer::set_pool_limit((options.memory_limit / 10) as usize);
    }
    let tcp_address = format_address(
        listener
            .local_addr()
            .map_err(data_server_error(&options.host))?,
    );
    let mut listener = Some(
        Listener::new(listener, &options.transports, Service::Data)
            .map_err(data_server_error(&options.host))?,
    );
    // tcp://... and, with fabrics, mpi://JOB/RANK and ucx://...: peers pick the best.
    let data_address = listener
        .as_ref()
        .map_or_else(String::new, |l| l.address().to_string());
    // Declared before the store: dropped after it, removing the spill directory last.
    let (_scratch, store) = open_store(&options)?;
    tokio::pin!(stop);
    let mut reconnect = Reconnect::new(options.death_timeout, Instant::now());
    let mut data_server: Option<(Secret, tokio::task::JoinHandle<()>)> = None;
    loop {
        if let Some(reason) = reconnect.give_up(Instant::now()) {
            return Ok(WorkerExit::SchedulerLost(reason));
        }
        let connected = tokio::select! {
            r = connect_scheduler(&options, reconnect.remaining(Instant::now())) => r,
            () = &mut stop => return Ok(WorkerExit::Shutdown),
        };
        let (reader, writer, secret, scheduler_address) = match connected {
            Ok(c) => c,
            Err(e) => {
                let error = crate::error::chain(&e);
                tracing::debug!(%error, "cannot reach the scheduler; retrying");
                reconnect.failed(error);
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
                    let address = tcp_address.trim_start_matches("tcp://");
                    let tcp = shoal_comm::transport::tcp::bind(address)
                        .await
                        .map_err(data_server_error(address))?;
                    Listener::new(tcp, &options.transports, Service::Data)
                        .map_err(data_server_error(address))?
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
        let (end, last_heard) = run_session(
            &options,
            store.clone(),
            secret,
            &data_address,
            reader,
            writer,
            &mut stop,
        )
        .await;
        reconnect.contact(last_heard);
        if end != SessionEnd::Shutdown {
            // Results held for the old session are meaningless to a new one.
            store.clear();
        }
        match end {
            SessionEnd::Shutdown => return Ok(WorkerExit::Shutdown),
            SessionEnd::Lost(reason) => {
                tracing::warn!(%reason, "lost the scheduler; reconnecting until the death timeout");
                reconnect.failed(reason);
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
                // A fresh start in this process: memory handed back.
                crate::sys::release_freed_memory();
                reconnect.contact(Instant::now());
            }
        }
    }
}

/// The store for results: spilling into a fresh directory on node-local storage when a
/// memory limit and a spill threshold are set, in memory only otherwise.
fn open_store(
    options: &WorkerOptions,
) -> Result<(Option<WorkerDir>, Arc<ManagedStore>), WorkerError> {
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
    let store = ManagedStore::spilling(&dir.spill_dir(), spill_options).map_err(|source| {
        WorkerError::Spill {
            path: dir.path().to_owned(),
            source,
        }
    })?;
    tracing::info!(directory = %dir.path().display(), %filesystem, "results spill to node-local storage");
    Ok((Some(dir), Arc::new(store)))
}

async fn connect_scheduler(
    options: &WorkerOptions,
    remaining: Duration,
) -> Result<(Reader, Writer, Secret, String), Unreachable> {
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

/// Reads the process's RSS for memory decisions. Over a threshold, the allocators first
/// hand back the memory they keep for reuse (see [`crate::sys::tune_c_allocator`]) and
/// RSS is read again: freed memory is not data to spill. At most once per
/// [`RssProbe::TRIM_INTERVAL`], since trimming walks the whole heap.
#[derive(Default)]
struct RssProbe {
    last_trim: Option<Instant>,
}

impl RssProbe {
    const TRIM_INTERVAL: Duration = Duration::from_millis(500);

    fn sample(&mut self, core: &WorkerCore, now: Instant) -> u64 {
        let rss = crate::sys::rss_bytes().unwrap_or(0);
        let trim_due = self
            .last_trim
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::TRIM_INTERVAL);
        if !core.rss_over_a_threshold(rss) || !trim_due {
            return rss;
        }
        self.last_trim = Some(now);
        crate::sys::trim_heap();
        crate::sys::rss_bytes().unwrap_or(rss)
    }
}

/// One session with the scheduler: register, then turn socket messages, executor results,
/// fetches and timer ticks into [`WorkerCore`] events until the session ends. Returns why
/// it ended and when the scheduler was last heard from.
async fn run_session<R: MessageRead, W: MessageWrite>(
    options: &WorkerOptions,
    store: Arc<ManagedStore>,
    secret: Secret,
    data_address: &str,
    reader: R,
    writer: W,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> (SessionEnd, Instant) {
    let mut core = WorkerCore::new(CoreSettings::from(options), store.clone(), Instant::now());
    let (outbox, writer_task) = spawn_writer(writer, "scheduler".into());
    let registration = Registration {
        name: options.name.clone(),
        nthreads: options.nthreads,
        memory_limit: options.memory_limit,
        resources: options.resources.clone(),
        data_address: data_address.to_string(),
        // The machine's name (the address says which interface): a pid is found by it.
        host: crate::sys::hostname(),
        pid: std::process::id(),
        executors: options.executors.clone(),
    };
    if send(&outbox, &FromWorker::Register(registration)).is_err() {
        let end = SessionEnd::Lost("connection closed during registration".into());
        return (end, core.last_heard());
    }
    let (from_scheduler, mut inbox) = mpsc::unbounded_channel();
    let reader_task = tokio::spawn(read_scheduler(reader, from_scheduler));
    let (results_tx, mut results) = mpsc::unbounded_channel::<PoolEvent>();
    let runner: Runner = options
        .runner
        .clone()
        .unwrap_or_else(|| Arc::new(builtin::run_job));
    let (fetch_tx, mut fetched) = mpsc::unbounded_channel::<FetchDone>();
    let mut effects = Effects {
        outgoing: Outgoing::default(),
        pool: ExecutorPool::start(options.nthreads, runner, results_tx),
        fetchers: FxHashMap::default(),
        fetch_tx,
        transports: options.transports.clone(),
        secret,
        name: options.name.clone(),
        store,
        on_registered: options.on_registered.clone(),
        heartbeat: None,
    };
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut death_check = tokio::time::interval(Duration::from_millis(200));
    let mut memory_check = tokio::time::interval(options.memory.monitor_interval);
    memory_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let manage_memory = options.memory_limit > 0;
    let rss = || crate::sys::rss_bytes().unwrap_or(0);
    let mut probe = RssProbe::default();
    let end = loop {
        let ended = tokio::select! {
            msg = inbox.recv() => match msg {
                None => Some(SessionEnd::Lost("connection to the scheduler closed".into())),
                Some(first) => {
                    let now = Instant::now();
                    let mut next = Some(first);
                    let mut ended = None;
                    while let Some(msg) = next.take() {
                        ended = match msg {
                            Err(reason) => Some(SessionEnd::Lost(reason)),
                            Ok((msg, frames)) => core.on_message(now, msg, frames, &mut effects),
                        };
                        if ended.is_none() {
                            next = inbox.try_recv().ok();
                        }
                    }
                    ended
                }
            },
            Some(event) = results.recv() => {
                core.on_pool_event(event, &mut effects);
                while let Ok(event) = results.try_recv() {
                    core.on_pool_event(event, &mut effects);
                }
                // Results can pile up faster than the timer ticks: sample now and then.
                let now = Instant::now();
                if core.sample_due(now) {
                    core.on_memory_sample(now, probe.sample(&core, now), &mut effects)
                } else {
                    None
                }
            }
            Some(done) = fetched.recv() => {
                core.on_fetch_done(done, &mut effects);
                None
            }
            _ = heartbeat.tick() => {
                core.on_heartbeat(rss(), &mut effects);
                None
            }
            _ = memory_check.tick(), if manage_memory => {
                let now = Instant::now();
                core.on_memory_sample(now, probe.sample(&core, now), &mut effects)
            }
            _ = death_check.tick() => core.on_tick(Instant::now()),
            () = stop.as_mut() => {
                // Leaving on our own: say so, and let the writer deliver it before closing.
                let end = core.on_retire(&mut effects);
                let _ = effects.outgoing.flush(&outbox);
                drop(outbox);
                let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
                reader_task.abort();
                return (end, core.last_heard());
            }
        };
        if let Some(end) = ended {
            break end;
        }
        core.settle(&mut effects);
        if let Some(every) = effects.heartbeat.take() {
            heartbeat = tokio::time::interval(every);
        }
        if effects.outgoing.flush(&outbox).is_err() {
            break SessionEnd::Lost("connection to the scheduler closed".into());
        }
    };
    reader_task.abort();
    (end, core.last_heard())
}

/// Messages for the scheduler gathered during one event, sent together after it.
#[derive(Default)]
struct Outgoing {
    started: Vec<TaskId>,
    finished: Vec<TaskFinished>,
    failed: Vec<TaskFailed>,
    other: Vec<FromWorker>,
}

impl Outgoing {
    /// Send what was gathered: the batched messages first, then the others in order.
    fn flush(&mut self, outbox: &Outbox) -> Result<(), ()> {
        if !self.started.is_empty() {
            send(
                outbox,
                &FromWorker::Started(std::mem::take(&mut self.started)),
            )?;
        }
        if !self.finished.is_empty() {
            send(
                outbox,
                &FromWorker::Finished(std::mem::take(&mut self.finished)),
            )?;
        }
        if !self.failed.is_empty() {
            send(
                outbox,
                &FromWorker::Failed(std::mem::take(&mut self.failed)),
            )?;
        }
        for msg in std::mem::take(&mut self.other) {
            send(outbox, &msg)?;
        }
        Ok(())
    }
}

/// The session's side of [`WorkerComm`]: message buffers, the executor threads, one fetch
/// task per peer, background spilling.
struct Effects {
    outgoing: Outgoing,
    pool: ExecutorPool,
    fetchers: FxHashMap<WorkerId, PeerFetcher>,
    fetch_tx: mpsc::UnboundedSender<FetchDone>,
    /// The backends fetches may use (TCP, and the fabrics the launcher started).
    transports: Connector,
    secret: Secret,
    name: String,
    store: Arc<ManagedStore>,
    on_registered: Option<Arc<dyn Fn() + Send + Sync>>,
    /// A new heartbeat interval for the session to install.
    heartbeat: Option<Duration>,
}

impl WorkerComm for Effects {
    fn started(&mut self, task: TaskId) {
        self.outgoing.started.push(task);
    }

    fn finished(&mut self, done: TaskFinished) {
        self.outgoing.finished.push(done);
    }

    fn failed(&mut self, failed: TaskFailed) {
        self.outgoing.failed.push(failed);
    }

    fn send(&mut self, msg: FromWorker) {
        self.outgoing.other.push(msg);
    }

    fn run(&mut self, job: Job) {
        self.pool.submit(job);
    }

    fn fetch(&mut self, peer: WorkerId, address: &str, ids: Vec<TaskId>) {
        let fetcher = self.fetchers.entry(peer).or_insert_with(|| {
            PeerFetcher::start(
                peer,
                address.to_string(),
                self.transports.clone(),
                self.secret.clone(),
                self.name.clone(),
                self.fetch_tx.clone(),
            )
        });
        if let Err(ids) = fetcher.request(ids) {
            let _ = self.fetch_tx.send(FetchDone::failed(peer, ids));
        }
    }

    fn peer_left(&mut self, peer: WorkerId, address: Option<&str>) {
        // Tell the fabrics: MPI does not notice a peer that left, and a dead peer on this
        // host is only noticed by UCX's watcher after a while.
        if let Some(address) = address {
            self.transports.note_peer_lost(address);
        }
        self.fetchers.remove(&peer);
    }

    fn spill(&mut self, goal: u64) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if store.evict_to(goal) > 0 {
                crate::sys::trim_heap();
            }
        });
    }

    fn registered(&mut self, _id: WorkerId, heartbeat: Duration) {
        if let Some(registered) = &self.on_registered {
            registered();
        }
        self.heartbeat = Some(heartbeat);
    }

    fn has_plugins(&mut self) {
        super::identity::set_has_plugins();
    }
}

fn send(outbox: &Outbox, msg: &FromWorker) -> Result<(), ()> {
    let raw = RawMessage::encode(msg, Vec::new()).map_err(|_| ())?;
    outbox.send(raw).map_err(|_| ())
}

type Inbound = Result<(ToWorker, Vec<Bytes>), String>;

async fn read_scheduler<R: MessageRead>(mut reader: R, tx: mpsc::UnboundedSender<Inbound>) {
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
