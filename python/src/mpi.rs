//! `shoal.mpi.initialize()`: the batch-script mode, over the launcher's MPI code.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use shoal_comm::message::ExecutorKind;
use shoal_runtime::executor::builtin;
use std::sync::Arc;

/// Run this rank's part of a batch-script cluster. Returns `(exit_code, None)` on the
/// scheduler and worker ranks once the cluster ended, and `(0, (address, secret_hex))` at
/// once on the client rank.
#[pyfunction]
pub fn mpi_initialize(
    py: Python<'_>,
    argv: Vec<String>,
) -> PyResult<(u8, Option<(String, String)>)> {
    let mut executors = builtin::KINDS.to_vec();
    executors.push(ExecutorKind::Python);
    let hooks = shoal_launcher::Hooks {
        runner: Some(Arc::new(crate::worker::run)),
        executors,
        worker_command: None,
    };
    match py.detach(|| shoal_launcher::mpi_batch(argv, hooks)) {
        Ok(shoal_launcher::BatchRole::Exit(code)) => Ok((code, None)),
        Ok(shoal_launcher::BatchRole::Client {
            address,
            secret_hex,
        }) => Ok((0, Some((address, secret_hex)))),
        Err(e) => Err(PyRuntimeError::new_err(e.to_string())),
    }
}

/// Finalise MPI on the client rank (at the end of the script).
#[pyfunction]
pub fn mpi_finalize(py: Python<'_>) {
    py.detach(shoal_launcher::mpi_finalize);
}
