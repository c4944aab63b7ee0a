//! Task executors: what runs a task's payload on a worker.
//!
//! - [`builtin`]: the built-in kinds used by tests and benchmarks.
//! - [`pool`]: the executor threads.

pub mod builtin;
pub mod pool;

pub use pool::{ExecutorPool, Job, JobResult, PoolEvent};
