//! The scheduler's coordination state seen from Python: requests built from keyword
//! arguments (`shoal.coordination` and the dataset methods of `Client` call this), replies
//! turned into `(tag, payload)` tuples.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shoal_comm::coordination::{CoordReply, CoordRequest, HeldValue};

/// The arguments of one request, as Python passes them.
#[derive(Default)]
pub struct CoordArgs {
    pub name: Option<String>,
    pub names: Vec<String>,
    pub data: Option<Vec<u8>>,
    pub keys: Vec<String>,
    pub count: u64,
    pub maxsize: u64,
    pub wait: bool,
    pub replace: bool,
    pub lease: Option<String>,
    pub max_leases: u32,
}

impl CoordArgs {
    fn name(&self, op: &str) -> PyResult<String> {
        self.name.clone().ok_or_else(|| {
            PyValueError::new_err(format!("coordination request {op:?} needs a name"))
        })
    }

    fn value(&self) -> HeldValue {
        HeldValue {
            data: self.data.clone().unwrap_or_default(),
            keys: self.keys.clone(),
        }
    }

    fn lease(&self, op: &str) -> PyResult<String> {
        self.lease.clone().ok_or_else(|| {
            PyValueError::new_err(format!("coordination request {op:?} needs a lease"))
        })
    }

    /// The request named `op`.
    ///
    /// # Errors
    /// An unknown operation, or an argument it needs is missing.
    pub fn request(&self, op: &str) -> PyResult<CoordRequest> {
        let wait = self.wait;
        Ok(match op {
            "variable_set" => CoordRequest::VariableSet {
                name: self.name(op)?,
                value: self.value(),
            },
            "variable_get" => CoordRequest::VariableGet {
                name: self.name(op)?,
                wait,
            },
            "variable_delete" => CoordRequest::VariableDelete {
                name: self.name(op)?,
            },
            "queue_put" => CoordRequest::QueuePut {
                name: self.name(op)?,
                value: self.value(),
                maxsize: self.maxsize,
                wait,
            },
            "queue_get" => CoordRequest::QueueGet {
                name: self.name(op)?,
                count: self.count,
                wait,
            },
            "queue_size" => CoordRequest::QueueSize {
                name: self.name(op)?,
            },
            "event_set" => CoordRequest::EventSet {
                name: self.name(op)?,
            },
            "event_clear" => CoordRequest::EventClear {
                name: self.name(op)?,
            },
            "event_wait" => CoordRequest::EventWait {
                name: self.name(op)?,
                wait,
            },
            "event_is_set" => CoordRequest::EventIsSet {
                name: self.name(op)?,
            },
            "acquire" => CoordRequest::Acquire {
                names: self.names.clone(),
                max_leases: self.max_leases,
                lease: self.lease(op)?,
                wait,
            },
            "release" => CoordRequest::Release {
                names: self.names.clone(),
                lease: self.lease(op)?,
            },
            "leases" => CoordRequest::Leases {
                name: self.name(op)?,
            },
            "dataset_publish" => CoordRequest::DatasetPublish {
                name: self.name(op)?,
                value: self.value(),
                replace: self.replace,
            },
            "dataset_get" => CoordRequest::DatasetGet {
                name: self.name(op)?,
            },
            "dataset_list" => CoordRequest::DatasetList,
            "dataset_delete" => CoordRequest::DatasetDelete {
                name: self.name(op)?,
            },
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown coordination request {other:?}"
                )))
            }
        })
    }
}

fn value_out(py: Python<'_>, v: HeldValue) -> PyResult<Py<PyAny>> {
    let data = PyBytes::new(py, &v.data);
    Ok((data, v.keys).into_pyobject(py)?.into_any().unbind())
}

/// A reply as `(tag, payload)`: `("ok", None)`, `("value", (bytes, keys))`,
/// `("values", [(bytes, keys), ...])`, `("flag", bool)`, `("count", int)`,
/// `("names", [str])`, `("not_found" | "not_ready" | "cancelled", None)`,
/// `("error", message)`.
///
/// # Errors
/// Python objects cannot be made (out of memory).
pub fn reply_out(py: Python<'_>, reply: CoordReply) -> PyResult<(&'static str, Py<PyAny>)> {
    let none = || py.None();
    Ok(match reply {
        CoordReply::Ok => ("ok", none()),
        CoordReply::Value(v) => ("value", value_out(py, v)?),
        CoordReply::Values(vs) => {
            let items = vs
                .into_iter()
                .map(|v| value_out(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            ("values", items.into_pyobject(py)?.into_any().unbind())
        }
        CoordReply::Flag(b) => ("flag", b.into_pyobject(py)?.to_owned().into_any().unbind()),
        CoordReply::Count(n) => ("count", n.into_pyobject(py)?.into_any().unbind()),
        CoordReply::Names(names) => ("names", names.into_pyobject(py)?.into_any().unbind()),
        CoordReply::NotFound => ("not_found", none()),
        CoordReply::NotReady => ("not_ready", none()),
        CoordReply::Cancelled => ("cancelled", none()),
        CoordReply::Error(message) => ("error", message.into_pyobject(py)?.into_any().unbind()),
    })
}
