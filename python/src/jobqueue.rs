//! `shoal.jobqueue`'s native half: the `shoal jobqueue` CLI code run in the interpreter,
//! its output returned instead of printed. Job scripts start `python -m shoal` (this
//! interpreter), so their workers run Python tasks.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Run `shoal jobqueue ARGS` and return `(stdout, warnings)`. `worker_command` is how the
/// job scripts start shoal (e.g. `[sys.executable, "-m", "shoal"]`). Raises RuntimeError
/// with the CLI's message (naming the bad value or the failing command).
#[pyfunction]
fn jobqueue(
    py: Python<'_>,
    args: Vec<String>,
    worker_command: Vec<String>,
) -> PyResult<(String, Vec<String>)> {
    let hooks = shoal_launcher::Hooks {
        worker_command: Some(worker_command.into_iter().map(Into::into).collect()),
        ..shoal_launcher::Hooks::default()
    };
    py.detach(|| shoal_launcher::jobqueue(args, &hooks))
        .map(|out| (out.text, out.warnings))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Adds this module's functions to `shoal._native`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(jobqueue, m)?)
}
