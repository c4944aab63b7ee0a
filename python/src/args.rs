//! Keyword arguments checked by the command line's own parsers, so the Python API accepts
//! what the flags accept and refuses it with the same message, naming the keyword.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// A value as its flag would read it: a `str` as given, anything else (a number) as
/// `str(value)`.
pub fn text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        value.extract()
    } else {
        value.str()?.extract()
    }
}

/// `value` parsed as its flag is; ValueError `keyword=value: why` otherwise.
pub fn checked<T>(
    keyword: &str,
    value: &Bound<'_, PyAny>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> PyResult<T> {
    let text = text(value)?;
    parse(&text).map_err(|why| PyValueError::new_err(format!("{keyword}={text}: {why}")))
}

/// A memory size as job parameters take it (`100GB`, `96GiB`, bytes): shoal-jobqueue's
/// grammar, the one `memory=` is validated with.
#[pyfunction]
pub fn parse_memory(text: &str) -> PyResult<u64> {
    shoal_jobqueue::Memory::parse(text)
        .map(|m| m.bytes())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}
