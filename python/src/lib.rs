//! The native module `shoal._native`: thin Python wrappers over plain Rust functions.
//!
//! # Layout
//!
//! - [`client`]: the client operations (connect, submit, updates, fetch, ...).
//! - [`coordination`]: requests on the scheduler's named coordination state.
//! - [`worker`]: the Python task runner and Python results kept in the worker's store.
//! - [`frame`]: received bytes exposed to Python without a copy.
//! - [`error`]: the one mapping from Rust errors to Python exceptions.
//! - [`mpi`], [`jobqueue`]: the launcher's typed entry points, called with keyword
//!   arguments; [`args`]: those arguments checked by the command line's parsers;
//!   [`json`]: reports built with serde handed over as Python objects.
//! - `cli_main` (feature `cli`): the whole `shoal` command line, for `python -m shoal`.

mod args;
mod client;
mod coordination;
mod error;
mod frame;
mod jobqueue;
mod json;
mod keys;
mod legacy;
mod mpi;
mod plain_pickle;
mod values;
mod worker;

use client::{NativeClient, TaskIn};
use error::to_py;
use frame::Frame;
use keys::KeyState;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

/// Results up to this size reach Python as `bytes` rather than as shared frames.
const SMALL_FRAME: usize = 16 * 1024;

/// The key of a pure call: `NAME-` and 32 hex digits of a hash of the function's digest
/// and the pickled arguments.
fn call_key(name: &str, digest: &[u8], args: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let hash = Sha256::new()
        .chain_update(digest)
        .chain_update(args)
        .finalize();
    let mut key = String::with_capacity(name.len() + 33);
    key.push_str(name);
    key.push('-');
    for byte in &hash[..16] {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// Run the `shoal` command line in this interpreter; workers it starts run Python tasks.
/// `worker_command` is how `shoal local` starts worker processes (e.g. `python -m shoal`).
#[cfg(feature = "cli")]
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>, worker_command: Vec<String>) -> u8 {
    let hooks = worker::hooks(Some(worker_command));
    py.detach(|| shoal_launcher::run_with(argv, hooks))
}

/// The running task leaves its worker's thread count (another thread takes its place);
/// `False` outside a task or when it seceded already.
#[pyfunction]
fn secede() -> bool {
    shoal_runtime::executor::pool::secede()
}

/// A seceded task counts against its worker's threads again; `False` if it had not seceded.
#[pyfunction]
fn rejoin() -> bool {
    shoal_runtime::executor::pool::rejoin()
}

/// `(name, data address, scheduler address, nthreads)` of the worker this process is,
/// or `None` outside a worker.
#[pyfunction]
fn worker_identity() -> Option<(String, String, String, u32)> {
    shoal_runtime::worker::identity::current().map(|w| {
        (
            w.name.clone(),
            w.data_address.clone(),
            w.scheduler_address.clone(),
            w.nthreads,
        )
    })
}

/// Whether the scheduler told this worker that worker plugins are registered.
#[pyfunction]
fn worker_has_plugins() -> bool {
    shoal_runtime::worker::identity::has_plugins()
}

/// Depth-first positions of a graph's tasks (`deps[i]`: the inputs of task `i`), as
/// `Client.submit(..., order=True)` gives them priorities; see `shoal_runtime::order`.
#[pyfunction]
fn depth_first_order(py: Python<'_>, deps: Vec<Vec<usize>>, outputs: Vec<usize>) -> Vec<u32> {
    py.detach(|| shoal_runtime::order::depth_first(&deps, &outputs))
}

/// The pickle shoal writes itself for a plain value or a tuple of them, or `None` (see
/// `plain_pickle`; for tests against `pickle.loads`).
#[pyfunction]
fn pickle_plain(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Option<Py<pyo3::types::PyBytes>> {
    plain_pickle::dumps(obj).map(|data| pyo3::types::PyBytes::new(py, &data).unbind())
}

/// A connection to a scheduler (the native half of `shoal.Client`).
#[pyclass(frozen, name = "Client", module = "shoal._native")]
struct PyClient(NativeClient);

/// One task: (key, deps, payload, priority, retries, workers, resources).
type TaskTuple = (
    String,
    Vec<String>,
    Option<Vec<u8>>,
    i32,
    u32,
    Vec<String>,
    Vec<(String, f64)>,
);

#[pymethods]
impl PyClient {
    #[new]
    /// Connect by address or scheduler file; `from_worker=True` connects to the
    /// scheduler of the worker this process is, with its secret (`get_client()`).
    #[pyo3(signature = (address=None, scheduler_file=None, timeout=10.0, from_worker=false))]
    fn new(
        py: Python<'_>,
        address: Option<String>,
        scheduler_file: Option<PathBuf>,
        timeout: f64,
        from_worker: bool,
    ) -> PyResult<Self> {
        py.detach(|| {
            if from_worker {
                NativeClient::connect_from_worker(seconds(timeout))
            } else {
                NativeClient::connect(
                    address.as_deref(),
                    scheduler_file.as_deref(),
                    seconds(timeout),
                )
            }
        })
        .map(PyClient)
        .map_err(to_py)
    }

    #[getter]
    fn address(&self) -> String {
        self.0.client.address().to_string()
    }

    #[getter]
    fn scheduler_id(&self) -> String {
        self.0.client.scheduler_id().to_string()
    }

    /// Submit tasks in one message and track `wants`; `order=True` replaces the
    /// priorities by the graph's depth-first order from `wants`.
    #[pyo3(signature = (tasks, wants, order = false))]
    fn submit(
        &self,
        py: Python<'_>,
        tasks: Vec<TaskTuple>,
        wants: Vec<String>,
        order: bool,
    ) -> PyResult<()> {
        let tasks = tasks
            .into_iter()
            .map(
                |(key, deps, payload, priority, retries, workers, resources)| TaskIn {
                    key,
                    deps,
                    payload,
                    priority,
                    retries,
                    workers,
                    resources,
                },
            )
            .collect();
        py.detach(|| self.0.submit(tasks, wants, order))
            .map_err(to_py)
    }

    /// Submit a dask graph dict in one message, ordered depth-first from `wants` (its
    /// keys as dask names them), and retain the wanted keys; see [`legacy::convert`] for
    /// the hooks. Returns the wanted keys (a node standing for a future is that future's
    /// key) and their states.
    #[pyo3(signature = (graph, wants, *, head, call, other))]
    fn submit_graph(
        &self,
        py: Python<'_>,
        graph: &Bound<'_, pyo3::types::PyDict>,
        wants: Vec<Bound<'_, PyAny>>,
        head: Bound<'_, PyAny>,
        call: Bound<'_, PyAny>,
        other: Bound<'_, PyAny>,
    ) -> PyResult<(Vec<String>, Vec<Py<KeyState>>)> {
        let hooks = legacy::Hooks {
            head,
            call,
            other,
            dep: worker::helper(py, "Dep")?,
            inputs: worker::helper(py, "Inputs")?,
        };
        let converted = legacy::convert(graph, &hooks)?;
        let wants = wants
            .iter()
            .map(|k| Ok(converted.resolve(legacy::wire_key(k)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let states = self.0.keys.retain(py, &wants, None)?;
        let tasks = converted.tasks;
        let sent = wants.clone();
        if let Err(e) = py.detach(|| self.0.submit(tasks, sent, true)) {
            for key in &wants {
                // The references just taken, which no future will hold.
                let _ = self.0.keys.drop_key(key, &self.0.releases, &self.0.client);
            }
            return Err(to_py(e));
        }
        Ok((wants, states))
    }

    /// Submit calls of one function on plain arguments (`map`) and retain their keys:
    /// task `i`'s payload is `head` (the function, see `shoal._worker.MAPPED`) followed by
    /// the pickled tuple `calls[i]`; its key is `keys[i]`, or without `keys`
    /// `NAME-HASH`, a hash of the function's `digest` and the arguments (a pure call).
    /// Returns the keys in call order and their states.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (head, digest, name, calls, keys, priority, retries, workers, resources))]
    fn submit_calls(
        &self,
        py: Python<'_>,
        head: &[u8],
        digest: &[u8],
        name: &str,
        calls: Vec<Bound<'_, PyAny>>,
        keys: Option<Vec<String>>,
        priority: i32,
        retries: u32,
        workers: Vec<String>,
        resources: Vec<(String, f64)>,
    ) -> PyResult<(Py<pyo3::types::PyList>, Vec<Py<KeyState>>)> {
        if keys.as_ref().is_some_and(|k| k.len() != calls.len()) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "submit_calls needs one key per call",
            ));
        }
        let mut buffer = bytes::BytesMut::with_capacity(calls.len() * (head.len() + 16));
        let mut lengths = Vec::with_capacity(calls.len());
        let mut pure_keys = Vec::with_capacity(if keys.is_some() { 0 } else { calls.len() });
        for call in &calls {
            let args = values::pickle(call)?;
            let args = args.as_slice();
            buffer.extend_from_slice(head);
            buffer.extend_from_slice(args);
            lengths.push(head.len() + args.len());
            if keys.is_none() {
                pure_keys.push(call_key(name, digest, args));
            }
        }
        let keys = keys.unwrap_or(pure_keys);
        let states = self.0.keys.retain(py, &keys, None)?;
        let common = TaskIn {
            key: String::new(),
            deps: Vec::new(),
            payload: None,
            priority,
            retries,
            workers,
            resources,
        };
        let buffer = buffer.freeze();
        // Python's copy of the keys is made before the keys move into the submission.
        let names = pyo3::types::PyList::new(py, &keys)?.unbind();
        py.detach(|| self.0.submit_plain(keys, buffer, &lengths, common))
            .map_err(to_py)?;
        Ok((names, states))
    }

    /// The states of `keys`, one more reference each; `adopt=True`: new states start
    /// from what the client heard of the key already (a key handed over by the scheduler).
    #[pyo3(signature = (keys, adopt = false))]
    fn retain(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        adopt: bool,
    ) -> PyResult<Vec<Py<KeyState>>> {
        let client = &self.0.client;
        if adopt {
            self.0.releases.forget(&keys);
        }
        let known = |key: &str| client.state(key);
        self.0
            .keys
            .retain(py, &keys, if adopt { Some(&known) } else { None })
    }

    /// One reference fewer on `key`; released (in a batch) when none is left.
    fn drop_key(&self, key: &str) -> PyResult<()> {
        self.0
            .keys
            .drop_key(key, &self.0.releases, &self.0.client)
            .map_err(to_py)
    }

    /// Send the releases queued so far.
    fn flush_releases(&self) -> PyResult<()> {
        self.0.after_releases(|| Ok(())).map_err(to_py)
    }

    /// A number that changes whenever key states change (see `wait_change`).
    fn generation(&self) -> u64 {
        self.0.keys.generation()
    }

    /// Wait (at most `timeout` s) for key states to change after `generation`; returns
    /// the generation now.
    fn wait_change(&self, py: Python<'_>, generation: u64, timeout: f64) -> u64 {
        py.detach(|| self.0.keys.wait_change(generation, seconds(timeout)))
    }

    /// Wait until all `states` are final; `False` when `timeout` (s) passed first.
    #[pyo3(signature = (states, timeout = None))]
    fn wait_all(&self, py: Python<'_>, states: Vec<Py<KeyState>>, timeout: Option<f64>) -> bool {
        let refs: Vec<&KeyState> = states.iter().map(Py::get).collect();
        py.detach(|| self.0.keys.wait_all(&refs, timeout.map(seconds)))
    }

    /// Keys whose done-callbacks are due, waiting up to `timeout` s for one; `None` once
    /// the connection closed and none is due.
    fn next_callbacks(&self, py: Python<'_>, timeout: f64) -> Option<Vec<String>> {
        py.detach(|| self.0.keys.next_callbacks(seconds(timeout)))
    }

    /// The keys this client's futures hold whose results are in memory.
    fn finished_keys(&self) -> Vec<String> {
        self.0.keys.finished_keys()
    }

    /// The state of `key` if a future holds it.
    fn state(&self, py: Python<'_>, key: &str) -> Option<Py<KeyState>> {
        self.0.keys.state(py, key)
    }

    /// Results of finished keys, and the positions of those left to Python: small values
    /// without out-of-band buffers are decoded here; the others come as `bytes` (small,
    /// one cheap copy) or as frames Python decodes without copying.
    fn fetch(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<(Vec<Py<PyAny>>, Vec<usize>)> {
        let frames = py.detach(|| self.0.fetch(&keys)).map_err(to_py)?;
        let mut undecoded = Vec::new();
        let values = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                if f.len() > SMALL_FRAME {
                    undecoded.push(i);
                    return Ok(Py::new(py, Frame::owned(f))?.into_any());
                }
                match values::decode_plain(py, &f) {
                    Some(Ok(value)) => Ok(value),
                    // Python decodes it again and says what is wrong, naming the key.
                    Some(Err(_)) | None => {
                        undecoded.push(i);
                        Ok(pyo3::types::PyBytes::new(py, &f).into_any().unbind())
                    }
                }
            })
            .collect::<PyResult<_>>()?;
        Ok((values, undecoded))
    }

    fn release(&self, keys: Vec<String>) -> PyResult<()> {
        self.0
            .after_releases(|| self.0.client.release(keys))
            .map_err(to_py)
    }

    fn cancel(&self, keys: Vec<String>) -> PyResult<()> {
        self.0.client.cancel(keys).map_err(to_py)
    }

    /// The data-server addresses holding each key.
    fn who_has(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Vec<Vec<String>>> {
        py.detach(|| self.0.who_has(&keys)).map_err(to_py)
    }

    /// Copy keys held in memory to every worker.
    fn replicate(&self, keys: Vec<String>) -> PyResult<()> {
        self.0.client.replicate(keys).map_err(to_py)
    }

    /// The cluster state as dicts and lists (`workers`, `tasks`, ...).
    fn status(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let status = py.detach(|| self.0.status()).map_err(to_py)?;
        let value = serde_json::to_value(&status)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        json::to_py(py, &value)
    }

    /// The dashboard's link with its token, or None when the scheduler runs none.
    fn dashboard_link(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.0.dashboard_link()).map_err(to_py)
    }

    fn wait_for_workers(&self, py: Python<'_>, n: usize, timeout: f64) -> PyResult<usize> {
        py.detach(|| self.0.wait_for_workers(n, seconds(timeout)))
            .map_err(to_py)
    }

    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.shutdown()).map_err(to_py)
    }

    /// Restart workers (names or addresses; empty: all); `cancel_all` cancels every key.
    fn restart(&self, workers: Vec<String>, cancel_all: bool) -> PyResult<()> {
        self.0.client.restart(workers, cancel_all).map_err(to_py)
    }

    /// Retire workers (names or addresses) without losing their results.
    fn retire(&self, workers: Vec<String>) -> PyResult<()> {
        self.0.client.retire(workers).map_err(to_py)
    }

    /// Recent task runs as `(key, worker, start, stop, ok)` tuples.
    fn task_stream(&self, py: Python<'_>, since: f64, limit: u32) -> PyResult<Vec<client::RunOut>> {
        py.detach(|| self.0.task_stream(since, limit))
            .map_err(to_py)
    }

    /// Compute these failed keys again.
    fn retry(&self, keys: Vec<String>) -> PyResult<()> {
        self.0.client.retry(keys).map_err(to_py)
    }

    /// One request on the scheduler's coordination state (see `coordination.rs`);
    /// waits at most `timeout` seconds (`None`: as long as it takes).
    #[pyo3(signature = (op, *, name=None, names=Vec::new(), data=None, keys=Vec::new(), count=0, maxsize=0, wait=true, replace=false, lease=None, max_leases=1, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn coord(
        &self,
        py: Python<'_>,
        op: &str,
        name: Option<String>,
        names: Vec<String>,
        data: Option<Vec<u8>>,
        keys: Vec<String>,
        count: u64,
        maxsize: u64,
        wait: bool,
        replace: bool,
        lease: Option<String>,
        max_leases: u32,
        timeout: Option<f64>,
    ) -> PyResult<(&'static str, Py<PyAny>)> {
        let request = coordination::CoordArgs {
            name,
            names,
            data,
            keys,
            count,
            maxsize,
            wait,
            replace,
            lease,
            max_leases,
        }
        .request(op)?;
        let reply = py
            .detach(|| self.0.coord(request, timeout.map(seconds)))
            .map_err(to_py)?;
        coordination::reply_out(py, reply)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "cli")]
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(secede, m)?)?;
    m.add_function(wrap_pyfunction!(depth_first_order, m)?)?;
    m.add_function(wrap_pyfunction!(legacy::wire_key, m)?)?;
    m.add_function(wrap_pyfunction!(pickle_plain, m)?)?;
    m.add_function(wrap_pyfunction!(rejoin, m)?)?;
    m.add_function(wrap_pyfunction!(worker_identity, m)?)?;
    m.add_function(wrap_pyfunction!(worker_has_plugins, m)?)?;
    m.add(
        "PLUGIN_DATASET_PREFIX",
        shoal_comm::coordination::PLUGIN_DATASET_PREFIX,
    )?;
    m.add_function(wrap_pyfunction!(mpi::mpi_initialize, m)?)?;
    m.add_function(wrap_pyfunction!(mpi::mpi_finalize, m)?)?;
    m.add_function(wrap_pyfunction!(args::parse_memory, m)?)?;
    m.add("MAGIC", pyo3::types::PyBytes::new(m.py(), values::MAGIC))?;
    m.add(
        "ERROR_MAGIC",
        pyo3::types::PyBytes::new(m.py(), values::ERROR_MAGIC),
    )?;
    jobqueue::register(m)?;
    shoal_runtime::executor::pool::set_batch_scope(worker::batch_scope);
    m.add_class::<PyClient>()?;
    m.add_class::<KeyState>()?;
    m.add_class::<Frame>()?;
    m.add("PROTOCOL_VERSION", shoal_comm::PROTOCOL_VERSION)?;
    Ok(())
}
