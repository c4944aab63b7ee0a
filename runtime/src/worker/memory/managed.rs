//! The worker's data store: results in memory in least-recently-used order, and a disk
//! tier they move to under memory pressure and come back from on demand.
//!
//! Spilling never loses data: a value that cannot be encoded, a full disk, a write error
//! or `max-spill` leave the value in memory (with a rate-limited warning). Disk I/O
//! happens outside the lock that readers take, so tasks and peers keep being served
//! while results are written out.

use crate::worker::spill::{SpillError, SpillFiles, SpillOptions};
use crate::worker::store::{DataStore, Value};
use bytes::Bytes;
use hashlink::LinkedHashMap;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use shoal_comm::ids::TaskId;
use shoal_comm::message::MemoryMetrics;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the same kind of spill failure is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A result in memory.
struct Entry {
    value: Value,
    size: u64,
    /// Distinguishes a value from a later one under the same id.
    generation: u64,
}

#[derive(Default)]
struct State {
    /// Front: least recently used.
    memory: LinkedHashMap<TaskId, Entry, FxBuildHasher>,
    managed: u64,
    /// Spilled values and their bytes on disk.
    on_disk: FxHashMap<TaskId, u64>,
    spilled: u64,
    /// Values that could not be encoded: never tried again.
    unspillable: FxHashSet<TaskId>,
    next_generation: u64,
    /// (id, on disk) changes not yet reported to the scheduler.
    moves: Vec<(TaskId, bool)>,
    stats: Traffic,
}

/// Spill traffic since the worker started.
#[derive(Default, Clone, Copy)]
struct Traffic {
    spill_count: u64,
    spill_bytes: u64,
    spill_seconds: f64,
    unspill_count: u64,
    unspill_bytes: u64,
    unspill_seconds: f64,
}

/// Why a value could not be moved to disk.
#[derive(Debug, thiserror::Error)]
pub enum SpillFailure {
    /// Spilling is not set up on this worker.
    #[error("spilling is switched off on this worker")]
    Disabled,
    /// The value did not serialise (the message says why).
    #[error("the value cannot be serialised: {0}")]
    Encode(String),
    /// Writing the spill file failed.
    #[error(transparent)]
    Disk(#[from] SpillError),
}

/// Results in memory, with an optional disk tier.
pub struct ManagedStore {
    state: Mutex<State>,
    disk: Option<Mutex<SpillFiles>>,
    evicting: AtomicBool,
    warned: Mutex<FxHashMap<&'static str, Instant>>,
}

impl ManagedStore {
    /// A store that never spills.
    pub fn in_memory() -> Self {
        ManagedStore {
            state: Mutex::default(),
            disk: None,
            evicting: AtomicBool::new(false),
            warned: Mutex::default(),
        }
    }

