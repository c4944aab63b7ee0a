//! What can go wrong for a client.

use crate::scheduler_file::SchedulerFileError;
use shoal_comm::message::TaskError;
use std::time::Duration;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The scheduler file is missing, malformed or stale.
    #[error(transparent)]
    SchedulerFile(#[from] SchedulerFileError),
    /// Connecting or authenticating failed.
    #[error("cannot connect to the scheduler at {address}: {cause}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The error and its causes.
        cause: String,
    },
    /// The connection to the scheduler closed.
    #[error("the connection to the scheduler closed: {0}")]
    Closed(String),
    /// The scheduler refused a request.
    #[error("the scheduler refused the request: {0}")]
    Refused(String),
    /// Waiting took longer than allowed.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// A task failed.
    #[error("task {key:?} failed ({kind}): {message}", key = .0.key, kind = .0.kind, message = .0.message)]
    TaskFailed(Box<TaskError>),
    /// A key was cancelled.
    #[error("key {0:?} was cancelled")]
    Cancelled(String),
    /// A result could not be fetched from any worker.
    #[error("cannot fetch {key:?}: {cause}")]
    Fetch {
        /// The key asked for.
        key: String,
        /// Why no holder delivered it.
        cause: String,
    },
}
