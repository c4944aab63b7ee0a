//! The one place Rust errors become Python exceptions.

use pyo3::exceptions::{PyConnectionError, PyOSError, PyRuntimeError, PyTimeoutError};
use pyo3::PyErr;
use shoal_runtime::client::ClientError;

/// Map a client error to the Python exception a user would expect: timeouts are
/// `TimeoutError`, unreachable or closed schedulers `ConnectionError`, bad scheduler files
/// `OSError`, anything else `RuntimeError`. The message is the full error chain.
pub fn to_py(e: ClientError) -> PyErr {
    let message = e.to_string();
    match e {
        ClientError::Timeout(..) => PyTimeoutError::new_err(message),
        ClientError::Connect { .. } | ClientError::Closed(_) => PyConnectionError::new_err(message),
        ClientError::SchedulerFile(_) => PyOSError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}