    /// A store that spills into `dir`.
    ///
    /// # Errors
    /// The directory cannot hold spill files.
    pub fn spilling(dir: &Path, options: SpillOptions) -> Result<Self, SpillError> {
        Ok(ManagedStore {
            disk: Some(Mutex::new(SpillFiles::open(dir, options)?)),
            ..ManagedStore::in_memory()
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn disk(&self) -> Option<MutexGuard<'_, SpillFiles>> {
        self.disk
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Estimated bytes of the results in memory.
    pub fn managed(&self) -> u64 {
        self.state().managed
    }

    /// Whether values can go to disk at all.
    pub fn can_spill(&self) -> bool {
        self.disk.is_some()
    }

    /// Figures for heartbeats and `shoal status` (`paused` is the session's to set).
    pub fn metrics(&self) -> MemoryMetrics {
        let s = self.state();
        let t = s.stats;
        MemoryMetrics {
            managed: s.managed,
            spilled: s.spilled,
            spilled_count: s.on_disk.len() as u64,
            paused: false,
            spill_count: t.spill_count,
            spill_bytes: t.spill_bytes,
            spill_seconds: t.spill_seconds,
            unspill_count: t.unspill_count,
            unspill_bytes: t.unspill_bytes,
            unspill_seconds: t.unspill_seconds,
            thresholds: [0.0; 4],
        }
    }

    /// Results moved to disk (`true`) or back (`false`) since the last call.
    pub fn take_moves(&self) -> Vec<(TaskId, bool)> {
        std::mem::take(&mut self.state().moves)
    }

    /// Claim the right to run an eviction round; `false` if one runs already.
    pub fn start_eviction(&self) -> bool {
        !self.evicting.swap(true, Ordering::AcqRel)
    }

    /// Spill least-recently-used results until at most `goal` managed bytes remain in
    /// memory (or nothing more can go). Ends the round claimed by
    /// [`ManagedStore::start_eviction`]. Returns the bytes moved out of memory.
    pub fn evict_to(&self, goal: u64) -> u64 {
        let mut moved = 0;
        while self.disk.is_some() {
            let candidate = {
                let s = self.state();
                if s.managed <= goal {
                    break;
                }
                s.memory
                    .iter()
                    .find(|(id, _)| !s.unspillable.contains(*id))
                    .map(|(id, e)| (*id, e.value.clone(), e.generation, e.size))
            };
            let Some((id, value, generation, size)) = candidate else {
                self.warn(
                    "nothing-to-spill",
                    "memory is above the spill threshold but no result is left to spill: unmanaged memory (leaks, fragmentation, buffers of running tasks) is high",
                );
                break;
            };
            match self.write_out(id, &value, generation) {
                Ok(true) => moved += size,
                Ok(false) => {}
                Err(SpillFailure::Encode(e)) => {
                    self.state().unspillable.insert(id);
                    self.warn("encode", &format!("result {id} stays in memory: {e}"));
                }
                Err(e) => {
                    self.warn(
                        "disk",
                        &format!("spilling stopped, results stay in memory: {e}"),
                    );
                    break;
                }
            }
        }
        self.evicting.store(false, Ordering::Release);
        moved
    }

    /// Move one value to disk now (a result larger than the worker's memory limit).
    ///
    /// # Errors
    /// The value stays in memory; the error says why it could not go.
    pub fn spill_one(&self, id: TaskId) -> Result<(), SpillFailure> {
        if self.disk.is_none() {
            return Err(SpillFailure::Disabled);
        }
        let Some((value, generation)) = self
            .state()
            .memory
            .get(&id)
            .map(|e| (e.value.clone(), e.generation))
        else {
            return Ok(());
        };
        self.write_out(id, &value, generation).map(|_| ())
    }

    /// Encode and write one value, then drop it from memory if it is still the same
    /// value. `Ok(false)`: it changed or vanished meanwhile; nothing moved.
    ///
    /// Writers take turns on the disk lock, and each checks before writing that the value
    /// is still the one in memory: an eviction round and [`ManagedStore::spill_one`] may
    /// pick the same result, and the second must neither overwrite the first's record nor
    /// remove it (the result would then be listed on disk and be nowhere).
    fn write_out(&self, id: TaskId, value: &Value, generation: u64) -> Result<bool, SpillFailure> {
        let started = Instant::now();
        let bytes = value.to_spill_bytes().map_err(SpillFailure::Encode)?;
        let Some(mut disk) = self.disk() else {
            return Err(SpillFailure::Disabled);
        };
        let current = |s: &State| {
            s.memory
                .get(&id)
                .is_some_and(|e| e.generation == generation)
        };
        if !current(&self.state()) {
            return Ok(false);
        }
        let on_disk = disk.write(id, &bytes)?;
        let mut s = self.state();
        if !current(&s) {
            // Replaced or removed while it was written: the record is this writer's own.
            disk.remove(id);
            return Ok(false);
        }
        drop(disk);
        if let Some(e) = s.memory.remove(&id) {
            s.managed -= e.size;
        }
        s.on_disk.insert(id, on_disk);
        s.spilled += on_disk;
        s.moves.push((id, true));
        s.stats.spill_count += 1;
        s.stats.spill_bytes += on_disk;
        s.stats.spill_seconds += started.elapsed().as_secs_f64();
        Ok(true)
    }

    /// Read a spilled value. It stays on disk: moving it back into memory would only have
    /// it written out again under the same pressure that spilled it.
    fn unspill(&self, id: TaskId) -> Option<Value> {
        let started = Instant::now();
        let disk = self.disk()?;
        let bytes: Bytes = match disk.read(id) {
            Ok(b) => b,
            Err(e) => {
                self.warn("read", &format!("cannot read spilled result {id}: {e}"));
                return None;
            }
        };
        drop(disk);
        let mut s = self.state();
        s.stats.unspill_count += 1;
        s.stats.unspill_bytes += bytes.len() as u64;
        s.stats.unspill_seconds += started.elapsed().as_secs_f64();
        Some(Value::Bytes(bytes))
    }

    fn warn(&self, kind: &'static str, message: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if warned
            .get(kind)
            .is_some_and(|last| now.duration_since(*last) < WARN_EVERY)
        {
            return;
        }
        warned.insert(kind, now);
        tracing::warn!("{message}");
    }
}

fn insert(s: &mut State, id: TaskId, value: Value) {
    let size = value.size();
    let generation = s.next_generation;
    s.next_generation += 1;
    if let Some(old) = s.memory.insert(
        id,
        Entry {
            value,
            size,
            generation,
        },
    ) {
        s.managed -= old.size;
    }
    s.managed += size;
    s.unspillable.remove(&id);
}

impl DataStore for ManagedStore {
    fn put(&self, id: TaskId, value: Value) {
        let mut s = self.state();
        if let Some(on_disk) = s.on_disk.remove(&id) {
            s.spilled -= on_disk;
            s.moves.push((id, false));
            if let Some(mut disk) = self.disk() {
                disk.remove(id);
            }
        }
        insert(&mut s, id, value);
    }

    fn get(&self, id: TaskId) -> Option<Value> {
        {
            let mut s = self.state();
            if let Some(e) = s.memory.to_back(&id) {
                return Some(e.value.clone());
            }
            if !s.on_disk.contains_key(&id) {
                return None;
            }
        }
        self.unspill(id)
    }

    fn get_for_peer(&self, id: TaskId) -> Option<Value> {
        if let Some(e) = self.state().memory.get(&id) {
            return Some(e.value.clone());
        }
        self.unspill(id)
    }

    fn remove(&self, id: TaskId) -> bool {
        let mut s = self.state();
        s.unspillable.remove(&id);
        if let Some(e) = s.memory.remove(&id) {
            s.managed -= e.size;
            return true;
        }
        let Some(on_disk) = s.on_disk.remove(&id) else {
            return false;
        };
        s.spilled -= on_disk;
        drop(s);
        if let Some(mut disk) = self.disk() {
            disk.remove(id);
        }
        true
    }

    fn contains(&self, id: TaskId) -> bool {
        let s = self.state();
        s.memory.contains_key(&id) || s.on_disk.contains_key(&id)
    }

    fn usage(&self) -> (u64, u64) {
        let s = self.state();
        ((s.memory.len() + s.on_disk.len()) as u64, s.managed)
    }

    fn clear(&self) {
        let mut s = self.state();
        let stats = s.stats;
        *s = State {
            stats,
            ..State::default()
        };
        drop(s);
        if let Some(mut disk) = self.disk() {
            disk.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An eviction round took the result before `spill_one` moved it to disk: its late
    /// write must leave the moved result readable.
    #[test]
    fn a_second_writer_of_the_same_result_leaves_the_first_ones_record() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let store = ManagedStore::spilling(dir.path(), SpillOptions::default()).expect("store");
        let id = TaskId(7);
        let value = Value::Bytes(Bytes::from(vec![5u8; 4096]));
        store.put(id, value.clone());
        let generation = store.state().memory.get(&id).map(|e| e.generation);
        store.spill_one(id).expect("spilled");
        let late = store.write_out(id, &value, generation.expect("in memory"));
        assert!(matches!(late, Ok(false)), "nothing moved the second time");
        assert!(store.contains(id));
        let back = store.get(id).expect("still readable from disk");
        assert_eq!(back.to_spill_bytes().ok(), value.to_spill_bytes().ok());
    }
}
