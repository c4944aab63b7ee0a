//! A set of worker ids as a bitset: insert, remove and membership in O(1), the lowest
//! member from any id in a few word reads (workers' ids are dense: handed out in order).

use shoal_comm::ids::WorkerId;

/// A set of worker ids as a bitset, with the index of its lowest non-zero word.
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    words: Vec<u64>,
    len: u32,
    /// No bit is set in the words below this one.
    first_word: usize,
}

impl IdSet {
    /// Add `id` (absent).
    pub fn insert(&mut self, WorkerId(id): WorkerId) {
        let (word, bit) = (id as usize / 64, id % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        debug_assert!(self.words[word] & (1 << bit) == 0, "worker {id} twice");
        self.words[word] |= 1 << bit;
        if self.len == 0 || word < self.first_word {
            self.first_word = word;
        }
        self.len += 1;
    }

    /// Remove `id` (present); returns whether the set is empty now.
    pub fn remove(&mut self, WorkerId(id): WorkerId) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        debug_assert!(self.words[word] & (1 << bit) != 0, "worker {id} missing");
        self.words[word] &= !(1 << bit);
        self.len -= 1;
        if self.len > 0 && word == self.first_word && self.words[word] == 0 {
            self.first_word = self.next_word_from(word + 1).unwrap_or(self.words.len());
        }
        self.len == 0
    }

    /// `id` is in the set.
    pub fn contains(&self, WorkerId(id): WorkerId) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn next_word_from(&self, start: usize) -> Option<usize> {
        (start..self.words.len()).find(|&w| self.words[w] != 0)
    }

    /// The lowest id at or above `from`.
    fn first_from(&self, from: u32) -> Option<u32> {
        let mut word = (from as usize / 64).max(self.first_word);
        if word >= self.words.len() {
            return None;
        }
        let mut bits = self.words[word];
        if word == from as usize / 64 {
            bits &= u64::MAX << (from % 64);
        }
        loop {
            if bits != 0 {
                return Some(word as u32 * 64 + bits.trailing_zeros());
            }
            word = self.next_word_from(word + 1)?;
            bits = self.words[word];
        }
    }

    /// The lowest member.
    pub fn first(&self) -> Option<WorkerId> {
        self.first_from(0).map(WorkerId)
    }

    /// The lowest member above `id`.
    pub fn next_after(&self, WorkerId(id): WorkerId) -> Option<WorkerId> {
        id.checked_add(1)
            .and_then(|from| self.first_from(from))
            .map(WorkerId)
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = WorkerId> + '_ {
        std::iter::successors(self.first(), |&id| self.next_after(id))
    }

    /// How many ids are in the set.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Empty it, keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.len = 0;
        self.first_word = 0;
    }
}
