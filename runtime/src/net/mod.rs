//! Connection plumbing shared by scheduler, worker and client: authenticated TCP
//! connections and a writer task that batches queued messages into one flush.

pub mod address;
pub mod connection;

pub use address::{format_address, parse_address};
pub use connection::{connect, spawn_writer, Outbox};
