//! The scheduler's network side: accepts authenticated connections, decodes messages in
//! per-connection tasks, feeds them to the [`Core`] in batches, and flushes the batched
//! effects once per batch.

use super::batching::{PeerQueue, ServerComm};
use super::comm::Comm;
use super::coord_bridge::CoordBridge;
use super::coordination::Coordination;
use super::core::{Core, CoreConfig};
use super::retirement::Retirements;
use super::snapshot::{self, Publisher, Snapshot};
use super::task_stream::{self, TaskStream};
use crate::net::{format_address, spawn_writer, Outbox};
use crate::scheduler_file::{self, SchedulerFile, SchedulerFileError};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::auth::Role;
use shoal_comm::coordination::PLUGIN_DATASET_PREFIX;
use shoal_comm::ids::{ClientId, WorkerId};
use shoal_comm::message::{FromClient, FromWorker, ToClient, ToWorker};
use shoal_comm::transport::{Connector, Incoming, Listener, MessageRead, Reader, Service};
use shoal_comm::{RawMessage, Secret};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events handled before effects are flushed.
const MAX_BATCH: usize = 4096;
/// Workers' events are taken for at most this long before effects are flushed and
/// clients are answered: a turn's length bounds how long `shoal status` or a client's
/// request waits. Most turns are far shorter; 10 ms cost a fifth of the tasks/s with
/// 1,000 workers (effects flushed in smaller batches).
const TURN_BUDGET: Duration = Duration::from_millis(50);
/// Events handled between looks at the clock while a turn takes workers' events.
const CLOCK_EVERY: usize = 64;

/// Tasks added or finished between heartbeats above which freed memory is handed back.
const RELEASE_MEMORY_CHURN: u64 = 10_000;

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
    /// The cluster secret peers must know.
    pub secret: Secret,
    /// Where to write the scheduler file, if anywhere.
    pub scheduler_file: Option<PathBuf>,
    /// Exit after this long with no clients and no work.
    pub idle_timeout: Option<Duration>,
    /// How often the scheduler and workers send heartbeats.
    pub heartbeat: Duration,
    /// The scheduling core's settings.
    pub core: CoreConfig,
    /// Other ports of this scheduler by service name (`dashboard`), written into the
    /// scheduler file's `services` and shown by `shoal status`.
    pub services: Vec<(String, u16)>,
}

/// Why a scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The scheduler file could not be written.
    #[error(transparent)]
    SchedulerFile(#[from] SchedulerFileError),
}

/// A bound scheduler, ready to run.
pub struct Scheduler {
    listener: Listener,
    options: SchedulerOptions,
    id: String,
    address: String,
    /// Publishes snapshots for a dashboard, once one subscribed.
    publisher: Option<Publisher>,
    /// Told the name of each worker lost during the run, once someone asked.
    losses: Option<mpsc::UnboundedSender<String>>,
}

