//! Scenario tests of the worker core: scheduler messages, executor results, fetches, memory
//! samples and clock ticks in; recorded effects out; invariants checked after every step.
//! Every message in either direction goes through the wire codec.

use super::comm::WorkerComm;
use super::core::{CoreSettings, SessionEnd, WorkerCore};
use super::fetch::FetchDone;
use super::memory::{ManagedStore, MemoryPolicy};
use super::spill::SpillOptions;
use super::store::DataStore;
use crate::executor::pool::{Job, JobResult, PoolEvent};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::*;
use shoal_comm::RawMessage;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ME: WorkerId = WorkerId(1);
const PEER: WorkerId = WorkerId(2);
const OTHER: WorkerId = WorkerId(3);

/// Encode `msg` and decode it again, checking nothing changed on the way.
fn round_trip<T: Serialize + DeserializeOwned + Debug>(msg: T) -> T {
    let raw = RawMessage::encode(&msg, Vec::new()).expect("encodes");
    let back: T = raw.decode().expect("decodes");
    assert_eq!(format!("{back:?}"), format!("{msg:?}"), "codec changed it");
    back
}

#[derive(Default)]
struct Recorder {
    started: Vec<TaskId>,
    finished: Vec<TaskFinished>,
    failed: Vec<TaskFailed>,
    sent: Vec<FromWorker>,
    jobs: Vec<Job>,
    fetches: Vec<(WorkerId, String, Vec<TaskId>)>,
    peers_left: Vec<(WorkerId, Option<String>)>,
    spills: Vec<u64>,
    registered: Vec<(WorkerId, Duration)>,
    has_plugins: bool,
}

impl WorkerComm for Recorder {
    fn started(&mut self, task: TaskId) {
        self.started.push(task);
    }
    fn finished(&mut self, done: TaskFinished) {
        let FromWorker::Finished(mut done) = round_trip(FromWorker::Finished(vec![done])) else {
            unreachable!()
        };
        self.finished.append(&mut done);
    }
    fn failed(&mut self, failed: TaskFailed) {
        let FromWorker::Failed(mut failed) = round_trip(FromWorker::Failed(vec![failed])) else {
            unreachable!()
        };
        self.failed.append(&mut failed);
    }
    fn send(&mut self, msg: FromWorker) {
        self.sent.push(round_trip(msg));
    }
    fn run(&mut self, job: Job) {
        self.jobs.push(job);
    }
    fn fetch(&mut self, peer: WorkerId, address: &str, ids: Vec<TaskId>) {
        let DataRequest::Get(ids) = round_trip(DataRequest::Get(ids));
        self.fetches.push((peer, address.to_string(), ids));
    }
    fn peer_left(&mut self, peer: WorkerId, address: Option<&str>) {
        self.peers_left.push((peer, address.map(str::to_string)));
    }
    fn spill(&mut self, goal: u64) {
        self.spills.push(goal);
    }
    fn registered(&mut self, id: WorkerId, heartbeat: Duration) {
        self.registered.push((id, heartbeat));
    }
    fn has_plugins(&mut self) {
        self.has_plugins = true;
    }
}

struct Env {
    core: WorkerCore,
    comm: Recorder,
    store: Arc<ManagedStore>,
    now: Instant,
    _dir: Option<tempfile::TempDir>,
}

fn settings(nthreads: u32, memory_limit: u64) -> CoreSettings {
    CoreSettings {
        name: "w".into(),
        nthreads,
        resources: vec![],
        memory_limit,
        memory: MemoryPolicy::default(),
        death_timeout: Duration::from_secs(60),
        zero: false,
    }
}

fn task(id: u64, inputs: Vec<Input>) -> ComputeTask {
    ComputeTask {
        id: TaskId(id),
        kind: ExecutorKind::Noop,
        payload: None,
        priority: 0,
        inputs,
        resources: vec![],
    }
}

fn input(id: u64, holders: &[WorkerId], size: u64) -> Input {
    Input {
        id: TaskId(id),
        holders: holders.to_vec(),
        size,
    }
}

/// The message reporting these results moved to disk, as [`Env::take_sent`] shows it.
fn spilled_to_disk(moved: &[u64]) -> String {
    let msg = FromWorker::Spilled {
        ids: ids(moved),
        on_disk: true,
    };
    format!("{msg:?}")
}

