//! A worker as the scheduler sees it.

use rustc_hash::FxHashSet;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{ExecutorKind, Registration, Resource, WorkerInfo, WorkerMetrics};
use smallvec::SmallVec;
use std::time::Instant;

/// The scheduler's view of one worker.
#[derive(Debug)]
pub struct WorkerState {
    /// The worker's id.
    pub id: WorkerId,
    /// What it registered with.
    pub registration: Registration,
    /// Tasks queued on or running on this worker, in no order. Each knows its position
    /// (`Task::assigned_slot`), so the core adds and removes one in O(1) without hashing.
    pub assigned: Vec<TaskId>,
    /// When it was last heard from.
    pub last_seen: Instant,
    /// Its figures from the latest heartbeat.
    pub metrics: WorkerMetrics,
    /// Tasks finished here since the worker joined.
    pub finished: u64,
    /// The worker announced it is leaving: place nothing new here, and its departure is
    /// not a death that counts against the tasks it was running.
    pub retiring: bool,
    /// Results this worker holds on disk rather than in memory.
    pub spilled: FxHashSet<TaskId>,
    /// Results this worker holds (in memory or spilled): what is lost if it dies.
    pub holds: FxHashSet<TaskId>,
    /// Peers whose address this worker was told (it learns one when it first needs to
    /// fetch from it, so registering costs O(1) instead of a broadcast to the cluster).
    pub knows: FxHashSet<WorkerId>,
    /// Workers told this worker's address (they hear when it leaves).
    pub known_by: FxHashSet<WorkerId>,
    /// Its load changed since the worker index last saw it (queued in `Core::reindex`).
    pub(crate) reindex: bool,
}

impl WorkerState {
    /// A worker that just registered at `now`.
    pub fn new(id: WorkerId, registration: Registration, now: Instant) -> Self {
        WorkerState {
            id,
            registration,
            assigned: Vec::new(),
            last_seen: now,
            metrics: WorkerMetrics::default(),
            finished: 0,
            retiring: false,
            spilled: FxHashSet::default(),
            holds: FxHashSet::default(),
            knows: FxHashSet::default(),
            known_by: FxHashSet::default(),
            reindex: false,
        }
    }

    /// Threads running tasks (at least one).
    pub fn nthreads(&self) -> u32 {
        self.registration.nthreads.max(1)
    }

    /// Assigned tasks per thread: the placement load measure.
    pub fn load(&self) -> f64 {
        self.assigned.len() as f64 / self.nthreads() as f64
    }

    /// It holds `id`'s result on disk, not in memory.
    pub fn is_spilled(&self, id: TaskId) -> bool {
        // Most workers never spill: no hashing then.
        !self.spilled.is_empty() && self.spilled.contains(&id)
    }

    /// It no longer holds `id`'s result.
    pub fn forget_result(&mut self, id: TaskId) {
        self.holds.remove(&id);
        if !self.spilled.is_empty() {
            self.spilled.remove(&id);
        }
    }

    /// Fewer tasks than threads: it could start more now.
    pub fn is_idle(&self) -> bool {
        (self.assigned.len() as u64) < self.nthreads() as u64
    }

    /// Memory is above the worker's pause threshold (it said so, and says so in every
    /// heartbeat since): place nothing new here, and let idle workers take what is queued.
    pub fn paused(&self) -> bool {
        self.metrics.memory.paused
    }

    /// New work may be placed here.
    pub fn accepts_work(&self) -> bool {
        !(self.retiring || self.paused())
    }

    /// Queued tasks beyond what the worker can run now (all of them while paused).
    pub fn surplus(&self) -> usize {
        let running = if self.paused() {
            0
        } else {
            self.nthreads() as usize
        };
        self.assigned.len().saturating_sub(running)
    }

    /// Could this worker ever run a task with these needs?
    pub fn can_run(&self, kind: ExecutorKind, resources: &[Resource], allowed: &[String]) -> bool {
        let reg = &self.registration;
        reg.executors.contains(&kind)
            && resources.iter().all(|need| {
                reg.resources
                    .iter()
                    .any(|have| have.name == need.name && have.amount >= need.amount)
            })
            && (allowed.is_empty() || allowed.iter().any(|w| self.answers_to(w)))
    }

    /// True if a `workers=` restriction naming `name` allows this worker: `name` is one of
    /// its [`WorkerState::restriction_names`]. Its name and host are checked first, without
    /// splitting its data address (long with a `ucx://` alternative) for every pinned task.
    pub fn answers_to(&self, name: &str) -> bool {
        let reg = &self.registration;
        !name.is_empty()
            && (name == reg.name || name == reg.host || self.restriction_names().contains(&name))
    }

    /// Every name a `workers=` restriction may use for this worker, once each: its name,
    /// its host, its whole data address, each alternative in it (`tcp://...`,
    /// `mpi://...`) and the IP of the first. The one rule for placement checks and the
    /// worker index.
    pub fn restriction_names(&self) -> SmallVec<[&str; 6]> {
        let reg = &self.registration;
        let mut names: SmallVec<[&str; 6]> = SmallVec::new();
        let candidates = [
            reg.name.as_str(),
            reg.host.as_str(),
            reg.data_address.as_str(),
        ]
        .into_iter()
        .chain(reg.data_address.split_whitespace())
        .chain(address_host(&reg.data_address));
        for name in candidates {
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The worker as `shoal status` shows it.
    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            name: self.registration.name.clone(),
            address: self.registration.data_address.clone(),
            nthreads: self.registration.nthreads,
            memory_limit: self.registration.memory_limit,
            resources: self.registration.resources.clone(),
            metrics: self.metrics.clone(),
            assigned: self.assigned.len() as u64,
            finished: self.finished,
            host: self.registration.host.clone(),
            pid: self.registration.pid,
        }
    }
}

/// The host part of the first (TCP) address of `tcp://host:port mpi://...`.
fn address_host(address: &str) -> Option<&str> {
    let first = address.split_whitespace().next()?;
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    rest.rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_restriction_matches_name_host_full_address_and_its_parts() {
        let registration = Registration {
            name: "shoal-mpi-3".into(),
            nthreads: 1,
            data_address: "tcp://198.18.0.2:4000 mpi://job/3".into(),
            host: "node2".into(),
            executors: vec![ExecutorKind::Sum],
            memory_limit: 0,
            resources: vec![],
            pid: 1,
        };
        let w = WorkerState::new(WorkerId(1), registration, Instant::now());
        let can = |allowed: &str| w.can_run(ExecutorKind::Sum, &[], &[allowed.to_string()]);
        for allowed in [
            "shoal-mpi-3",
            "node2",
            "198.18.0.2",
            "tcp://198.18.0.2:4000",
            "mpi://job/3",
            // distributed's scheduler_info() keys: the whole advertised address
            "tcp://198.18.0.2:4000 mpi://job/3",
        ] {
            assert!(can(allowed), "{allowed}");
        }
        for allowed in ["node3", "198.18.0.3", "tcp://198.18.0.2:4001", "shoal-mpi"] {
            assert!(!can(allowed), "{allowed}");
        }
        assert_eq!(address_host("tcp://[::1]:80"), Some("::1"));
    }
}
