//! A graph being accepted: the submitted specs, where the acceptance is, and the tables
//! built on the way (key index, topological order, new dependents).

use super::super::task_map::TaskMap;
use super::GraphError;
use bytes::Bytes;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use shoal_comm::ids::{ClientId, TaskId};
use shoal_comm::message::TaskSpec;
use std::hash::BuildHasher;

/// Where a submission is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Keys, payload indices and resource amounts, one spec at a time.
    Check,
    /// Every wanted key exists.
    Wants,
    /// Inputs resolved: new ones counted for the topological order, existing ones pinned.
    Count,
    /// Prefix sums of the new dependents per spec.
    Offsets,
    /// The new dependents of every spec.
    Fill,
    /// Specs without new inputs start the order.
    Roots,
    /// Kahn's algorithm.
    Order,
    /// Tasks inserted (released) in topological order.
    Insert,
    /// The client's wants recorded.
    Want,
    /// The submitted keys not moved into new tasks (those already in the cluster) freed,
    /// a few at a time (freeing millions of strings at once would be a long step of its
    /// own).
    Free,
    /// New tasks that wait for inputs put on their way, dependents first.
    Activate,
    /// New tasks with every input at hand made ready, in submission order.
    Ready,
    /// Existing inputs released earlier recomputed, pins dropped.
    Unpin,
    /// New tasks nobody needs dropped again.
    Drop,
}

/// An input of a submitted spec, resolved once (when counted) for the phases after.
#[derive(Debug, Clone, Copy)]
pub(super) enum Input {
    /// Another spec of the submission, by index.
    New(u32),
    /// A task already in the cluster (pinned).
    Existing(TaskId),
}

/// A graph being accepted; see the module documentation.
#[derive(Debug)]
pub struct Submission {
    pub(super) client: ClientId,
    /// Answer the client with `SubmitReply` through `Comm` at the end (server use).
    pub(super) request: Option<u64>,
    pub(super) specs: Vec<TaskSpec>,
    pub(super) wants: Vec<String>,
    pub(super) frames: Vec<Bytes>,
    pub(super) phase: Phase,
    pub(super) pos: usize,
    /// Spec indices by key.
    pub(super) index: HashTable<u32>,
    /// New inputs per spec not yet ordered (Kahn's algorithm).
    pub(super) missing: Vec<u32>,
    /// Dependents among the new specs: those of spec `i` are
    /// `targets[offsets[i]..offsets[i + 1]]`.
    pub(super) offsets: Vec<u32>,
    pub(super) targets: Vec<u32>,
    /// Insertion order (inputs first).
    pub(super) order: Vec<u32>,
    /// The inputs of every spec, resolved: those of spec `i` are
    /// `inputs[input_ends[i - 1]..input_ends[i]]` (from 0 for the first).
    pub(super) inputs: Vec<Input>,
    pub(super) input_ends: Vec<u32>,
    /// The task of each spec once inserted (or found already in the cluster).
    pub(super) ids: Vec<TaskId>,
    /// New tasks, in insertion order.
    pub(super) inserted: Vec<TaskId>,
    /// Existing tasks this submission refers to, pinned until the end.
    pub(super) pinned: Vec<TaskId>,
    /// Specs whose key was already in the cluster (their task is reused).
    pub(super) reused: rustc_hash::FxHashSet<u32>,
    /// The outcome, for synchronous callers.
    pub(super) result: Option<Result<(), GraphError>>,
}

pub(super) fn key_hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl Submission {
    pub(super) fn new(
        client: ClientId,
        request: Option<u64>,
        specs: Vec<TaskSpec>,
        wants: Vec<String>,
        frames: Vec<Bytes>,
    ) -> Self {
        let n = specs.len();
        Submission {
            client,
            request,
            specs,
            wants,
            frames,
            phase: Phase::Check,
            pos: 0,
            index: HashTable::with_capacity(n),
            missing: vec![0; n],
            offsets: vec![0; n + 1],
            targets: Vec::new(),
            order: Vec::with_capacity(n),
            inputs: Vec::new(),
            input_ends: Vec::with_capacity(n),
            ids: Vec::new(),
            inserted: Vec::with_capacity(n),
            pinned: Vec::new(),
            reused: Default::default(),
            result: None,
        }
    }

    /// The spec index of a key of this submission.
    pub(super) fn find(&self, key: &str) -> Option<usize> {
        self.index
            .find(key_hash(key), |&i| self.specs[i as usize].key == key)
            .map(|&i| i as usize)
    }

    /// The spec index of a key of this submission once its specs are inserted (their keys
    /// moved into the tasks `ids` names).
    pub(super) fn find_inserted(&self, tasks: &TaskMap, key: &str) -> Option<usize> {
        self.index
            .find(key_hash(key), |&i| {
                tasks
                    .get(&self.ids[i as usize])
                    .is_some_and(|t| &*t.key == key)
            })
            .map(|&i| i as usize)
    }

    /// The resolved inputs of spec `i` (once counted).
    pub(super) fn inputs_of(&self, i: usize) -> &[Input] {
        let start = if i == 0 {
            0
        } else {
            self.input_ends[i - 1] as usize
        };
        &self.inputs[start..self.input_ends[i] as usize]
    }

    /// The client submitting.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Spec `i` was inserted as a new task (not reused).
    pub(super) fn inserted_new(&self, i: usize) -> bool {
        !self.reused.contains(&(i as u32))
    }

    /// Existing tasks pinned by this submission, with multiplicity (for `sanity_check`).
    pub(crate) fn pins(&self) -> &[TaskId] {
        if self.phase >= Phase::Count {
            &self.pinned
        } else {
            &[]
        }
    }

    /// New tasks may be released while their dependents are already waiting (activation
    /// runs dependents first).
    pub(crate) fn activating(&self) -> bool {
        matches!(self.phase, Phase::Activate | Phase::Ready | Phase::Unpin)
    }
}

/// Walk from a spec left over by Kahn's algorithm until a key repeats.
pub(super) fn find_cycle(job: &Submission) -> Vec<String> {
    let specs = &job.specs;
    let missing = &job.missing;
    let Some(mut at) = (0..specs.len()).find(|&i| missing[i] > 0) else {
        return Vec::new();
    };
    let mut seen: rustc_hash::FxHashMap<usize, usize> = rustc_hash::FxHashMap::default();
    let mut path = Vec::new();
    loop {
        if let Some(&start) = seen.get(&at) {
            let mut cycle: Vec<String> = path[start..]
                .iter()
                .map(|&i: &usize| specs[i].key.clone())
                .collect();
            cycle.push(specs[at].key.clone());
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        let Some(next) = specs[at]
            .deps
            .iter()
            .filter_map(|d| job.find(d))
            .find(|&j| missing[j] > 0)
        else {
            return path.iter().map(|&i| specs[i].key.clone()).collect();
        };
        at = next;
    }
}
