//! The scheduler's network side: accepts authenticated connections, decodes messages in
//! per-connection tasks, feeds them to the [`Core`] in batches, and flushes the batched
//! effects once per batch.

use super::comm::Comm;
use super::coordination::{CoordEffects, Coordination};
use super::core::{Core, CoreConfig};
use super::retirement::Retirements;
use super::snapshot::{self, Publisher, Snapshot};
use super::task::TaskState;
use super::task_stream::{self, TaskStream};
use crate::net::{format_address, spawn_writer, Outbox};
use crate::scheduler_file::{self, SchedulerFile};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::auth::{self, Role};
use shoal_comm::coordination::{CoordReply, PLUGIN_DATASET_PREFIX};
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{
    ClusterStatus, ComputeTask, FromClient, FromWorker, KeyLocation, KeyState, KeyUpdate, ToClient,
    ToWorker,
};
use shoal_comm::transport::{tcp_split, MessageRead, TcpReader};
use shoal_comm::{RawMessage, Secret};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events handled before effects are flushed.
const MAX_BATCH: usize = 4096;

/// Tasks added or finished between heartbeats above which freed memory is handed back.
const RELEASE_MEMORY_CHURN: u64 = 10_000;

static MEMORY_RELEASE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Install the function that returns freed heap memory to the system (the binary knows
/// its allocator). The scheduler calls it on a heartbeat after large graphs were added or
/// freed, so a million-task submission does not stay resident after it is gone.
pub fn set_memory_release_hook(hook: fn()) {
    let _ = MEMORY_RELEASE_HOOK.set(hook);
}

/// Hand freed heap memory back to the system, if the binary installed a way to.
pub fn release_freed_memory() {
    if let Some(hook) = MEMORY_RELEASE_HOOK.get() {
        hook();
    }
}

/// What a scheduler's run saw of its workers.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Names of every worker that registered.
    pub workers_seen: Vec<String>,
    /// Names of workers whose connection closed before the shutdown (left, or died).
    pub workers_lost: Vec<String>,
}

/// Everything needed to start a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (`0.0.0.0:0` picks a free port on every interface).
    pub listen: SocketAddr,
    /// Host or IP written into the scheduler file for others to connect to.
    pub contact_host: String,
    pub secret: Secret,
    pub scheduler_file: Option<PathBuf>,
    /// Exit after this long with no clients and no work.
    pub idle_timeout: Option<Duration>,
    /// How often the scheduler and workers send heartbeats.
    pub heartbeat: Duration,
    pub core: CoreConfig,
    /// Other ports of this scheduler by service name (`dashboard`), written into the
    /// scheduler file's `services` and shown by `shoal status`.
    pub services: Vec<(String, u16)>,
}

/// A bound scheduler, ready to run.
pub struct Scheduler {
    listener: TcpListener,
    options: SchedulerOptions,
    id: String,
    address: String,
    /// Publishes snapshots for a dashboard, once one subscribed.
    publisher: Option<Publisher>,
}

impl Scheduler {
    /// Bind the listening socket and write the scheduler file.
    ///
    /// # Errors
    /// The address is in use or the scheduler file cannot be written.
    pub async fn bind(options: SchedulerOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
        let port = listener.local_addr()?.port();
        let address = format!("tcp://{}:{port}", options.contact_host);
        let id = format!("Scheduler-{}", hex::encode(rand::random::<[u8; 8]>()));
        if let Some(path) = &options.scheduler_file {
            let mut file = SchedulerFile::new(&id, &address, &options.secret);
            for (name, port) in &options.services {
                file.services.insert(name.clone(), (*port).into());
            }
            scheduler_file::write(path, &file)?;
        }
        tracing::info!(%address, %id, "scheduler listening");
        Ok(Scheduler {
            listener,
            options,
            id,
            address,
            publisher: None,
        })
    }

