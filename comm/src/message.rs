//! Control messages, one enum per direction.
//!
//! Payloads never appear inline: fields named `payload`/`frame` are indices into the data
//! frames of the [`crate::RawMessage`] that carries the control message.

use crate::coordination::{CoordReply, CoordRequest};
use crate::ids::{TaskId, WorkerId};
use serde::{Deserialize, Serialize};

/// How a task is executed on a worker. The scheduler only routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Does nothing, produces an empty result.
    Noop,
    /// Sleeps for `ms` milliseconds (payload: msgpack `{ms}`), produces an empty result.
    Sleep,
    /// Produces `size` bytes of value `fill` (payload: msgpack `{size, fill}`).
    Bytes,
    /// Concatenates its inputs in dependency order.
    Concat,
    /// Interprets inputs as little-endian u64 and adds them, plus `add` from the payload.
    Sum,
    /// Fails with the message in the payload.
    Fail,
    /// Adds up every byte of its inputs (a little-endian u64): checks large results.
    Checksum,
    /// A pickled Python callable; needs a worker hosted in a Python interpreter.
    Python,
}

impl ExecutorKind {
    /// Every kind, for error messages.
    pub const ALL: &'static [&'static str] = &[
        "noop", "sleep", "bytes", "concat", "sum", "fail", "checksum", "python",
    ];
}

/// A named amount of an abstract resource (`GPU = 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource's name, as workers declare it (`GPU`).
    pub name: String,
    /// How much of it.
    pub amount: f64,
}

/// One task as a client submits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique key chosen by the client.
    pub key: String,
    /// Keys whose results are this task's inputs, in order. They may name tasks of the same
    /// submission or results already held by the cluster.
    pub deps: Vec<String>,
    /// How the task is executed.
    pub kind: ExecutorKind,
    /// Data frame holding the opaque payload, if any.
    pub payload: Option<u32>,
    /// Higher runs first; ties run in submission order.
    pub priority: i32,
    /// Resources one run of the task occupies on its worker.
    pub resources: Vec<Resource>,
    /// How many times a failing task is retried before it errs.
    pub retries: u32,
    /// If non-empty, only workers with one of these names or addresses may run the task.
    pub workers: Vec<String>,
}

impl TaskSpec {
    /// A task with defaults for everything but key, kind and dependencies.
    pub fn new(key: impl Into<String>, kind: ExecutorKind, deps: Vec<String>) -> Self {
        TaskSpec {
            key: key.into(),
            deps,
            kind,
            payload: None,
            priority: 0,
            resources: Vec::new(),
            retries: 0,
            workers: Vec::new(),
        }
    }
}

/// What kind of failure a [`TaskError`] is. Its name ([`TaskErrorKind::name`]) is what
/// clients show and the Python package tells failures apart by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskErrorKind {
    /// The task itself failed (a built-in task's error, a task that panicked).
    TaskFailed,
    /// The task was running on too many workers that died (`--allowed-failures`).
    KilledWorker,
    /// No worker of the cluster can run the task's executor kind.
    Unsupported,
    /// The result is larger than the worker's memory limit and cannot be spilled.
    MemoryError,
    /// An input vanished from the worker before the task started.
    MissingData,
    /// A built-in task's arguments ask for what this machine cannot do.
    BadPayload,
    /// An exception raised by the task's code, by its type name (a Python exception class).
    Exception(String),
}

impl TaskErrorKind {
    /// The kind from its name: a known kind, or else an exception type name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "TaskFailed" => TaskErrorKind::TaskFailed,
            "KilledWorker" => TaskErrorKind::KilledWorker,
            "Unsupported" => TaskErrorKind::Unsupported,
            "MemoryError" => TaskErrorKind::MemoryError,
            "MissingData" => TaskErrorKind::MissingData,
            "BadPayload" => TaskErrorKind::BadPayload,
            other => TaskErrorKind::Exception(other.to_string()),
        }
    }

    /// The kind's name (for an exception, its type name).
    pub fn name(&self) -> &str {
        match self {
            TaskErrorKind::TaskFailed => "TaskFailed",
            TaskErrorKind::KilledWorker => "KilledWorker",
            TaskErrorKind::Unsupported => "Unsupported",
            TaskErrorKind::MemoryError => "MemoryError",
            TaskErrorKind::MissingData => "MissingData",
            TaskErrorKind::BadPayload => "BadPayload",
            TaskErrorKind::Exception(name) => name,
        }
    }
}

