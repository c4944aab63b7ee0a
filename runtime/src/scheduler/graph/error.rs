//! Why a submitted graph was refused.

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Two tasks of the submission share a key.
    #[error("duplicate key {0:?} in the submitted graph: every task needs its own key")]
    DuplicateKey(String),
    /// A dependency names a key that is neither in the submission nor in the cluster.
    #[error(
        "task {task:?} depends on {dep:?}, which is neither in this graph nor held by the cluster"
    )]
    UnknownDependency {
        /// The depending task's key.
        task: String,
        /// The key it names.
        dep: String,
    },
    /// The submitted tasks depend on each other in a cycle.
    #[error("the graph has a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A wanted key names nothing.
    #[error("wanted key {0:?} is neither in this graph nor in the cluster")]
    UnknownWanted(String),
    /// A payload index points past the message's data frames.
    #[error(
        "task {task:?} refers to payload frame {index}, but the message carries {frames} frames"
    )]
    BadPayload {
        /// The task's key.
        task: String,
        /// The frame index it names.
        index: u32,
        /// Frames the message carries.
        frames: usize,
    },
    /// A resource request is not a positive finite amount.
    #[error(
        "task {task:?} requests {amount} of resource {name:?}: amounts must be positive numbers"
    )]
    BadResource {
        /// The task's key.
        task: String,
        /// The resource's name.
        name: String,
        /// The amount requested.
        amount: f64,
    },
    /// An empty key.
    #[error("a task has an empty key")]
    EmptyKey,
}
