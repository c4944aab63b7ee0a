//! The native side of `shoal.Client`: a Rust client on a shared async runtime. Every call
//! blocks the calling thread (the Python wrapper detaches from the interpreter first).

use crate::keys::{Registry, Releases};
use bytes::Bytes;
use shoal_comm::message::{ClusterStatus, Resource, TaskError, TaskSpec};
use shoal_comm::Secret;
use shoal_runtime::client::{Client, ClientError};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// A task run as Python sees it: (key, worker, start, stop, finished).
pub type RunOut = (String, String, f64, f64, bool);

/// A task error as Python sees it: (failed key, kind, message, traceback, pickled exception).
pub type ErrorOut = (String, String, String, Option<String>, Vec<u8>);

pub fn error_out(e: TaskError) -> ErrorOut {
    let message = shoal_launcher::task_error_message(&e);
    (
        e.key,
        e.kind.name().to_string(),
        message,
        e.traceback,
        e.exception,
    )
}

/// A connected client, the states of the keys its futures hold, and the releases it
/// has yet to send.
pub struct NativeClient {
    pub client: Arc<Client>,
    pub keys: Arc<Registry>,
    pub releases: Arc<Releases>,
}

/// Queued releases are sent at least this often.
const RELEASE_INTERVAL: Duration = Duration::from_millis(50);

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
        NativeClient::start(client)
    }

    /// Feed the key states from the client's updates, and send queued releases
    /// regularly, on the shared runtime.
    fn start(client: Client) -> Result<NativeClient, ClientError> {
        let rt = runtime()?;
        let client = Arc::new(client);
        let keys = Arc::new(Registry::new());
        let releases = Arc::new(Releases::default());
        let mut updates = client.subscribe();
        let registry = Arc::clone(&keys);
        rt.spawn(async move {
            while let Some(first) = updates.recv().await {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match updates.try_recv() {
                        Ok(u) => batch.push(u),
                        Err(_) => break,
                    }
                }
                registry.apply(batch);
            }
            registry.close("the connection to the scheduler closed");
        });
        let weak_client = Arc::downgrade(&client);
        let weak_releases = Arc::downgrade(&releases);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(RELEASE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(client), Some(releases)) =
                    (weak_client.upgrade(), weak_releases.upgrade())
                else {
                    return;
                };
                if releases.flush_then(&client, || Ok(())).is_err() {
                    return;
                }
            }
        });
        Ok(NativeClient {
            client,
            keys,
            releases,
        })
    }

    /// Send queued releases, then `then` (so no message overtakes a release queued
    /// before it).
    ///
    /// # Errors
    /// The connection closed.
    pub fn after_releases<T>(
        &self,
        then: impl FnOnce() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.releases.flush_then(&self.client, then)
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
        NativeClient::start(client)
    }

    /// Submit tasks in one message; `wants` are the keys this client tracks. With
    /// `order`, the tasks' priorities are replaced by their depth-first order from `wants`
    /// ([`shoal_runtime::order`]), earliest highest.
    ///
    /// # Errors
    /// The scheduler refused the graph or the connection closed.
    pub fn submit(
        &self,
        mut tasks: Vec<TaskIn>,
        wants: Vec<String>,
        order: bool,
    ) -> Result<(), ClientError> {
        if order {
            prioritise_depth_first(&mut tasks, &wants);
        }
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
        let rt = runtime()?;
        self.after_releases(|| rt.block_on(self.client.submit(specs, frames, wants)))
    }

    /// Submit dependency-free tasks sharing priority, retries, workers and resources;
    /// task `i`'s payload is the next `lengths[i]` bytes of `payloads`. A key given twice
    /// is one task.
    ///
    /// # Errors
    /// The scheduler refused the graph or the connection closed.
    pub fn submit_plain(
        &self,
        keys: Vec<String>,
        mut payloads: Bytes,
        lengths: &[usize],
        common: TaskIn,
    ) -> Result<(), ClientError> {
        let resources: Vec<Resource> = common
            .resources
            .into_iter()
            .map(|(name, amount)| Resource { name, amount })
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let mut frames = Vec::with_capacity(keys.len());
        let mut specs = Vec::with_capacity(keys.len());
        for (key, &len) in keys.iter().zip(lengths) {
            let frame = payloads.split_to(len);
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
        let rt = runtime()?;
        self.after_releases(|| rt.block_on(self.client.submit(specs, frames, keys)))
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

    /// The link that opens the dashboard, with its token; `None` without a dashboard.
    ///
    /// # Errors
    /// The connection closed.
    pub fn dashboard_link(&self) -> Result<Option<String>, ClientError> {
        runtime()?.block_on(self.client.dashboard_link())
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
        let rt = runtime()?;
        self.after_releases(|| rt.block_on(self.client.coord(op, timeout)))
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

    /// Stop the cluster.
    ///
    /// # Errors
    /// The connection was already closed.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        runtime()?.block_on(self.client.shutdown())
    }
}

/// Priorities from the depth-first order of `tasks` (inputs outside `tasks`, held by the
/// cluster already, do not count).
fn prioritise_depth_first(tasks: &mut [TaskIn], wants: &[String]) {
    let index: rustc_hash::FxHashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let outputs: Vec<usize> = wants
        .iter()
        .filter_map(|k| index.get(k.as_str()).copied())
        .collect();
    drop(index);
    let positions = shoal_runtime::order::depth_first(&deps, &outputs);
    for (task, pos) in tasks.iter_mut().zip(positions) {
        task.priority = i32::try_from(pos).map_or(i32::MIN, |p| -p);
    }
}
