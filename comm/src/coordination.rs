//! Messages of the named coordination state the scheduler keeps for clients and tasks:
//! variables, queues, events, semaphores (locks and multi-locks) and published datasets.
//!
//! Values are opaque to the scheduler (a pickle it never unpickles) plus the keys of the
//! results they refer to, which stay in the cluster while the value is held.

use serde::{Deserialize, Serialize};

/// Datasets whose name starts with this hold worker plugins (`Client.register_plugin`):
/// a worker that joins while one exists is told to set them up (`ToWorker::HasPlugins`).
pub const PLUGIN_DATASET_PREFIX: &str = "__shoal_plugin__/";

/// A value held by the scheduler: opaque bytes and the keys they refer to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeldValue {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Keys of results the value refers to (futures inside it).
    pub keys: Vec<String>,
}

/// One coordination request. Requests that may wait (`wait: true`) are answered when
/// they can be satisfied, or with [`CoordReply::Cancelled`] after the client cancels
/// them; with `wait: false` they are answered at once ([`CoordReply::NotReady`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoordRequest {
    /// Set a variable (replacing its value).
    VariableSet { name: String, value: HeldValue },
    /// A variable's value, waiting until it has one.
    VariableGet { name: String, wait: bool },
    /// Forget a variable.
    VariableDelete { name: String },
    /// Append to a queue, waiting while it holds `maxsize` items (0: unbounded).
    QueuePut {
        name: String,
        value: HeldValue,
        maxsize: u64,
        wait: bool,
    },
    /// Take `count` items (at least 1) from a queue, waiting until there are that many;
    /// `count == 0` takes every item there is now, without waiting.
    QueueGet {
        name: String,
        count: u64,
        wait: bool,
    },
    /// Items in a queue.
    QueueSize { name: String },
    /// Set an event: its waiters return, later waits return at once.
    EventSet { name: String },
    /// Clear an event.
    EventClear { name: String },
    /// Wait until an event is set.
    EventWait { name: String, wait: bool },
    /// Whether an event is set.
    EventIsSet { name: String },
    /// Take one lease on each of `names` at once (each allows `max_leases` holders),
    /// waiting in arrival order until all are free. Leases belong to the requesting
    /// connection and are released when it closes.
    Acquire {
        names: Vec<String>,
        max_leases: u32,
        lease: String,
        wait: bool,
    },
    /// Give back the leases `lease` holds on `names`.
    Release { names: Vec<String>, lease: String },
    /// How many leases are held on a name.
    Leases { name: String },
    /// Publish a dataset; an existing name is an error unless `replace`.
    DatasetPublish {
        name: String,
        value: HeldValue,
        replace: bool,
    },
    /// A published dataset.
    DatasetGet { name: String },
    /// Names of the published datasets, sorted.
    DatasetList,
    /// Unpublish a dataset.
    DatasetDelete { name: String },
}

/// Answer to a [`CoordRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoordReply {
    /// Done.
    Ok,
    /// One value (variables, datasets).
    Value(HeldValue),
    /// Values in order (queues).
    Values(Vec<HeldValue>),
    /// A yes/no answer (events).
    Flag(bool),
    /// A count (queue size, leases held).
    Count(u64),
    /// Names (datasets).
    Names(Vec<String>),
    /// The name is unknown (variable never set, dataset not published).
    NotFound,
    /// `wait: false` and the request could not be satisfied now.
    NotReady,
    /// The client cancelled the waiting request before it could be satisfied.
    Cancelled,
    /// The request is wrong (with what is wrong).
    Error(String),
}