impl std::fmt::Display for TaskErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// The key of the task that failed first (for a dependent, the failed dependency).
    pub key: String,
    /// What kind of failure it is.
    pub kind: TaskErrorKind,
    /// Human-readable message.
    pub message: String,
    /// Remote traceback, where the executor has one.
    pub traceback: Option<String>,
    /// Executor-specific encoded exception (a pickled Python exception), if any.
    #[serde(with = "serde_bytes")]
    pub exception: Vec<u8>,
}

#[cfg(test)]
mod task_error_kind_tests {
    use super::TaskErrorKind;

    #[test]
    fn names_round_trip_and_unknown_names_are_exceptions() {
        for kind in [
            TaskErrorKind::TaskFailed,
            TaskErrorKind::KilledWorker,
            TaskErrorKind::Unsupported,
            TaskErrorKind::MemoryError,
            TaskErrorKind::MissingData,
            TaskErrorKind::BadPayload,
            TaskErrorKind::Exception("ZeroDivisionError".into()),
        ] {
            assert_eq!(TaskErrorKind::from_name(kind.name()), kind);
            let raw = crate::RawMessage::encode(&kind, Vec::new()).expect("encodes");
            assert_eq!(raw.decode::<TaskErrorKind>().expect("decodes"), kind);
        }
        assert_eq!(
            TaskErrorKind::from_name("ValueError").to_string(),
            "ValueError"
        );
    }
}

/// Final state of a key a client asked to hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KeyState {
    /// The result is held in the cluster; `size` is its size in bytes.
    Memory {
        /// Size of the result in bytes.
        size: u64,
    },
    /// The task failed.
    Erred(TaskError),
    /// The key was cancelled or released before it finished.
    Cancelled,
}

/// Update about one wanted key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyUpdate {
    /// The key this update is about.
    pub key: String,
    /// Its final state.
    pub state: KeyState,
}

/// Where a client can fetch a key's result (one per key asked about, in order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyLocation {
    /// The id the holders store the result under.
    pub task: Option<TaskId>,
    /// The workers holding it, as indices into the reply's data-server addresses
    /// (empty if not in memory).
    pub holders: Vec<u32>,
    /// The current state, if the key is finished.
    pub state: Option<KeyState>,
    /// The key is being computed (again, after its holder left): its result is coming.
    pub computing: bool,
}

/// Worker figures shown by `shoal status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// Resident set size of the worker process.
    pub rss: u64,
    /// Bytes of results held.
    pub stored_bytes: u64,
    /// Number of results held.
    pub stored_count: u64,
    /// Tasks running now.
    pub executing: u32,
    /// Tasks waiting on the worker (inputs being fetched or threads busy).
    pub queued: u32,
    /// Memory figures (managed, spilled, pause state, spill traffic).
    pub memory: MemoryMetrics,
    /// Results fetched from peers since the worker started, by transport.
    #[serde(default)]
    pub transfers: TransferMetrics,
}

/// Results a worker fetched from its peers since it started, by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferMetrics {
    /// Results fetched over TCP.
    pub tcp_count: u64,
    /// Bytes of the results fetched over TCP.
    pub tcp_bytes: u64,
    /// Results fetched over MPI.
    pub mpi_count: u64,
    /// Bytes of the results fetched over MPI.
    pub mpi_bytes: u64,
}

