//! Value frames for the values Rust handles without Python code: a plain pickle with no
//! out-of-band buffers behind the frame head of `shoal/_serialize.py`
//! (`b"SHL1" | u32 nbuf = 0 | u64 pickle_len | pickle`). Everything else (arrays with
//! buffers, `__main__` objects that need cloudpickle, error frames) goes through Python.

use crate::plain_pickle;
use bytes::{BufMut, Bytes, BytesMut};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyComplex, PyFloat, PyInt, PyString};

/// First bytes of a value frame (`shoal._native.MAGIC`, which `shoal._serialize` writes).
pub const MAGIC: &[u8; 4] = b"SHL1";
/// First bytes of a frame that carries an encoding failure instead of a value
/// (`shoal._native.ERROR_MAGIC`, which `shoal._serialize` writes).
pub const ERROR_MAGIC: &[u8; 4] = b"SHLE";
/// The frame head: magic, buffer count, pickle length.
const HEAD: usize = 16;

/// `pickle.dumps` or `pickle.loads`, looked up once.
fn pickle_fn<'py>(py: Python<'py>, dumps: bool) -> PyResult<Bound<'py, PyAny>> {
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let (cell, name) = if dumps {
        (&DUMPS, "dumps")
    } else {
        (&LOADS, "loads")
    };
    let f = cell.get_or_try_init(py, || py.import("pickle")?.getattr(name).map(Bound::unbind))?;
    Ok(f.bind(py).clone())
}

/// Whether `obj` is of a type whose plain pickle is its whole value: no buffers, nothing
/// from `__main__` (the types `shoal._worker.PLAIN` names).
pub fn is_simple(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_none()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyComplex>()
}

/// A pickle of `obj` as `pickle.loads` reads it: written directly for plain values and
/// tuples of them ([`plain_pickle`]), else `pickle.dumps(obj, 5)`.
pub fn pickle(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Some(data) = plain_pickle::dumps(obj) {
        return Ok(data);
    }
    let data = pickle_fn(obj.py(), true)?
        .call1((obj, 5))?
        .cast_into::<PyBytes>()?;
    Ok(data.as_bytes().to_vec())
}

/// The frame of a simple value (see [`is_simple`]).
pub fn encode_simple(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let data = pickle(obj)?;
    let mut frame = BytesMut::with_capacity(HEAD + data.len());
    frame.put_slice(MAGIC);
    frame.put_u32_le(0);
    frame.put_u64_le(data.len() as u64);
    frame.put_slice(&data);
    Ok(frame.freeze())
}

/// The value of a frame without out-of-band buffers, or `None` for any other frame
/// (buffers, an error frame, not a value frame: Python decodes those and says why).
pub fn decode_plain(py: Python<'_>, frame: &[u8]) -> Option<PyResult<Py<PyAny>>> {
    plain_pickle_of(frame).map(|data| unpickle(py, data).map(Bound::unbind))
}

/// The pickle inside a frame without out-of-band buffers, or `None` for any other frame.
pub fn plain_pickle_of(frame: &[u8]) -> Option<&[u8]> {
    let head = frame.get(..HEAD)?;
    if &head[..4] != MAGIC || head[4..8] != [0; 4] {
        return None;
    }
    let len = u64::from_le_bytes(head[8..16].try_into().ok()?);
    frame.get(HEAD..HEAD.checked_add(usize::try_from(len).ok()?)?)
}

/// `pickle.loads(data)`.
pub fn unpickle<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    pickle_fn(py, false)?.call1((PyBytes::new(py, data),))
}
