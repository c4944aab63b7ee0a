//! Connection plumbing shared by scheduler, worker and client: authenticated TCP (and,
//! between workers of one MPI job, MPI) connections and a writer task that batches queued messages into one flush.

pub mod address;
pub mod connection;
pub mod data_pool;

pub use address::{format_address, mpi_alternative, parse_address};
pub use connection::{
    connect, connect_peer, same_job, spawn_writer, ConnectError, Outbox, PeerReader, PeerWriter,
};
pub use data_pool::DataPool;
