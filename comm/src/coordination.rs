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
    /// The value itself (a pickle the scheduler never unpickles).
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
    VariableSet {
        /// The variable's name.
        name: String,
        /// Its new value.
        value: HeldValue,
    },
    /// A variable's value, waiting until it has one.
    VariableGet {
        /// The variable's name.
        name: String,
        /// Wait for a value (else answer `NotReady`).
        wait: bool,
    },
    /// Forget a variable.
    VariableDelete {
        /// The variable's name.
        name: String,
    },
    /// Append to a queue, waiting while it holds `maxsize` items (0: unbounded).
    QueuePut {
        /// The queue's name.
        name: String,
        /// The item to append.
        value: HeldValue,
        /// Most items the queue holds (0: unbounded).
        maxsize: u64,
        /// Wait for room (else answer `NotReady`).
        wait: bool,
    },
    /// Take `count` items (at least 1) from a queue, waiting until there are that many;
    /// `count == 0` takes every item there is now, without waiting.
    QueueGet {
        /// The queue's name.
        name: String,
        /// How many items to take (0: every item there is now).
        count: u64,
        /// Wait for the items (else answer `NotReady`).
        wait: bool,
    },
    /// Items in a queue.
    QueueSize {
        /// The queue's name.
        name: String,
    },
    /// Set an event: its waiters return, later waits return at once.
    EventSet {
        /// The event's name.
        name: String,
    },
    /// Clear an event.
    EventClear {
        /// The event's name.
        name: String,
    },
    /// Wait until an event is set.
    EventWait {
        /// The event's name.
        name: String,
        /// Wait for it (else answer `NotReady`).
        wait: bool,
    },
    /// Whether an event is set.
    EventIsSet {
        /// The event's name.
        name: String,
    },
    /// Take one lease on each of `names` at once (each allows `max_leases` holders),
    /// waiting in arrival order until all are free. Leases belong to the requesting
    /// connection and are released when it closes.
    Acquire {
        /// The semaphores to take a lease on.
        names: Vec<String>,
        /// Holders each allows at once.
        max_leases: u32,
        /// The lease's id, chosen by the client.
        lease: String,
        /// Wait until every one is free (else answer `NotReady`).
        wait: bool,
    },
    /// Give back the leases `lease` holds on `names`.
    Release {
        /// The semaphores.
        names: Vec<String>,
        /// The lease's id.
        lease: String,
    },
    /// How many leases are held on a name.
    Leases {
        /// The semaphore's name.
        name: String,
    },
    /// Publish a dataset; an existing name is an error unless `replace`.
    DatasetPublish {
        /// The dataset's name.
        name: String,
        /// Its value.
        value: HeldValue,
        /// Replace a dataset of that name (else it is an error).
        replace: bool,
    },
    /// A published dataset.
    DatasetGet {
        /// The dataset's name.
        name: String,
    },
    /// Names of the published datasets, sorted.
    DatasetList,
    /// Unpublish a dataset.
    DatasetDelete {
        /// The dataset's name.
        name: String,
    },
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
