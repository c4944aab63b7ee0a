//! Dask's legacy tuple tasks `(f, *args)` made into shoal tasks natively: the walk over a
//! graph dict behind `shoal._dask.submit_graph` (in Python it cost 3-4 us per task).
//!
//! A task whose arguments are values, keys, or lists of keys becomes a call: compact (the
//! function's head and the pickled arguments, as `map` sends them) when it has no inputs
//! and only plain arguments, else a call payload the Python hook pickles with a `Dep`
//! marker per input key (one `Inputs` marker for a list of distinct new input keys, as a
//! fan-in has). Every other node (nested tasks, keys inside other containers, dask's own
//! task objects) goes to the Python hook `other`, so its meaning stays dask's.

use crate::client::TaskIn;
use crate::values;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};
use rustc_hash::FxHashMap;

/// What the walk asks of Python.
pub struct Hooks<'py> {
    /// `head(fn) -> bytes`: the compact payload's head for `fn`.
    pub head: Bound<'py, PyAny>,
    /// `call(fn, args, has_inputs) -> bytes`: a call payload, inputs as `Dep` markers.
    pub call: Bound<'py, PyAny>,
    /// `other(key, node) -> (deps, payload) | str`: the task of any other node, or the
    /// key of the future the node stands for (a persisted result, not submitted again).
    pub other: Bound<'py, PyAny>,
    /// `Dep(index)`, the marker of input `index` (`shoal._worker.Dep`).
    pub dep: Bound<'py, PyAny>,
    /// `Inputs(start, stop)`, the marker of a list of inputs (`shoal._worker.Inputs`).
    pub inputs: Bound<'py, PyAny>,
}

/// The graph as shoal tasks.
pub struct Converted {
    /// One task per node that is not a future already.
    pub tasks: Vec<TaskIn>,
    /// Wire keys of nodes that stand for futures, and the futures' keys.
    pub aliases: FxHashMap<String, String>,
}

impl Converted {
    /// `key`, or the key of the future it stands for.
    pub fn resolve(&self, key: String) -> String {
        self.aliases.get(&key).cloned().unwrap_or(key)
    }
}

/// A dask key as a string for the wire: strings as they are, anything else by its
/// `repr` (written here for the usual `(name, i, j)` tuples).
#[pyfunction]
pub fn wire_key(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = key.cast_exact::<PyString>() {
        return s.extract();
    }
    if let Some(repr) = key.cast_exact::<PyTuple>().ok().and_then(tuple_repr) {
        return Ok(repr);
    }
    key.repr()?.extract()
}

/// Python's `repr` of a tuple of ints and of strings of printable ASCII without quotes
/// or backslashes; `None` for any other tuple.
fn tuple_repr(tuple: &Bound<'_, PyTuple>) -> Option<String> {
    use std::fmt::Write;
    let mut out = String::with_capacity(8 + 8 * tuple.len());
    out.push('(');
    for (i, item) in tuple.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if let Ok(s) = item.cast_exact::<PyString>() {
            let text = s.to_cow().ok()?;
            let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\';
            if !text.bytes().all(plain) {
                return None;
            }
            out.push('\'');
            out.push_str(&text);
            out.push('\'');
        } else if item.is_exact_instance_of::<PyInt>() {
            write!(out, "{}", item.extract::<i64>().ok()?).ok()?;
        } else {
            return None;
        }
    }
    if tuple.len() == 1 {
        out.push(',');
    }
    out.push(')');
    Some(out)
}

/// Every node of `graph` as a task; dependencies on futures point at the futures' keys.
pub fn convert(graph: &Bound<'_, PyDict>, hooks: &Hooks<'_>) -> PyResult<Converted> {
    let mut tasks = Vec::with_capacity(graph.len());
    let mut aliases = FxHashMap::default();
    let mut heads = Heads::default();
    for (k, node) in graph.iter() {
        let key = wire_key(&k)?;
        if let Some(call) = Call::of(&node, graph, hooks)? {
            let deps = call.deps.iter().map(wire_key).collect::<PyResult<_>>()?;
            let payload = call.payload(hooks, &mut heads)?;
            tasks.push(task(key, deps, payload));
            continue;
        }
        let made = hooks.other.call1((k, node))?;
        if let Ok(future_key) = made.cast::<PyString>() {
            aliases.insert(key, future_key.extract()?);
            continue;
        }
        let (deps, payload): (Vec<String>, Vec<u8>) = made.extract()?;
        tasks.push(task(key, deps, payload));
    }
    if !aliases.is_empty() {
        for dep in tasks.iter_mut().flat_map(|t| t.deps.iter_mut()) {
            if let Some(alias) = aliases.get(dep) {
                dep.clone_from(alias);
            }
        }
    }
    Ok(Converted { tasks, aliases })
}

fn task(key: String, deps: Vec<String>, payload: Vec<u8>) -> TaskIn {
    TaskIn {
        key,
        deps,
        payload: Some(payload),
        priority: 0,
        retries: 0,
        workers: Vec::new(),
        resources: Vec::new(),
    }
}

