//! The worker's data store: results by task id. Behind a trait so a disk tier can be
//! added without touching the worker's logic.
//!
//! A result is a [`Value`]: either bytes as they travel on the wire, or an object native to
//! the executor that produced it (a Python object in a worker hosted by the Python
//! package), encoded only when a peer or a client asks for it.

use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::TaskId;
use std::any::Any;
use std::sync::{Arc, RwLock};

/// A result held in an executor's own representation, encoded on demand.
pub trait NativeValue: Send + Sync + 'static {
    /// Encode the value for the wire (to a peer or a client).
    ///
    /// # Errors
    /// The value cannot be encoded; the message names why.
    fn to_bytes(&self) -> Result<Bytes, String>;
    /// Memory the value holds, in bytes (reported to the scheduler).
    fn size(&self) -> u64;
    /// For executors to get their own type back.
    fn as_any(&self) -> &dyn Any;
}

/// A task result held by a worker.
#[derive(Clone)]
pub enum Value {
    /// Encoded bytes (built-in executors, or data fetched from a peer and not decoded yet).
    Bytes(Bytes),
    /// An executor's own object.
    Native(Arc<dyn NativeValue>),
}

impl Value {
    /// Memory held, in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Value::Bytes(b) => b.len() as u64,
            Value::Native(n) => n.size(),
        }
    }

    /// The wire form; encodes a native value.
    ///
    /// # Errors
    /// A native value that cannot be encoded.
    pub fn to_bytes(&self) -> Result<Bytes, String> {
        match self {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Native(n) => n.to_bytes(),
        }
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bytes(b) => write!(f, "Value::Bytes({} bytes)", b.len()),
            Value::Native(n) => write!(f, "Value::Native({} bytes)", n.size()),
        }
    }
}

/// Where a worker keeps results.
pub trait DataStore: Send + Sync {
    fn put(&self, id: TaskId, value: Value);
    fn get(&self, id: TaskId) -> Option<Value>;
    fn remove(&self, id: TaskId) -> Option<Value>;
    fn contains(&self, id: TaskId) -> bool;
    /// (number of values, bytes held).
    fn usage(&self) -> (u64, u64);
    /// Drop everything.
    fn clear(&self);
}

/// Results in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<(FxHashMap<TaskId, Value>, u64)>,
}

impl MemoryStore {
    pub fn shared() -> Arc<dyn DataStore> {
        Arc::new(MemoryStore::default())
    }
}

impl DataStore for MemoryStore {
    fn put(&self, id: TaskId, value: Value) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let len = value.size();
        if let Some(old) = g.0.insert(id, value) {
            g.1 -= old.size();
        }
        g.1 += len;
    }
    fn get(&self, id: TaskId) -> Option<Value> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(&id)
            .cloned()
    }
    fn remove(&self, id: TaskId) -> Option<Value> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = g.0.remove(&id);
        if let Some(v) = &old {
            g.1 -= v.size();
        }
        old
    }
    fn contains(&self, id: TaskId) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains_key(&id)
    }
    fn usage(&self) -> (u64, u64) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.0.len() as u64, g.1)
    }
    fn clear(&self) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.0.clear();
        g.1 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_tracks_puts_and_removes() {
        let s = MemoryStore::default();
        s.put(TaskId(1), Bytes::from_static(b"abc").into());
        s.put(TaskId(2), Bytes::from_static(b"de").into());
        s.put(TaskId(1), Bytes::from_static(b"a").into());
        assert_eq!(s.usage(), (2, 3));
        let removed = s.remove(TaskId(2)).unwrap().to_bytes().unwrap();
        assert_eq!(removed, Bytes::from_static(b"de"));
        assert_eq!(s.usage(), (1, 1));
        assert!(!s.contains(TaskId(2)));
    }

    struct Native(u64);

    impl NativeValue for Native {
        fn to_bytes(&self) -> Result<Bytes, String> {
            Ok(Bytes::copy_from_slice(&self.0.to_le_bytes()))
        }
        fn size(&self) -> u64 {
            100
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn native_values_count_their_own_size_and_encode_on_demand() {
        let s = MemoryStore::default();
        s.put(TaskId(1), Value::Native(Arc::new(Native(7))));
        assert_eq!(s.usage(), (1, 100));
        let v = s.get(TaskId(1)).unwrap();
        assert_eq!(
            v.to_bytes().unwrap(),
            Bytes::copy_from_slice(&7u64.to_le_bytes())
        );
        let Value::Native(n) = v else {
            panic!("kept native")
        };
        assert_eq!(n.as_any().downcast_ref::<Native>().map(|n| n.0), Some(7));
    }
}
