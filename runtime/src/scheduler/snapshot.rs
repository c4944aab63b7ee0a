//! The aggregated view of the cluster that the scheduler publishes a few times a second
//! for its dashboard and `/metrics`.
//!
//! Building one costs O(workers + task prefixes + task runs since the last one), never
//! O(tasks): task counts come from the core's [`super::tally::TaskTally`]. Readers get an
//! `Arc` through a `tokio::sync::watch` channel, so HTTP requests never reach the
//! scheduler's loop.

use super::core::Core;
use super::tally::{PrefixTally, StateCounts, STATES};
use super::task_stream::TaskStream;
use serde::Serialize;
use shoal_comm::message::{MemoryMetrics, TaskRecord, TransferMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the scheduler publishes a snapshot while a dashboard is on.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Task runs carried by one snapshot at most (the newest of those since the last one).
pub const MAX_RUNS: usize = 2_000;

/// The cluster at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Wall-clock seconds since the Unix epoch.
    pub at: f64,
    /// Increases by one with every snapshot.
    pub sequence: u64,
    /// The scheduler process itself.
    pub scheduler: SchedulerView,
    /// The state names the counts below are indexed by.
    pub states: [&'static str; 7],
    /// Tasks the scheduler holds, by state.
    pub tasks: StateCounts,
    /// Runs that ended in memory since the start.
    pub finished_total: u64,
    /// Tasks that failed since the start.
    pub failed_total: u64,
    /// By task prefix, in the order first seen.
    pub prefixes: Vec<PrefixView>,
    /// By worker id.
    pub workers: Vec<WorkerView>,
    /// Task runs that ended since the previous snapshot (at most [`MAX_RUNS`]).
    pub runs: Vec<TaskRecord>,
    /// Clients connected now.
    pub clients: u32,
    /// Workers that registered since the start.
    pub workers_joined_total: u64,
    /// Workers whose connection closed since the start.
    pub workers_lost_total: u64,
}

/// The scheduler process itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchedulerView {
    /// The scheduler's unique id for this run.
    pub id: String,
    /// The address clients and workers connect to.
    pub address: String,
    /// Wall-clock seconds of the start.
    pub started: f64,
    /// How late the scheduler's loop came to the last publication tick: the longest it
    /// was busy without looking at its timers.
    pub loop_lag_seconds: f64,
    /// The largest lag seen since the start.
    pub loop_lag_max_seconds: f64,
    /// CPU time this process used (user + system) since it started.
    pub cpu_seconds: f64,
    /// The scheduler's resident memory.
    pub rss_bytes: u64,
}

/// One task prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixView {
    /// The prefix: task keys without the parts that tell siblings apart.
    pub name: String,
    /// Tasks of the prefix the scheduler holds, by state.
    pub states: StateCounts,
    /// Runs of the prefix that ended in memory since the start.
    pub finished: u64,
    /// Tasks of the prefix that failed since the start.
    pub failed: u64,
}

impl From<&PrefixTally> for PrefixView {
    fn from(p: &PrefixTally) -> Self {
        PrefixView {
            name: p.name.to_string(),
            states: p.states,
            finished: p.finished,
            failed: p.failed,
        }
    }
}

/// One worker, as the workers table shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerView {
    /// The worker's id.
    pub id: u32,
    /// The worker's name.
    pub name: String,
    /// Its data-server address.
    pub address: String,
    /// The host it runs on.
    pub host: String,
    /// The MPI rank of a worker of an `mpirun ... shoal mpi` job.
    pub mpi_rank: Option<u32>,
    /// Threads running tasks.
    pub nthreads: u32,
    /// Its memory limit in bytes (0: none).
    pub memory_limit: u64,
    /// Its resident memory, from the latest heartbeat.
    pub rss: u64,
    /// Tasks sent to it and not yet reported back.
    pub assigned: u64,
    /// Tasks it runs now.
    pub executing: u32,
    /// Tasks it holds waiting for inputs or a thread.
    pub queued: u32,
    /// Tasks it finished since it joined.
    pub finished: u64,
    /// Memory above its pause threshold: it starts nothing new.
    pub paused: bool,
    /// Being retired: its results move elsewhere before it stops.
    pub retiring: bool,
    /// Its memory figures (managed, spilled, spill traffic).
    pub memory: MemoryMetrics,
    /// Results it fetched from peers, by transport.
    pub transfers: TransferMetrics,
    /// Seconds since its last message.
    pub last_seen_seconds: f64,
}

