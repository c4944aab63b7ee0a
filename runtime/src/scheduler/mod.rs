//! The scheduler: a core that is pure state plus event functions (no I/O, time passed
//! in), and the server that feeds it from the network.
//!
//! - [`core`]: state and the transitions that keep it consistent.
//! - [`graph`]: accepting submitted graphs, in slices.
//! - [`jobs`]: long client requests (graphs, releases, cancels) done in slices, in order.
//! - [`reactor`]: worker and client events.
//! - `queries`: where a key is, the cluster's status, whether work is left.
//! - [`placement`]: placing ready tasks; stealing for idle workers.
//! - [`worker_index`]: workers by load, signature, idleness and name, kept incrementally.
//! - `load_order`: the index's workers of one thread count by load, O(1) per change.
//! - `id_set`: a bitset of worker ids, the index's sets.
//! - [`root_queue`]: ready tasks without inputs waiting for a free worker slot.
//! - [`retry`]: computing failed keys again.
//! - [`retirement`]: retiring workers without losing their results.
//! - [`task_stream`]: which worker ran which task, when.
//! - [`tally`]: task counts by state and prefix, kept as tasks move.
//! - [`snapshot`]: the aggregated view the dashboard publishes a few times a second.
//! - [`coordination`]: named variables, queues, events, locks and datasets.
//! - [`comm`]: the effects trait.
//! - `coord_bridge`: the coordination state's effects on the core and clients.
//! - `batching`: the server's side of it: effects queued per peer, runs sent as one message.
//! - `dispatch`: which core function each worker and client message calls.
//! - [`server`]: accepting, authenticating, decoding and dispatching; timers; the scheduler file.

mod batching;
pub mod comm;
mod coord_bridge;
pub mod coordination;
pub mod core;
mod dispatch;
pub mod graph;
mod id_set;
pub mod jobs;
mod load_order;
pub mod placement;
mod queries;
pub mod reactor;
pub mod retirement;
pub mod retry;
pub mod root_queue;
pub mod server;
pub mod snapshot;
pub mod tally;
pub mod task;
pub mod task_map;
pub mod task_stream;
pub mod worker;
pub mod worker_index;

#[cfg(test)]
mod tests;

pub use self::comm::Comm;
pub use self::core::{Core, CoreConfig};
pub use graph::GraphError;