fn ids(ids: &[u64]) -> Vec<TaskId> {
    ids.iter().copied().map(TaskId).collect()
}

impl Env {
    /// A registered worker whose results stay in memory.
    fn new(settings: CoreSettings) -> Self {
        Env::with_store(settings, Arc::new(ManagedStore::in_memory()), None)
    }

    /// A registered worker whose results spill into a fresh directory.
    fn spilling(settings: CoreSettings) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = ManagedStore::spilling(dir.path(), SpillOptions::default()).expect("store");
        Env::with_store(settings, Arc::new(store), Some(dir))
    }

    fn with_store(
        settings: CoreSettings,
        store: Arc<ManagedStore>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let now = Instant::now();
        let core = WorkerCore::new(settings, store.clone(), now);
        core.sanity_check();
        let mut env = Env {
            core,
            comm: Recorder::default(),
            store,
            now,
            _dir: dir,
        };
        let registered = ToWorker::Registered {
            id: ME,
            heartbeat_ms: 500,
            peers: vec![(PEER, "tcp://peer".into()), (OTHER, "tcp://other".into())],
        };
        assert_eq!(env.deliver(registered), None);
        assert_eq!(env.comm.registered, vec![(ME, Duration::from_millis(500))]);
        env
    }

    /// Settle the core, checking every invariant before and after.
    fn step(&mut self) {
        self.core.sanity_check();
        self.core.settle(&mut self.comm);
        self.core.sanity_check();
    }

    /// A scheduler message (through the codec), then settle.
    fn deliver(&mut self, msg: ToWorker) -> Option<SessionEnd> {
        let end = self
            .core
            .on_message(self.now, round_trip(msg), Vec::new(), &mut self.comm);
        self.step();
        end
    }

    fn compute(&mut self, tasks: Vec<ComputeTask>) {
        assert_eq!(self.deliver(ToWorker::Compute(tasks)), None);
    }

    /// The job of `id` ran for `elapsed` and produced `bytes` bytes.
    fn job_done(&mut self, id: u64, elapsed: Duration, bytes: usize) {
        let result = JobResult {
            id: TaskId(id),
            result: Ok(Bytes::from(vec![7u8; bytes]).into()),
            elapsed,
        };
        self.core
            .on_pool_event(PoolEvent::Done(result), &mut self.comm);
        self.step();
    }

    fn sample(&mut self, rss: u64) -> Option<SessionEnd> {
        let end = self.core.on_memory_sample(self.now, rss, &mut self.comm);
        self.step();
        end
    }

    fn fetched(&mut self, peer: WorkerId, found: &[u64], failed: &[u64]) {
        let done = FetchDone {
            peer,
            found: found
                .iter()
                .map(|id| (TaskId(*id), Bytes::from_static(b"input")))
                .collect(),
            failed: ids(failed),
        };
        self.core.on_fetch_done(done, &mut self.comm);
        self.step();
    }

    fn take_started(&mut self) -> Vec<TaskId> {
        self.comm.jobs.clear();
        std::mem::take(&mut self.comm.started)
    }

    fn take_sent(&mut self) -> Vec<String> {
        self.comm.sent.drain(..).map(|m| format!("{m:?}")).collect()
    }
}

#[test]
fn tasks_run_on_free_threads_and_report_their_results() {
    let mut env = Env::new(settings(2, 0));
    env.compute(vec![task(1, vec![]), task(2, vec![]), task(3, vec![])]);
    assert_eq!(env.take_started(), ids(&[1, 2]), "two threads, two tasks");
    // A slow task keeps the depth at one per thread.
    env.job_done(1, Duration::from_secs(1), 5);
    assert_eq!(
        env.comm.finished,
        vec![TaskFinished {
            id: TaskId(1),
            size: 5
        }]
    );
    assert!(env.store.contains(TaskId(1)));
    assert_eq!(env.take_started(), ids(&[3]));
    assert_eq!(env.core.local().map(|l| l.running.len()), Some(2));
}