    /// Snapshots of the cluster, published every [`snapshot::INTERVAL`] from now on (the
    /// dashboard's and `/metrics`' source).
    pub fn snapshots(&mut self) -> watch::Receiver<Arc<Snapshot>> {
        self.publisher
            .get_or_insert_with(Publisher::new)
            .subscribe()
    }

    /// The address clients and workers connect to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The unique id of this scheduler run.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Serve until a client asks for shutdown, `shutdown` resolves, or the idle timeout
    /// passes. Workers are told to exit; the scheduler file is removed. Returns which
    /// workers registered and which were lost on the way (a launcher can then reach those
    /// that never registered, and knows whether a peer process may have died).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<RunSummary> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let acceptor = tokio::spawn(accept_loop(
            self.listener,
            self.options.secret.clone(),
            self.id.clone(),
            events_tx,
        ));
        let mut core = Core::new(self.options.core.clone());
        let coord_holder = core.on_client_added();
        let mut state = ServerState {
            core,
            comm: ServerComm::default(),
            coordination: Coordination::default(),
            coord_holder,
            coord_holds: FxHashMap::default(),
            retirements: Retirements::default(),
            task_stream: TaskStream::new(Instant::now(), task_stream::CAPACITY),
            id: self.id.clone(),
            address: self.address.clone(),
            heartbeat: self.options.heartbeat,
            last_activity: Instant::now(),
            stop: false,
            churn_mark: (0, 0),
            summary: RunSummary::default(),
            failed_starts: Default::default(),
            publisher: self.publisher,
            services: self.options.services.clone(),
        };
        let result = state
            .main_loop(events, shutdown, self.options.idle_timeout)
            .await;
        acceptor.abort();
        state.stop_workers().await;
        if let Some(path) = &self.options.scheduler_file {
            scheduler_file::remove_if_ours(path, &self.id);
        }
        tracing::info!("scheduler stopped");
        result.map(|()| state.summary)
    }
}

enum Event {
    WorkerJoined {
        registration: shoal_comm::message::Registration,
        outbox: Outbox,
        /// The task writing to the worker: awaited at shutdown so `Shutdown` is delivered.
        writer: tokio::task::JoinHandle<()>,
        reply: oneshot::Sender<WorkerId>,
    },
    Worker(WorkerId, FromWorker),
    WorkerClosed(WorkerId, String),
    /// A worker that could not start said why.
    WorkerStartFailed(shoal_comm::message::StartFailure),
    ClientJoined {
        outbox: Outbox,
        reply: oneshot::Sender<ClientId>,
    },
    Client(ClientId, FromClient, Vec<Bytes>),
    ClientClosed(ClientId),
}

type Events = mpsc::UnboundedSender<Event>;

async fn accept_loop(listener: TcpListener, secret: Secret, id: String, events: Events) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(handle_connection(
                    stream,
                    peer,
                    secret.clone(),
                    id.clone(),
                    events.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    secret: Secret,
    id: String,
    events: Events,
) {
    let (mut reader, mut writer) = tcp_split(stream);
    let hello = match auth::accept(&mut reader, &mut writer, &secret, &id, HANDSHAKE_TIMEOUT).await
    {
        Ok(hello) => hello,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused connection");
            return;
        }
    };
    let (outbox, writer) = spawn_writer(writer, peer.to_string());
    match hello.role {
        Role::Worker => worker_connection(reader, outbox, writer, peer, events).await,
        Role::Client => client_connection(reader, outbox, peer, events).await,
        Role::Peer => {
            tracing::warn!(%peer, "refused a data request: the scheduler holds no data, ask a worker")
        }
    }
}

