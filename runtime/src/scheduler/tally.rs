//! Task counts by state and by task prefix, kept as tasks move, so the dashboard and
//! `/metrics` read a few counters instead of walking millions of tasks.
//!
//! A task's prefix is its key without the parts that tell its siblings apart
//! (`('sum-3f2a9c1e', 4)` and `sum-aggregate-91bc77d0e4` are `sum` and `sum-aggregate`),
//! the grouping Dask's progress bars use. Prefixes are interned once per task insertion;
//! every state change is two array updates.

use super::task::TaskState;
use rustc_hash::FxHashMap;

/// Distinct prefixes tracked; tasks of further prefixes count under [`OTHER_PREFIX`].
pub const MAX_PREFIXES: usize = 4096;
/// The prefix of tasks beyond [`MAX_PREFIXES`].
pub const OTHER_PREFIX: &str = "other";

/// The states counted, in the order of [`StateCounts`].
pub const STATES: [&str; 7] = [
    "waiting", "ready", "queued", "running", "memory", "erred", "released",
];

/// Tasks per state, indexed like [`STATES`].
pub type StateCounts = [u64; 7];

/// Where a state is counted.
pub fn state_index(state: &TaskState) -> usize {
    match state {
        TaskState::Waiting => 0,
        TaskState::Ready => 1,
        TaskState::Queued(_) => 2,
        TaskState::Running(_) => 3,
        TaskState::Memory(_) => 4,
        TaskState::Erred(_) => 5,
        TaskState::Released => 6,
    }
}

/// The counts of one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixTally {
    /// The prefix.
    pub name: Box<str>,
    /// Tasks the scheduler holds now, by state.
    pub states: StateCounts,
    /// Runs that ended in memory since the scheduler started.
    pub finished: u64,
    /// Tasks that failed since the scheduler started.
    pub failed: u64,
}

/// Counts of every prefix, and of all tasks.
#[derive(Debug, Default)]
pub struct TaskTally {
    prefixes: Vec<PrefixTally>,
    by_name: FxHashMap<Box<str>, u32>,
    totals: StateCounts,
    finished: u64,
    failed: u64,
    /// The prefix of the last task added: graphs list siblings together, so most keys
    /// need no lookup.
    last: Option<u32>,
}

impl TaskTally {
    /// The prefix id of a new task with this key (counted as released, the state a task
    /// is inserted in).
    pub fn add(&mut self, key: &str) -> u32 {
        let name = key_prefix(key);
        let id = match self.last {
            Some(last) if *self.prefixes[last as usize].name == *name => last,
            _ => match self.by_name.get(name) {
                Some(&id) => id,
                None => self.intern(name),
            },
        };
        self.last = Some(id);
        self.prefixes[id as usize].states[6] += 1;
        self.totals[6] += 1;
        id
    }

    fn intern(&mut self, name: &str) -> u32 {
        let name = if self.prefixes.len() + 1 >= MAX_PREFIXES {
            OTHER_PREFIX
        } else {
            name
        };
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.prefixes.len() as u32;
        self.prefixes.push(PrefixTally {
            name: name.into(),
            ..PrefixTally::default()
        });
        self.by_name.insert(name.into(), id);
        id
    }

    /// A task of `prefix` moved from `old` to `new`.
    #[inline]
    pub fn moved(&mut self, prefix: u32, old: &TaskState, new: &TaskState) {
        let (from, to) = (state_index(old), state_index(new));
        if from == to {
            return;
        }
        let p = &mut self.prefixes[prefix as usize];
        p.states[from] -= 1;
        p.states[to] += 1;
        self.totals[from] -= 1;
        self.totals[to] += 1;
        if to == 4 && (from == 2 || from == 3) {
            p.finished += 1;
            self.finished += 1;
        } else if to == 5 {
            p.failed += 1;
            self.failed += 1;
        }
    }

    /// A task of `prefix` in `state` was forgotten.
    pub fn removed(&mut self, prefix: u32, state: &TaskState) {
        let i = state_index(state);
        self.prefixes[prefix as usize].states[i] -= 1;
        self.totals[i] -= 1;
    }

    /// Tasks by state.
    pub fn totals(&self) -> &StateCounts {
        &self.totals
    }

    /// Tasks waiting, ready, queued or running (see [`TaskState::is_unfinished`]).
    pub fn unfinished(&self) -> u64 {
        // STATES lists the unfinished states first.
        self.totals[..4].iter().sum()
    }

    /// Runs that ended in memory, and tasks that failed, since the start.
    pub fn finished_and_failed(&self) -> (u64, u64) {
        (self.finished, self.failed)
    }

    /// Every prefix seen, in the order first seen.
    pub fn prefixes(&self) -> &[PrefixTally] {
        &self.prefixes
    }
}

impl TaskTally {
    /// Check the counts against the tasks themselves: (prefix, state) of every task.
    pub fn check<'a>(&self, tasks: impl Iterator<Item = (u32, &'a TaskState)>) {
        let mut states = vec![[0u64; 7]; self.prefixes.len()];
        let mut totals = [0u64; 7];
        let mut unfinished = 0;
        for (prefix, state) in tasks {
            states[prefix as usize][state_index(state)] += 1;
            totals[state_index(state)] += 1;
            unfinished += u64::from(state.is_unfinished());
        }
        assert_eq!(totals, self.totals, "task counts by state");
        assert_eq!(unfinished, self.unfinished(), "unfinished tasks");
        for (p, counted) in self.prefixes.iter().zip(states) {
            assert_eq!(p.states, counted, "task counts of prefix {}", p.name);
        }
    }
}

