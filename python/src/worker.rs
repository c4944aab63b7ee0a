//! Python tasks on workers: the runner executor threads call (taking the GIL only for the
//! Python part), and results kept as Python objects until a peer or client asks for them.

use crate::frame::Frame;
use crate::values;
use bytes::Bytes;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyTuple};
use rustc_hash::FxHashMap;
use shoal_comm::message::TaskError;
use shoal_runtime::executor::builtin;
use shoal_runtime::executor::pool::Job;
use shoal_runtime::worker::store::{NativeValue, Value};
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A result held as a Python object.
pub struct PyValue {
    obj: Py<PyAny>,
    size: u64,
}

impl NativeValue for PyValue {
    fn to_bytes(&self) -> Result<Bytes, String> {
        Python::attach(|py| {
            let obj = self.obj.bind(py);
            if values::is_simple(obj) {
                return values::encode_simple(obj);
            }
            let frame = helper(py, "dumps")?.call1((obj,))?;
            let frame = frame.cast_into::<PyBytes>()?;
            Ok(bytes_of(frame.unbind(), py))
        })
        .map_err(|e: PyErr| format!("cannot serialize a result: {e}"))
    }

    fn to_spill_bytes(&self) -> Result<Bytes, String> {
        let bytes = self.to_bytes()?;
        // An error frame raises for readers, but must never replace the value on disk.
        match bytes.strip_prefix(values::ERROR_MAGIC) {
            Some(message) => Err(String::from_utf8_lossy(message).into_owned()),
            None => Ok(bytes),
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Keeps a Python `bytes` alive as the owner of a [`Bytes`] (no copy).
struct PyBytesOwner {
    _obj: Py<PyBytes>,
    ptr: usize,
    len: usize,
}

impl AsRef<[u8]> for PyBytesOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a `bytes` object's data is immutable and lives as long as the object,
        // which `_obj` keeps alive.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

fn bytes_of(obj: Py<PyBytes>, py: Python<'_>) -> Bytes {
    let data = obj.bind(py).as_bytes();
    let (ptr, len) = (data.as_ptr() as usize, data.len());
    Bytes::from_owner(PyBytesOwner {
        _obj: obj,
        ptr,
        len,
    })
}

/// The batch scope of executor threads and data servers: one interpreter attach for a
/// batch of Python jobs (or results to encode) instead of one per item.
pub fn batch_scope(f: &mut dyn FnMut()) {
    Python::attach(|_| f());
}

/// A function or class of `shoal._worker`, imported once.
pub fn helper<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import("shoal._worker").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

fn task_error(
    kind: &str,
    message: String,
    traceback: Option<String>,
    exception: Vec<u8>,
) -> TaskError {
    TaskError {
        key: String::new(),
        kind: shoal_comm::message::TaskErrorKind::from_name(kind),
        message,
        traceback,
        exception,
    }
}

/// What the launcher runs workers with here: [`run`] for Python tasks and the built-in
/// kinds; `worker_command` starts further worker processes (`python -m shoal`), `None`
/// where no command starts any.
pub fn hooks(worker_command: Option<Vec<String>>) -> shoal_launcher::Hooks {
    let mut executors = builtin::KINDS.to_vec();
    executors.push(shoal_comm::message::ExecutorKind::Python);
    shoal_launcher::Hooks {
        runner: Some(Arc::new(run)),
        executors,
        worker_command: worker_command.map(|words| words.into_iter().map(Into::into).collect()),
        warm_up: Some(Arc::new(warm_up)),
    }
}

/// Import what the first Python task needs (`shoal._worker.warm_up`), so that it does not
/// wait for the imports. A failure is left for the first task to meet and report.
fn warm_up() {
    let _ = Python::attach(|py| helper(py, "warm_up")?.call0().map(drop));
}

/// Run a job: Python tasks in the interpreter, built-in kinds as the Rust worker does.
///
/// # Errors
/// The task raised (its exception pickled, with the traceback), or the worker's Python
/// side failed.
pub fn run(job: &Job) -> Result<Value, TaskError> {
    if job.kind != shoal_comm::message::ExecutorKind::Python {
        return builtin::run_job(job);
    }
    Python::attach(|py| run_python(py, job)).unwrap_or_else(|e| {
        Err(task_error(
            "TaskFailed",
            format!("the worker's Python side failed: {e}"),
            None,
            Vec::new(),
        ))
    })
}

/// First byte of a compact call payload (`shoal._worker.MAPPED`): `MAPPED | 16-byte
/// digest of the function | u32 length | function (cloudpickle) | args (pickled tuple)`.
const MAPPED: u8 = b'M';

/// Functions of compact calls, decoded once per worker, by digest. Held only to look up
/// or store an entry, never while Python runs: a thread decoding a function may let
/// another thread run (an import does), and that thread, holding the interpreter, would
/// wait here for ever.
static MAPPED_FUNCTIONS: Mutex<Option<FxHashMap<[u8; 16], Py<PyAny>>>> = Mutex::new(None);

/// Set once worker plugins were set up (`shoal._worker.ensure_plugins` returned).
static PLUGINS_CHECKED: AtomicBool = AtomicBool::new(false);

/// The parts of a compact call payload: (digest, function bytes, argument bytes).
fn mapped_parts(payload: &[u8]) -> Option<([u8; 16], &[u8], &[u8])> {
    let (&MAPPED, rest) = payload.split_first()? else {
        return None;
    };
    let digest: [u8; 16] = rest.get(..16)?.try_into().ok()?;
    let len = u32::from_le_bytes(rest.get(16..20)?.try_into().ok()?) as usize;
    let function = rest.get(20..20usize.checked_add(len)?)?;
    Some((digest, function, &rest[20 + len..]))
}

/// The function of a compact call: from the cache, else decoded (under
/// `shoal._worker`'s unpickling lock, as every task's parts are) and cached. Two threads
/// meeting a new function at once both decode it; the first to finish is kept.
fn mapped_function<'py>(
    py: Python<'py>,
    digest: [u8; 16],
    data: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    let cache = || MAPPED_FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = cache().as_ref().and_then(|c| c.get(&digest)) {
        return Ok(f.bind(py).clone());
    }
    let decoded = locked_loads(py, data)?;
    let mut guard = cache();
    let functions = guard.get_or_insert_with(FxHashMap::default);
    let evicted = (functions.len() > 1000).then(|| std::mem::take(functions));
    let f = functions
        .entry(digest)
        .or_insert_with(|| decoded.unbind())
        .bind(py)
        .clone();
    drop(guard);
    drop(evicted); // after the lock: dropping a function may run Python
    Ok(f)
}

/// `data` unpickled while holding `shoal._worker.unpickling`, the lock a worker's threads
/// decode task parts under (unpickling imports modules; see the lock's comment there).
fn locked_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    static LOCK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let lock = LOCK
        .get_or_try_init(py, || helper(py, "unpickling").map(Bound::unbind))?
        .bind(py);
    lock.call_method0(intern!(py, "acquire"))?;
    let value = values::unpickle(py, data);
    lock.call_method0(intern!(py, "release"))?;
    value
}

/// A compact call without inputs, run without `shoal._worker.execute`'s Python frames;
/// `None` for any other payload.
fn run_mapped(py: Python<'_>, job: &Job) -> Option<PyResult<Result<Value, TaskError>>> {
    if !job.inputs.is_empty() {
        return None;
    }
    let (digest, function, args) = mapped_parts(job.payload.as_deref()?)?;
    Some((|| -> PyResult<Result<Value, TaskError>> {
        if !PLUGINS_CHECKED.load(Ordering::Relaxed) {
            helper(py, "ensure_plugins")?.call0()?;
            PLUGINS_CHECKED.store(true, Ordering::Relaxed);
        }
        // Failures to decode the function or its arguments are the task's, as in Python.
        let call = mapped_function(py, digest, function).and_then(|f| {
            let args = locked_loads(py, args)?.cast_into::<PyTuple>()?;
            f.call1(args)
        });
        match call {
            Ok(result) => {
                let size = if values::is_simple(&result) {
                    helper(py, "simple_size")?.call1((&result,))?.extract()?
                } else {
                    helper(py, "sizeof")?.call1((&result,))?.extract()?
                };
                Ok(Ok(Value::Native(Arc::new(PyValue {
                    obj: result.unbind(),
                    size,
                }))))
            }
            Err(e) => {
                let info = helper(py, "error_info")?.call1((e.into_value(py),))?;
                let (kind, message, traceback, exception): (
                    String,
                    String,
                    Option<String>,
                    Vec<u8>,
                ) = info.extract()?;
                Ok(Err(task_error(&kind, message, traceback, exception)))
            }
        }
    })())
}

fn run_python(py: Python<'_>, job: &Job) -> PyResult<Result<Value, TaskError>> {
    if let Some(outcome) = run_mapped(py, job) {
        return outcome;
    }
    let payload = PyBytes::new(py, job.payload.as_deref().unwrap_or_default());
    let inputs = PyList::empty(py);
    for input in &job.inputs {
        match input {
            Value::Native(n) => match n.as_any().downcast_ref::<PyValue>() {
                Some(v) => inputs.append(v.obj.bind(py))?,
                None => {
                    let bytes = n
                        .to_bytes()
                        .map_err(pyo3::exceptions::PyValueError::new_err)?;
                    inputs.append(Frame::shared(bytes))?
                }
            },
            // A plain value from a peer is decoded here; Python decodes the rest and
            // reports what it cannot decode as the task's failure.
            Value::Bytes(b) => match values::plain_pickle_of(b).map(|p| locked_loads(py, p)) {
                Some(Ok(value)) => inputs.append(value)?,
                _ => inputs.append(Frame::shared(b.clone()))?,
            },
        }
    }
    let out = helper(py, "execute")?.call1((payload, inputs))?;
    let (ok, value, size): (bool, Bound<'_, PyAny>, u64) = out.extract()?;
    if ok {
        return Ok(Ok(Value::Native(Arc::new(PyValue {
            obj: value.unbind(),
            size,
        }))));
    }
    let (kind, message, traceback, exception): (String, String, Option<String>, Vec<u8>) =
        value.extract()?;
    Ok(Err(task_error(&kind, message, traceback, exception)))
}
