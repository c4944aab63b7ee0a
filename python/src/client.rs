//! The native side of `shoal.Client`: a Rust client on a shared async runtime. Every call
//! blocks the calling thread (the Python wrapper detaches from the interpreter first).

use bytes::Bytes;
use shoal_comm::message::{ClusterStatus, KeyState, KeyUpdate, Resource, TaskError, TaskSpec};
use shoal_comm::Secret;
use shoal_runtime::client::{Client, ClientError};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The async runtime every client of this process shares.
///
/// # Errors
/// The runtime cannot start (no threads left).
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, ClientError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("shoal-client")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ClientError::Closed(format!("cannot start the async runtime: {e}")))
}

/// One task as the Python client describes it.
pub struct TaskIn {
    pub key: String,
    pub deps: Vec<String>,
    pub payload: Option<Vec<u8>>,
    pub priority: i32,
    pub retries: u32,
    pub workers: Vec<String>,
    pub resources: Vec<(String, f64)>,
}

/// A key's final state as Python sees it: (key, state, size, error).
pub type UpdateOut = (String, &'static str, u64, Option<ErrorOut>);

/// A task run as Python sees it: (key, worker, start, stop, finished).
pub type RunOut = (String, String, f64, f64, bool);

/// A task error as Python sees it: (failed key, kind, message, traceback, pickled exception).
pub type ErrorOut = (String, String, String, Option<String>, Vec<u8>);

fn error_out(e: TaskError) -> ErrorOut {
    (
        e.key,
        e.kind.name().to_string(),
        e.message,
        e.traceback,
        e.exception,
    )
}

/// A connected client and its stream of key updates.
pub struct NativeClient {
    pub client: Client,
    updates: Mutex<mpsc::UnboundedReceiver<KeyUpdate>>,
}

impl NativeClient {
    /// Connect by scheduler file, or by address with the secret from `SHOAL_SECRET`.
    ///
    /// # Errors
    /// No way to reach the scheduler, a bad file, a refused handshake, or the timeout.
    pub fn connect(
        address: Option<&str>,
        scheduler_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<NativeClient, ClientError> {
        let rt = runtime()?;
        let client = rt.block_on(async {
            match (scheduler_file, address) {
                (Some(path), _) => Client::from_scheduler_file(path, timeout).await,
                (None, Some(address)) => {
                    let secret = std::env::var("SHOAL_SECRET")
                        .ok()
                        .and_then(|hex| Secret::from_hex(&hex).ok())
                        .ok_or_else(|| ClientError::Connect {
                            address: address.into(),
                            cause: "connecting by address needs the cluster secret in SHOAL_SECRET (hex); or pass scheduler_file=".into(),
                        })?;
                    Client::connect(address, secret, timeout).await
                }
                (None, None) => Err(ClientError::Connect {
                    address: String::new(),
                    cause: "give an address or a scheduler_file (or set SHOAL_SCHEDULER_FILE)"
                        .into(),
                }),
            }
        })?;
        let updates = Mutex::new(client.subscribe());
        Ok(NativeClient { client, updates })
    }

    /// Connect to the scheduler of the worker this process is, with the worker's secret.
    ///
    /// # Errors
    /// Not inside a worker, or connecting failed.
    pub fn connect_from_worker(timeout: Duration) -> Result<NativeClient, ClientError> {
        let identity =
            shoal_runtime::worker::identity::current().ok_or_else(|| ClientError::Connect {
                address: String::new(),
                cause: "get_client() from a task needs a worker: this process is not one".into(),
            })?;
        let client = runtime()?.block_on(Client::connect(
            &identity.scheduler_address,
            identity.secret.clone(),
            timeout,
        ))?;
        let updates = Mutex::new(client.subscribe());
        Ok(NativeClient { client, updates })
    }

    /// Submit tasks in one message; `wants` are the keys this client tracks.
    ///
    /// # Errors
    /// The scheduler refused the graph or the connection closed.
    pub fn submit(&self, tasks: Vec<TaskIn>, wants: Vec<String>) -> Result<(), ClientError> {
        let mut frames = Vec::new();
        let specs = tasks
            .into_iter()
            .map(|t| {
                let payload = t.payload.map(|p| {
                    frames.push(Bytes::from(p));
                    (frames.len() - 1) as u32
                });
                TaskSpec {
                    key: t.key,
                    deps: t.deps,
                    kind: shoal_comm::message::ExecutorKind::Python,
                    payload,
                    priority: t.priority,
                    resources: t
                        .resources
                        .into_iter()
                        .map(|(name, amount)| Resource { name, amount })
                        .collect(),
                    retries: t.retries,
                    workers: t.workers,
                }
            })
            .collect();
        runtime()?.block_on(self.client.submit(specs, frames, wants))
    }

    /// Submit dependency-free tasks sharing priority, retries, workers and resources;
    /// payloads are copied into one buffer. A key given twice is one task.
    ///
    /// # Errors
    /// The scheduler refused the graph or the connection closed.
    pub fn submit_plain(
        &self,
        keys: Vec<String>,
        payloads: &[&[u8]],
        common: TaskIn,
    ) -> Result<(), ClientError> {
        let mut buffer = bytes::BytesMut::with_capacity(payloads.iter().map(|p| p.len()).sum());
        for p in payloads {
            buffer.extend_from_slice(p);
        }
        let mut buffer = buffer.freeze();
        let resources: Vec<Resource> = common
            .resources
            .into_iter()
            .map(|(name, amount)| Resource { name, amount })
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let mut frames = Vec::with_capacity(keys.len());
        let mut specs = Vec::with_capacity(keys.len());
        for (key, p) in keys.iter().zip(payloads) {
            let frame = buffer.split_to(p.len());
            if !seen.insert(key.as_str()) {
                continue;
            }
            frames.push(frame);
            specs.push(TaskSpec {
                key: key.clone(),
                deps: Vec::new(),
                kind: shoal_comm::message::ExecutorKind::Python,
                payload: Some((frames.len() - 1) as u32),
                priority: common.priority,
                resources: resources.clone(),
                retries: common.retries,
                workers: common.workers.clone(),
            });
        }
        runtime()?.block_on(self.client.submit(specs, frames, keys))
    }

    /// Key updates that arrived, waiting up to `timeout` for the first; `None` once the
    /// connection closed.
    ///
    /// # Errors
    /// The runtime is gone.
    pub fn next_updates(&self, timeout: Duration) -> Result<Option<Vec<UpdateOut>>, ClientError> {
        let mut rx = self.updates.lock().unwrap_or_else(|e| e.into_inner());
        let first = runtime()?.block_on(async { tokio::time::timeout(timeout, rx.recv()).await });
        let mut out = Vec::new();
        match first {
            Err(_) => return Ok(Some(out)),
            Ok(None) => return Ok(None),
            Ok(Some(u)) => out.push(update_out(u)),
        }
        while let Ok(u) = rx.try_recv() {
            out.push(update_out(u));
        }
        Ok(Some(out))
    }

    /// Fetch results from the workers holding them.
    ///
    /// # Errors
    /// A key failed, is unknown, or no holder could deliver it.
    pub fn fetch(&self, keys: &[String]) -> Result<Vec<Bytes>, ClientError> {
        runtime()?.block_on(self.client.fetch(keys))
    }

    /// The cluster's state.
    ///
    /// # Errors
    /// The connection closed.
    pub fn status(&self) -> Result<ClusterStatus, ClientError> {
        runtime()?.block_on(self.client.status())
    }

    /// Wait until `n` workers are connected; returns how many are.
    ///
    /// # Errors
    /// The timeout passed or the connection closed.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<usize, ClientError> {
        let status = runtime()?.block_on(self.client.wait_for_workers(n, timeout))?;
        Ok(status.workers.len())
    }

    /// The workers holding each key.
    ///
    /// # Errors
    /// The connection closed.
    pub fn who_has(&self, keys: &[String]) -> Result<Vec<Vec<String>>, ClientError> {
        runtime()?.block_on(self.client.who_has(keys))
    }

    /// A request on the scheduler's coordination state (see
    /// [`shoal_runtime::client::Client::coord`]).
    ///
    /// # Errors
    /// The connection closed.
    pub fn coord(
        &self,
        op: shoal_comm::coordination::CoordRequest,
        timeout: Option<Duration>,
    ) -> Result<shoal_comm::coordination::CoordReply, ClientError> {
        runtime()?.block_on(self.client.coord(op, timeout))
    }

    /// Task runs as `(key, worker, start, stop, ok)`.
    ///
    /// # Errors
    /// The connection closed.
    pub fn task_stream(&self, since: f64, limit: u32) -> Result<Vec<RunOut>, ClientError> {
        let records = runtime()?.block_on(self.client.task_stream(since, limit))?;
        Ok(records
            .into_iter()
            .map(|r| (r.key, r.worker, r.start, r.stop, r.ok))
            .collect())
    }

    /// The final states known for these keys (`None`: not final yet, or never heard of),
    /// as `next_updates` gives them.
    pub fn key_states(&self, keys: Vec<String>) -> Vec<Option<UpdateOut>> {
        keys.into_iter()
            .map(|key| {
                let state = self.client.state(&key)?;
                Some(update_out(KeyUpdate { key, state }))
            })
            .collect()
    }

    /// Stop the cluster.
    ///
    /// # Errors
    /// The connection was already closed.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        runtime()?.block_on(self.client.shutdown())
    }
}

fn update_out(u: KeyUpdate) -> UpdateOut {
    match u.state {
        KeyState::Memory { size } => (u.key, "finished", size, None),
        KeyState::Erred(e) => (u.key, "error", 0, Some(error_out(e))),
        KeyState::Cancelled => (u.key, "cancelled", 0, None),
    }
}
