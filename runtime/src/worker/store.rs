//! The worker's data store: results by task id. Behind a trait so a disk tier can be
//! added without touching the worker's logic.
//!
//! A result is a [`Value`]: either bytes as they travel on the wire, or an object native to
//! the executor that produced it (a Python object in a worker hosted by the Python
//! package), encoded only when a peer or a client asks for it.

use bytes::Bytes;
use shoal_comm::ids::TaskId;
use std::any::Any;
use std::sync::Arc;

/// A result held in an executor's own representation, encoded on demand.
pub trait NativeValue: Send + Sync + 'static {
    /// Encode the value for the wire (to a peer or a client).
    ///
    /// # Errors
    /// The value cannot be encoded; the message names why.
    fn to_bytes(&self) -> Result<Bytes, String>;
    /// Encode the value to spill it to disk. Unlike [`NativeValue::to_bytes`], which may
    /// encode a failure for the reader to raise, this fails if the value itself cannot be
    /// encoded: it then stays in memory.
    ///
    /// # Errors
    /// The value cannot be encoded.
    fn to_spill_bytes(&self) -> Result<Bytes, String> {
        self.to_bytes()
    }
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

    /// The form written to disk when spilled; see [`NativeValue::to_spill_bytes`].
    ///
    /// # Errors
    /// A native value that cannot be encoded.
    pub fn to_spill_bytes(&self) -> Result<Bytes, String> {
        match self {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Native(n) => n.to_spill_bytes(),
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

/// Where a worker keeps results (see [`super::memory::ManagedStore`]).
pub trait DataStore: Send + Sync {
    /// Keep a value for a task.
    fn put(&self, id: TaskId, value: Value);
    /// The value for a task on this worker (brought back into memory if it was spilled).
    fn get(&self, id: TaskId) -> Option<Value>;
    /// The value for sending to a peer or a client: read from disk if spilled, without
    /// moving it back into memory.
    fn get_for_peer(&self, id: TaskId) -> Option<Value> {
        self.get(id)
    }
    /// Forget a value; whether it was held.
    fn remove(&self, id: TaskId) -> bool;
    /// A value for the task is held (in memory or on disk).
    fn contains(&self, id: TaskId) -> bool;
    /// (number of values, bytes held in memory).
    fn usage(&self) -> (u64, u64);
    /// Drop everything.
    fn clear(&self);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::memory::ManagedStore;

    #[test]
    fn usage_tracks_puts_and_removes() {
        let s = ManagedStore::in_memory();
        s.put(TaskId(1), Bytes::from_static(b"abc").into());
        s.put(TaskId(2), Bytes::from_static(b"de").into());
        s.put(TaskId(1), Bytes::from_static(b"a").into());
        assert_eq!(s.usage(), (2, 3));
        assert!(s.remove(TaskId(2)));
        assert!(!s.remove(TaskId(2)));
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
        let s = ManagedStore::in_memory();
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
