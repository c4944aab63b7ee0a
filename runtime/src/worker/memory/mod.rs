//! Worker memory management: a limit, thresholds at which the worker spills results to
//! node-local disk, pauses, or is restarted, and the store that holds the results.
//!
//! - [`policy`]: thresholds and the pure decision taken from one memory sample.
//! - [`managed`]: results in memory (LRU) with a disk tier ([`crate::worker::spill`]).

pub mod managed;
pub mod policy;

pub use managed::{ManagedStore, SpillFailure};
pub use policy::{assess, first_rss_threshold, Assessment, MemoryPolicy, Thresholds};
