//! `shoal.jobqueue`'s native half: the `shoal jobqueue` subcommands run in the interpreter
//! with typed arguments, their reports returned as Python objects. Job scripts start
//! `worker_command` (`python -m shoal` with this interpreter), so their workers run Python
//! tasks.
//!
//! Failures raise RuntimeError with the command line's message (naming the bad value or
//! the failing batch command, and the fix).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use shoal_launcher::{
    CancelArgs, JobqueueCommand, JobqueueOutput, JobsStatusArgs, ParamArgs, ScaleArgs, ScriptArgs,
    SubmitArgs,
};
use std::path::PathBuf;

/// Runs one subcommand; job scripts it writes start `worker_command` (scale, status and
/// cancel use the recipe of the jobs submitted before).
fn run(
    py: Python<'_>,
    command: JobqueueCommand,
    worker_command: Option<Vec<String>>,
) -> PyResult<JobqueueOutput> {
    let hooks = shoal_launcher::Hooks {
        worker_command: worker_command.map(|words| words.into_iter().map(Into::into).collect()),
        ..shoal_launcher::Hooks::default()
    };
    py.detach(|| shoal_launcher::jobqueue(command, &hooks))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The job parameters: `params` are `(key, value)` pairs by dask-jobqueue's names, as
/// `--param key=value` takes them (a list is one pair per element).
fn param_args(
    system: &str,
    params: Vec<(String, String)>,
    config: Option<PathBuf>,
) -> PyResult<ParamArgs> {
    Ok(ParamArgs {
        system: system
            .parse()
            .map_err(|e: shoal_jobqueue::UnknownSystem| PyValueError::new_err(e.to_string()))?,
        params,
        cores: None,
        memory: None,
        walltime: None,
        queue: None,
        account: None,
        config,
    })
}

/// The report of a `--json` command.
fn report(py: Python<'_>, out: &JobqueueOutput) -> PyResult<Py<PyAny>> {
    match &out.json {
        Some(json) => crate::json::to_py(py, json),
        None => Err(PyRuntimeError::new_err("shoal jobqueue gave no report")),
    }
}

/// The worker job's script (`scheduler=True`: the scheduler job's) as it would be
/// submitted (HTCondor: submit description and script); `json=True`: its validated figures
/// as `shoal jobqueue script --json` gives them, a dict (`cores`, `processes`, `nthreads`,
/// `memory`, `worker_memory`, `walltime_s`, `lifetime_s`, `lifetime_stagger_s`, `script`,
/// `warnings`, ...).
#[pyfunction]
#[pyo3(signature = (system, params, *, scheduler_file, worker_command, config=None, scheduler=false, json=false))]
#[allow(clippy::too_many_arguments)]
fn jobqueue_script(
    py: Python<'_>,
    system: &str,
    params: Vec<(String, String)>,
    scheduler_file: PathBuf,
    worker_command: Vec<String>,
    config: Option<PathBuf>,
    scheduler: bool,
    json: bool,
) -> PyResult<Py<PyAny>> {
    let command = JobqueueCommand::Script(ScriptArgs {
        params: param_args(system, params, config)?,
        scheduler_file: Some(scheduler_file),
        jobs: 1,
        scheduler,
        json,
    });
    let out = run(py, command, Some(worker_command))?;
    if json {
        report(py, &out)
    } else {
        Ok(out.text.into_pyobject(py)?.into_any().unbind())
    }
}

/// Submit `jobs` worker jobs as one array; what `shoal jobqueue submit` prints.
#[pyfunction]
#[pyo3(signature = (system, params, *, scheduler_file, jobs, worker_command, config=None))]
fn jobqueue_submit(
    py: Python<'_>,
    system: &str,
    params: Vec<(String, String)>,
    scheduler_file: PathBuf,
    jobs: u32,
    worker_command: Vec<String>,
    config: Option<PathBuf>,
) -> PyResult<String> {
    if jobs == 0 {
        return Err(PyValueError::new_err(
            "jobs=0: submit 1 or more jobs (scaling to 0 cancels them)",
        ));
    }
    let command = JobqueueCommand::Submit(SubmitArgs {
        params: param_args(system, params, config)?,
        scheduler_file,
        jobs,
        scheduler: false,
    });
    Ok(run(py, command, Some(worker_command))?.text)
}

/// Submit or cancel worker jobs until `jobs` are queued or running.
#[pyfunction]
#[pyo3(signature = (*, scheduler_file, jobs))]
fn jobqueue_scale(py: Python<'_>, scheduler_file: PathBuf, jobs: u32) -> PyResult<String> {
    let command = JobqueueCommand::Scale(ScaleArgs {
        scheduler_file,
        jobs,
        wait: false,
        timeout: std::time::Duration::from_secs(600),
    });
    Ok(run(py, command, None)?.text)
}

/// Every job submitted for `scheduler_file` (`shoal jobqueue status --json`): `system`,
/// `worker_jobs` and `jobs` (dicts with `role`, `id`, `array`, `state`, `submitted`).
#[pyfunction]
#[pyo3(signature = (*, scheduler_file))]
fn jobqueue_status(py: Python<'_>, scheduler_file: PathBuf) -> PyResult<Py<PyAny>> {
    let command = JobqueueCommand::Status(JobsStatusArgs {
        scheduler_file,
        json: true,
    });
    report(py, &run(py, command, None)?)
}

/// Cancel the worker jobs (`all=True`: also the scheduler job, and forget the cluster).
#[pyfunction]
#[pyo3(signature = (*, scheduler_file, all=false))]
fn jobqueue_cancel(py: Python<'_>, scheduler_file: PathBuf, all: bool) -> PyResult<String> {
    let command = JobqueueCommand::Cancel(CancelArgs {
        scheduler_file,
        all,
    });
    Ok(run(py, command, None)?.text)
}

/// Adds this module's functions to `shoal._native`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(jobqueue_script, m)?)?;
    m.add_function(wrap_pyfunction!(jobqueue_submit, m)?)?;
    m.add_function(wrap_pyfunction!(jobqueue_scale, m)?)?;
    m.add_function(wrap_pyfunction!(jobqueue_status, m)?)?;
    m.add_function(wrap_pyfunction!(jobqueue_cancel, m)?)
}
