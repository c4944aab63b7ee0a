//! The Rust client: connect by address or scheduler file, submit graphs, wait for keys,
//! fetch results straight from the workers holding them, release, cancel, shut down.
//!
//! One background task reads the scheduler's messages; key states land in a shared map
//! and waiters are woken through a generation counter.

mod error;
mod reader;
mod results;

pub use error::ClientError;
pub use results::RECOMPUTE_WAIT;

use crate::net::{connect, spawn_writer, ConnectError, DataPool, Outbox};
use crate::scheduler_file::{self, SchedulerFileError};
use bytes::Bytes;
use reader::{read_loop, Shared};
use shoal_comm::auth::Role;
use shoal_comm::coordination::{CoordReply, CoordRequest};
use shoal_comm::message::{ClusterStatus, FromClient, KeyState, KeyUpdate, TaskSpec, ToClient};
use shoal_comm::{RawMessage, Secret};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

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