/// Compact payload heads by function (the functions are kept alive with them, so an
/// address is not reused while the walk runs).
#[derive(Default)]
struct Heads<'py>(FxHashMap<usize, (Bound<'py, PyAny>, Vec<u8>)>);

impl<'py> Heads<'py> {
    fn of(&mut self, f: &Bound<'py, PyAny>, hooks: &Hooks<'py>) -> PyResult<&[u8]> {
        let entry = match self.0.entry(f.as_ptr() as usize) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let head = hooks.head.call1((f,))?.cast_into::<PyBytes>()?;
                e.insert((f.clone(), head.as_bytes().to_vec()))
            }
        };
        Ok(&entry.1)
    }
}

/// A legacy task `(f, *args)` whose arguments are values, keys or lists of keys.
struct Call<'py> {
    function: Bound<'py, PyAny>,
    /// The arguments, each key replaced by its `Dep`.
    args: Vec<Bound<'py, PyAny>>,
    /// The input keys, in `Dep` index order, each once.
    deps: Vec<Bound<'py, PyAny>>,
    /// Input numbers by key (made at the first input).
    index: Option<Bound<'py, PyDict>>,
}

impl<'py> Call<'py> {
    /// `node` as a call, or `None` when dask's own conversion must decide.
    fn of(
        node: &Bound<'py, PyAny>,
        graph: &Bound<'py, PyDict>,
        hooks: &Hooks<'py>,
    ) -> PyResult<Option<Self>> {
        let Ok(task) = node.cast_exact::<PyTuple>() else {
            return Ok(None);
        };
        let Ok(function) = task.get_item(0) else {
            return Ok(None);
        };
        if !function.is_callable() {
            return Ok(None);
        }
        let mut call = Call {
            function,
            args: Vec::with_capacity(task.len() - 1),
            deps: Vec::new(),
            index: None,
        };
        for arg in task.iter().skip(1) {
            if is_key_type(&arg) {
                match in_graph(&arg, graph)? {
                    None => return Ok(None),
                    Some(true) => {
                        let i = call.input(arg)?;
                        call.args.push(hooks.dep.call1((i,))?);
                    }
                    Some(false) if arg.is_exact_instance_of::<PyTuple>() => return Ok(None),
                    Some(false) => call.args.push(arg),
                }
            } else if let Ok(list) = arg.cast_exact::<PyList>() {
                if list.is_empty() {
                    call.args.push(arg);
                    continue;
                }
                for x in list.iter() {
                    if !is_key_type(&x) || in_graph(&x, graph)? != Some(true) {
                        return Ok(None);
                    }
                }
                let marker = call.inputs(list, hooks)?;
                call.args.push(marker);
            } else if arg.is_exact_instance_of::<PyDict>()
                || arg.is_exact_instance_of::<PySet>()
                || arg.is_exact_instance_of::<PyFrozenSet>()
            {
                return Ok(None);
            } else {
                call.args.push(arg);
            }
        }
        Ok(Some(call))
    }

    /// The input number of `key`, the same for the same key.
    fn input(&mut self, key: Bound<'py, PyAny>) -> PyResult<usize> {
        let index = self.index.get_or_insert_with(|| PyDict::new(key.py()));
        if let Some(i) = index.get_item(&key)? {
            return i.extract();
        }
        let i = self.deps.len();
        index.set_item(&key, i)?;
        self.deps.push(key);
        Ok(i)
    }

    /// The marker of a list of input keys: one `Inputs(start, stop)` when they are new
    /// and distinct (a fan-in), else a list of `Dep`s.
    fn inputs(
        &mut self,
        keys: &Bound<'py, PyList>,
        hooks: &Hooks<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let start = self.deps.len();
        let numbers = keys
            .iter()
            .map(|key| self.input(key))
            .collect::<PyResult<Vec<_>>>()?;
        let stop = self.deps.len();
        if stop - start == numbers.len() {
            return hooks.inputs.call1((start, stop));
        }
        let markers = numbers
            .into_iter()
            .map(|i| hooks.dep.call1((i,)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(keys.py(), markers)?.into_any())
    }

    fn payload(&self, hooks: &Hooks<'py>, heads: &mut Heads<'py>) -> PyResult<Vec<u8>> {
        let py = self.function.py();
        let args = PyTuple::new(py, &self.args)?;
        if self.deps.is_empty() && self.args.iter().all(values::is_simple) {
            let args = values::pickle(args.as_any())?;
            let head = heads.of(&self.function, hooks)?;
            let mut payload = Vec::with_capacity(head.len() + args.len());
            payload.extend_from_slice(head);
            payload.extend_from_slice(&args);
            return Ok(payload);
        }
        let payload = hooks
            .call
            .call1((&self.function, args, !self.deps.is_empty()))?;
        Ok(payload.cast_into::<PyBytes>()?.as_bytes().to_vec())
    }
}

/// Whether `obj` is of a type a legacy graph's keys can have (so it may name a key).
fn is_key_type(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyTuple>()
}

/// Whether `obj` is a key of `graph`; `None` when it cannot be one (a tuple holding
/// something unhashable).
fn in_graph(obj: &Bound<'_, PyAny>, graph: &Bound<'_, PyDict>) -> PyResult<Option<bool>> {
    match graph.contains(obj) {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}