/// The rank of `mpi://JOB/RANK` among a worker's addresses.
pub fn mpi_rank(address: &str) -> Option<u32> {
    crate::net::mpi_alternative(address).and_then(|(_, rank)| u32::try_from(rank).ok())
}

/// Builds and publishes snapshots; owned by the scheduler's server.
#[derive(Debug)]
pub struct Publisher {
    sender: watch::Sender<Arc<Snapshot>>,
    sequence: u64,
    /// Wall-clock stop time of the newest run already published.
    runs_since: f64,
    lag_max: f64,
    started: f64,
}

/// What the server knows beyond the core.
pub struct ServerFacts<'a> {
    /// The scheduler's unique id for this run.
    pub id: &'a str,
    /// The address clients and workers connect to.
    pub address: &'a str,
    /// Clients connected now.
    pub clients: u32,
    /// Workers that registered since the start.
    pub workers_joined: u64,
    /// Workers whose connection closed since the start.
    pub workers_lost: u64,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher; readers come from [`Publisher::subscribe`].
    pub fn new() -> Self {
        let (sender, _) = watch::channel(Arc::new(Snapshot::default()));
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Publisher {
            sender,
            sequence: 0,
            runs_since: 0.0,
            lag_max: 0.0,
            started,
        }
    }

    /// A reader of the snapshots (the latest one at once, then each new one).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.sender.subscribe()
    }

    /// Build a snapshot and hand it to every reader; `lag` is how late this tick came.
    pub fn publish(
        &mut self,
        core: &Core,
        stream: &TaskStream,
        facts: &ServerFacts<'_>,
        lag: Duration,
        now: Instant,
    ) {
        self.sequence += 1;
        let lag = lag.as_secs_f64();
        self.lag_max = self.lag_max.max(lag);
        let at = stream.unix(now);
        let runs = stream.since(self.runs_since, MAX_RUNS);
        // Runs stopping exactly at the boundary are not sent twice.
        if let Some(last) = runs.last() {
            self.runs_since = f64::from_bits(last.stop.to_bits() + 1);
        }
        let (finished_total, failed_total) = core.tally.finished_and_failed();
        let mut workers: Vec<WorkerView> = core
            .workers
            .values()
            .map(|w| {
                let reg = &w.registration;
                WorkerView {
                    id: w.id.0,
                    name: reg.name.clone(),
                    address: reg.data_address.clone(),
                    host: reg.host.clone(),
                    mpi_rank: mpi_rank(&reg.data_address),
                    nthreads: reg.nthreads,
                    memory_limit: reg.memory_limit,
                    rss: w.metrics.rss,
                    assigned: w.assigned.len() as u64,
                    executing: w.metrics.executing,
                    queued: w.metrics.queued,
                    finished: w.finished,
                    paused: w.paused(),
                    retiring: w.retiring,
                    memory: w.metrics.memory.clone(),
                    transfers: w.metrics.transfers,
                    last_seen_seconds: now.saturating_duration_since(w.last_seen).as_secs_f64(),
                }
            })
            .collect();
        workers.sort_by_key(|w| w.id);
        let (cpu_seconds, rss_bytes) = (crate::sys::cpu_seconds(), crate::sys::rss_bytes());
        let snapshot = Snapshot {
            at,
            sequence: self.sequence,
            scheduler: SchedulerView {
                id: facts.id.to_string(),
                address: facts.address.to_string(),
                started: self.started,
                loop_lag_seconds: lag,
                loop_lag_max_seconds: self.lag_max,
                cpu_seconds: cpu_seconds.unwrap_or(0.0),
                rss_bytes: rss_bytes.unwrap_or(0),
            },
            states: STATES,
            tasks: *core.tally.totals(),
            finished_total,
            failed_total,
            prefixes: core.tally.prefixes().iter().map(PrefixView::from).collect(),
            workers,
            runs,
            clients: facts.clients,
            workers_joined_total: facts.workers_joined,
            workers_lost_total: facts.workers_lost,
        };
        self.sender.send_replace(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Comm;
    use bytes::Bytes;
    use shoal_comm::ids::{ClientId, TaskId, WorkerId};
    use shoal_comm::message::{
        ComputeTask, ExecutorKind, KeyUpdate, Registration, TaskFinished, TaskSpec, ToClient,
        ToWorker,
    };

    struct NullComm;
    impl Comm for NullComm {
        fn compute(&mut self, _: WorkerId, _: ComputeTask, _: Option<Bytes>) {}
        fn release(&mut self, _: WorkerId, _: TaskId) {}
        fn steal(&mut self, _: WorkerId, _: TaskId) {}
        fn send_worker(&mut self, _: WorkerId, _: ToWorker) {}
        fn key_update(&mut self, _: ClientId, _: KeyUpdate) {}
        fn send_client(&mut self, _: ClientId, _: ToClient) {}
    }

    fn registration(name: &str) -> Registration {
        Registration {
            name: name.into(),
            nthreads: 4,
            memory_limit: 1 << 30,
            resources: vec![],
            data_address: format!("tcp://{name}:1 mpi://job/3"),
            host: "h".into(),
            pid: 1,
            executors: vec![ExecutorKind::Sum],
        }
    }

    #[test]
    fn mpi_ranks_come_from_the_mpi_address() {
        assert_eq!(mpi_rank("tcp://h:1 mpi://job-7/12"), Some(12));
        assert_eq!(mpi_rank("tcp://h:1"), None);
        assert_eq!(mpi_rank("mpi://job/x"), None);
    }

    #[test]
    fn snapshots_count_by_prefix_and_carry_each_run_once() {
        let t0 = Instant::now();
        let mut core = Core::new(Default::default());
        let mut comm = NullComm;
        let mut stream = TaskStream::new(t0, 100);
        let mut publisher = Publisher::new();
        let receiver = publisher.subscribe();
        let client = core.on_client_added();
        let w = core.new_worker_id();
        core.on_worker_added(w, registration("w0"), t0, 1000, &mut comm);
        stream.on_worker_joined(w, "tcp://w0:1 mpi://job/3");
        let specs = vec![
            TaskSpec::new("load-1", ExecutorKind::Sum, vec![]),
            TaskSpec::new("load-2", ExecutorKind::Sum, vec![]),
            TaskSpec::new(
                "sum-0",
                ExecutorKind::Sum,
                vec!["load-1".into(), "load-2".into()],
            ),
        ];
        core.on_submit(client, specs, vec!["sum-0".into()], &[], &mut comm)
            .expect("a valid graph");
        while core.schedule(&mut comm) {}
        let facts = ServerFacts {
            id: "Scheduler-x",
            address: "tcp://h:1",
            clients: 1,
            workers_joined: 1,
            workers_lost: 0,
        };
        let t1 = t0 + Duration::from_millis(10);
        publisher.publish(&core, &stream, &facts, Duration::from_millis(3), t1);
        let first = receiver.borrow().clone();
        assert_eq!(first.sequence, 1);
        assert_eq!(first.workers.len(), 1);
        assert_eq!(first.workers[0].name, "w0");
        assert_eq!(first.workers[0].mpi_rank, Some(3));
        let load = first.prefixes.iter().find(|p| p.name == "load").unwrap();
        assert_eq!(load.states[2], 2, "both loads queued on the worker");
        let sum = first.prefixes.iter().find(|p| p.name == "sum").unwrap();
        assert_eq!(sum.states[0], 1, "the sum waits");
        assert_eq!(first.tasks.iter().sum::<u64>(), 3);
        assert_eq!(first.finished_total, 0);
        assert!(first.runs.is_empty());
        assert!((first.scheduler.loop_lag_seconds - 0.003).abs() < 1e-9);

        let t2 = t0 + Duration::from_millis(20);
        let ids: Vec<TaskId> = ["load-1", "load-2"]
            .iter()
            .map(|k| core.find_key(k).unwrap())
            .collect();
        stream.on_started(w, &ids, t1);
        core.on_tasks_started(w, &ids, &mut comm);
        for (id, key) in ids.iter().zip(["load-1", "load-2"]) {
            stream.on_ended(w, *id, key, true, t2);
        }
        let done: Vec<TaskFinished> = ids.iter().map(|&id| TaskFinished { id, size: 8 }).collect();
        core.on_tasks_finished(w, &done, &mut comm);
        while core.schedule(&mut comm) {}
        publisher.publish(&core, &stream, &facts, Duration::ZERO, t2);
        let second = receiver.borrow().clone();
        assert_eq!(second.finished_total, 2);
        let load = second.prefixes.iter().find(|p| p.name == "load").unwrap();
        assert_eq!((load.finished, load.states[4]), (2, 2));
        let keys: Vec<&str> = second.runs.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["load-1", "load-2"]);
        assert_eq!(
            second.scheduler.loop_lag_max_seconds,
            first.scheduler.loop_lag_seconds
        );
        // Nothing ran since: no run is sent again.
        publisher.publish(&core, &stream, &facts, Duration::ZERO, t2);
        assert!(receiver.borrow().runs.is_empty());
        assert_eq!(receiver.borrow().sequence, 3);
    }
}