/// A worker's memory, as its heartbeats carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryMetrics {
    /// Estimated bytes of the results held in memory.
    pub managed: u64,
    /// Bytes of results spilled to disk (as stored there).
    pub spilled: u64,
    /// Number of results spilled to disk.
    pub spilled_count: u64,
    /// The worker is paused: memory above the pause threshold.
    pub paused: bool,
    /// Values written to disk since the worker started.
    pub spill_count: u64,
    /// Bytes written to disk.
    pub spill_bytes: u64,
    /// Seconds spent writing them.
    pub spill_seconds: f64,
    /// Values read back from disk since the worker started.
    pub unspill_count: u64,
    /// Bytes read back from disk.
    pub unspill_bytes: u64,
    /// Seconds spent reading them back.
    pub unspill_seconds: f64,
    /// The target, spill, pause and terminate thresholds as fractions of the memory
    /// limit (0: off).
    #[serde(default)]
    pub thresholds: [f64; 4],
}

/// One worker as `shoal status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id at this scheduler.
    pub id: WorkerId,
    /// The worker's name.
    pub name: String,
    /// Its data-server address.
    pub address: String,
    /// Threads running tasks.
    pub nthreads: u32,
    /// Its memory limit in bytes (0: none).
    pub memory_limit: u64,
    /// Abstract resources it offers.
    pub resources: Vec<Resource>,
    /// Its figures from the latest heartbeat.
    pub metrics: WorkerMetrics,
    /// Tasks the scheduler has assigned to the worker and not yet heard back about.
    pub assigned: u64,
    /// Tasks this worker finished since it joined.
    pub finished: u64,
    /// Host the worker runs on.
    pub host: String,
    /// Process id of the worker on its host.
    pub pid: u32,
}

/// The cluster as `shoal status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The scheduler's unique id for this run.
    pub scheduler_id: String,
    /// The address clients and workers connect to.
    pub address: String,
    /// Every connected worker.
    pub workers: Vec<WorkerInfo>,
    /// Task counts by state name (`waiting`, `ready`, `queued`, `running`, `memory`, `erred`, `released`).
    pub tasks: Vec<(String, u64)>,
    /// Clients connected now.
    pub clients: u32,
    /// Tasks finished since the scheduler started.
    pub tasks_finished: u64,
    /// Workers that failed to start and said why (the latest first, a bounded number).
    #[serde(default)]
    pub failed_starts: Vec<StartFailure>,
    /// The scheduler's other ports by service name (`dashboard`), as the scheduler file
    /// lists them.
    #[serde(default)]
    pub services: Vec<(String, u16)>,
}

/// A worker that could not start (a bad setting on its node, an unusable directory)
/// tells the scheduler why before it exits, so that `shoal status` shows why workers
/// never came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartFailure {
    /// The worker's name.
    pub name: String,
    /// The host it tried to start on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The worker's error message.
    pub error: String,
    /// Seconds since the Unix epoch, by the scheduler's clock.
    pub at: f64,
}

/// Client → scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromClient {
    /// Add tasks; the client wants to hear about (and keeps alive) the `wants` keys, which
    /// may also name keys already in the cluster.
    Submit {
        /// Request id the reply carries.
        request: u64,
        /// The tasks, in any order.
        tasks: Vec<TaskSpec>,
        /// Keys the client wants to hear about.
        wants: Vec<String>,
    },
    /// The client no longer needs these keys; data nobody else needs is freed.
    Release {
        /// Keys to release.
        keys: Vec<String>,
    },
    /// Stop computing these keys (and what only they need); they end as `Cancelled`.
    Cancel {
        /// Keys to cancel.
        keys: Vec<String>,
    },
    /// Where are these keys held?
    WhoHas {
        /// Request id the reply carries.
        request: u64,
        /// Keys to locate.
        keys: Vec<String>,
    },
    /// Copy these keys (in memory now) to every worker (`scatter(broadcast=True)`).
    Replicate {
        /// Keys to copy.
        keys: Vec<String>,
    },
    /// Report the cluster state.
    Status {
        /// Request id the reply carries.
        request: u64,
    },
    /// Stop the whole cluster: workers, then the scheduler.
    Shutdown,
    /// I am alive.
    Heartbeat,
    /// Compute these failed keys again, with the failed inputs they need.
    Retry {
        /// Failed keys to compute again.
        keys: Vec<String>,
    },
    /// A request on the named coordination state, answered by `CoordReply`.
    Coord {
        /// Request id the reply carries.
        request: u64,
        /// The operation.
        op: CoordRequest,
    },
    /// Stop waiting on an earlier `Coord` request (answered `Cancelled` if it was still
    /// waiting; its real answer otherwise).
    CoordCancel {
        /// The id of the `Coord` request to stop waiting on.
        request: u64,
    },
    /// Restart these workers (names or addresses; empty: all) in their process; with
    /// `cancel_all`, every key of every client is cancelled first (`Client.restart`).
    Restart {
        /// Workers to restart.
        workers: Vec<String>,
        /// Cancel every key first.
        cancel_all: bool,
    },
    /// Retire these workers (names or addresses) without losing data: results only they
    /// hold are copied elsewhere first, then they shut down.
    RetireWorkers {
        /// Workers to retire.
        workers: Vec<String>,
    },
    /// The most recent task runs that ended at or after `since` (Unix seconds), at most
    /// `limit`.
    TaskStream {
        /// Request id the reply carries.
        request: u64,
        /// Earliest end time of a run to report (Unix seconds).
        since: f64,
        /// Most runs to report.
        limit: u32,
    },
}

