//! Connection plumbing shared by scheduler, worker and client: authenticated connections
//! over [`shoal_comm::transport`] (the scheduler and clients over TCP; worker data over the
//! best backend both workers have), a client's pool of data connections, and a writer task
//! that batches queued messages into one flush.

pub mod connection;
pub mod data_pool;

pub use connection::{connect, spawn_writer, Outbox};
pub use data_pool::{DataError, DataPool};
pub use shoal_comm::transport::address::{format_address, mpi_alternative, parse_address};
pub use shoal_comm::transport::ConnectError;
