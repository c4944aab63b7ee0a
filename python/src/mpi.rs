//! `shoal.mpi.initialize()`: the batch-script mode, over the launcher's MPI code, with
//! its settings as keyword arguments.

use crate::args::{checked, text};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use shoal_launcher::{values, LaunchError, MpiArgs};
use std::path::PathBuf;

/// Run this rank's part of a batch-script cluster. Returns `(exit_code, None)` on the
/// scheduler and worker ranks once the cluster ended, and `(0, (address, secret_hex))` at
/// once on the client rank. A value `shoal mpi` would refuse raises ValueError naming it
/// and the fix (before MPI starts); a rank that fails raises RuntimeError.
#[pyfunction]
#[pyo3(signature = (
    *, nthreads=None, memory_limit=None, local_directory=None, interface=None, name=None,
    scheduler_file=None, death_timeout=None, scheduler_rank=0, client_rank=1,
    inclusive_workers=false, quiet=true,
))]
#[allow(clippy::too_many_arguments)]
pub fn mpi_initialize(
    py: Python<'_>,
    nthreads: Option<Bound<'_, PyAny>>,
    memory_limit: Option<Bound<'_, PyAny>>,
    local_directory: Option<PathBuf>,
    interface: Option<String>,
    name: Option<String>,
    scheduler_file: Option<PathBuf>,
    death_timeout: Option<Bound<'_, PyAny>>,
    scheduler_rank: i32,
    client_rank: i32,
    inclusive_workers: bool,
    quiet: bool,
) -> PyResult<(u8, Option<(String, String)>)> {
    let mut args = MpiArgs {
        scheduler_file,
        scheduler_rank,
        interface,
        inclusive_workers,
        client_rank: Some(client_rank),
        ..MpiArgs::default()
    };
    if let Some(name) = name {
        args.name = name;
    }
    let worker = &mut args.worker;
    worker.nthreads = nthreads
        .map(|n| checked("nthreads", &n, values::count))
        .transpose()?;
    if let Some(limit) = memory_limit {
        worker.memory_limit = text(&limit)?;
    }
    if let Some(timeout) = death_timeout {
        worker.death_timeout = checked("death_timeout", &timeout, values::seconds)?;
    }
    worker.local_directory = local_directory;
    let hooks = crate::worker::hooks(None);
    match py.detach(|| shoal_launcher::mpi_batch(args, quiet, hooks)) {
        Ok(shoal_launcher::BatchRole::Exit(code)) => Ok((code, None)),
        Ok(shoal_launcher::BatchRole::Client {
            address,
            secret_hex,
        }) => Ok((0, Some((address, secret_hex)))),
        Err(e @ LaunchError::Settings(_)) => Err(PyValueError::new_err(e.to_string())),
        Err(e) => Err(PyRuntimeError::new_err(e.to_string())),
    }
}

/// Finalise MPI on the client rank (at the end of the script).
#[pyfunction]
pub fn mpi_finalize(py: Python<'_>) {
    py.detach(shoal_launcher::mpi_finalize);
}
