//! The worker's data store: results by task id. Behind a trait so a disk tier can be
//! added without touching the worker's logic.

use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::TaskId;
use std::sync::{Arc, RwLock};

/// Where a worker keeps results.
pub trait DataStore: Send + Sync {
    fn put(&self, id: TaskId, value: Bytes);
    fn get(&self, id: TaskId) -> Option<Bytes>;
    fn remove(&self, id: TaskId) -> Option<Bytes>;
    fn contains(&self, id: TaskId) -> bool;
    /// (number of values, bytes held).
    fn usage(&self) -> (u64, u64);
    /// Drop everything.
    fn clear(&self);
}

/// Results in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<(FxHashMap<TaskId, Bytes>, u64)>,
}

impl MemoryStore {
    pub fn shared() -> Arc<dyn DataStore> {
        Arc::new(MemoryStore::default())
    }
}

impl DataStore for MemoryStore {
    fn put(&self, id: TaskId, value: Bytes) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let len = value.len() as u64;
        if let Some(old) = g.0.insert(id, value) {
            g.1 -= old.len() as u64;
        }
        g.1 += len;
    }
    fn get(&self, id: TaskId) -> Option<Bytes> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(&id)
            .cloned()
    }
    fn remove(&self, id: TaskId) -> Option<Bytes> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = g.0.remove(&id);
        if let Some(v) = &old {
            g.1 -= v.len() as u64;
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
        s.put(TaskId(1), Bytes::from_static(b"abc"));
        s.put(TaskId(2), Bytes::from_static(b"de"));
        s.put(TaskId(1), Bytes::from_static(b"a"));
        assert_eq!(s.usage(), (2, 3));
        assert_eq!(s.remove(TaskId(2)).unwrap(), Bytes::from_static(b"de"));
        assert_eq!(s.usage(), (1, 1));
        assert!(!s.contains(TaskId(2)));
    }
}