#[test]
fn work_depth_grows_at_most_twofold_and_shrinks_at_once() {
    let mut env = Env::new(settings(1, 0));
    env.compute((1..=100).map(|i| task(i, vec![])).collect());
    assert_eq!(env.take_started(), ids(&[1]));
    let fast = Duration::from_micros(1);
    env.job_done(1, fast, 1);
    assert_eq!(env.core.depth(), 2);
    assert_eq!(
        env.take_started().len(),
        2,
        "two jobs handed over per thread"
    );
    env.job_done(2, fast, 1);
    assert_eq!(env.core.depth(), 4);
    for id in 3..=6 {
        env.job_done(id, fast, 1);
    }
    assert_eq!(env.core.depth(), 64, "capped at MAX_DEPTH");
    env.take_started();
    // One long job: the average passes the few milliseconds handed over ahead.
    env.job_done(7, Duration::from_secs(1), 1);
    assert_eq!(env.core.depth(), 1, "shrinks at once");
    assert!(
        env.take_started().is_empty(),
        "more than one job per thread is out"
    );
}

#[test]
fn pause_holds_back_tasks_and_fetches_until_memory_falls() {
    let mut env = Env::new(settings(1, 1000));
    assert_eq!(env.sample(850), None, "above pause, below terminate");
    assert!(env.core.paused());
    assert_eq!(env.take_sent(), vec!["Paused(true)"]);
    env.compute(vec![task(1, vec![]), task(2, vec![input(9, &[PEER], 10)])]);
    assert!(env.take_started().is_empty(), "nothing starts while paused");
    assert!(
        env.comm.fetches.is_empty(),
        "nothing is fetched while paused"
    );
    // Results arriving while paused are sampled at once.
    assert!(env.core.sample_due(env.now));
    assert_eq!(env.sample(100), None);
    assert!(!env.core.paused());
    assert_eq!(env.take_sent(), vec!["Paused(false)"]);
    assert_eq!(
        env.comm.fetches,
        vec![(PEER, "tcp://peer".into(), ids(&[9]))]
    );
    assert_eq!(env.take_started(), ids(&[1]));
    assert!(!env.core.sample_due(env.now), "sampled just now");
    assert!(env.core.sample_due(env.now + Duration::from_millis(10)));
}

#[test]
fn terminate_threshold_restarts_the_worker_unless_a_nanny_supervises() {
    let mut env = Env::new(settings(1, 1000));
    assert_eq!(env.sample(960), Some(SessionEnd::MemoryExceeded(960)));
    let mut supervised = settings(1, 1000);
    supervised.memory.supervised = true;
    let mut env = Env::new(supervised);
    assert_eq!(env.sample(960), None, "the nanny decides");
    assert!(env.core.paused());
}

#[test]
fn results_past_the_target_spill_one_round_at_a_time() {
    let mut env = Env::spilling(settings(1, 1000));
    env.compute(vec![task(1, vec![]), task(2, vec![])]);
    env.job_done(1, Duration::from_secs(1), 700);
    assert_eq!(env.comm.spills, vec![600], "down to the target");
    env.job_done(2, Duration::from_secs(1), 100);
    assert_eq!(env.comm.spills, vec![600], "a round runs already");
    // The round the session ran in the background moved the oldest result out.
    assert!(env.store.evict_to(600) > 0);
    env.step();
    assert_eq!(env.take_sent(), vec![spilled_to_disk(&[1])]);
    assert!(env.store.contains(TaskId(1)), "on disk, still held");
    // RSS above the spill threshold with little managed: spill the excess over the target.
    assert_eq!(env.sample(750), None);
    assert_eq!(env.comm.spills, vec![600, 0]);
}

#[test]
fn a_result_larger_than_the_limit_goes_to_disk_or_fails() {
    let mut env = Env::spilling(settings(1, 1000));
    env.compute(vec![task(1, vec![])]);
    env.job_done(1, Duration::from_secs(1), 2000);
    assert_eq!(
        env.comm.finished,
        vec![TaskFinished {
            id: TaskId(1),
            size: 2000
        }]
    );
    assert_eq!(env.take_sent(), vec![spilled_to_disk(&[1])]);
    let mut env = Env::new(settings(1, 1000));
    env.compute(vec![task(1, vec![])]);
    env.job_done(1, Duration::from_secs(1), 2000);
    assert!(env.comm.finished.is_empty());
    assert_eq!(env.comm.failed.len(), 1);
    assert_eq!(env.comm.failed[0].error.kind, TaskErrorKind::MemoryError);
    assert!(!env.store.contains(TaskId(1)), "not kept");
}

