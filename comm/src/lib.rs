//! shoal's wire format and transports.
//!
//! # Layout
//!
//! - [`frame`]: one message on the wire = a msgpack control part followed by raw data
//!   frames; encoding, decoding and size limits, with no I/O.
//! - [`buffer`]: receive buffers for large data frames (huge pages where possible).
//! - [`message`]: the control messages, one enum per direction
//!   (client → scheduler, scheduler → client, worker → scheduler, scheduler → worker,
//!   worker ↔ worker data requests).
//! - [`coordination`]: requests and replies of the scheduler's named coordination state
//!   (variables, queues, events, locks and semaphores, datasets).
//! - [`ids`]: typed integer ids shared by every crate.
//! - [`auth`]: the versioned, HMAC challenge-response handshake every connection starts with.
//! - [`transport`]: the [`transport::MessageRead`] / [`transport::MessageWrite`] traits every
//!   transport implements, addresses, the connector and listener the runtime uses, and the
//!   backends: TCP, MPI (feature `mpi`) and UCX (feature `ucx`).
//! - [`secret`]: the cluster secret (random, never sent in clear).
//! - [`fuzz`]: the seeded mutation fuzzer every crate's fuzz tests use.

pub mod auth;
pub mod buffer;
pub mod coordination;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod ids;
pub mod message;
pub mod secret;
pub mod transport;

pub use error::CommError;
pub use frame::{Limits, RawMessage};
pub use secret::Secret;

/// Version of the protocol spoken by this build. Peers with another version are refused
/// during the handshake, with both versions named.
pub const PROTOCOL_VERSION: u32 = 3;
