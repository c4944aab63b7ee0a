//! The worker's disk tier: spilled results as records in a few large segment files.
//!
//! # Layout
//!
//! The spill directory holds segment files `segment-NNNNNNNN.spill`, numbered in the
//! order they were created. Each is a sequence of records, written back to back and
//! never changed in place (see `record.rs` for the 40-byte header: id, flags, stored
//! and original length, CRC-32). Exactly one segment, the *active* one, takes new
//! records at its end; once it reaches [`SpillOptions::segment_bytes`] it is *sealed*
//! and the next write starts a new one. Which record holds each id's current value
//! lives only in memory: the files are scratch space for this worker's lifetime and
//! are deleted on [`SpillFiles::clear`], on drop, and (leftovers of an earlier run)
//! on [`SpillFiles::open`].
//!
//! # Reclaiming space
//!
//! Removing or replacing a value leaves its record as dead bytes. A sealed segment
//! with no live record left is deleted at once; an active one is truncated back to
//! empty. A sealed segment that is more than half dead is *compacted*: its live
//! records are copied, unchanged, to the active segment and the file is deleted. At
//! most one segment is compacted per [`SpillFiles::write`] or [`SpillFiles::remove`],
//! so no call rewrites much more than one segment. A compaction that fails (no room
//! for the copies on a full disk) is not tried again until a segment is freed or a
//! write succeeds.
//!
//! # Failures
//!
//! A write that fails (a full disk, an I/O error) truncates the segment back to where
//! it ended, so the files only ever hold whole records and the old value of the id,
//! if any, is still there.

mod record;
mod segment;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use record::Header;
use rustc_hash::FxHashMap;
use segment::Segment;
use shoal_comm::ids::TaskId;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How spilled values are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillOptions {
    /// Rotate to a new segment file once the active one reaches this size (default 256 MiB).
    pub segment_bytes: u64,
    /// Compress values with lz4 when it pays (stored raw when compressed is at least
    /// 90% of the original). Default false.
    pub compress: bool,
    /// Most live bytes on disk; None = no cap (`max-spill`).
    pub max_spill: Option<u64>,
}

impl Default for SpillOptions {
    fn default() -> Self {
        SpillOptions {
            segment_bytes: 256 << 20,
            compress: false,
            max_spill: None,
        }
    }
}

/// Why a value could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// Writing would exceed `max_spill`.
    #[error(
        "spilling {needed} more bytes would exceed the spill cap of {max_spill} bytes; \
         raise it with --max-spill (or max-spill in the worker's [memory] config)"
    )]
    Full {
        /// The cap.
        max_spill: u64,
        /// Bytes the write would have added.
        needed: u64,
    },
    /// An I/O error, with the path and what was being done.
    #[error("cannot {action} spill file {}: {source}", path.display())]
    Io {
        /// The spill file.
        path: PathBuf,
        /// What was being done (`write`, `read`, ...).
        action: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// Not on disk.
    #[error("result {0} is not on disk")]
    Missing(TaskId),
    /// Data read back does not match what was written (checksum).
    #[error("spilled result {id} in {} is corrupt (checksum mismatch)", path.display())]
    Corrupt {
        /// The result's task.
        id: TaskId,
        /// The spill file it was read from.
        path: PathBuf,
    },
}

impl SpillError {
    fn io(path: &Path, action: &'static str, source: io::Error) -> Self {
        SpillError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

/// What the disk tier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpillStats {
    /// Bytes of records holding current values, headers included.
    pub live_bytes: u64,
    /// Bytes in segment files, dead records included.
    pub file_bytes: u64,
    /// Values on disk.
    pub values: u64,
    /// Segment files.
    pub segments: u64,
}

/// Where an id's current record is.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    /// The whole record, header included.
    len: u64,
}

/// Values keyed by task id in segment files of one directory (see the module docs).
#[derive(Debug)]
pub struct SpillFiles {
    dir: PathBuf,
    options: SpillOptions,
    /// Takes new records; `None` until the first write after a rotation.
    active: Option<Segment>,
    /// Full segments, by number.
    sealed: BTreeMap<u64, Segment>,
    next_segment: u64,
    index: FxHashMap<TaskId, Location>,
    live_bytes: u64,
    /// A compaction failed (typically: the disk is full); not tried again until space
    /// is freed or a write succeeds.
    compaction_stalled: bool,
}