/// A key's prefix: the words of its name up to the first that is a number or a hash.
/// One pass over the bytes (it runs for every submitted task).
pub fn key_prefix(key: &str) -> &str {
    // Tuple keys as their string form: ('name-token', 0, 1).
    let name = key
        .strip_prefix("('")
        .or_else(|| key.strip_prefix("(\""))
        .map_or(key, |rest| {
            let quote = rest.bytes().position(|b| b == b'\'' || b == b'"');
            &rest[..quote.unwrap_or(rest.len())]
        });
    let bytes = name.as_bytes();
    let word_end = |start: usize| {
        bytes[start..]
            .iter()
            .position(|&b| b == b'-')
            .map_or(bytes.len(), |p| start + p)
    };
    let mut end = 0;
    let mut start = 0;
    loop {
        let stop = word_end(start);
        let word = &bytes[start..stop];
        if word.is_empty() || is_identifier_part(word) {
            break;
        }
        end = stop;
        if stop == bytes.len() {
            break;
        }
        start = stop + 1;
    }
    if end == 0 {
        // Nothing but numbers and hashes (or an empty key): the whole first word.
        let first = &name[..word_end(0)];
        return if first.is_empty() { "unnamed" } else { first };
    }
    &name[..end]
}

/// A word that tells siblings apart: a number, or a hash (8+ hex digits with a digit).
fn is_identifier_part(word: &[u8]) -> bool {
    let (mut digits, mut hex) = (0, 0);
    for &b in word {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b.is_ascii_hexdigit() {
            hex += 1;
        } else {
            return false;
        }
    }
    hex == 0 || (word.len() >= 8 && digits > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_comm::ids::WorkerId;
    use smallvec::smallvec;

    #[test]
    fn prefixes_drop_numbers_and_hashes() {
        for (key, prefix) in [
            ("('sum-3f2a9c1e7b', 4)", "sum"),
            ("(\"random_sample-0123abcd9\", 0, 1)", "random_sample"),
            ("sum-aggregate-91bc77d0e4", "sum-aggregate"),
            ("inc-5", "inc"),
            ("merge-12", "merge"),
            ("x", "x"),
            ("finalize-deadbeef12", "finalize"),
            ("12345", "12345"),
            ("", "unnamed"),
            ("mean_chunk-agg-abcdefgh", "mean_chunk-agg-abcdefgh"),
            ("-5", "unnamed"),
            ("a--b", "a"),
            ("abc-", "abc"),
            ("beef-12", "beef"),
            ("add-deadbeef", "add-deadbeef"),
            ("add-1234abcd-x", "add"),
            ("('a-b', 1)", "a-b"),
            ("('no-end", "no-end"),
            ("t0-99", "t0"),
        ] {
            assert_eq!(key_prefix(key), prefix, "{key}");
        }
    }

    #[test]
    fn counts_follow_moves_and_count_finishes_and_failures() {
        let mut t = TaskTally::default();
        let a = t.add("inc-1");
        let b = t.add("inc-2");
        let c = t.add("sum-0");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let w = WorkerId(1);
        let path = [
            TaskState::Released,
            TaskState::Ready,
            TaskState::Queued(w),
            TaskState::Running(w),
            TaskState::Memory(smallvec![w]),
        ];
        for pair in path.windows(2) {
            t.moved(a, &pair[0], &pair[1]);
        }
        // Queued straight to memory (the start message was not seen) finishes too.
        t.moved(b, &TaskState::Released, &TaskState::Queued(w));
        t.moved(b, &TaskState::Queued(w), &TaskState::Memory(smallvec![w]));
        // Released after being in memory: not a second finish.
        t.moved(b, &TaskState::Memory(smallvec![w]), &TaskState::Released);
        let error = std::sync::Arc::new(shoal_comm::message::TaskError {
            key: "sum-0".into(),
            kind: shoal_comm::message::TaskErrorKind::TaskFailed,
            message: String::new(),
            traceback: None,
            exception: Vec::new(),
        });
        t.moved(c, &TaskState::Released, &TaskState::Erred(error.clone()));
        let inc = &t.prefixes()[a as usize];
        assert_eq!(&*inc.name, "inc");
        assert_eq!(inc.states, [0, 0, 0, 0, 1, 0, 1]);
        assert_eq!((inc.finished, inc.failed), (2, 0));
        assert_eq!(t.prefixes()[c as usize].failed, 1);
        assert_eq!(t.finished_and_failed(), (2, 1));
        assert_eq!(t.totals(), &[0, 0, 0, 0, 1, 1, 1]);
        t.removed(c, &TaskState::Erred(error));
        t.removed(b, &TaskState::Released);
        assert_eq!(t.totals(), &[0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn prefixes_beyond_the_limit_count_as_other() {
        let mut t = TaskTally::default();
        for i in 0..MAX_PREFIXES + 10 {
            t.add(&format!("p{i}-1"));
        }
        assert!(t.prefixes().len() <= MAX_PREFIXES);
        let other = t
            .prefixes()
            .iter()
            .find(|p| &*p.name == OTHER_PREFIX)
            .expect("an `other` prefix");
        assert!(other.states[6] >= 10);
        let total: u64 = t.prefixes().iter().map(|p| p.states[6]).sum();
        assert_eq!(total, (MAX_PREFIXES + 10) as u64);
    }
}