async fn worker_connection(
    mut reader: TcpReader,
    outbox: Outbox,
    writer: tokio::task::JoinHandle<()>,
    peer: SocketAddr,
    events: Events,
) {
    let registration = match reader
        .recv()
        .await
        .map(|m| m.map(|m| m.decode::<FromWorker>()))
    {
        Ok(Some(Ok(FromWorker::Register(r)))) => r,
        Ok(Some(Ok(FromWorker::StartFailed(failure)))) => {
            tracing::error!(%peer, worker = %failure.name, host = %failure.host, error = %failure.error, "a worker failed to start");
            let _ = events.send(Event::WorkerStartFailed(failure));
            return;
        }
        other => {
            tracing::warn!(%peer, "worker did not register: {other:?}");
            return;
        }
    };
    let (reply, id) = oneshot::channel();
    if events
        .send(Event::WorkerJoined {
            registration,
            outbox,
            writer,
            reply,
        })
        .is_err()
    {
        return;
    }
    let Ok(id) = id.await else { return };
    let reason = loop {
        match reader.recv().await {
            Ok(Some(raw)) => match raw.decode::<FromWorker>() {
                Ok(msg) => {
                    if events.send(Event::Worker(id, msg)).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("sent a malformed message: {e}"),
            },
            Ok(None) => break "connection closed".to_string(),
            Err(e) => break format!("connection failed: {e}"),
        }
    };
    let _ = events.send(Event::WorkerClosed(id, reason));
}

async fn client_connection(
    mut reader: TcpReader,
    outbox: Outbox,
    peer: SocketAddr,
    events: Events,
) {
    let (reply, id) = oneshot::channel();
    if events
        .send(Event::ClientJoined {
            outbox: outbox.clone(),
            reply,
        })
        .is_err()
    {
        return;
    }
    let Ok(id) = id.await else { return };
    loop {
        match reader.recv().await {
            Ok(Some(raw)) => match raw.decode::<FromClient>() {
                Ok(msg) => {
                    if events.send(Event::Client(id, msg, raw.frames)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, client = %id, error = %e, "malformed client message");
                    let message = format!("the scheduler could not read your message: {e}");
                    if let Ok(reply) = RawMessage::encode(&ToClient::Error { message }, Vec::new())
                    {
                        let _ = outbox.send(reply);
                    }
                }
            },
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%peer, client = %id, error = %e, "client connection failed");
                break;
            }
        }
    }
    let _ = events.send(Event::ClientClosed(id));
}

struct ServerState {
    core: Core,
    comm: ServerComm,
    /// Named variables, queues, events, locks and datasets.
    coordination: Coordination,
    /// The core's client on whose behalf the coordination state keeps keys alive.
    coord_holder: ClientId,
    /// How many coordination values refer to each key (held once in the core).
    coord_holds: FxHashMap<String, u32>,
    /// Workers being retired on a client's request.
    retirements: Retirements,
    /// Recent task runs.
    task_stream: TaskStream,
    id: String,
    address: String,
    heartbeat: Duration,
    last_activity: Instant,
    stop: bool,
    /// (task count, finished count) at the last memory release check.
    churn_mark: (u64, u64),
    /// Names of every worker that registered.
    summary: RunSummary,
    /// Workers that failed to start, the latest first.
    failed_starts: std::collections::VecDeque<shoal_comm::message::StartFailure>,
    /// Publishes snapshots when a dashboard runs.
    publisher: Option<Publisher>,
    services: Vec<(String, u16)>,
}

/// Start failures kept for `shoal status`.
const MAX_FAILED_STARTS: usize = 32;

