//! shoal's runtime: the scheduler, the worker and the Rust client.
//!
//! # Layout
//!
//! - [`scheduler`]: the scheduling core (pure state and event functions) and its server.
//! - [`worker`]: executor threads, data store, data server, fetching, the session loop.
//! - [`executor`]: the executor thread pool and the built-in task kinds.
//! - [`client`]: the Rust client.
//! - [`scheduler_file`]: how workers and clients find a scheduler and its secret.
//! - [`order`]: depth-first task priorities for graphs that come without any.
//! - [`net`]: authenticated connections and batching writers shared by every role.
//! - [`sys`]: process and machine facts.
//! - [`error`]: typed errors rendered with their causes.

pub mod client;
pub mod dashboard_link;
pub mod error;
pub mod executor;
pub mod net;
pub mod order;
pub mod scheduler;
pub mod scheduler_file;
pub mod sys;
pub mod worker;
