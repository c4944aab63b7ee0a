//! Indexes over the workers, kept up to date on every change of a worker's load or
//! state, so placement and stealing never scan the cluster.
//!
//! - Workers that accept work, ordered by load (assigned tasks per thread), grouped by
//!   signature (executor kinds and resources) and thread count: the least loaded worker
//!   able to run a task is the first of each such class that can run it. Each class is a
//!   [`LoadOrder`], where a change of load costs O(1).
//! - Idle workers (fewer tasks than threads, accepting work), ordered by id: the thieves.
//! - Workers with queued work beyond what they run now, by load: the victims. Only
//!   stealing reads them, a few times a second, so changes are applied when it asks
//!   ([`WorkerIndex::victims_by_load`]): a worker whose load changed many times since
//!   moves in the set once.
//! - Workers by name, host and address alternative: candidates for `workers=` restrictions.
//!
//! [`WorkerIndex::update`] recomputes one worker's entries from its state; `Core`
//! calls it wherever a worker's assigned set, pause or retirement changes.

use super::id_set::IdSet;
use super::load_order::{LoadOrder, Place};
use super::worker::WorkerState;
use rustc_hash::FxHashMap;
use shoal_comm::ids::WorkerId;
use shoal_comm::message::{ExecutorKind, Resource};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// A worker's load, ordered exactly as assigned tasks per thread (cross-multiplied, so no
/// rounding), ties broken by id.
#[derive(Debug, Clone, Copy)]
pub struct LoadKey {
    /// Tasks assigned to the worker.
    pub assigned: u32,
    /// Its threads.
    pub nthreads: u32,
    /// The worker.
    pub id: WorkerId,
}

impl LoadKey {
    /// The key of a worker's current state.
    pub fn of(w: &WorkerState) -> Self {
        LoadKey {
            assigned: w.assigned.len() as u32,
            nthreads: w.nthreads(),
            id: w.id,
        }
    }

    fn cmp_load(&self, other: &Self) -> Ordering {
        (u64::from(self.assigned) * u64::from(other.nthreads))
            .cmp(&(u64::from(other.assigned) * u64::from(self.nthreads)))
    }
}

impl Ord for LoadKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_load(other).then(self.id.cmp(&other.id))
    }
}
impl PartialOrd for LoadKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for LoadKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for LoadKey {}

/// A victim's key: the last is the most loaded, ties to the lowest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VictimKey(LoadKey);

impl Ord for VictimKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_load(&other.0).then(other.0.id.cmp(&self.0.id))
    }
}
impl PartialOrd for VictimKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Workers of one signature that accept work, by thread count, then load.
#[derive(Debug, Clone)]
struct Group {
    executors: Vec<ExecutorKind>,
    resources: Vec<Resource>,
    accepting: Vec<(u32, LoadOrder)>,
}

fn key_of(nthreads: u32, (assigned, id): Place) -> LoadKey {
    LoadKey {
        assigned,
        nthreads,
        id,
    }
}

impl Group {
    fn class(&mut self, nthreads: u32) -> &mut LoadOrder {
        let at = match self.accepting.iter().position(|(n, _)| *n == nthreads) {
            Some(at) => at,
            None => {
                self.accepting.push((nthreads, LoadOrder::default()));
                self.accepting.len() - 1
            }
        };
        &mut self.accepting[at].1
    }

    fn insert(&mut self, key: LoadKey) {
        self.class(key.nthreads).insert(key.assigned, key.id);
    }

    fn remove(&mut self, key: LoadKey) {
        self.class(key.nthreads).remove(key.assigned, key.id);
    }

    fn contains(&self, key: LoadKey) -> bool {
        self.accepting
            .iter()
            .any(|(n, order)| *n == key.nthreads && order.contains(key.assigned, key.id))
    }

    fn len(&self) -> usize {
        self.accepting.iter().map(|(_, order)| order.len()).sum()
    }

    /// The least loaded worker of each thread count.
    fn firsts(&self) -> impl Iterator<Item = LoadKey> + '_ {
        self.accepting
            .iter()
            .filter_map(|(n, order)| order.first().map(|f| key_of(*n, f)))
    }

    /// The two least loaded workers of each thread count.
    fn first_twos(&self) -> impl Iterator<Item = LoadKey> + '_ {
        self.accepting.iter().flat_map(|(n, order)| {
            let (a, b) = order.first_two();
            a.into_iter().chain(b).map(|f| key_of(*n, f))
        })
    }

    fn can_run(&self, kind: ExecutorKind, resources: &[Resource]) -> bool {
        self.executors.contains(&kind)
            && resources.iter().all(|need| {
                self.resources
                    .iter()
                    .any(|have| have.name == need.name && have.amount >= need.amount)
            })
    }
}

