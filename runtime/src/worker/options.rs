//! What a worker is started with.

use super::memory::MemoryPolicy;
use crate::executor::pool::Runner;
use shoal_comm::message::{ExecutorKind, Resource};
use shoal_comm::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// Where the worker finds its scheduler.
#[derive(Debug, Clone)]
pub enum SchedulerSource {
    /// Read address and secret from a scheduler file (re-read on reconnection, so a
    /// restarted scheduler is found again).
    File(PathBuf),
    /// A known address and secret.
    Address {
        /// The scheduler's address.
        address: String,
        /// The cluster secret.
        secret: Secret,
    },
}

/// Worker configuration.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Where the scheduler is found.
    pub scheduler: SchedulerSource,
    /// The worker's name (unique in the cluster).
    pub name: String,
    /// Threads running tasks.
    pub nthreads: u32,
    /// Bytes; 0 = no memory management.
    pub memory_limit: u64,
    /// Abstract resources it offers (`GPU = 1`).
    pub resources: Vec<Resource>,
    /// Exit non-zero after this long without the scheduler.
    pub death_timeout: Duration,
    /// Host or IP to bind the data server to and advertise.
    pub host: String,
    /// Report every task done at once without running it (scheduler benchmarks).
    pub zero: bool,
    /// Runs tasks; `None` = the built-in executors.
    pub runner: Option<Runner>,
    /// Executor kinds the runner supports.
    pub executors: Vec<ExecutorKind>,
    /// Where the worker's scratch directory (spilled results) goes; `None`: the first
    /// node-local candidate (`$TMPDIR`, `$SLURM_TMPDIR`, `/local`, `/scratch/local`, `/tmp`).
    pub local_directory: Option<PathBuf>,
    /// Spill, pause and terminate thresholds and how to spill.
    pub memory: MemoryPolicy,
    /// The backends worker data travels over: TCP always, plus the MPI and UCX fabrics the
    /// launcher started (`--transport`). The data server listens on all of them and
    /// advertises each; fetches use the best one both workers have. Clients and the
    /// scheduler use TCP.
    pub transports: shoal_comm::transport::Connector,
    /// Called each time the scheduler accepts this worker's registration (a supervisor
    /// learns through it that the worker started).
    pub on_registered: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("scheduler", &self.scheduler)
            .field("name", &self.name)
            .field("nthreads", &self.nthreads)
            .field("memory_limit", &self.memory_limit)
            .field("zero", &self.zero)
            .finish_non_exhaustive()
    }
}
