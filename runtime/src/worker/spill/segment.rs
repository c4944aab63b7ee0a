//! One segment file: records appended at its end, read back by position.

use super::SpillError;
use rustc_hash::FxHashSet;
use shoal_comm::ids::TaskId;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// File name prefix and suffix of segment files.
const PREFIX: &str = "segment-";
const SUFFIX: &str = ".spill";

/// The file name of segment `number`.
pub(super) fn file_name(number: u64) -> String {
    format!("{PREFIX}{number:08}{SUFFIX}")
}

/// Whether `name` is the name of a segment file.
pub(super) fn is_segment_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// An open segment file and what in it is still live.
#[derive(Debug)]
pub(super) struct Segment {
    number: u64,
    path: PathBuf,
    file: File,
    /// Where the next record goes: the bytes of every record written so far.
    end: u64,
    /// Bytes of the records that are still the current value of their id.
    live: u64,
    /// Ids whose current record is in this segment.
    ids: FxHashSet<TaskId>,
}

impl Segment {
    /// Create segment `number` in `dir`; fails if the file exists already.
    pub fn create(dir: &Path, number: u64) -> Result<Self, SpillError> {
        let path = dir.join(file_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| SpillError::io(&path, "create", source))?;
        Ok(Segment {
            number,
            path,
            file,
            end: 0,
            live: 0,
            ids: FxHashSet::default(),
        })
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the file.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes of live records.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Whether no live record is left.
    pub fn is_dead(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether more than half of the file is dead records.
    pub fn mostly_dead(&self) -> bool {
        self.live * 2 < self.end
    }

    /// The ids with a live record here.
    pub fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.ids.iter().copied()
    }

    /// Append one record made of `parts` written back to back at the end of the file;
    /// returns its offset. On error the file is truncated back to where it ended.
    pub fn append(&mut self, parts: &[&[u8]], action: &'static str) -> Result<u64, SpillError> {
        let offset = self.end;
        let mut at = offset;
        for part in parts {
            if let Err(source) = self.file.write_all_at(part, at) {
                self.truncate(offset);
                return Err(SpillError::io(&self.path, action, source));
            }
            at += part.len() as u64;
        }
        self.end = at;
        Ok(offset)
    }

    /// Fill `buf` from `offset`.
    pub fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        action: &'static str,
    ) -> Result<(), SpillError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| SpillError::io(&self.path, action, source))
    }

    /// A record of `len` bytes for `id` here is now live.
    pub fn hold(&mut self, id: TaskId, len: u64) {
        if self.ids.insert(id) {
            self.live += len;
        }
    }

    /// The record of `len` bytes for `id` here is now dead.
    pub fn release(&mut self, id: TaskId, len: u64) {
        if self.ids.remove(&id) {
            self.live -= len;
        }
    }

    /// Start over at offset 0 when no live record is left (for the active segment,
    /// which is reused rather than deleted); whether it did.
    pub fn reset_if_dead(&mut self) -> bool {
        let reset = self.is_dead() && self.end > 0;
        if reset {
            self.truncate(0);
            self.end = 0;
        }
        reset
    }

    /// Delete the file (the handle closes when `self` is dropped).
    pub fn remove_file(&self) {
        // Already gone (its directory was removed first at shutdown): nothing to do.
        let result = fs::remove_file(&self.path).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot delete spill segment");
        }
    }

    /// Cut the file to `len` bytes. A failure only leaves unused bytes past the end,
    /// which the next append overwrites.
    fn truncate(&self, len: u64) {
        if let Err(e) = self.file.set_len(len) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot truncate spill segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert!(is_segment_name(&file_name(0)));
        assert!(is_segment_name(&file_name(123_456_789_012)));
        assert!(!is_segment_name("segment-.spill"));
        assert!(!is_segment_name("segment-12.tmp"));
        assert!(!is_segment_name("other"));
    }
}
