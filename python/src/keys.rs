//! What a Python client knows about its keys, kept in one place: a [`KeyState`] per key
//! that some future holds, shared with the Python futures and changed by the Rust side
//! as updates arrive, without the interpreter.
//!
//! Updates from the scheduler are applied by a task on the client runtime; waiting for
//! keys happens here with the interpreter released; Python only runs for keys that have
//! done-callbacks ([`Registry::next_callbacks`]). Releases of keys no future holds any
//! more are batched here and always sent before the client's next message.

use crate::client::{error_out, ErrorOut};
use pyo3::prelude::*;
use rustc_hash::FxHashMap;
use shoal_comm::message::{KeyState as WireState, KeyUpdate};
use shoal_runtime::client::{Client, ClientError};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Releases sent in one message once this many are waiting.
const RELEASE_BATCH: usize = 4096;

/// A key's status as Python names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Status {
    Pending = 0,
    Finished = 1,
    Error = 2,
    Cancelled = 3,
    Lost = 4,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Pending,
        Status::Finished,
        Status::Error,
        Status::Cancelled,
        Status::Lost,
    ];

    fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Finished => "finished",
            Status::Error => "error",
            Status::Cancelled => "cancelled",
            Status::Lost => "lost",
        }
    }

    fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What the client knows about one key, shared by every future of the key.
#[pyclass(frozen, module = "shoal._native")]
pub struct KeyState {
    status: AtomicU8,
    size: AtomicU64,
    refs: AtomicI64,
    /// Set when Python registered done-callbacks: the key is reported when final.
    watched: AtomicBool,
    error: Mutex<Option<ErrorOut>>,
}

impl KeyState {
    fn pending() -> KeyState {
        KeyState {
            status: AtomicU8::new(Status::Pending as u8),
            size: AtomicU64::new(0),
            refs: AtomicI64::new(0),
            watched: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    fn get(&self) -> Status {
        Status::ALL[usize::from(self.status.load(Ordering::SeqCst))]
    }

    fn is_done(&self) -> bool {
        self.get() != Status::Pending
    }

    fn error_slot(&self) -> MutexGuard<'_, Option<ErrorOut>> {
        self.error.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set the state; true when a waiter for done-callbacks must hear of it.
    fn apply(&self, status: Status, size: u64, error: Option<ErrorOut>) -> bool {
        *self.error_slot() = error;
        self.size.store(size, Ordering::SeqCst);
        self.status.store(status as u8, Ordering::SeqCst);
        status != Status::Pending && self.watched.load(Ordering::SeqCst)
    }

    fn apply_update(&self, state: WireState) -> bool {
        match state {
            WireState::Memory { size } => self.apply(Status::Finished, size, None),
            WireState::Erred(e) => self.apply(Status::Error, 0, Some(error_out(e))),
            WireState::Cancelled => self.apply(Status::Cancelled, 0, None),
        }
    }
}

#[pymethods]
impl KeyState {
    /// A pending state that belongs to no client (a released future's).
    #[new]
    fn py_new() -> Self {
        KeyState::pending()
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.get().name()
    }

    #[getter]
    fn done(&self) -> bool {
        self.is_done()
    }

    #[getter]
    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    #[getter]
    fn refs(&self) -> i64 {
        self.refs.load(Ordering::SeqCst)
    }

    /// `(failed key, kind, message, traceback, pickled exception)` of a failure.
    #[getter]
    fn error(&self) -> Option<ErrorOut> {
        self.error_slot().clone()
    }

    /// Set the state from Python (`"pending"` after a retry, `"cancelled"`, ...).
    #[pyo3(signature = (status, size = 0, error = None))]
    fn set(&self, status: &str, size: u64, error: Option<ErrorOut>) -> PyResult<()> {
        let status = Status::from_name(status).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("no key status {status:?}"))
        })?;
        self.apply(status, size, error);
        Ok(())
    }

    /// Report this key to [`Registry::next_callbacks`] once it is final; returns whether
    /// it is final already (then the caller runs the callbacks itself, and a report may
    /// come too: the caller takes the callbacks out under its lock, so they run once).
    fn watch(&self) -> bool {
        self.watched.store(true, Ordering::SeqCst);
        self.is_done()
    }
}

/// What the client heard of a key already (see [`Registry::retain`]).
pub type KnownState<'a> = dyn Fn(&str) -> Option<WireState> + 'a;

/// Every key state of one client, the releases not sent yet, and the keys whose
/// callbacks are due.
pub struct Registry {
    inner: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Default)]
struct Inner {
    states: FxHashMap<String, Py<KeyState>>,
    /// Bumped by every batch of updates (waiters compare it).
    generation: u64,
    /// Keys whose callbacks are due, in the order they became final.
    due: Vec<String>,
    closed: Option<String>,
}

/// Releases not yet sent. The lock is held while they are sent, so whoever flushes and
/// then sends a message of its own knows every release queued before went out first
/// (queued keys were sent either by it or by a flush that finished before it got the
/// lock).
#[derive(Default)]
pub struct Releases(Mutex<Vec<String>>);