#[test]
fn fetches_are_batched_per_peer_and_bounded_in_bytes() {
    let mut env = Env::new(settings(1, 0));
    env.compute(vec![
        task(1, vec![input(10, &[PEER], 1), input(11, &[PEER], 1)]),
        task(2, vec![input(10, &[PEER], 1), input(12, &[OTHER], 1)]),
    ]);
    let mut fetches = std::mem::take(&mut env.comm.fetches);
    fetches.sort();
    assert_eq!(
        fetches,
        vec![
            (PEER, "tcp://peer".into(), ids(&[10, 11])),
            (OTHER, "tcp://other".into(), ids(&[12])),
        ],
        "one request per peer, each input once"
    );
    env.fetched(PEER, &[10, 11], &[]);
    assert_eq!(env.take_started(), ids(&[1]), "task 2 still waits for 12");
    env.fetched(OTHER, &[12], &[]);
    env.job_done(1, Duration::from_secs(1), 1);
    assert!(
        !env.store.contains(TaskId(11)),
        "copy dropped after its reader"
    );
    assert!(env.store.contains(TaskId(10)), "task 2 still reads it");

    // With a memory limit, bytes in flight stay within a tenth of it (at least 16 MiB).
    let mib = 1 << 20;
    let mut env = Env::new(settings(1, 160 * mib));
    env.compute(vec![task(
        1,
        vec![input(10, &[PEER], 10 * mib), input(11, &[PEER], 10 * mib)],
    )]);
    assert_eq!(env.comm.fetches.len(), 1);
    assert_eq!(env.comm.fetches[0].2, ids(&[10]));
    env.fetched(PEER, &[10], &[]);
    assert_eq!(
        env.comm.fetches[1].2,
        ids(&[11]),
        "the next goes once the first landed"
    );
}

#[test]
fn failed_fetches_try_the_next_holder_then_report_missing_data() {
    let unknown = WorkerId(9);
    let mut env = Env::new(settings(1, 0));
    // The first holder fails; the next, whose address is unknown, fails at once.
    env.compute(vec![task(1, vec![input(10, &[PEER, unknown], 1)])]);
    assert_eq!(
        env.comm.fetches,
        vec![(PEER, "tcp://peer".into(), ids(&[10]))]
    );
    env.fetched(PEER, &[], &[10]);
    assert_eq!(
        env.take_sent(),
        vec![format!(
            "{:?}",
            FromWorker::MissingData {
                task: TaskId(1),
                missing: TaskId(10),
                holders: vec![PEER, unknown],
            }
        )]
    );
    assert!(
        env.core.local().is_some_and(|l| l.queued() == 0),
        "task given up"
    );
    // An input held only by this worker, and not here, is reported at once.
    env.compute(vec![task(2, vec![input(11, &[ME], 1)])]);
    assert_eq!(env.take_sent().len(), 1);
    assert!(env.comm.fetches.len() == 1, "nothing more fetched");
}

#[test]
fn replicas_asked_for_are_reported_once_held() {
    let mut env = Env::new(settings(1, 0));
    assert_eq!(
        env.deliver(ToWorker::Replicate(vec![input(10, &[PEER], 1)])),
        None
    );
    assert_eq!(
        env.comm.fetches,
        vec![(PEER, "tcp://peer".into(), ids(&[10]))]
    );
    env.fetched(PEER, &[10], &[]);
    assert_eq!(
        env.take_sent(),
        vec![format!("{:?}", FromWorker::Replicated(ids(&[10])))]
    );
    assert!(env.store.contains(TaskId(10)));
    // Asked again while held: reported at once.
    env.deliver(ToWorker::Replicate(vec![input(10, &[PEER], 1)]));
    assert_eq!(
        env.take_sent(),
        vec![format!("{:?}", FromWorker::Replicated(ids(&[10])))]
    );
}