/// One task run as the task stream reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's key.
    pub key: String,
    /// The data address of the worker that ran it.
    pub worker: String,
    /// Unix seconds at which its worker reported it started.
    pub start: f64,
    /// Unix seconds at which its worker reported it ended.
    pub stop: f64,
    /// Finished (else failed).
    pub ok: bool,
}

/// Scheduler → client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToClient {
    /// Answer to `Submit`; on error nothing of the submission was added.
    SubmitReply {
        /// The request answered.
        request: u64,
        /// Why the submission was refused, if it was.
        error: Option<String>,
    },
    /// Wanted keys that reached a final state.
    Updates(Vec<KeyUpdate>),
    /// Answer to `WhoHas`: a location per key asked about, in order; holders refer to
    /// `addresses`, each data-server address once.
    WhoHasReply {
        /// The request answered.
        request: u64,
        /// The holders' data-server addresses, each once.
        addresses: Vec<String>,
        /// One location per key asked about, in order.
        locations: Vec<KeyLocation>,
    },
    /// Answer to `Status`.
    StatusReply {
        /// The request answered.
        request: u64,
        /// The cluster's state.
        status: Box<ClusterStatus>,
    },
    /// Answer to `Coord`.
    CoordReply {
        /// The request answered.
        request: u64,
        /// The answer.
        reply: CoordReply,
    },
    /// Answer to `TaskStream`, oldest first.
    TaskStreamReply {
        /// The request answered.
        request: u64,
        /// The task runs.
        records: Vec<TaskRecord>,
    },
    /// A message the scheduler could not accept (malformed, unknown); it kept serving.
    Error {
        /// What was wrong with the message.
        message: String,
    },
    /// I am alive.
    Heartbeat,
}

/// A worker's first message after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The worker's name (unique in the cluster).
    pub name: String,
    /// Threads running tasks.
    pub nthreads: u32,
    /// Memory limit in bytes (0: none).
    pub memory_limit: u64,
    /// Abstract resources it offers.
    pub resources: Vec<Resource>,
    /// Address of the worker's data server (`tcp://host:port`).
    pub data_address: String,
    /// The machine's host name.
    pub host: String,
    /// The worker's process id.
    pub pid: u32,
    /// Executor kinds this worker can run.
    pub executors: Vec<ExecutorKind>,
}

/// A task result a worker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFinished {
    /// The task.
    pub id: TaskId,
    /// Size of its result in bytes.
    pub size: u64,
}

/// A task failure a worker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    /// The task.
    pub id: TaskId,
    /// `key` is filled in by the scheduler; workers leave it empty.
    pub error: TaskError,
}

