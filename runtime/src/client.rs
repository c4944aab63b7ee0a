//! The Rust client: connect by address or scheduler file, submit graphs, wait for keys,
//! fetch results straight from the workers holding them, release, cancel, shut down.
//!
//! One background task reads the scheduler's messages; key states land in a shared map
//! and waiters are woken through a generation counter.

use crate::net::{connect, spawn_writer, ConnectError, DataPool, Outbox};
use crate::scheduler_file::{self, SchedulerFileError};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::auth::Role;
use shoal_comm::coordination::{CoordReply, CoordRequest};
use shoal_comm::ids::TaskId;
use shoal_comm::message::{
    ClusterStatus, DataReply, FromClient, KeyLocation, KeyState, KeyUpdate, TaskError, TaskSpec,
    ToClient,
};
use shoal_comm::transport::{MessageRead, Reader};
use shoal_comm::{RawMessage, Secret};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often `fetch` locates a result again after its holder failed to deliver it.
const FETCH_ATTEMPTS: u32 = 10;

/// How long `fetch` waits for results that are being recomputed after their worker left.
pub const RECOMPUTE_WAIT: Duration = Duration::from_secs(600);

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The scheduler file is missing, malformed or stale.
    #[error(transparent)]
    SchedulerFile(#[from] SchedulerFileError),
    /// Connecting or authenticating failed.
    #[error("cannot connect to the scheduler at {address}: {cause}")]
    Connect { address: String, cause: String },
    /// The connection to the scheduler closed.
    #[error("the connection to the scheduler closed: {0}")]
    Closed(String),
    /// The scheduler refused a request.
    #[error("the scheduler refused the request: {0}")]
    Refused(String),
    /// Waiting took longer than allowed.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// A task failed.
    #[error("task {key:?} failed ({kind}): {message}", key = .0.key, kind = .0.kind, message = .0.message)]
    TaskFailed(Box<TaskError>),
    /// A key was cancelled.
    #[error("key {0:?} was cancelled")]
    Cancelled(String),
    /// A result could not be fetched from any worker.
    #[error("cannot fetch {key:?}: {cause}")]
    Fetch { key: String, cause: String },
}

#[derive(Default)]
struct Shared {
    states: FxHashMap<String, KeyState>,
    replies: FxHashMap<u64, oneshot::Sender<ToClient>>,
    closed: Option<String>,
    /// Where every update is forwarded as well, once someone subscribed.
    subscriber: Option<mpsc::UnboundedSender<KeyUpdate>>,
}

/// A connection to a scheduler.
pub struct Client {
    outbox: Outbox,
    shared: Arc<Mutex<Shared>>,
    generation: watch::Receiver<u64>,
    scheduler_id: String,
    address: String,
    next_request: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    /// Data connections to the workers results were fetched from.
    data: DataPool,
    /// The token of the scheduler's dashboard (derived from the secret).
    dashboard_token: String,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connect to `address` with the cluster `secret`.
    ///
    /// # Errors
    /// Nothing listens, the handshake is refused (wrong secret, other version), or the
    /// timeout passes.
    pub async fn connect(
        address: &str,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Client::open(address, secret, timeout)
            .await
            .map_err(|e| ClientError::Connect {
                address: address.into(),
                cause: crate::error::chain(&e),
            })
    }

    /// Connect, keeping the typed cause of a failure.
    async fn open(
        address: &str,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let (reader, writer, scheduler_id) =
            connect(address, &secret, Role::Client, "client", timeout).await?;
        let (outbox, _) = spawn_writer(writer, "scheduler".into());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (bump, generation) = watch::channel(0u64);
        let reader = tokio::spawn(read_loop(reader, shared.clone(), bump));
        Ok(Client {
            outbox,
            shared,
            generation,
            scheduler_id,
            address: address.into(),
            next_request: AtomicU64::new(1),
            reader,
            dashboard_token: shoal_comm::auth::dashboard_token(&secret),
            data: DataPool::new(secret),
        })
    }

