//! Effects of the worker core: every message, job, fetch and spill it wants goes through
//! [`WorkerComm`].
//!
//! The core never touches a socket, a thread or a timer; the session implements this trait
//! with message buffers flushed once per event, the executor pool and the peer fetchers,
//! and tests implement it with a recorder.

use crate::executor::pool::Job;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{FromWorker, TaskFailed, TaskFinished};
use std::time::Duration;

/// Outgoing effects of the worker core.
pub trait WorkerComm {
    /// Tell the scheduler these tasks started (batched into one `Started` message).
    fn started(&mut self, task: TaskId);
    /// Tell the scheduler a task finished and its result is held here (batched).
    fn finished(&mut self, done: TaskFinished);
    /// Tell the scheduler a task failed (batched).
    fn failed(&mut self, failed: TaskFailed);
    /// Any other message to the scheduler, sent after the batched ones.
    fn send(&mut self, msg: FromWorker);
    /// Hand a job to the executor threads.
    fn run(&mut self, job: Job);
    /// Fetch `ids` from the peer at `address`; the outcome comes back as
    /// [`super::core::WorkerCore::on_fetch_done`].
    fn fetch(&mut self, peer: WorkerId, address: &str, ids: Vec<TaskId>);
    /// `peer` left the cluster: drop its connection (`address` is what it advertised).
    fn peer_left(&mut self, peer: WorkerId, address: Option<&str>);
    /// Spill results in the background until managed memory is at most `goal` bytes (the
    /// core has claimed the store's eviction round).
    fn spill(&mut self, goal: u64);
    /// The scheduler accepted the registration: heartbeats go out every `heartbeat`.
    fn registered(&mut self, id: WorkerId, heartbeat: Duration);
    /// The scheduler said worker plugins are registered.
    fn has_plugins(&mut self);
}