impl Releases {
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send what is queued, then run `then` (another message, which may wait for its
    /// reply: the lock is not held while it runs).
    pub fn flush_then<T>(
        &self,
        client: &Client,
        then: impl FnOnce() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        {
            let mut queued = self.lock();
            if !queued.is_empty() {
                client.release(std::mem::take(&mut *queued))?;
            }
        }
        then()
    }

    /// Keep these keys: a queued release of any of them is dropped.
    pub fn forget(&self, keys: &[String]) {
        let wanted: rustc_hash::FxHashSet<&str> = keys.iter().map(String::as_str).collect();
        self.lock().retain(|k| !wanted.contains(k.as_str()));
    }

    fn push(&self, client: &Client, key: String) -> Result<(), ClientError> {
        let mut queued = self.lock();
        queued.push(key);
        if queued.len() >= RELEASE_BATCH {
            client.release(std::mem::take(&mut *queued))?;
        }
        Ok(())
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply updates from the scheduler (keys no future holds are ignored).
    pub fn apply(&self, updates: impl IntoIterator<Item = KeyUpdate>) {
        let mut inner = self.lock();
        let Inner { states, due, .. } = &mut *inner;
        for u in updates {
            if let Some(state) = states.get(&u.key) {
                if state.get().apply_update(u.state) {
                    due.push(u.key);
                }
            }
        }
        inner.generation += 1;
        drop(inner);
        self.changed.notify_all();
    }

    /// The connection closed: every pending key is lost.
    pub fn close(&self, reason: &str) {
        let mut inner = self.lock();
        let Inner { states, due, .. } = &mut *inner;
        for (key, state) in states.iter() {
            let state = state.get();
            if !state.is_done() {
                let error = (
                    String::new(),
                    "Lost".into(),
                    reason.into(),
                    None,
                    Vec::new(),
                );
                if state.apply(Status::Lost, 0, Some(error)) {
                    due.push(key.clone());
                }
            }
        }
        inner.closed = Some(reason.into());
        inner.generation += 1;
        drop(inner);
        self.changed.notify_all();
    }

    /// The states of `keys`, one more reference each (made pending where new; with
    /// `known`, a new state starts from what `known` says of its key).
    pub fn retain(
        &self,
        py: Python<'_>,
        keys: &[String],
        known: Option<&KnownState<'_>>,
    ) -> PyResult<Vec<Py<KeyState>>> {
        let mut inner = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let state = match inner.states.get(key) {
                Some(s) => s.clone_ref(py),
                None => {
                    let state = KeyState::pending();
                    if let Some(wire) = known.and_then(|f| f(key)) {
                        state.apply_update(wire);
                    }
                    let state = Py::new(py, state)?;
                    inner.states.insert(key.clone(), state.clone_ref(py));
                    state
                }
            };
            state.get().refs.fetch_add(1, Ordering::SeqCst);
            out.push(state);
        }
        Ok(out)
    }

    /// One reference fewer; the key is forgotten (and released) at none.
    pub fn drop_key(
        &self,
        key: &str,
        releases: &Releases,
        client: &Client,
    ) -> Result<(), ClientError> {
        let mut inner = self.lock();
        let Some(state) = inner.states.get(key) else {
            return Ok(());
        };
        if state.get().refs.fetch_sub(1, Ordering::SeqCst) > 1 {
            return Ok(());
        }
        // Dropped without the interpreter's help is fine: pyo3 defers the decrement.
        let removed = inner.states.remove(key);
        let closed = inner.closed.is_some();
        drop(inner);
        drop(removed);
        if closed {
            return Ok(());
        }
        releases.push(client, key.to_owned())
    }

    /// The current generation (for [`Registry::wait_change`]).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Wait until updates after `generation` arrived or `timeout` passed; returns the
    /// generation now.
    pub fn wait_change(&self, generation: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while inner.generation == generation && inner.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        inner.generation
    }

    /// Wait until every state is final; false when `timeout` passed first.
    pub fn wait_all(&self, states: &[&KeyState], timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        // States become final and stay so: each is checked until it is, once.
        let mut next = 0;
        let mut inner = self.lock();
        loop {
            while next < states.len() && states[next].is_done() {
                next += 1;
            }
            if next == states.len() {
                return true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(1),
            };
            if deadline.is_some() && left.is_zero() {
                return false;
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Keys whose callbacks are due, waiting up to `timeout` for one; `None` once the
    /// connection closed and nothing is due.
    pub fn next_callbacks(&self, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if !inner.due.is_empty() {
                return Some(std::mem::take(&mut inner.due));
            }
            if inner.closed.is_some() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(Vec::new());
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The keys held by futures whose results are in memory.
    pub fn finished_keys(&self) -> Vec<String> {
        self.lock()
            .states
            .iter()
            .filter(|(_, s)| s.get().get() == Status::Finished)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The state of `key`, if a future holds it.
    pub fn state(&self, py: Python<'_>, key: &str) -> Option<Py<KeyState>> {
        self.lock().states.get(key).map(|s| s.clone_ref(py))
    }
}