impl SpillFiles {
    /// Use `dir` (exists already, owned by this worker) for segment files. Segment
    /// files left there by an earlier run are deleted.
    pub fn open(dir: &Path, options: SpillOptions) -> Result<Self, SpillError> {
        remove_leftovers(dir)?;
        Ok(SpillFiles {
            dir: dir.to_owned(),
            options,
            active: None,
            sealed: BTreeMap::new(),
            next_segment: 0,
            index: FxHashMap::default(),
            live_bytes: 0,
            compaction_stalled: false,
        })
    }

    /// Append one value; returns the number of bytes it takes on disk. Replaces an
    /// existing value of the same id.
    ///
    /// On any error nothing is left half-written: the segment is truncated back to its
    /// previous length, and an earlier value of `id` is still readable.
    pub fn write(&mut self, id: TaskId, value: &[u8]) -> Result<u64, SpillError> {
        let (stored, compressed) = record::pack(value, self.options.compress);
        let header = Header::new(id, compressed, &stored, value.len());
        self.check_cap(id, header.record_len())?;
        let location = self.append(&[&header.encode(), &stored], "write")?;
        self.forget(id);
        self.place(id, location);
        self.compaction_stalled = false;
        self.reclaim();
        Ok(location.len)
    }

    /// Read a value back, verifying its checksum.
    pub fn read(&self, id: TaskId) -> Result<Bytes, SpillError> {
        let location = *self.index.get(&id).ok_or(SpillError::Missing(id))?;
        let record = self.read_record(id, location, "read")?;
        record::unpack(id, record).ok_or_else(|| SpillError::Corrupt {
            id,
            path: self.dir.join(segment::file_name(location.segment)),
        })
    }

    /// Forget a value; its bytes become dead space. Returns whether it was there.
    pub fn remove(&mut self, id: TaskId) -> bool {
        let found = self.forget(id);
        if found {
            self.reclaim();
        }
        found
    }

    /// Whether a value for `id` is on disk.
    pub fn contains(&self, id: TaskId) -> bool {
        self.index.contains_key(&id)
    }

    /// What is on disk now.
    pub fn stats(&self) -> SpillStats {
        SpillStats {
            live_bytes: self.live_bytes,
            file_bytes: self.segments().map(Segment::end).sum(),
            values: self.index.len() as u64,
            segments: self.segments().count() as u64,
        }
    }

    /// Remove every value and every segment file.
    pub fn clear(&mut self) {
        for segment in self.segments() {
            segment.remove_file();
        }
        self.active = None;
        self.sealed.clear();
        self.index.clear();
        self.live_bytes = 0;
        self.compaction_stalled = false;
    }

    /// `Full` if a record of `needed` bytes for `id` would take live bytes past the cap.
    fn check_cap(&self, id: TaskId, needed: u64) -> Result<(), SpillError> {
        let Some(max_spill) = self.options.max_spill else {
            return Ok(());
        };
        let replaced = self.index.get(&id).map_or(0, |l| l.len);
        if self.live_bytes - replaced + needed > max_spill {
            return Err(SpillError::Full { max_spill, needed });
        }
        Ok(())
    }

    /// Append a record (its `parts` back to back) to the active segment, starting one if
    /// there is none and sealing it once it is full.
    fn append(&mut self, parts: &[&[u8]], action: &'static str) -> Result<Location, SpillError> {
        let mut segment = match self.active.take() {
            Some(segment) => segment,
            None => self.new_segment()?,
        };
        let result = segment.append(parts, action);
        let location = result.map(|offset| Location {
            segment: segment.number(),
            offset,
            len: segment.end() - offset,
        });
        if segment.end() >= self.options.segment_bytes {
            self.sealed.insert(segment.number(), segment);
        } else {
            self.active = Some(segment);
        }
        location
    }

    /// Create the next segment file.
    fn new_segment(&mut self) -> Result<Segment, SpillError> {
        let segment = Segment::create(&self.dir, self.next_segment)?;
        self.next_segment += 1;
        Ok(segment)
    }