    /// Connect through a scheduler file, waiting up to `timeout` for it to appear.
    ///
    /// # Errors
    /// Each bad-file case has its own [`SchedulerFileError`]; a file whose scheduler is
    /// gone is reported as stale.
    pub async fn from_scheduler_file(
        path: &Path,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let owned = path.to_owned();
        let file = tokio::task::spawn_blocking(move || scheduler_file::read(&owned, timeout))
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))??;
        let secret = file.secret(path)?;
        let stale = |problem: String| SchedulerFileError::Stale {
            path: path.to_owned(),
            id: file.id.clone(),
            problem,
        };
        match Client::open(&file.address, secret, timeout.max(Duration::from_secs(1))).await {
            Ok(client) if client.scheduler_id != file.id => Err(stale(format!(
                "another scheduler ({}) now listens at {}",
                client.scheduler_id, file.address
            ))
            .into()),
            Ok(client) => Ok(client),
            Err(e) if e.nothing_listens() => {
                Err(stale(format!("nothing listens at {}", file.address)).into())
            }
            Err(e) => Err(ClientError::Connect {
                address: file.address.clone(),
                cause: crate::error::chain(&e),
            }),
        }
    }

    /// The id of the scheduler this client is connected to.
    pub fn scheduler_id(&self) -> &str {
        &self.scheduler_id
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn send(&self, msg: &FromClient, frames: Vec<Bytes>) -> Result<(), ClientError> {
        let raw =
            RawMessage::encode(msg, frames).map_err(|e| ClientError::Refused(e.to_string()))?;
        self.outbox
            .send(raw)
            .map_err(|_| ClientError::Closed(self.closed_reason()))
    }

    fn closed_reason(&self) -> String {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn request(
        &self,
        make: impl FnOnce(u64) -> FromClient,
        frames: Vec<Bytes>,
    ) -> Result<ToClient, ClientError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut shared = self.lock();
            if let Some(reason) = &shared.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            shared.replies.insert(id, tx);
        }
        self.send(&make(id), frames)?;
        rx.await
            .map_err(|_| ClientError::Closed(self.closed_reason()))
    }

    /// Submit tasks; the client will hear about (and keeps alive) the `wants` keys.
    /// `frames` hold the payloads the specs refer to by index.
    ///
    /// # Errors
    /// The scheduler refused the graph (with its reason) or the connection closed.
    pub async fn submit(
        &self,
        tasks: Vec<TaskSpec>,
        frames: Vec<Bytes>,
        wants: Vec<String>,
    ) -> Result<(), ClientError> {
        {
            // Forget earlier outcomes of resubmitted keys.
            let mut shared = self.lock();
            for key in &wants {
                shared.states.remove(key);
            }
        }
        match self
            .request(
                |request| FromClient::Submit {
                    request,
                    tasks,
                    wants,
                },
                frames,
            )
            .await?
        {
            ToClient::SubmitReply { error: None, .. } => Ok(()),
            ToClient::SubmitReply { error: Some(e), .. } => Err(ClientError::Refused(e)),
            other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    /// Wait until every key reached a final state; returns the states in order.
    ///
    /// # Errors
    /// The timeout passes or the connection closes.
    pub async fn wait(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
    ) -> Result<Vec<KeyState>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut generation = self.generation.clone();
        let mut remaining: Vec<&String> = keys.iter().collect();
        loop {
            generation.borrow_and_update();
            {
                let shared = self.lock();
                remaining.retain(|k| !shared.states.contains_key(*k));
                if remaining.is_empty() {
                    return Ok(keys.iter().map(|k| shared.states[k].clone()).collect());
                }
                if let Some(reason) = &shared.closed {
                    return Err(ClientError::Closed(reason.clone()));
                }
            }
            let changed = generation.changed();
            match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, changed).await.is_err() {
                        return Err(ClientError::Timeout(
                            timeout.unwrap_or_default(),
                            format!("{} keys (first: {:?})", remaining.len(), remaining[0]),
                        ));
                    }
                }
                None => {
                    let _ = changed.await;
                }
            }
        }
    }

    /// Every key update from now on, in arrival order (for clients that track futures
    /// themselves). A new subscription replaces the previous one; the stream ends when the
    /// connection closes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<KeyUpdate> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut shared = self.lock();
        if shared.closed.is_none() {
            shared.subscriber = Some(tx);
        }
        rx
    }

    /// The final state of a key, if it has one.
    pub fn state(&self, key: &str) -> Option<KeyState> {
        self.lock().states.get(key).cloned()
    }

    /// Where `keys` are held. A key whose holder left after it finished is being
    /// recomputed from its lineage: wait for it (up to [`RECOMPUTE_WAIT`]) instead of
    /// failing, so a worker leaving between "done" and "gather" loses nothing.
    async fn locate_held(&self, keys: &[String]) -> Result<Vec<KeyLocation>, ClientError> {
        let deadline = Instant::now() + RECOMPUTE_WAIT;
        loop {
            let locations = self.locate(keys).await?;
            let recomputing: Vec<String> = locations
                .iter()
                .filter(|l| l.computing)
                .map(|l| l.key.clone())
                .collect();
            if recomputing.is_empty() {
                return Ok(locations);
            }
            {
                let mut shared = self.lock();
                for key in &recomputing {
                    shared.states.remove(key);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(
                    RECOMPUTE_WAIT,
                    format!(
                        "{} keys lost with their worker to be recomputed",
                        recomputing.len()
                    ),
                ));
            }
            tracing::info!(
                keys = recomputing.len(),
                "results lost with their worker are being recomputed; waiting"
            );
            self.wait(&recomputing, Some(left)).await?;
        }
    }

    /// Fetch the results of finished keys straight from the workers holding them.
    ///
    /// # Errors
    /// A key failed, was cancelled, is unknown, or no holder could deliver it.
    pub async fn fetch(&self, keys: &[String]) -> Result<Vec<Bytes>, ClientError> {
        // A holder can die between "where is it" and the fetch: ask again (the scheduler
        // will have noticed and be recomputing), a bounded number of times.
        let mut attempt = 0;
        loop {
            let locations = self.locate_held(keys).await?;
            match self.fetch_from(keys, &locations).await {
                Err(ClientError::Fetch { key, cause }) if attempt < FETCH_ATTEMPTS => {
                    attempt += 1;
                    tracing::info!(%key, %cause, attempt, "fetch failed; locating the result again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                result => return result,
            }
        }
    }

    async fn fetch_from(
        &self,
        keys: &[String],
        locations: &[KeyLocation],
    ) -> Result<Vec<Bytes>, ClientError> {
        let mut by_holder: FxHashMap<String, Vec<(usize, TaskId)>> = FxHashMap::default();
        for (i, loc) in locations.iter().enumerate() {
            match (&loc.state, loc.task, loc.holders.first()) {
                (Some(KeyState::Erred(e)), _, _) => {
                    return Err(ClientError::TaskFailed(Box::new(e.clone())))
                }
                (_, Some(task), Some(holder)) => {
                    by_holder.entry(holder.clone()).or_default().push((i, task))
                }
                _ => {
                    return Err(ClientError::Fetch {
                        key: loc.key.clone(),
                        cause: "no worker holds it (not computed, released or lost)".into(),
                    })
                }
            }
        }
        // Every holder at once, each over its kept connection.
        let mut requests = tokio::task::JoinSet::new();
        for (holder, wanted) in by_holder {
            let pool = self.data.clone();
            requests.spawn(async move {
                let ids: Vec<TaskId> = wanted.iter().map(|(_, t)| *t).collect();
                let reply = pool.get(&holder, ids).await;
                (holder, wanted, reply)
            });
        }
        let mut out = vec![Bytes::new(); keys.len()];
        while let Some(done) = requests.join_next().await {
            let (holder, wanted, raw) =
                done.map_err(|e| ClientError::Closed(format!("a fetch task failed: {e}")))?;
            let first_key = keys[wanted[0].0].clone();
            let fail = |cause: String| ClientError::Fetch {
                key: first_key.clone(),
                cause,
            };
            let raw = raw.map_err(|e| {
                self.data.forget(&holder);
                fail(crate::error::chain(&e))
            })?;
            let reply: DataReply = raw.decode().map_err(|e| fail(e.to_string()))?;
            let frames: FxHashMap<TaskId, u32> = reply.found.into_iter().collect();
            for &(i, task) in &wanted {
                let frame = frames.get(&task).ok_or_else(|| ClientError::Fetch {
                    key: keys[i].clone(),
                    cause: format!("{holder} no longer holds it"),
                })?;
                out[i] = raw.frame(*frame).map_err(|e| fail(e.to_string()))?.clone();
            }
        }
        Ok(out)
    }

    /// Wait for keys and fetch their results; a failed key is an error.
    ///
    /// # Errors
    /// As [`Client::wait`] and [`Client::fetch`]; a failed or cancelled key.
    pub async fn gather(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
    ) -> Result<Vec<Bytes>, ClientError> {
        for (key, state) in keys.iter().zip(self.wait(keys, timeout).await?) {
            match state {
                KeyState::Erred(e) => return Err(ClientError::TaskFailed(Box::new(e))),
                KeyState::Cancelled => return Err(ClientError::Cancelled(key.clone())),
                KeyState::Memory { .. } => {}
            }
        }
        self.fetch(keys).await
    }

    /// Drop this client's interest in keys; data nobody needs is freed.
    ///
    /// # Errors
    /// The connection closed.
    pub fn release(&self, keys: Vec<String>) -> Result<(), ClientError> {
        {
            let mut shared = self.lock();
            for key in &keys {
                shared.states.remove(key);
            }
        }
        self.send(&FromClient::Release { keys }, Vec::new())
    }

    /// The data-server addresses of the workers holding each key (empty if not in memory).
    ///
    /// # Errors
    /// The connection closed.
    pub async fn who_has(&self, keys: &[String]) -> Result<Vec<Vec<String>>, ClientError> {
        let locations = self.locate(keys).await?;
        Ok(locations.into_iter().map(|l| l.holders).collect())
    }

    /// One who-has round trip: where `keys` are now.
    async fn locate(&self, keys: &[String]) -> Result<Vec<KeyLocation>, ClientError> {
        let reply = self
            .request(
                |request| FromClient::WhoHas {
                    request,
                    keys: keys.to_vec(),
                },
                Vec::new(),
            )
            .await?;
        let ToClient::WhoHasReply { locations, .. } = reply else {
            return Err(ClientError::Refused("unexpected reply to who-has".into()));
        };
        Ok(locations)
    }

    /// Copy keys that are in memory to every worker (`scatter(broadcast=True)`).
    ///
    /// # Errors
    /// The connection closed.
    pub fn replicate(&self, keys: Vec<String>) -> Result<(), ClientError> {
        self.send(&FromClient::Replicate { keys }, Vec::new())
    }

    /// Restart workers (names or addresses; empty: all) in their process; with
    /// `cancel_all` every key is cancelled first.
    ///
    /// # Errors
    /// The connection closed.
    pub fn restart(&self, workers: Vec<String>, cancel_all: bool) -> Result<(), ClientError> {
        self.send(
            &FromClient::Restart {
                workers,
                cancel_all,
            },
            Vec::new(),
        )
    }

    /// Retire workers (names or addresses) without losing their results.
    ///
    /// # Errors
    /// The connection closed.
    pub fn retire(&self, workers: Vec<String>) -> Result<(), ClientError> {
        self.send(&FromClient::RetireWorkers { workers }, Vec::new())
    }

    /// Task runs that ended at or after `since` (Unix seconds), at most `limit`.
    ///
    /// # Errors
    /// The connection closed.
    pub async fn task_stream(
        &self,
        since: f64,
        limit: u32,
    ) -> Result<Vec<shoal_comm::message::TaskRecord>, ClientError> {
        match self
            .request(
                |request| FromClient::TaskStream {
                    request,
                    since,
                    limit,
                },
                Vec::new(),
            )
            .await?
        {
            ToClient::TaskStreamReply { records, .. } => Ok(records),
            other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    /// Compute these failed keys again.
    ///
    /// # Errors
    /// The connection closed.
    pub fn retry(&self, keys: Vec<String>) -> Result<(), ClientError> {
        self.send(&FromClient::Retry { keys }, Vec::new())
    }

    /// A request on the scheduler's coordination state. A request that waits and is not
    /// answered within `timeout` is cancelled; the answer is then `Cancelled`, or the real
    /// one if it crossed the cancellation (an acquire granted, an item taken: never lost).
    ///
    /// # Errors
    /// The connection closed.
    pub async fn coord(
        &self,
        op: CoordRequest,
        timeout: Option<Duration>,
    ) -> Result<CoordReply, ClientError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        {
            let mut shared = self.lock();
            if let Some(reason) = &shared.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            shared.replies.insert(id, tx);
        }
        self.send(&FromClient::Coord { request: id, op }, Vec::new())?;
        let reply = match timeout {
            None => rx.await,
            Some(t) => match tokio::time::timeout(t, &mut rx).await {
                Ok(reply) => reply,
                Err(_) => {
                    self.send(&FromClient::CoordCancel { request: id }, Vec::new())?;
                    rx.await
                }
            },
        };
        match reply.map_err(|_| ClientError::Closed(self.closed_reason()))? {
            ToClient::CoordReply { reply, .. } => Ok(reply),
            other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    /// Cancel keys (for every client that wants them).
    ///
    /// # Errors
    /// The connection closed.
    pub fn cancel(&self, keys: Vec<String>) -> Result<(), ClientError> {
        self.send(&FromClient::Cancel { keys }, Vec::new())
    }

    /// The cluster's workers and task counts.
    ///
    /// # Errors
    /// The connection closed.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        match self
            .request(|request| FromClient::Status { request }, Vec::new())
            .await?
        {
            ToClient::StatusReply { status, .. } => Ok(*status),
            other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    /// The link that opens the scheduler's dashboard (with its token), if it runs one.
    ///
    /// # Errors
    /// The connection closed.
    pub async fn dashboard_link(&self) -> Result<Option<String>, ClientError> {
        let status = self.status().await?;
        Ok(self.dashboard_link_of(&status))
    }

    /// The dashboard link of a status this client fetched.
    pub fn dashboard_link_of(&self, status: &ClusterStatus) -> Option<String> {
        crate::dashboard_link::dashboard_link(
            &status.address,
            &status.services,
            &self.dashboard_token,
        )
    }

    /// Wait until at least `n` workers are connected.
    ///
    /// # Errors
    /// The timeout passes or the connection closes.
    pub async fn wait_for_workers(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<ClusterStatus, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if status.workers.len() >= n {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(
                    timeout,
                    format!("{n} workers ({} connected)", status.workers.len()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the whole cluster and wait (briefly) for the scheduler to close the connection.
    ///
    /// # Errors
    /// The connection was already closed.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.send(&FromClient::Shutdown, Vec::new())?;
        let mut generation = self.generation.clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.lock().closed.is_none() && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(100), generation.changed()).await;
        }
        Ok(())
    }
}

async fn read_loop(mut reader: Reader, shared: Arc<Mutex<Shared>>, bump: watch::Sender<u64>) {
    let reason = loop {
        let raw = match reader.recv().await {
            Ok(Some(raw)) => raw,
            Ok(None) => break "the scheduler closed the connection".to_string(),
            Err(e) => break format!("connection failed: {e}"),
        };
        let msg = match raw.decode::<ToClient>() {
            Ok(msg) => msg,
            Err(e) => break format!("the scheduler sent a malformed message: {e}"),
        };
        let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            ToClient::Updates(updates) => {
                for u in updates {
                    if let Some(tx) = &guard.subscriber {
                        if tx.send(u.clone()).is_err() {
                            guard.subscriber = None;
                        }
                    }
                    guard.states.insert(u.key, u.state);
                }
                drop(guard);
                bump.send_modify(|g| *g += 1);
            }
            ToClient::SubmitReply { request, .. }
            | ToClient::WhoHasReply { request, .. }
            | ToClient::StatusReply { request, .. }
            | ToClient::CoordReply { request, .. }
            | ToClient::TaskStreamReply { request, .. } => {
                if let Some(tx) = guard.replies.remove(&request) {
                    let _ = tx.send(msg);
                }
            }
            ToClient::Error { message } => {
                tracing::error!(%message, "the scheduler reported an error")
            }
            ToClient::Heartbeat => {}
        }
    };
    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
    guard.closed = Some(reason);
    guard.replies.clear();
    guard.subscriber = None;
    drop(guard);
    bump.send_modify(|g| *g += 1);
}