#[test]
fn stolen_and_released_tasks() {
    let mut env = Env::new(settings(1, 0));
    env.compute(vec![task(1, vec![]), task(2, vec![])]);
    assert_eq!(env.take_started(), ids(&[1]));
    env.deliver(ToWorker::Steal(ids(&[1, 2])));
    assert_eq!(
        env.take_sent(),
        vec![format!(
            "{:?}",
            FromWorker::StealReply(vec![(TaskId(1), false), (TaskId(2), true)])
        )],
        "a running task cannot be stolen"
    );
    // A released running task: its result is dropped when it ends.
    env.deliver(ToWorker::Release(ids(&[1])));
    env.job_done(1, Duration::from_secs(1), 3);
    assert!(env.comm.finished.is_empty());
    assert!(!env.store.contains(TaskId(1)));
}

#[test]
fn zero_mode_reports_every_task_done_without_running_it() {
    let mut zero = settings(1, 0);
    zero.zero = true;
    let mut env = Env::new(zero);
    env.compute(vec![task(1, vec![]), task(2, vec![input(5, &[PEER], 1)])]);
    assert!(env.comm.jobs.is_empty() && env.comm.fetches.is_empty());
    assert_eq!(
        env.comm.finished,
        vec![
            TaskFinished {
                id: TaskId(1),
                size: 0
            },
            TaskFinished {
                id: TaskId(2),
                size: 0
            },
        ]
    );
}

#[test]
fn peers_come_and_go() {
    let mut env = Env::new(settings(1, 0));
    env.deliver(ToWorker::PeerLeft(PEER));
    env.deliver(ToWorker::PeerJoined(WorkerId(4), "tcp://new".into()));
    env.deliver(ToWorker::HasPlugins);
    assert_eq!(env.comm.peers_left, vec![(PEER, Some("tcp://peer".into()))]);
    assert!(env.comm.has_plugins);
    env.compute(vec![task(1, vec![input(10, &[PEER, WorkerId(4)], 1)])]);
    assert_eq!(
        env.comm.fetches,
        vec![(WorkerId(4), "tcp://new".into(), ids(&[10]))]
    );
}

#[test]
fn heartbeats_carry_the_worker_figures() {
    let mut env = Env::new(settings(2, 0));
    env.compute(vec![task(1, vec![]), task(2, vec![]), task(3, vec![])]);
    env.core.on_heartbeat(1234, &mut env.comm);
    let [FromWorker::Heartbeat(m)] = env.comm.sent.as_slice() else {
        panic!("one heartbeat: {:?}", env.comm.sent)
    };
    assert_eq!((m.rss, m.executing, m.queued), (1234, 2, 1));
}

#[test]
fn a_silent_scheduler_ends_the_session_after_the_death_timeout() {
    let mut env = Env::new(settings(1, 0));
    let timeout = Duration::from_secs(60);
    assert_eq!(env.core.on_tick(env.now + timeout), None);
    // Any message counts as contact.
    env.now += timeout;
    assert_eq!(env.deliver(ToWorker::Heartbeat), None);
    assert_eq!(env.core.on_tick(env.now + timeout), None);
    assert_eq!(
        env.core
            .on_tick(env.now + timeout + Duration::from_millis(1)),
        Some(SessionEnd::Lost("the scheduler was silent for 60s".into()))
    );
}

#[test]
fn the_session_ends_on_retirement_shutdown_and_restart() {
    let mut env = Env::new(settings(1, 0));
    assert_eq!(env.core.on_retire(&mut env.comm), SessionEnd::Shutdown);
    assert_eq!(env.take_sent(), vec!["Retiring"]);
    assert_eq!(env.deliver(ToWorker::Shutdown), Some(SessionEnd::Shutdown));
    assert_eq!(env.deliver(ToWorker::Restart), Some(SessionEnd::Restart));
}

#[test]
fn nothing_happens_before_registration() {
    let store = Arc::new(ManagedStore::in_memory());
    let mut core = WorkerCore::new(settings(1, 0), store, Instant::now());
    let mut comm = Recorder::default();
    let now = Instant::now();
    assert_eq!(
        core.on_message(
            now,
            ToWorker::Compute(vec![task(1, vec![])]),
            vec![],
            &mut comm
        ),
        None
    );
    core.settle(&mut comm);
    core.sanity_check();
    assert!(comm.started.is_empty() && comm.sent.is_empty());
}