    /// The whole record at `location` (of `id`, for errors).
    fn read_record(
        &self,
        id: TaskId,
        location: Location,
        action: &'static str,
    ) -> Result<Vec<u8>, SpillError> {
        let segment = self
            .segment(location.segment)
            .ok_or(SpillError::Missing(id))?;
        let len = usize::try_from(location.len).map_err(|_| SpillError::Corrupt {
            id,
            path: segment.path().to_owned(),
        })?;
        let mut record = vec![0; len];
        segment.read_at(location.offset, &mut record, action)?;
        Ok(record)
    }

    /// Record that `id`'s current value is at `location`.
    fn place(&mut self, id: TaskId, location: Location) {
        if let Some(segment) = self.segment_mut(location.segment) {
            segment.hold(id, location.len);
            self.index.insert(id, location);
            self.live_bytes += location.len;
        }
    }

    /// Drop `id` from the index, making its record dead; whether it was there.
    fn forget(&mut self, id: TaskId) -> bool {
        let Some(location) = self.index.remove(&id) else {
            return false;
        };
        self.live_bytes -= location.len;
        if let Some(segment) = self.segment_mut(location.segment) {
            segment.release(id, location.len);
        }
        true
    }

    /// Delete dead segments and compact at most one mostly dead one.
    fn reclaim(&mut self) {
        if self.delete_dead() {
            self.compaction_stalled = false;
        }
        if self.compaction_stalled {
            return;
        }
        let Some(number) = self.compaction_candidate() else {
            return;
        };
        if let Err(e) = self.compact(number) {
            tracing::warn!(error = %e, "cannot compact spilled results; will retry once space is freed");
            self.compaction_stalled = true;
        }
        self.delete_dead();
    }

    /// Delete sealed segments with no live record and empty the active one if it has
    /// none; whether any space was freed.
    fn delete_dead(&mut self) -> bool {
        let segments = self.sealed.len();
        self.sealed.retain(|_, segment| {
            let dead = segment.is_dead();
            if dead {
                segment.remove_file();
            }
            !dead
        });
        let reset = self.active.as_mut().is_some_and(Segment::reset_if_dead);
        reset || self.sealed.len() < segments
    }

    /// The sealed segment that is more than half dead with the most dead bytes.
    fn compaction_candidate(&self) -> Option<u64> {
        self.sealed
            .values()
            .filter(|s| s.mostly_dead())
            .max_by_key(|s| s.end() - s.live())
            .map(Segment::number)
    }

    /// Copy the live records of sealed segment `number` to the active segment, leaving
    /// it dead. On error the records copied so far stay moved; the rest stay put.
    fn compact(&mut self, number: u64) -> Result<(), SpillError> {
        let Some(segment) = self.sealed.get(&number) else {
            return Ok(());
        };
        let moves: Vec<(TaskId, Location)> = segment
            .ids()
            .filter_map(|id| Some((id, *self.index.get(&id)?)))
            .collect();
        tracing::debug!(path = %segment.path().display(), records = moves.len(), "compacting spill segment");
        for (id, from) in moves {
            let record = self.read_record(id, from, "compact")?;
            let to = self.append(&[&record], "compact")?;
            self.forget(id);
            self.place(id, to);
        }
        Ok(())
    }

    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.active.iter().chain(self.sealed.values())
    }

    fn segment(&self, number: u64) -> Option<&Segment> {
        match &self.active {
            Some(active) if active.number() == number => Some(active),
            _ => self.sealed.get(&number),
        }
    }

    fn segment_mut(&mut self, number: u64) -> Option<&mut Segment> {
        match &mut self.active {
            Some(active) if active.number() == number => Some(active),
            _ => self.sealed.get_mut(&number),
        }
    }
}

impl Drop for SpillFiles {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Delete segment files in `dir` (from an earlier run: the index of what they held is gone).
fn remove_leftovers(dir: &Path) -> Result<(), SpillError> {
    let entries = fs::read_dir(dir).map_err(|e| SpillError::io(dir, "open", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpillError::io(dir, "open", e))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(segment::is_segment_name) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| SpillError::io(&path, "remove", e))?;
        }
    }
    Ok(())
}
