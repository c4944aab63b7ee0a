//! shoal's runtime: the scheduler, the worker and the Rust client.
//!
//! # Layout
//!
//! - [`scheduler`]: the scheduling core (pure state and event functions) and its server.

pub mod scheduler;
