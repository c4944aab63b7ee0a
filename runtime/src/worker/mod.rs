//! The worker: executor threads, a data store, a data server for peers, and a session
//! with the scheduler that survives brief disconnections up to the death timeout.
//!
//! - [`options`]: what a worker is started with.
//! - [`local`]: the worker's own task bookkeeping (inputs, readiness, priorities, resources).
//! - [`core`]: the worker's decisions as plain state and `on_*` event functions (what to
//!   run, fetch, spill; when to pause, restart or give up on the scheduler).
//! - [`comm`]: the core's effects trait.
//! - [`reconnect`]: when a worker that lost its scheduler gives up.
//! - [`session`]: sockets and timers: connects, reads, and feeds the core events.
//! - [`store`], [`data_server`], [`fetch`]: results, serving them, fetching them.
//! - [`identity`]: who this worker is, for tasks that talk to the cluster themselves.

pub mod comm;
pub mod core;
pub mod data_server;
pub mod fetch;
pub mod fetched;
pub mod identity;
pub mod local;
pub mod memory;
pub mod options;
pub mod reconnect;
pub mod scratch;
pub mod session;
pub mod spill;
pub mod store;
pub mod transfers;

#[cfg(test)]
mod tests;

pub use options::{SchedulerSource, WorkerOptions};
pub use session::{run_worker, WorkerError, WorkerExit};
