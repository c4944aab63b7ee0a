//! The worker: executor threads, a data store, a data server for peers, and a session
//! with the scheduler that survives brief disconnections up to the death timeout.
//!
//! - [`options`]: what a worker is started with.
//! - [`local`]: the worker's own task bookkeeping (inputs, readiness, priorities, resources).
//! - [`session`]: one connection to the scheduler and the event loop around it.
//! - [`store`], [`data_server`], [`fetch`]: results, serving them, fetching them.
//! - [`identity`]: who this worker is, for tasks that talk to the cluster themselves.

pub mod data_server;
pub mod fetch;
pub mod fetched;
pub mod identity;
pub mod local;
pub mod memory;
pub mod options;
pub mod scratch;
pub mod session;
pub mod spill;
pub mod store;
pub mod transfers;

pub use options::{SchedulerSource, WorkerOptions};
pub use session::{run_worker, WorkerExit};