/// Worker → scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message: who I am.
    Register(Registration),
    /// These tasks started running.
    Started(Vec<TaskId>),
    /// These tasks finished; their results are held here.
    Finished(Vec<TaskFinished>),
    /// These tasks failed.
    Failed(Vec<TaskFailed>),
    /// Answer to `Steal`: `true` where the task was handed back, `false` where it already
    /// ran or runs.
    StealReply(Vec<(TaskId, bool)>),
    /// An input could not be fetched from any holder the scheduler named.
    MissingData {
        /// The task that needed the input.
        task: TaskId,
        /// The input no holder delivered.
        missing: TaskId,
        /// The holders that were tried.
        holders: Vec<WorkerId>,
    },
    /// I am alive; here are my figures.
    Heartbeat(WorkerMetrics),
    /// I am leaving on my own (end of lifetime, a signal): my queued work goes elsewhere,
    /// and tasks running here when I go did not kill me.
    Retiring,
    /// Memory passed the pause threshold (`true`: start nothing new here) or fell back
    /// under it (`false`).
    Paused(bool),
    /// These results moved to disk here (`true`) or back into memory (`false`).
    Spilled {
        /// The results.
        ids: Vec<TaskId>,
        /// `true`: now on disk; `false`: back in memory.
        on_disk: bool,
    },
    /// Copies asked for by `Replicate` are held here now.
    Replicated(Vec<TaskId>),
    /// Instead of `Register`: this worker failed to start, and why; it exits.
    StartFailed(StartFailure),
}

/// An input of a task to compute: its id and where it is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// The input's task.
    pub id: TaskId,
    /// Workers holding it; may include the receiving worker itself.
    pub holders: Vec<WorkerId>,
    /// Its size in bytes, as reported by the worker that produced it (bounds how much a
    /// worker fetches at once).
    pub size: u64,
}

/// One task a worker must run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeTask {
    /// The task.
    pub id: TaskId,
    /// How to execute it.
    pub kind: ExecutorKind,
    /// Data frame holding the payload.
    pub payload: Option<u32>,
    /// Higher runs first.
    pub priority: i32,
    /// Inputs in dependency order.
    pub inputs: Vec<Input>,
    /// Resources one run occupies.
    pub resources: Vec<Resource>,
}

/// Scheduler → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Answer to `Register`: the worker's id, the heartbeat period and its peers.
    Registered {
        /// The worker's id.
        id: WorkerId,
        /// Heartbeat period in milliseconds.
        heartbeat_ms: u64,
        /// Every other worker's id and data address.
        peers: Vec<(WorkerId, String)>,
    },
    /// Run these tasks.
    Compute(Vec<ComputeTask>),
    /// Hand these tasks back if they have not started.
    Steal(Vec<TaskId>),
    /// Drop these results (and forget these tasks if queued).
    Release(Vec<TaskId>),
    /// Fetch these results from their holders and keep them as held here.
    Replicate(Vec<Input>),
    /// A peer joined.
    PeerJoined(WorkerId, String),
    /// A peer left.
    PeerLeft(WorkerId),
    /// I am alive.
    Heartbeat,
    /// Exit cleanly.
    Shutdown,
    /// Drop every result and start a fresh session with the scheduler, in this process.
    Restart,
    /// Worker plugins are registered: set them up before the first task.
    HasPlugins,
}

/// Data requests between workers (and from clients to workers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataRequest {
    /// Send the results of these tasks.
    Get(Vec<TaskId>),
}

/// Answer to [`DataRequest::Get`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataReply {
    /// Found results and the data frame each travels in.
    pub found: Vec<(TaskId, u32)>,
    /// Ids this worker does not hold.
    pub missing: Vec<TaskId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawMessage;

    #[test]
    fn submit_round_trips_and_unknown_kind_is_named() {
        let mut spec = TaskSpec::new("a", ExecutorKind::Sum, vec!["b".into()]);
        spec.resources.push(Resource {
            name: "GPU".into(),
            amount: 1.0,
        });
        let msg = FromClient::Submit {
            request: 7,
            tasks: vec![spec.clone()],
            wants: vec!["a".into()],
        };
        let raw = RawMessage::encode(&msg, vec![]).unwrap();
        match raw.decode::<FromClient>().unwrap() {
            FromClient::Submit { request, tasks, .. } => {
                assert_eq!(request, 7);
                assert_eq!(tasks, vec![spec]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let kind: Result<ExecutorKind, _> = serde_json::from_str("\"frobnicate\"");
        let err = kind.unwrap_err().to_string();
        assert!(err.contains("frobnicate") && err.contains("noop"), "{err}");
    }
}
