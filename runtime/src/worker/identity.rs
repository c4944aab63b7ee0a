//! Who this worker process is, for tasks that talk to the cluster themselves: a Python
//! task's `get_worker()` and `get_client()` (a client connecting with the worker's own
//! secret, so nothing secret is put into the environment).

use shoal_comm::Secret;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The worker and the scheduler it is connected to.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    /// The worker's name (`--name`).
    pub name: String,
    /// The address(es) its data server advertises (`tcp://...`, maybe `mpi://...`).
    pub data_address: String,
    /// The scheduler it is connected to, and the cluster secret.
    pub scheduler_address: String,
    /// The cluster secret.
    pub secret: Secret,
    /// Threads running tasks.
    pub nthreads: u32,
}

static CURRENT: RwLock<Option<Arc<WorkerIdentity>>> = RwLock::new(None);

/// Record this process's worker identity (each time it connects to a scheduler).
pub fn set(identity: WorkerIdentity) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(identity));
}

static HAS_PLUGINS: AtomicBool = AtomicBool::new(false);

/// The scheduler said worker plugins are registered (they are set up before the first
/// task).
pub fn set_has_plugins() {
    HAS_PLUGINS.store(true, Ordering::Relaxed);
}

/// Whether the scheduler said worker plugins are registered.
pub fn has_plugins() -> bool {
    HAS_PLUGINS.load(Ordering::Relaxed)
}

/// This process's worker identity; `None` outside a worker.
pub fn current() -> Option<Arc<WorkerIdentity>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}
