//! Dense, versioned storage for tasks.
//!
//! A hash map sized to powers of two left half its buckets empty at a million tasks;
//! a slot map stores tasks contiguously and reuses freed slots. Each id carries the
//! slot's version, so a late message about a forgotten task (a worker finishing a task
//! that was cancelled meanwhile) never reaches the task that reuses its slot.

use super::task::Task;
use shoal_comm::ids::TaskId;
use slotmap::{DefaultKey, Key, KeyData, SlotMap};

/// Tasks by id.
#[derive(Debug, Default)]
pub struct TaskMap {
    slots: SlotMap<DefaultKey, Task>,
}

fn key(id: TaskId) -> DefaultKey {
    KeyData::from_ffi(id.0).into()
}

fn id(key: DefaultKey) -> TaskId {
    TaskId(key.data().as_ffi())
}

impl TaskMap {
    /// Store a task; returns its new id.
    pub fn insert(&mut self, task: Task) -> TaskId {
        id(self.slots.insert(task))
    }

    #[inline]
    pub fn get(&self, id: &TaskId) -> Option<&Task> {
        self.slots.get(key(*id))
    }

    #[inline]
    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.slots.get_mut(key(*id))
    }

    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.slots.contains_key(key(*id))
    }

    pub fn remove(&mut self, id: &TaskId) -> Option<Task> {
        self.slots.remove(key(*id))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Task> {
        self.slots.values()
    }

    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.slots.iter().map(|(k, t)| (id(k), t))
    }
}
