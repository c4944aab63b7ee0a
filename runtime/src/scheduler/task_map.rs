//! Dense, versioned storage for tasks, indexed by key.
//!
//! A hash map sized to powers of two left half its buckets empty at a million tasks; a
//! slot map stores tasks contiguously and reuses freed slots. Each id carries the slot's
//! version, so a late message about a forgotten task (a worker finishing a task that was
//! cancelled meanwhile) never reaches the task that reuses its slot. The key index holds
//! only ids and hashes the key stored in the task itself, so each key is stored once.

use super::task::Task;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use shoal_comm::ids::TaskId;
use slotmap::{DefaultKey, Key, KeyData, SlotMap};
use std::hash::BuildHasher;

/// Tasks by id, findable by key.
#[derive(Default)]
pub struct TaskMap {
    slots: SlotMap<DefaultKey, Task>,
    by_key: HashTable<TaskId>,
}

impl std::fmt::Debug for TaskMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMap")
            .field("len", &self.slots.len())
            .finish()
    }
}

fn slot(id: TaskId) -> DefaultKey {
    KeyData::from_ffi(id.0).into()
}

fn id_of(key: DefaultKey) -> TaskId {
    TaskId(key.data().as_ffi())
}

fn hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl TaskMap {
    /// Store a task under its key; returns its new id. The key must not be present.
    pub fn insert(&mut self, task: Task) -> TaskId {
        let h = hash(&task.key);
        let id = id_of(self.slots.insert(task));
        let slots = &self.slots;
        self.by_key
            .insert_unique(h, id, |other| hash(&slots[slot(*other)].key));
        id
    }

    /// The id of the task with this key.
    pub fn find(&self, key: &str) -> Option<TaskId> {
        self.by_key
            .find(hash(key), |id| &*self.slots[slot(*id)].key == key)
            .copied()
    }

    /// The task with this id.
    #[inline]
    pub fn get(&self, id: &TaskId) -> Option<&Task> {
        self.slots.get(slot(*id))
    }

    /// The task with this id, for changing it.
    #[inline]
    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.slots.get_mut(slot(*id))
    }

    /// A task with this id exists.
    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.slots.contains_key(slot(*id))
    }

    /// Remove a task and its key.
    pub fn remove(&mut self, id: &TaskId) -> Option<Task> {
        let task = self.slots.remove(slot(*id))?;
        if let Ok(entry) = self.by_key.find_entry(hash(&task.key), |other| other == id) {
            entry.remove();
        }
        Some(task)
    }

    /// Room for `additional` more tasks without growing (one allocation instead of a
    /// doubling, each copying every task, in the middle of a large submission).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let slots = &self.slots;
        self.by_key
            .reserve(additional, |id| hash(&slots[slot(*id)].key));
    }

    /// How many tasks there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// There are no tasks.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every task, in slot order.
    pub fn values(&self) -> impl Iterator<Item = &Task> {
        self.slots.values()
    }

    /// Every task and its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.slots.iter().map(|(k, t)| (id_of(k), t))
    }

    /// Number of keys indexed (equals `len` unless an invariant broke).
    pub fn indexed_keys(&self) -> usize {
        self.by_key.len()
    }
}