impl Scheduler {
    /// Bind the listening socket and write the scheduler file.
    ///
    /// # Errors
    /// The address is in use or the scheduler file cannot be written.
    pub async fn bind(options: SchedulerOptions) -> Result<Self, SchedulerError> {
        let listen_error = |source| SchedulerError::Listen {
            address: options.listen,
            source,
        };
        let listener = shoal_comm::transport::tcp::bind(options.listen)
            .await
            .map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let listener =
            Listener::new(listener, &Connector::tcp(), Service::Scheduler).map_err(listen_error)?;
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
            losses: None,
        })
    }

    /// The names of workers whose connection closes before the shutdown, as they go (an
    /// MPI launcher tells the other ranks that a peer process may have died).
    pub fn worker_losses(&mut self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.losses = Some(tx);
        rx
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
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> RunSummary {
        let (events_tx, events) = queues();
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
            losses: self.losses,
        };
        state
            .main_loop(events, shutdown, self.options.idle_timeout)
            .await;
        acceptor.abort();
        state.stop_workers().await;
        if let Some(path) = &self.options.scheduler_file {
            scheduler_file::remove_if_ours(path, &self.id);
        }
        tracing::info!("scheduler stopped");
        state.summary
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

/// Where connections put their events: one queue for workers, one for clients, so that a
/// client's request (`shoal status`) waits behind at most one turn of workers' events, not
/// behind every event a thousand workers queued before it. Each connection's events stay
/// in order (different connections never had an order between them).
#[derive(Clone)]
struct Events {
    workers: mpsc::UnboundedSender<Event>,
    clients: mpsc::UnboundedSender<Event>,
}

/// The receiving ends of [`Events`].
struct EventQueues {
    workers: mpsc::UnboundedReceiver<Event>,
    clients: mpsc::UnboundedReceiver<Event>,
}

fn queues() -> (Events, EventQueues) {
    let (workers, worker_rx) = mpsc::unbounded_channel();
    let (clients, client_rx) = mpsc::unbounded_channel();
    (
        Events { workers, clients },
        EventQueues {
            workers: worker_rx,
            clients: client_rx,
        },
    )
}

/// The scheduler listens on TCP only: its messages are small, and a closed TCP connection
/// is how it learns at once that a worker or client is gone (see the README's MPI jobs).
async fn accept_loop(mut listener: Listener, secret: Secret, id: String, events: Events) {
    loop {
        let incoming = listener.accept().await;
        tokio::spawn(handle_connection(
            incoming,
            secret.clone(),
            id.clone(),
            events.clone(),
        ));
    }
}

async fn handle_connection(incoming: Incoming, secret: Secret, id: String, events: Events) {
    let peer = incoming.peer.clone();
    let (reader, writer, hello) = match incoming.authenticate(&secret, &id, HANDSHAKE_TIMEOUT).await
    {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused connection");
            return;
        }
    };
    let (outbox, writer) = spawn_writer(writer, peer.clone());
    match hello.role {
        Role::Worker => worker_connection(reader, outbox, writer, peer, events).await,
        Role::Client => client_connection(reader, outbox, peer, events).await,
        Role::Peer => {
            tracing::warn!(%peer, "refused a data request: the scheduler holds no data, ask a worker")
        }
    }
}

async fn worker_connection(
    mut reader: Reader,
    outbox: Outbox,
    writer: tokio::task::JoinHandle<()>,
    peer: String,
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
            let _ = events.workers.send(Event::WorkerStartFailed(failure));
            return;
        }
        other => {
            tracing::warn!(%peer, "worker did not register: {other:?}");
            return;
        }
    };
    let (reply, id) = oneshot::channel();
    if events
        .workers
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
                    if events.workers.send(Event::Worker(id, msg)).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("sent a malformed message: {e}"),
            },
            Ok(None) => break "connection closed".to_string(),
            Err(e) => break format!("connection failed: {e}"),
        }
    };
    let _ = events.workers.send(Event::WorkerClosed(id, reason));
}

async fn client_connection(mut reader: Reader, outbox: Outbox, peer: String, events: Events) {
    let (reply, id) = oneshot::channel();
    if events
        .clients
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
                    if events
                        .clients
                        .send(Event::Client(id, msg, raw.frames))
                        .is_err()
                    {
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
    let _ = events.clients.send(Event::ClientClosed(id));
}

pub(super) struct ServerState {
    pub(super) core: Core,
    pub(super) comm: ServerComm,
    /// Named variables, queues, events, locks and datasets.
    pub(super) coordination: Coordination,
    /// The core's client on whose behalf the coordination state keeps keys alive.
    pub(super) coord_holder: ClientId,
    /// How many coordination values refer to each key (held once in the core).
    pub(super) coord_holds: FxHashMap<String, u32>,
    /// Workers being retired on a client's request.
    pub(super) retirements: Retirements,
    /// Recent task runs.
    pub(super) task_stream: TaskStream,
    pub(super) id: String,
    pub(super) address: String,
    pub(super) heartbeat: Duration,
    pub(super) last_activity: Instant,
    pub(super) stop: bool,
    /// (task count, finished count) at the last memory release check.
    pub(super) churn_mark: (u64, u64),
    /// Names of every worker that registered.
    pub(super) summary: RunSummary,
    /// Workers that failed to start, the latest first.
    pub(super) failed_starts: std::collections::VecDeque<shoal_comm::message::StartFailure>,
    /// Publishes snapshots when a dashboard runs.
    pub(super) publisher: Option<Publisher>,
    /// Other ports of this scheduler by service name.
    pub(super) services: Vec<(String, u16)>,
    /// Where lost workers' names go as they are lost ([`Scheduler::worker_losses`]).
    losses: Option<mpsc::UnboundedSender<String>>,
}

/// Turns of the event loop at least this long are logged (at debug level).
const SLOW_TURN: Duration = Duration::from_millis(50);

/// What woke the event loop.
enum Wake {
    /// An event, or `None` once every sender is gone.
    Event(Option<Event>),
    /// The core has more slices of work.
    Backlog,
    /// A dashboard snapshot is due (since this instant).
    Snapshot(Instant),
    Balance,
    Heartbeat,
    Shutdown,
}

impl Wake {
    fn name(&self) -> &'static str {
        match self {
            Wake::Event(_) => "events",
            Wake::Backlog => "backlog",
            Wake::Snapshot(_) => "snapshot",
            Wake::Balance => "balance",
            Wake::Heartbeat => "heartbeat",
            Wake::Shutdown => "shutdown",
        }
    }
}

