//! Connection plumbing shared by scheduler, worker and client: authenticated TCP (and,
//! between workers of one MPI job, MPI) connections and a writer task that batches queued messages into one flush.

pub mod connection;

pub use connection::{connect, connect_peer, data_connector, spawn_writer, Outbox};
pub use shoal_comm::transport::address::{format_address, mpi_alternative, parse_address};
