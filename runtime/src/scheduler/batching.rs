//! Batching the scheduler's effects: the core's [`Comm`] calls are queued per peer and,
//! at each flush, runs of one kind (computes, releases, steals, key updates) are encoded
//! as one message, so a slice of scheduling work costs one message per worker.

use super::comm::Comm;
use crate::net::Outbox;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::{ClientId, TaskId, WorkerId};
use shoal_comm::message::{ComputeTask, KeyUpdate, ToClient, ToWorker};
use shoal_comm::RawMessage;

/// One item queued for a peer; runs of the same kind are sent as one message.
pub(super) enum Queued<M> {
    Compute(ComputeTask, Option<Bytes>),
    Release(TaskId),
    Steal(TaskId),
    Update(KeyUpdate),
    Other(M),
}

impl<M> Queued<M> {
    /// The task a release or steal item is about.
    fn task_id(&self) -> Option<TaskId> {
        match self {
            Queued::Release(t) | Queued::Steal(t) => Some(*t),
            _ => None,
        }
    }
}

pub(super) struct PeerQueue<M> {
    outbox: Outbox,
    queue: Vec<Queued<M>>,
    /// The task writing to this peer (kept for workers, to await it at shutdown).
    pub(super) writer: Option<tokio::task::JoinHandle<()>>,
}

impl<M> PeerQueue<M> {
    pub(super) fn new(outbox: Outbox) -> Self {
        PeerQueue {
            outbox,
            queue: Vec::new(),
            writer: None,
        }
    }
}

/// Batches every effect per peer until [`ServerComm::flush`].
#[derive(Default)]
pub(super) struct ServerComm {
    pub(super) workers: FxHashMap<WorkerId, PeerQueue<ToWorker>>,
    pub(super) clients: FxHashMap<ClientId, PeerQueue<ToClient>>,
}

impl ServerComm {
    pub(super) fn add_worker(
        &mut self,
        id: WorkerId,
        outbox: Outbox,
        writer: tokio::task::JoinHandle<()>,
    ) {
        let mut queue = PeerQueue::new(outbox);
        queue.writer = Some(writer);
        self.workers.insert(id, queue);
    }

    fn push_worker(&mut self, id: WorkerId, item: Queued<ToWorker>) {
        if let Some(q) = self.workers.get_mut(&id) {
            q.queue.push(item);
        }
    }

    /// Send everything queued, runs of one kind as one message per peer.
    pub(super) fn flush(&mut self) {
        for q in self.workers.values_mut() {
            flush_queue(q, worker_message);
        }
        for q in self.clients.values_mut() {
            flush_queue(q, client_message);
        }
    }
}

/// Encode a run of queued items (all of the first item's kind) into one message.
pub(super) fn worker_message(run: Vec<Queued<ToWorker>>) -> Option<RawMessage> {
    let mut frames = Vec::new();
    let msg = match run.first()? {
        Queued::Compute(..) => ToWorker::Compute(
            run.into_iter()
                .filter_map(|q| match q {
                    Queued::Compute(mut task, payload) => {
                        if let Some(p) = payload {
                            task.payload = Some(frames.len() as u32);
                            frames.push(p);
                        }
                        Some(task)
                    }
                    _ => None,
                })
                .collect(),
        ),
        // Runs hold one kind only, so the ids of a run are its items' ids.
        Queued::Release(_) => ToWorker::Release(run.iter().filter_map(Queued::task_id).collect()),
        Queued::Steal(_) => ToWorker::Steal(run.iter().filter_map(Queued::task_id).collect()),
        Queued::Update(_) => return None,
        Queued::Other(_) => match run.into_iter().next()? {
            Queued::Other(m) => m,
            _ => return None,
        },
    };
    RawMessage::encode(&msg, frames).ok()
}

pub(super) fn client_message(run: Vec<Queued<ToClient>>) -> Option<RawMessage> {
    let msg = match run.first()? {
        Queued::Update(_) => ToClient::Updates(
            run.into_iter()
                .filter_map(|q| match q {
                    Queued::Update(u) => Some(u),
                    _ => None,
                })
                .collect(),
        ),
        Queued::Other(_) => match run.into_iter().next()? {
            Queued::Other(m) => m,
            _ => return None,
        },
        _ => return None,
    };
    RawMessage::encode(&msg, Vec::new()).ok()
}

fn same_kind<M>(a: &Queued<M>, b: &Queued<M>) -> bool {
    match (a, b) {
        (Queued::Other(_), _) | (_, Queued::Other(_)) => false,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

fn flush_queue<M>(q: &mut PeerQueue<M>, encode: fn(Vec<Queued<M>>) -> Option<RawMessage>) {
    if q.queue.is_empty() {
        return;
    }
    let mut items = std::mem::take(&mut q.queue).into_iter().peekable();
    while let Some(first) = items.next() {
        let mut run = vec![first];
        while let Some(next) = items.peek() {
            if !same_kind(&run[0], next) {
                break;
            }
            run.extend(items.next());
        }
        if let Some(msg) = encode(run) {
            let _ = q.outbox.send(msg);
        }
    }
}

impl Comm for ServerComm {
    fn compute(&mut self, worker: WorkerId, task: ComputeTask, payload: Option<Bytes>) {
        self.push_worker(worker, Queued::Compute(task, payload));
    }
    fn release(&mut self, worker: WorkerId, task: TaskId) {
        self.push_worker(worker, Queued::Release(task));
    }
    fn steal(&mut self, worker: WorkerId, task: TaskId) {
        self.push_worker(worker, Queued::Steal(task));
    }
    fn send_worker(&mut self, worker: WorkerId, msg: ToWorker) {
        self.push_worker(worker, Queued::Other(msg));
    }
    fn key_update(&mut self, client: ClientId, update: KeyUpdate) {
        if let Some(q) = self.clients.get_mut(&client) {
            q.queue.push(Queued::Update(update));
        }
    }
    fn send_client(&mut self, client: ClientId, msg: ToClient) {
        if let Some(q) = self.clients.get_mut(&client) {
            q.queue.push(Queued::Other(msg));
        }
    }
}
