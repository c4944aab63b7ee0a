//! The task stream: which worker ran which task, from when to when, for the most recent
//! tasks (`Client.get_task_stream`, `performance_report`). Plain state, time passed in.
//!
//! Times are the scheduler's: a task starts when its worker reports it started and stops
//! when the worker reports it finished (both batched, so within a few milliseconds).

use super::core::Core;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{FromWorker, TaskRecord};
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records kept (the oldest are dropped first): about 10 MiB at most.
pub const CAPACITY: usize = 100_000;

/// One run, kept compact (the worker by id, its address looked up when asked).
#[derive(Debug)]
struct Run {
    key: Box<str>,
    worker: WorkerId,
    start: f64,
    stop: f64,
    ok: bool,
}

/// Recent task runs.
#[derive(Debug)]
pub struct TaskStream {
    records: VecDeque<Run>,
    /// Data addresses of the workers seen (kept after they leave: their runs stay).
    addresses: FxHashMap<WorkerId, Box<str>>,
    /// Running tasks: (worker, start in seconds since the Unix epoch).
    running: FxHashMap<TaskId, (WorkerId, f64)>,
    /// The Unix time of `origin`, to turn instants into wall-clock seconds.
    origin: Instant,
    origin_unix: f64,
    capacity: usize,
}

impl TaskStream {
    /// An empty stream; `now` is the scheduler's clock, mapped to the wall clock.
    pub fn new(now: Instant, capacity: usize) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        TaskStream {
            records: VecDeque::new(),
            addresses: FxHashMap::default(),
            running: FxHashMap::default(),
            origin: now,
            origin_unix: unix,
            capacity: capacity.max(1),
        }
    }

    /// Wall-clock seconds of `now`.
    pub fn unix(&self, now: Instant) -> f64 {
        self.origin_unix + now.saturating_duration_since(self.origin).as_secs_f64()
    }

    /// A worker joined with this data address.
    pub fn on_worker_joined(&mut self, worker: WorkerId, address: &str) {
        let first = address.split(' ').next().unwrap_or(address);
        self.addresses.insert(worker, first.into());
    }

    /// `worker` started these tasks.
    /// Starts and ends of tasks a worker reported (before the core forgets them).
    pub fn on_worker_message(
        &mut self,
        worker: WorkerId,
        msg: &FromWorker,
        core: &Core,
        now: Instant,
    ) {
        match msg {
            FromWorker::Started(ids) => self.on_started(worker, ids, now),
            FromWorker::Finished(done) => {
                for f in done {
                    if let Some(key) = core.task_key(f.id) {
                        self.on_ended(worker, f.id, key, true, now);
                    }
                }
            }
            FromWorker::Failed(failed) => {
                for f in failed {
                    if let Some(key) = core.task_key(f.id) {
                        self.on_ended(worker, f.id, key, false, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// `ids` started on `worker` at `now`.
    pub fn on_started(&mut self, worker: WorkerId, ids: &[TaskId], now: Instant) {
        let t = self.unix(now);
        for &id in ids {
            self.running.insert(id, (worker, t));
        }
    }

    /// `worker` finished (`ok`) or failed task `id` with key `key`. A task whose start
    /// was not seen starts now.
    pub fn on_ended(&mut self, worker: WorkerId, id: TaskId, key: &str, ok: bool, now: Instant) {
        let stop = self.unix(now);
        let start = match self.running.remove(&id) {
            Some((w, start)) if w == worker => start,
            _ => stop,
        };
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(Run {
            key: key.into(),
            worker,
            start,
            stop,
            ok,
        });
    }

    /// Tasks of a worker that left are no longer running there.
    pub fn on_worker_lost(&mut self, worker: WorkerId) {
        self.running.retain(|_, (w, _)| *w != worker);
    }

    /// Records that stopped at or after `since` (wall-clock seconds), oldest first, at
    /// most `limit` (the most recent ones).
    pub fn since(&self, since: f64, limit: usize) -> Vec<TaskRecord> {
        let first = self.records.partition_point(|r| r.stop < since);
        let skip = (self.records.len() - first).saturating_sub(limit);
        self.records
            .iter()
            .skip(first + skip)
            .map(|r| TaskRecord {
                key: r.key.to_string(),
                worker: self
                    .addresses
                    .get(&r.worker)
                    .map_or_else(|| r.worker.to_string(), |a| a.to_string()),
                start: r.start,
                stop: r.stop,
                ok: r.ok,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_start_and_stop_per_task_and_keep_the_newest() {
        let t0 = Instant::now();
        let mut s = TaskStream::new(t0, 3);
        let (w1, w2) = (WorkerId(1), WorkerId(2));
        s.on_worker_joined(w1, "tcp://w1 mpi://job/1");
        s.on_started(w1, &[TaskId(1), TaskId(2)], t0);
        s.on_ended(w1, TaskId(1), "a", true, t0 + Duration::from_millis(100));
        s.on_ended(w1, TaskId(2), "b", false, t0 + Duration::from_millis(200));
        let all = s.since(0.0, 10);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, "a");
        assert!((all[0].stop - all[0].start - 0.1).abs() < 1e-6);
        assert!(!all[1].ok);
        assert_eq!(all[0].worker, "tcp://w1", "the worker's first address");
        // Never seen starting: zero length, at its stop.
        s.on_ended(w2, TaskId(3), "c", true, t0 + Duration::from_millis(300));
        assert_eq!(s.since(0.0, 10)[2].start, s.since(0.0, 10)[2].stop);
        // Capacity 3: the oldest goes.
        s.on_ended(w2, TaskId(4), "d", true, t0 + Duration::from_millis(400));
        let keys: Vec<String> = s.since(0.0, 10).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["b", "c", "d"]);
        // Since a time, and a limit that keeps the most recent.
        let cut = s.unix(t0 + Duration::from_millis(250));
        assert_eq!(s.since(cut, 10).len(), 2);
        assert_eq!(s.since(0.0, 1)[0].key, "d");
    }

    #[test]
    fn a_lost_worker_forgets_its_running_tasks() {
        let t0 = Instant::now();
        let mut s = TaskStream::new(t0, 10);
        s.on_started(WorkerId(1), &[TaskId(1)], t0);
        s.on_worker_lost(WorkerId(1));
        // Recomputed elsewhere: its start there is what counts.
        s.on_ended(
            WorkerId(2),
            TaskId(1),
            "a",
            true,
            t0 + Duration::from_secs(1),
        );
        let r = &s.since(0.0, 10)[0];
        assert_eq!(r.start, r.stop);
    }
}