/// Where a worker is in the index (what to remove before re-inserting it).
#[derive(Debug, Clone, Copy)]
struct Entry {
    group: usize,
    key: LoadKey,
    accepting: bool,
    idle: bool,
    /// Its key in the victims set, as last applied.
    victim: Option<LoadKey>,
    /// Whether it should be a victim now (applied by `apply_victims`).
    wants_victim: bool,
    /// Queued in `victims_stale`.
    victim_stale: bool,
}

/// The indexes; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct WorkerIndex {
    groups: Vec<Group>,
    entries: FxHashMap<WorkerId, Entry>,
    idle: IdSet,
    victims: BTreeSet<VictimKey>,
    /// Workers whose victim entry is out of date.
    victims_stale: Vec<WorkerId>,
    by_name: FxHashMap<Box<str>, SmallVec<[WorkerId; 1]>>,
    /// How many workers (accepting work or not) have each executor kind.
    kinds: FxHashMap<ExecutorKind, u32>,
}

/// The names a `workers=` restriction may use for a worker (see
/// [`WorkerState::restriction_names`]).
fn names(w: &WorkerState) -> impl Iterator<Item = &str> {
    w.restriction_names().into_iter()
}

impl WorkerIndex {
    /// Index a new worker: O(log W) plus its names.
    pub fn insert(&mut self, w: &WorkerState) {
        let reg = &w.registration;
        let mut executors = reg.executors.clone();
        executors.sort_by_key(|k| *k as u32);
        executors.dedup();
        let mut resources = reg.resources.clone();
        resources.sort_by(|a, b| a.name.cmp(&b.name).then(a.amount.total_cmp(&b.amount)));
        let group = match self
            .groups
            .iter()
            .position(|g| g.executors == executors && g.resources == resources)
        {
            Some(g) => g,
            None => {
                self.groups.push(Group {
                    executors: executors.clone(),
                    resources,
                    accepting: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        for kind in executors {
            *self.kinds.entry(kind).or_default() += 1;
        }
        for name in names(w) {
            let ids = self.by_name.entry(name.into()).or_default();
            if !ids.contains(&w.id) {
                ids.push(w.id);
            }
        }
        self.entries.insert(
            w.id,
            Entry {
                group,
                key: LoadKey::of(w),
                accepting: false,
                idle: false,
                victim: None,
                wants_victim: false,
                victim_stale: false,
            },
        );
        self.update(w);
    }

    /// Forget a worker: O(log W) plus its names.
    pub fn remove(&mut self, w: &WorkerState) {
        let Some(entry) = self.entries.remove(&w.id) else {
            return;
        };
        self.unlink(&entry);
        for kind in &self.groups[entry.group].executors {
            if let Some(n) = self.kinds.get_mut(kind) {
                *n -= 1;
            }
        }
        for name in names(w) {
            if let Some(ids) = self.by_name.get_mut(name) {
                ids.retain(|id| *id != w.id);
                if ids.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
    }

    fn unlink(&mut self, entry: &Entry) {
        if entry.accepting {
            self.groups[entry.group].remove(entry.key);
        }
        if entry.idle {
            self.idle.remove(entry.key.id);
        }
        if let Some(key) = entry.victim {
            self.victims.remove(&VictimKey(key));
        }
    }

    /// Re-index a worker after its load, pause or retirement changed: O(log W).
    pub fn update(&mut self, w: &WorkerState) {
        let Some(entry) = self.entries.get_mut(&w.id) else {
            return;
        };
        let old = *entry;
        let accepting = w.accepts_work();
        let mut new = Entry {
            group: old.group,
            key: LoadKey::of(w),
            accepting,
            idle: accepting && w.is_idle(),
            victim: old.victim,
            wants_victim: w.surplus() > 0,
            victim_stale: old.victim_stale,
        };
        // Touch only the sets whose membership or key changed.
        let moved = old.key.assigned != new.key.assigned;
        if old.accepting && (moved || !new.accepting) {
            self.groups[old.group].remove(old.key);
        }
        if new.accepting && (moved || !old.accepting) {
            self.groups[new.group].insert(new.key);
        }
        if old.idle != new.idle {
            if new.idle {
                self.idle.insert(w.id);
            } else {
                self.idle.remove(w.id);
            }
        }
        let victim_now = new.wants_victim.then_some(new.key);
        if !new.victim_stale && victim_now != new.victim {
            new.victim_stale = true;
            self.victims_stale.push(w.id);
        }
        *entry = new;
    }

    /// The least loaded worker accepting work that has the executor kind and resources.
    pub fn least_loaded(&self, kind: ExecutorKind, resources: &[Resource]) -> Option<LoadKey> {
        self.groups
            .iter()
            .filter(|g| g.can_run(kind, resources))
            .flat_map(Group::firsts)
            .min()
    }

    /// The two least loaded workers accepting work that have the executor kind and
    /// resources: the first gets tasks while it stays below the second.
    pub fn least_two(
        &self,
        kind: ExecutorKind,
        resources: &[Resource],
    ) -> (Option<LoadKey>, Option<LoadKey>) {
        let mut best: (Option<LoadKey>, Option<LoadKey>) = (None, None);
        for g in self.groups.iter().filter(|g| g.can_run(kind, resources)) {
            for key in g.first_twos() {
                best = match best {
                    (None, _) => (Some(key), None),
                    (Some(first), _) if key < first => (Some(key), Some(first)),
                    (first, Some(second)) if key >= second => (first, Some(second)),
                    (first, _) => (first, Some(key)),
                };
            }
        }
        best
    }

    /// Some worker (accepting work or not) has this executor kind.
    pub fn kind_known(&self, kind: ExecutorKind) -> bool {
        self.kinds.get(&kind).is_some_and(|n| *n > 0)
    }

    /// Workers whose name, host or an address alternative is `name`.
    pub fn named(&self, name: &str) -> &[WorkerId] {
        self.by_name.get(name).map_or(&[], |ids| ids.as_slice())
    }

    /// Idle workers accepting work, by id.
    pub fn idle(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.idle.iter()
    }

    /// Workers with queued work beyond what they run, most loaded first (ties: lowest
    /// id first).
    pub fn victims_by_load(&mut self) -> impl Iterator<Item = WorkerId> + '_ {
        self.apply_victims();
        self.victims.iter().rev().map(|v| v.0.id)
    }

    /// Move the workers whose load changed since the last call in the victims set.
    fn apply_victims(&mut self) {
        for id in std::mem::take(&mut self.victims_stale) {
            let Some(e) = self.entries.get_mut(&id) else {
                continue; // removed meanwhile
            };
            e.victim_stale = false;
            let now = e.wants_victim.then_some(e.key);
            if e.victim != now {
                if let Some(key) = e.victim {
                    self.victims.remove(&VictimKey(key));
                }
                if let Some(key) = now {
                    self.victims.insert(VictimKey(key));
                }
                e.victim = now;
            }
        }
    }

    /// Check every entry against a recomputation from the workers (tests).
    pub fn check(&self, workers: &FxHashMap<WorkerId, WorkerState>) {
        assert_eq!(self.entries.len(), workers.len(), "indexed workers");
        for (id, w) in workers {
            let e = self.entries[id];
            assert_eq!(e.key, LoadKey::of(w), "load key of {id}");
            assert_eq!(e.key.assigned, w.assigned.len() as u32, "load of {id}");
            let accepting = w.accepts_work();
            assert_eq!(
                self.groups[e.group].contains(e.key),
                accepting,
                "{id} accepting"
            );
            assert_eq!(
                self.idle.contains(*id),
                accepting && w.is_idle(),
                "{id} idle"
            );
            assert_eq!(e.wants_victim, w.surplus() > 0, "{id} victim");
            let applied = if e.victim_stale {
                e.victim
            } else {
                e.wants_victim.then_some(e.key)
            };
            assert_eq!(e.victim, applied, "{id} victim applied");
            if let Some(key) = e.victim {
                assert!(self.victims.contains(&VictimKey(key)), "{id} in victims");
            }
            let g = &self.groups[e.group];
            for kind in &w.registration.executors {
                assert!(g.executors.contains(kind), "{id} group kinds");
            }
            for name in names(w) {
                assert!(self.named(name).contains(id), "{id} named {name}");
            }
        }
        let accepting: usize = self.groups.iter().map(Group::len).sum();
        let expected = workers.values().filter(|w| w.accepts_work()).count();
        assert_eq!(accepting, expected, "accepting workers");
        assert_eq!(
            self.idle.len(),
            workers
                .values()
                .filter(|w| w.accepts_work() && w.is_idle())
                .count(),
            "idle workers"
        );
        assert_eq!(
            self.victims.len(),
            self.entries.values().filter(|e| e.victim.is_some()).count(),
            "victims"
        );
        for id in &self.victims_stale {
            assert!(
                self.entries.get(id).is_none_or(|e| e.victim_stale),
                "{id} queued for the victims set"
            );
        }
        for (id, e) in &self.entries {
            assert!(
                !e.victim_stale || self.victims_stale.contains(id),
                "{id} victim change queued"
            );
        }
        for kind in self.kinds.keys() {
            let n = workers
                .values()
                .filter(|w| w.registration.executors.contains(kind))
                .count() as u32;
            assert_eq!(self.kinds[kind], n, "workers of kind {kind:?}");
        }
        for (name, ids) in &self.by_name {
            for id in ids {
                assert!(
                    workers
                        .get(id)
                        .is_some_and(|w| names(w).any(|n| n == &**name)),
                    "{id} wrongly named {name}"
                );
            }
        }
    }
}