impl ServerState {
    async fn main_loop(
        &mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: impl Future<Output = ()>,
        idle_timeout: Option<Duration>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut balance = tokio::time::interval(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        let mut snapshot_tick = tokio::time::interval(snapshot::INTERVAL);
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The core has more slices of work (a large submission being accepted, many ready
        // tasks): run one per turn of the loop, so events are answered in between.
        let mut backlog = false;
        while !self.stop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.handle(event);
                    let mut handled = 1;
                    while handled < MAX_BATCH {
                        let Ok(event) = events.try_recv() else { break };
                        self.handle(event);
                        handled += 1;
                    }
                    backlog = self.core.schedule(&mut self.comm);
                }
                () = tokio::task::yield_now(), if backlog => {
                    backlog = self.core.schedule(&mut self.comm);
                }
                due = snapshot_tick.tick(), if self.publisher.is_some() => {
                    self.publish_snapshot(due.into_std());
                }
                _ = balance.tick() => {
                    self.core.balance(&mut self.comm);
                }
                _ = heartbeat.tick() => {
                    let now = Instant::now();
                    self.core.on_tick(now, &mut self.comm);
                    backlog = self.core.schedule(&mut self.comm);
                    for &w in self.core.workers.keys() {
                        self.comm.send_worker(w, ToWorker::Heartbeat);
                    }
                    self.retirements.progress(&mut self.core, &mut self.comm);
                    self.release_memory_after_churn();
                    // Scanning for unfinished work is only needed with an idle timeout.
                    if let Some(limit) = idle_timeout {
                        if self.is_busy() {
                            self.last_activity = now;
                        } else if now.duration_since(self.last_activity) >= limit {
                            tracing::info!("no clients and no work for {limit:?} (--idle-timeout): stopping");
                            self.stop = true;
                        }
                    }
                }
                () = &mut shutdown => {
                    tracing::info!("shutdown requested");
                    self.stop = true;
                }
            }
            self.comm.flush();
        }
        Ok(())
    }

    /// Publish a snapshot for the dashboard; `due` is when this tick was due, so how
    /// late it came is the loop's lag.
    fn publish_snapshot(&mut self, due: Instant) {
        let Some(publisher) = self.publisher.as_mut() else {
            return;
        };
        let now = Instant::now();
        let facts = snapshot::ServerFacts {
            id: &self.id,
            address: &self.address,
            clients: self.comm.clients.len() as u32,
            workers_joined: self.summary.workers_seen.len() as u64,
            workers_lost: self.summary.workers_lost.len() as u64,
        };
        let lag = now.saturating_duration_since(due);
        publisher.publish(&self.core, &self.task_stream, &facts, lag, now);
    }

    fn release_memory_after_churn(&mut self) {
        let mark = (self.core.tasks.len() as u64, self.core.finished_count);
        let churn = mark.0.abs_diff(self.churn_mark.0) + mark.1.abs_diff(self.churn_mark.1);
        if churn >= RELEASE_MEMORY_CHURN {
            self.churn_mark = mark;
            release_freed_memory();
        }
    }

    fn is_busy(&self) -> bool {
        self.core.clients.keys().any(|c| *c != self.coord_holder)
            || self.core.tasks.values().any(|t| t.state.is_unfinished())
    }

    /// The coordination state with the effects it may have on the core and clients.
    fn coordination(&mut self) -> (&mut Coordination, CoordBridge<'_>) {
        (
            &mut self.coordination,
            CoordBridge {
                core: &mut self.core,
                comm: &mut self.comm,
                holder: self.coord_holder,
                holds: &mut self.coord_holds,
            },
        )
    }

    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::WorkerJoined {
                registration,
                outbox,
                writer,
                reply,
            } => {
                self.summary.workers_seen.push(registration.name.clone());
                let id = self.core.next_worker_id_hint();
                self.comm.add_worker(id, outbox, writer);
                let assigned = self.core.on_worker_added(
                    registration,
                    now,
                    self.heartbeat.as_millis() as u64,
                    &mut self.comm,
                );
                debug_assert_eq!(assigned, id);
                if let Some(w) = self.core.workers.get(&id) {
                    self.task_stream
                        .on_worker_joined(id, &w.registration.data_address);
                }
                if self.coordination.has_dataset_prefix(PLUGIN_DATASET_PREFIX) {
                    self.comm.send_worker(id, ToWorker::HasPlugins);
                }
                let _ = reply.send(id);
            }
            Event::WorkerClosed(id, reason) => {
                if let Some(worker) = self.core.workers.get(&id) {
                    let name = worker.registration.name.clone();
                    self.summary.workers_lost.push(name);
                }
                self.core.on_worker_lost(id, &reason, &mut self.comm);
                self.task_stream.on_worker_lost(id);
                self.comm.workers.remove(&id);
            }
            Event::Worker(id, msg) => self.on_worker_message(id, msg, now),
            Event::ClientJoined { outbox, reply } => {
                let id = self.core.on_client_added();
                self.comm.clients.insert(id, PeerQueue::new(outbox));
                tracing::debug!(client = %id, "client connected");
                let _ = reply.send(id);
            }
            Event::ClientClosed(id) => {
                tracing::debug!(client = %id, "client disconnected");
                let (coordination, mut fx) = self.coordination();
                coordination.on_client_lost(id, &mut fx);
                self.core.on_client_lost(id, &mut self.comm);
                self.comm.clients.remove(&id);
            }
            Event::Client(id, msg, frames) => self.on_client_message(id, msg, frames),
            Event::WorkerStartFailed(mut failure) => {
                failure.at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                self.failed_starts.push_front(failure);
                self.failed_starts.truncate(MAX_FAILED_STARTS);
            }
        }
    }

    fn on_worker_message(&mut self, id: WorkerId, msg: FromWorker, now: Instant) {
        self.record_task_stream(id, &msg, now);
        let (core, comm) = (&mut self.core, &mut self.comm);
        core.touch_worker(id, now);
        match msg {
            FromWorker::Register(_) | FromWorker::StartFailed(_) => {
                tracing::warn!(worker = %id, "a registered worker registered again or said it failed to start; ignored")
            }
            FromWorker::Started(ids) => core.on_tasks_started(id, &ids, comm),
            FromWorker::Finished(done) => core.on_tasks_finished(id, &done, comm),
            FromWorker::Failed(failed) => core.on_tasks_failed(id, failed, comm),
            FromWorker::StealReply(replies) => core.on_steal_reply(id, &replies, comm),
            FromWorker::MissingData {
                task,
                missing,
                holders,
            } => core.on_missing_data(id, task, missing, &holders, comm),
            FromWorker::Heartbeat(metrics) => core.on_worker_heartbeat(id, metrics, now),
            FromWorker::Retiring => core.on_worker_retiring(id, comm),
            FromWorker::Paused(paused) => core.on_worker_paused(id, paused, comm),
            FromWorker::Spilled { ids, on_disk } => core.on_worker_spilled(id, &ids, on_disk),
            FromWorker::Replicated(ids) => {
                core.on_worker_replicated(id, &ids, comm);
                if !self.retirements.is_empty() {
                    self.retirements.on_replicated(&ids);
                    self.retirements.progress(core, comm);
                }
            }
        }
    }

    /// Starts and ends of tasks, for the task stream (before the core forgets them).
    fn record_task_stream(&mut self, worker: WorkerId, msg: &FromWorker, now: Instant) {
        let ended = |id: TaskId| self.core.tasks.get(&id).map(|t| t.key.clone());
        match msg {
            FromWorker::Started(ids) => self.task_stream.on_started(worker, ids, now),
            FromWorker::Finished(done) => {
                for f in done {
                    if let Some(key) = ended(f.id) {
                        self.task_stream.on_ended(worker, f.id, &key, true, now);
                    }
                }
            }
            FromWorker::Failed(failed) => {
                for f in failed {
                    if let Some(key) = ended(f.id) {
                        self.task_stream.on_ended(worker, f.id, &key, false, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_client_message(&mut self, id: ClientId, msg: FromClient, frames: Vec<Bytes>) {
        self.last_activity = Instant::now();
        match msg {
            FromClient::Submit {
                request,
                tasks,
                wants,
            } => {
                // Accepted slice by slice; the core sends the reply when it is in.
                self.core
                    .on_submit_request(id, request, tasks, wants, frames);
            }
            FromClient::Release { keys } => self.core.on_release_keys(id, keys, &mut self.comm),
            FromClient::Replicate { keys } => self.core.on_replicate(&keys, &mut self.comm),
            FromClient::Cancel { keys } => self.core.on_cancel(&keys, &mut self.comm),
            FromClient::WhoHas { request, keys } => {
                let locations = keys.into_iter().map(|key| self.locate(key)).collect();
                self.comm
                    .send_client(id, ToClient::WhoHasReply { request, locations });
            }
            FromClient::Status { request } => {
                let status = Box::new(self.status());
                self.comm
                    .send_client(id, ToClient::StatusReply { request, status });
            }
            FromClient::Shutdown => {
                tracing::info!(client = %id, "shutdown requested by a client");
                self.stop = true;
            }
            FromClient::Heartbeat => {}
            FromClient::Retry { keys } => self.core.on_retry(&keys, &mut self.comm),
            FromClient::Coord { request, op } => {
                let (coordination, mut fx) = self.coordination();
                coordination.on_request(id, request, op, &mut fx);
            }
            FromClient::CoordCancel { request } => {
                let (coordination, mut fx) = self.coordination();
                coordination.on_cancel(id, request, &mut fx);
            }
            FromClient::Restart {
                workers,
                cancel_all,
            } => self.restart(id, &workers, cancel_all),
            FromClient::RetireWorkers { workers } => {
                let ids = self
                    .retirements
                    .on_retire(&mut self.core, &workers, &mut self.comm);
                tracing::info!(client = %id, workers = ?ids, "retiring workers on request");
            }
            FromClient::TaskStream {
                request,
                since,
                limit,
            } => {
                let records = self.task_stream.since(since, limit as usize);
                self.comm
                    .send_client(id, ToClient::TaskStreamReply { request, records });
            }
        }
    }

    /// Restart workers (all when `names` is empty) in their process; with `cancel_all`,
    /// every key is cancelled first. Restarted workers count as leaving, not dying.
    fn restart(&mut self, client: ClientId, names: &[String], cancel_all: bool) {
        if cancel_all {
            let keys: Vec<String> = self
                .core
                .tasks
                .values()
                .map(|t| t.key.to_string())
                .collect();
            self.core.on_cancel(&keys, &mut self.comm);
        }
        let targets: Vec<WorkerId> = self
            .core
            .workers
            .values()
            .filter(|w| {
                names.is_empty()
                    || names.iter().any(|n| {
                        *n == w.registration.name
                            || w.registration.data_address.split(' ').any(|a| a == n)
                    })
            })
            .map(|w| w.id)
            .collect();
        tracing::info!(client = %client, workers = ?targets, cancel_all, "restarting workers on request");
        for w in targets {
            self.core.on_worker_retiring(w, &mut self.comm);
            self.comm.send_worker(w, ToWorker::Restart);
        }
    }

    fn locate(&self, key: String) -> KeyLocation {
        let Some(id) = self.core.find_key(&key) else {
            return KeyLocation {
                key,
                task: None,
                holders: Vec::new(),
                state: None,
                computing: false,
            };
        };
        let task = self.core.task(id);
        let (holders, state) = match &task.state {
            TaskState::Memory(h) => (
                h.iter()
                    .filter_map(|w| self.core.workers.get(w))
                    .map(|w| w.registration.data_address.clone())
                    .collect(),
                Some(KeyState::Memory { size: task.size }),
            ),
            TaskState::Erred(e) => (Vec::new(), Some(KeyState::Erred((**e).clone()))),
            _ => (Vec::new(), None),
        };
        KeyLocation {
            key,
            task: Some(id),
            holders,
            state,
            computing: task.state.is_unfinished(),
        }
    }

    fn status(&self) -> ClusterStatus {
        // From the counts kept as tasks move: O(1), not a walk over every task.
        let mut tasks: Vec<(String, u64)> = super::tally::STATES
            .iter()
            .zip(self.core.tally.totals())
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k.to_string(), n))
            .collect();
        tasks.sort();
        let mut workers: Vec<_> = self.core.workers.values().map(|w| w.info()).collect();
        workers.sort_by_key(|w| w.id);
        ClusterStatus {
            scheduler_id: self.id.clone(),
            address: self.address.clone(),
            workers,
            tasks,
            clients: self.comm.clients.len() as u32,
            tasks_finished: self.core.finished_count,
            failed_starts: self.failed_starts.iter().cloned().collect(),
            services: self.services.clone(),
        }
    }

    /// Tell every worker to exit and give the writers a moment to deliver it.
    async fn stop_workers(&mut self) {
        let workers: Vec<WorkerId> = self.core.workers.keys().copied().collect();
        for w in workers {
            self.comm.send_worker(w, ToWorker::Shutdown);
        }
        self.comm.flush();
        // Dropping the queues closes the outboxes: each writer ends once it has written
        // everything queued (the Shutdown above included).
        let writers: Vec<_> = self
            .comm
            .workers
            .drain()
            .filter_map(|(_, q)| q.writer)
            .collect();
        self.comm.clients.clear();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for writer in writers {
            let _ = tokio::time::timeout_at(deadline, writer).await;
        }
    }
}

/// One item queued for a peer; runs of the same kind are sent as one message.
enum Queued<M> {
    Compute(ComputeTask, Option<Bytes>),
    Release(TaskId),
    Steal(TaskId),
    Update(KeyUpdate),
    Other(M),
}

impl<M> Queued<M> {
    /// The task a release or steal item is about.
    fn task_id(&self) -> Option<TaskId> {
        match self {
            Queued::Release(t) | Queued::Steal(t) => Some(*t),
            _ => None,
        }
    }
}

struct PeerQueue<M> {
    outbox: Outbox,
    queue: Vec<Queued<M>>,
    /// The task writing to this peer (kept for workers, to await it at shutdown).
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl<M> PeerQueue<M> {
    fn new(outbox: Outbox) -> Self {
        PeerQueue {
            outbox,
            queue: Vec::new(),
            writer: None,
        }
    }
}

/// Batches every effect per peer until [`ServerComm::flush`].
#[derive(Default)]
struct ServerComm {
    workers: FxHashMap<WorkerId, PeerQueue<ToWorker>>,
    clients: FxHashMap<ClientId, PeerQueue<ToClient>>,
}

impl ServerComm {
    fn add_worker(&mut self, id: WorkerId, outbox: Outbox, writer: tokio::task::JoinHandle<()>) {
        let mut queue = PeerQueue::new(outbox);
        queue.writer = Some(writer);
        self.workers.insert(id, queue);
    }

    fn push_worker(&mut self, id: WorkerId, item: Queued<ToWorker>) {
        if let Some(q) = self.workers.get_mut(&id) {
            q.queue.push(item);
        }
    }

    fn flush(&mut self) {
        for q in self.workers.values_mut() {
            flush_queue(q, worker_message);
        }
        for q in self.clients.values_mut() {
            flush_queue(q, client_message);
        }
    }
}

/// Encode a run of queued items (all of the first item's kind) into one message.
fn worker_message(run: Vec<Queued<ToWorker>>) -> Option<RawMessage> {
    let mut frames = Vec::new();
    let msg = match run.first()? {
        Queued::Compute(..) => ToWorker::Compute(
            run.into_iter()
                .filter_map(|q| match q {
                    Queued::Compute(mut task, payload) => {
                        if let Some(p) = payload {
                            task.payload = Some(frames.len() as u32);
                            frames.push(p);
                        }
                        Some(task)
                    }
                    _ => None,
                })
                .collect(),
        ),
        // Runs hold one kind only, so the ids of a run are its items' ids.
        Queued::Release(_) => ToWorker::Release(run.iter().filter_map(Queued::task_id).collect()),
        Queued::Steal(_) => ToWorker::Steal(run.iter().filter_map(Queued::task_id).collect()),
        Queued::Update(_) => return None,
        Queued::Other(_) => match run.into_iter().next()? {
            Queued::Other(m) => m,
            _ => return None,
        },
    };
    RawMessage::encode(&msg, frames).ok()
}

fn client_message(run: Vec<Queued<ToClient>>) -> Option<RawMessage> {
    let msg = match run.first()? {
        Queued::Update(_) => ToClient::Updates(
            run.into_iter()
                .filter_map(|q| match q {
                    Queued::Update(u) => Some(u),
                    _ => None,
                })
                .collect(),
        ),
        Queued::Other(_) => match run.into_iter().next()? {
            Queued::Other(m) => m,
            _ => return None,
        },
        _ => return None,
    };
    RawMessage::encode(&msg, Vec::new()).ok()
}

fn same_kind<M>(a: &Queued<M>, b: &Queued<M>) -> bool {
    match (a, b) {
        (Queued::Other(_), _) | (_, Queued::Other(_)) => false,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

fn flush_queue<M>(q: &mut PeerQueue<M>, encode: fn(Vec<Queued<M>>) -> Option<RawMessage>) {
    if q.queue.is_empty() {
        return;
    }
    let mut items = std::mem::take(&mut q.queue).into_iter().peekable();
    while let Some(first) = items.next() {
        let mut run = vec![first];
        while let Some(next) = items.peek() {
            if !same_kind(&run[0], next) {
                break;
            }
            run.extend(items.next());
        }
        if let Some(msg) = encode(run) {
            let _ = q.outbox.send(msg);
        }
    }
}

impl Comm for ServerComm {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, payload: Option<Bytes>) {
        self.push_worker(worker, Queued::Compute(task, payload));
    }
    fn release(&mut self, worker: WorkerId, task: TaskId) {
        self.push_worker(worker, Queued::Release(task));
    }
    fn steal(&mut self, worker: WorkerId, task: TaskId) {
        self.push_worker(worker, Queued::Steal(task));
    }
    fn send_worker(&mut self, worker: WorkerId, msg: ToWorker) {
        self.push_worker(worker, Queued::Other(msg));
    }
    fn key_update(&mut self, client: ClientId, update: KeyUpdate) {
        if let Some(q) = self.clients.get_mut(&client) {
            q.queue.push(Queued::Update(update));
        }
    }
    fn send_client(&mut self, client: ClientId, msg: ToClient) {
        if let Some(q) = self.clients.get_mut(&client) {
            q.queue.push(Queued::Other(msg));
        }
    }
}

/// The coordination state's effects: replies to clients, and keys kept alive through the
/// core (once per key, however many values refer to it).
struct CoordBridge<'a> {
    core: &'a mut Core,
    comm: &'a mut ServerComm,
    holder: ClientId,
    holds: &'a mut FxHashMap<String, u32>,
}

impl CoordBridge<'_> {
    fn want(&mut self, client: ClientId, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self
            .core
            .on_submit(client, Vec::new(), keys, &[], self.comm)
        {
            // The value refers to a result that is gone already (its futures were released).
            tracing::warn!(client = %client, error = %e, "a coordination value refers to a result no longer in the cluster");
        }
    }
}

impl CoordEffects for CoordBridge<'_> {
    fn reply(&mut self, client: ClientId, request: u64, reply: CoordReply) {
        self.comm
            .send_client(client, ToClient::CoordReply { request, reply });
    }

    fn hold(&mut self, keys: &[String]) {
        let mut new = Vec::new();
        for key in keys {
            let n = self.holds.entry(key.clone()).or_default();
            *n += 1;
            if *n == 1 {
                new.push(key.clone());
            }
        }
        self.want(self.holder, new);
    }

    fn unhold(&mut self, keys: &[String]) {
        let mut gone = Vec::new();
        for key in keys {
            if let Some(n) = self.holds.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.holds.remove(key);
                    gone.push(key.clone());
                }
            }
        }
        if !gone.is_empty() {
            self.core.on_release(self.holder, &gone, self.comm);
        }
    }

    fn give(&mut self, client: ClientId, keys: &[String]) {
        self.want(client, keys.to_vec());
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Scheduler>();
    let _ = format_address;
}
