//! Effects of the scheduler core: every message it wants sent goes through [`Comm`].
//!
//! The core never touches a socket; the server implements this trait with per-connection
//! buffers that are flushed once per batch of events, and tests implement it with a recorder.

use bytes::Bytes;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{ComputeTask, KeyUpdate, ToClient, ToWorker};

/// Outgoing effects of the scheduler core.
pub trait Comm {
    /// Ask `worker` to run `task`; `payload` travels as a raw data frame.
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, payload: Option<Bytes>);
    /// Ask `worker` to drop the result (or the queued run) of `task`.
    fn release(&mut self, worker: WorkerId, task: TaskId);
    /// Ask `worker` to hand `task` back if it has not started.
    fn steal(&mut self, worker: WorkerId, task: TaskId);
    /// Any other message to a worker.
    fn send_worker(&mut self, worker: WorkerId, msg: ToWorker);
    /// Tell `client` that a key it wants reached a final state.
    fn key_update(&mut self, client: ClientId, update: KeyUpdate);
    /// Any other message to a client.
    fn send_client(&mut self, client: ClientId, msg: ToClient);
}
