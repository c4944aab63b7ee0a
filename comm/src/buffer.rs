//! Buffers that large incoming data frames are received into.
//!
//! A fresh buffer of many MiB costs a page fault and a zeroed page per 4 KiB on its first
//! write: for 64 MiB about 16,000 faults, which took longer than the transfer itself here.
//! Two things avoid most of that:
//!
//! - **Huge pages.** Buffers of [`LARGE`] or more ask for transparent huge pages
//!   (`MADV_HUGEPAGE`; needed where THP is set to `madvise`, the usual default), so 64 MiB
//!   takes 32 faults. Where THP is off the advice is ignored.
//! - **Reuse.** When the last reference to a large received frame is dropped, its memory goes
//!   to a small pool instead of back to the system, and the next frame of about the same size
//!   is received into it with no fault at all. Workloads that move chunks of one size (a
//!   Dask array's) hit it every time. The pool is bounded (see [`set_pool_limit`]; a worker
//!   sets a tenth of its memory limit), forgets buffers unused for [`POOL_MAX_AGE`], and
//!   [`release_pool`] empties it (the worker does so under memory pressure).

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Size of a transparent huge page on x86-64 and most aarch64 kernels.
const HUGE_PAGE: usize = 2 << 20;
/// Frames from this size on get huge pages and are pooled.
pub const LARGE: usize = 2 * HUGE_PAGE;
/// A pooled buffer unused for this long is freed.
pub const POOL_MAX_AGE: Duration = Duration::from_secs(5);

static POOL_LIMIT: AtomicUsize = AtomicUsize::new(256 << 20);
static POOL: Mutex<Vec<(Vec<u8>, Instant)>> = Mutex::new(Vec::new());

/// Keep at most `bytes` of freed frame buffers for reuse (0: none).
pub fn set_pool_limit(bytes: usize) {
    POOL_LIMIT.store(bytes, Ordering::Relaxed);
    trim(&mut lock_pool(), 0);
}

/// Free every pooled buffer.
pub fn release_pool() {
    lock_pool().clear();
}

fn lock_pool() -> std::sync::MutexGuard<'static, Vec<(Vec<u8>, Instant)>> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drop expired buffers, then the oldest until `incoming` more bytes fit under the limit.
fn trim(pool: &mut Vec<(Vec<u8>, Instant)>, incoming: usize) {
    pool.retain(|(_, at)| at.elapsed() < POOL_MAX_AGE);
    let limit = POOL_LIMIT.load(Ordering::Relaxed);
    let mut total: usize = pool.iter().map(|(b, _)| b.capacity()).sum::<usize>() + incoming;
    while total > limit && !pool.is_empty() {
        total -= pool.remove(0).0.capacity();
    }
}

/// A buffer one data frame is received into: fill it through [`ReceiveBuffer::vec`]
/// (never beyond its capacity), then turn it into the frame's [`Bytes`].
pub struct ReceiveBuffer(Vec<u8>);

impl ReceiveBuffer {
    /// An empty buffer with room for `len` bytes: pooled, huge-page backed, or plain.
    pub fn new(len: usize) -> Self {
        if len < LARGE {
            return ReceiveBuffer(Vec::with_capacity(len));
        }
        let reused = {
            let mut pool = lock_pool();
            trim(&mut pool, 0);
            let fits = |cap: usize| cap >= len && cap - len <= len / 4;
            pool.iter()
                .enumerate()
                .filter(|(_, (b, _))| fits(b.capacity()))
                .min_by_key(|(_, (b, _))| b.capacity())
                .map(|(i, _)| i)
                .map(|i| pool.swap_remove(i).0)
        };
        ReceiveBuffer(reused.unwrap_or_else(|| {
            let buffer = Vec::with_capacity(len);
            advise_huge_pages(buffer.as_ptr() as usize, len);
            buffer
        }))
    }

    /// As [`ReceiveBuffer::new`], but `None` instead of aborting when `len` bytes cannot
    /// be had (a length a peer announced).
    pub fn try_new(len: usize) -> Option<Self> {
        if len < LARGE {
            let mut v = Vec::new();
            v.try_reserve_exact(len).ok()?;
            return Some(ReceiveBuffer(v));
        }
        let mut probe: Vec<u8> = Vec::new();
        // Most large frames reuse pooled memory; check first that a fresh block would fit.
        probe.try_reserve_exact(len).ok()?;
        drop(probe);
        Some(ReceiveBuffer::new(len))
    }

    /// The vector to receive into; its length is what has arrived so far.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// The received frame. A large one returns its memory to the pool when its last
    /// reference goes.
    pub fn into_bytes(self) -> Bytes {
        if self.0.capacity() < LARGE {
            return Bytes::from(self.0);
        }
        Bytes::from_owner(Pooled(self.0))
    }
}

/// A large frame's memory, returned to the pool when dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > POOL_LIMIT.load(Ordering::Relaxed) {
            return;
        }
        buffer.clear();
        let mut pool = lock_pool();
        trim(&mut pool, buffer.capacity());
        pool.push((buffer, Instant::now()));
    }
}

/// Advise the whole huge pages inside `[start, start + len)`: the advice applies to the
/// aligned interior only, never to memory outside the allocation.
fn advise_huge_pages(start: usize, len: usize) {
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + len) / HUGE_PAGE * HUGE_PAGE;
    if end > first {
        // SAFETY: the range lies inside an allocation this process owns; MADV_HUGEPAGE only
        // changes how the kernel backs the pages, never their contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled_bytes() -> usize {
        lock_pool().iter().map(|(b, _)| b.capacity()).sum()
    }

    fn fill(len: usize, byte: u8) -> Bytes {
        let mut buffer = ReceiveBuffer::new(len);
        buffer.vec().resize(len, byte);
        buffer.into_bytes()
    }

    fn huge_page_kib() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        smaps
            .lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    // One test: the pool is process-wide.
    #[test]
    fn large_frames_use_huge_pages_and_reuse_memory_within_the_pool_limit() {
        set_pool_limit(64 << 20);
        release_pool();
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        let huge = fill(32 << 20, 1);
        if !(thp.is_empty() || thp.contains("[never]")) {
            assert!(huge_page_kib() >= 2048, "no huge pages in use");
        }
        drop(huge);
        release_pool();

        let small = fill(1000, 3);
        assert_eq!(small.len(), 1000);
        drop(small);
        assert_eq!(pooled_bytes(), 0, "small frames are not pooled");

        let first = fill(16 << 20, 1);
        let address = first.as_ptr();
        assert!(first.iter().all(|b| *b == 1));
        let clone = first.clone();
        drop(first);
        assert_eq!(
            pooled_bytes(),
            0,
            "memory is pooled only after the last reference"
        );
        drop(clone);
        assert_eq!(pooled_bytes(), 16 << 20);
        // The same size again reuses the memory, and the contents are the new ones.
        let second = fill(16 << 20, 2);
        assert_eq!(second.as_ptr(), address);
        assert!(second.iter().all(|b| *b == 2));
        assert_eq!(pooled_bytes(), 0);
        drop(second);
        // A much smaller frame does not take a much larger buffer.
        let other = fill(5 << 20, 4);
        assert_ne!(other.as_ptr(), address);
        drop(other);
        // The limit bounds the pool: the oldest go first.
        for _ in 0..3 {
            drop(fill(30 << 20, 5));
        }
        assert!(pooled_bytes() <= 64 << 20);
        set_pool_limit(0);
        assert_eq!(pooled_bytes(), 0);
        set_pool_limit(256 << 20);
    }
}