/// Start failures kept for `shoal status`.
const MAX_FAILED_STARTS: usize = 32;

impl ServerState {
    async fn main_loop(
        &mut self,
        mut events: EventQueues,
        shutdown: impl Future<Output = ()>,
        idle_timeout: Option<Duration>,
    ) {
        tokio::pin!(shutdown);
        let mut balance = tokio::time::interval(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        let mut snapshot_tick = tokio::time::interval(snapshot::INTERVAL);
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The core has more slices of work (a large submission being accepted, many ready
        // tasks): run one per turn of the loop, so events are answered in between.
        let mut backlog = false;
        while !self.stop {
            let wake = tokio::select! {
                event = events.clients.recv() => Wake::Event(event),
                event = events.workers.recv() => Wake::Event(event),
                () = tokio::task::yield_now(), if backlog => Wake::Backlog,
                due = snapshot_tick.tick(), if self.publisher.is_some() => Wake::Snapshot(due.into_std()),
                _ = balance.tick() => Wake::Balance,
                _ = heartbeat.tick() => Wake::Heartbeat,
                () = &mut shutdown => Wake::Shutdown,
            };
            let started = Instant::now();
            let what = wake.name();
            match wake {
                Wake::Event(None) => break,
                Wake::Event(Some(event)) => {
                    self.handle(event);
                    self.take_events(&mut events, started);
                    backlog = self.core.schedule(&mut self.comm);
                }
                Wake::Backlog => backlog = self.core.schedule(&mut self.comm),
                Wake::Snapshot(due) => self.publish_snapshot(due),
                Wake::Balance => self.core.balance(&mut self.comm),
                Wake::Heartbeat => {
                    let now = Instant::now();
                    self.core.on_tick(now, &mut self.comm);
                    backlog = self.core.schedule(&mut self.comm);
                    for w in self.core.worker_ids() {
                        self.comm.send_worker(w, ToWorker::Heartbeat);
                    }
                    self.retirements.progress(&mut self.core, &mut self.comm);
                    self.release_memory_after_churn();
                    // Scanning for unfinished work is only needed with an idle timeout.
                    if let Some(limit) = idle_timeout {
                        if self.core.is_busy(self.coord_holder) {
                            self.last_activity = now;
                        } else if now.duration_since(self.last_activity) >= limit {
                            tracing::info!(
                                "no clients and no work for {limit:?} (--idle-timeout): stopping"
                            );
                            self.stop = true;
                        }
                    }
                }
                Wake::Shutdown => {
                    tracing::info!("shutdown requested");
                    self.stop = true;
                }
            }
            self.comm.flush();
            let took = started.elapsed();
            if took >= SLOW_TURN {
                tracing::debug!(
                    turn = what,
                    ms = took.as_millis() as u64,
                    "slow turn of the event loop: nobody was answered meanwhile"
                );
            }
        }
    }

    /// Handle what is queued, clients' events first, then workers' until [`MAX_BATCH`]
    /// events in all or until the turn begun at `started` is [`TURN_BUDGET`] old.
    fn take_events(&mut self, events: &mut EventQueues, started: Instant) {
        let mut handled = 1;
        while handled < MAX_BATCH {
            let Ok(event) = events.clients.try_recv() else {
                break;
            };
            self.handle(event);
            handled += 1;
        }
        while handled < MAX_BATCH {
            if handled % CLOCK_EVERY == 0 && started.elapsed() >= TURN_BUDGET {
                break;
            }
            let Ok(event) = events.workers.try_recv() else {
                break;
            };
            self.handle(event);
            handled += 1;
        }
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
        let mark = (self.core.task_count() as u64, self.core.finished_count());
        let churn = mark.0.abs_diff(self.churn_mark.0) + mark.1.abs_diff(self.churn_mark.1);
        if churn >= RELEASE_MEMORY_CHURN {
            self.churn_mark = mark;
            crate::sys::release_freed_memory();
        }
    }

    /// The coordination state with the effects it may have on the core and clients.
    pub(super) fn coordination(&mut self) -> (&mut Coordination, CoordBridge<'_, ServerComm>) {
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
                let id = self.core.new_worker_id();
                self.comm.add_worker(id, outbox, writer);
                self.core.on_worker_added(
                    id,
                    registration,
                    now,
                    self.heartbeat.as_millis() as u64,
                    &mut self.comm,
                );
                if let Some(w) = self.core.worker(id) {
                    self.task_stream
                        .on_worker_joined(id, &w.registration.data_address);
                }
                if self.coordination.has_dataset_prefix(PLUGIN_DATASET_PREFIX) {
                    self.comm.send_worker(id, ToWorker::HasPlugins);
                }
                let _ = reply.send(id);
            }
            Event::WorkerClosed(id, reason) => {
                if let Some(worker) = self.core.worker(id) {
                    let name = worker.registration.name.clone();
                    if let Some(losses) = &self.losses {
                        let _ = losses.send(name.clone());
                    }
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

    /// Tell every worker to exit and give the writers a moment to deliver it.
    async fn stop_workers(&mut self) {
        let workers: Vec<WorkerId> = self.core.worker_ids().collect();
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

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Scheduler>();
    let _ = format_address;
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_comm::transport::tcp_split;
    use tokio::net::TcpStream;

    fn options() -> SchedulerOptions {
        SchedulerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            contact_host: "127.0.0.1".into(),
            secret: Secret::random(),
            scheduler_file: None,
            idle_timeout: None,
            heartbeat: Duration::from_secs(1),
            core: CoreConfig::default(),
            services: Vec::new(),
        }
    }

    /// Hundreds of peers connecting at once, before the scheduler takes any of them (as a
    /// thousand workers started together arrive faster than the accept loop runs): the
    /// kernel queues them all, and every one then completes the handshake. With a
    /// listen backlog of 128 the connections beyond it hung in SYN retransmits, or past
    /// the handshake timeout.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hundreds_of_simultaneous_connections_all_complete_the_handshake() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(128);
        let n = somaxconn.min(400);
        if n <= 128 {
            eprintln!("net.core.somaxconn is {n}: nothing beyond 128 to check");
            return;
        }
        let options = options();
        let secret = options.secret.clone();
        let scheduler = Scheduler::bind(options).await.unwrap();
        let id = scheduler.id().to_string();
        let address: SocketAddr = scheduler
            .address()
            .trim_start_matches("tcp://")
            .parse()
            .unwrap();
        // Connected by the kernel while nothing accepts yet.
        let connects: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(5),
                    TcpStream::connect(address),
                ))
            })
            .collect();
        let mut streams = Vec::with_capacity(n);
        for connect in connects {
            if let Ok(Ok(stream)) = connect.await.unwrap() {
                streams.push(stream);
            }
        }
        assert_eq!(streams.len(), n, "connections queued by the kernel, of {n}");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(scheduler.run(async {
            let _ = stopped.await;
        }));
        let handshakes: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let secret = secret.clone();
                tokio::spawn(async move {
                    let (mut reader, mut writer) = tcp_split(stream);
                    let name = format!("client-{i}");
                    let timeout = Duration::from_secs(20);
                    shoal_comm::auth::connect(
                        &mut reader,
                        &mut writer,
                        &secret,
                        Role::Client,
                        &name,
                        timeout,
                    )
                    .await
                    .map(|identity| (identity, reader, writer))
                })
            })
            .collect();
        let mut accepted = Vec::with_capacity(n);
        for handshake in handshakes {
            match handshake.await.unwrap() {
                Ok((identity, reader, writer)) => {
                    assert_eq!(identity, id);
                    accepted.push((reader, writer));
                }
                Err(e) => panic!("a handshake failed: {e}"),
            }
        }
        assert_eq!(accepted.len(), n);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the scheduler stops")
            .unwrap();
    }
}
