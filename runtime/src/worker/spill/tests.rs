use super::record::HEADER_LEN;
use super::segment::file_name;
use super::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::Command;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const HEADER: u64 = HEADER_LEN as u64;

/// Incompressible bytes, the same for the same seed.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

fn small_segments() -> SpillOptions {
    SpillOptions {
        segment_bytes: 64 * KIB as u64,
        ..SpillOptions::default()
    }
}

/// Names and lengths of the files in `dir`, sorted by name.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| {
            let e = e.expect("dir entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().expect("metadata").len(),
            )
        })
        .collect();
    out.sort();
    out
}

fn file_bytes_in(dir: &Path) -> u64 {
    files(dir).iter().map(|(_, len)| len).sum()
}

fn assert_reads(store: &SpillFiles, values: &[(TaskId, Vec<u8>)]) {
    for (id, value) in values {
        let read = store.read(*id).unwrap_or_else(|e| panic!("read {id}: {e}"));
        assert!(read[..] == value[..], "{id} read back differs");
    }
}

#[test]
fn spill_files_are_send() {
    fn send<T: Send>() {}
    send::<SpillFiles>();
}

#[test]
fn round_trip_of_varied_sizes_and_replace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), SpillOptions::default()).expect("open");
    let sizes = [0, 1, 2, 39, 40, 41, 1000, 4096, 65_537, 3 * MIB, 17];
    let values: Vec<(TaskId, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| (TaskId(i as u64 * 1000), random(len, i as u64)))
        .collect();
    for (id, value) in &values {
        let on_disk = store.write(*id, value).expect("write");
        assert_eq!(on_disk, HEADER + value.len() as u64);
        assert!(store.contains(*id));
    }
    assert_reads(&store, &values);
    let total: u64 = values.iter().map(|(_, v)| HEADER + v.len() as u64).sum();
    let stats = store.stats();
    assert_eq!(
        stats,
        SpillStats {
            live_bytes: total,
            file_bytes: total,
            values: 11,
            segments: 1
        }
    );

    // Replace: the new value wins, the old record is dead space.
    let (id, _) = values[7];
    let newer = random(500, 99);
    store.write(id, &newer).expect("replace");
    assert_eq!(&store.read(id).expect("read")[..], &newer[..]);
    let stats = store.stats();
    assert_eq!(stats.values, 11);
    assert_eq!(stats.live_bytes, total - 4096 + 500);
    assert_eq!(stats.file_bytes, total + HEADER + 500);

    assert!(matches!(
        store.read(TaskId(1)),
        Err(SpillError::Missing(TaskId(1)))
    ));
    assert!(!store.remove(TaskId(1)));
}

#[test]
fn segments_rotate_at_segment_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), small_segments()).expect("open");
    let values: Vec<(TaskId, Vec<u8>)> = (0..200)
        .map(|i| (TaskId(i), random(3 * KIB + i as usize, i)))
        .collect();
    for (id, value) in &values {
        store.write(*id, value).expect("write");
    }
    let on_disk = files(dir.path());
    let total: u64 = values.iter().map(|(_, v)| HEADER + v.len() as u64).sum();
    let expected_segments = total.div_ceil(64 * KIB as u64);
    assert!(
        on_disk.len() as u64 <= expected_segments + 1 && on_disk.len() >= 8,
        "{} files for {total} bytes",
        on_disk.len()
    );
    assert_eq!(on_disk.len() as u64, store.stats().segments);
    for (_, len) in &on_disk {
        assert!(
            *len < 64 * KIB as u64 + 4 * KIB as u64,
            "segment of {len} bytes"
        );
    }
    assert_eq!(file_bytes_in(dir.path()), total);
    assert_reads(&store, &values);
}

#[test]
fn removal_deletes_dead_and_compacts_mostly_dead_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), small_segments()).expect("open");
    // Two records of 32 KiB + header fill a 64 KiB segment: ids 100, 101 in segment 0.
    let big: Vec<(TaskId, Vec<u8>)> = (100..102)
        .map(|i| (TaskId(i), random(32 * KIB, i)))
        .collect();
    // Eight records of 8 KiB + header fill one: ids 8k..8k+8 in segment k + 1.
    let small: Vec<(TaskId, Vec<u8>)> = (0..40).map(|i| (TaskId(i), random(8 * KIB, i))).collect();
    for (id, value) in big.iter().chain(&small) {
        store.write(*id, value).expect("write");
    }
    assert_eq!(store.stats().segments, 6);
    let seg0 = dir.path().join(file_name(0));
    let seg1 = dir.path().join(file_name(1));

    // Exactly half dead is kept; a fully dead segment is deleted at once.
    let before = store.stats().file_bytes;
    assert!(store.remove(TaskId(100)));
    assert!(seg0.exists());
    assert_eq!(store.stats().file_bytes, before);
    assert!(store.remove(TaskId(101)));
    assert!(!seg0.exists());
    assert_eq!(
        store.stats().file_bytes,
        before - 2 * (HEADER + 32 * KIB as u64)
    );
    assert_eq!(store.stats().segments, 5);

    // More than half dead is compacted into the active segment.
    for i in 0..4 {
        assert!(store.remove(TaskId(i)));
    }
    assert!(seg1.exists());
    let before = store.stats();
    assert!(store.remove(TaskId(4)));
    assert!(!seg1.exists(), "more than half dead segment not compacted");
    let record = HEADER + 8 * KIB as u64;
    let after = store.stats();
    assert_eq!(after.live_bytes, before.live_bytes - record);
    assert_eq!(
        after.file_bytes,
        before.file_bytes - 8 * record + 3 * record
    );
    assert_eq!(after.file_bytes, file_bytes_in(dir.path()));
    assert_eq!(after.values, 35);
    assert_reads(&store, &small[5..]);
    for i in 0..5 {
        assert!(!store.contains(TaskId(i)));
    }
}

#[test]
fn replacing_everything_keeps_files_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), small_segments()).expect("open");
    let mut values: Vec<(TaskId, Vec<u8>)> = Vec::new();
    for round in 0..20u64 {
        values = (0..30)
            .map(|i| (TaskId(i), random(2 * KIB, round * 100 + i)))
            .collect();
        for (id, value) in &values {
            store.write(*id, value).expect("write");
        }
    }
    let stats = store.stats();
    assert_eq!(stats.values, 30);
    // Sealed segments are at most half dead: files hold at most twice the live bytes
    // plus the active segment.
    assert!(
        stats.file_bytes <= 2 * stats.live_bytes + 64 * KIB as u64,
        "{stats:?}"
    );
    assert_eq!(stats.file_bytes, file_bytes_in(dir.path()));
    assert_reads(&store, &values);
}

#[test]
fn compression_when_it_pays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SpillOptions {
        compress: true,
        ..SpillOptions::default()
    };
    let mut store = SpillFiles::open(dir.path(), options).expect("open");
    let zeros = vec![0u8; MIB];
    let on_disk = store.write(TaskId(1), &zeros).expect("write zeros");
    assert!(on_disk < MIB as u64 / 20, "zeros took {on_disk} bytes");
    assert_eq!(&store.read(TaskId(1)).expect("read")[..], &zeros[..]);

    let noise = random(MIB, 5);
    let on_disk = store.write(TaskId(2), &noise).expect("write noise");
    assert_eq!(on_disk, HEADER + MIB as u64);
    assert_eq!(&store.read(TaskId(2)).expect("read")[..], &noise[..]);
    assert_eq!(file_bytes_in(dir.path()), store.stats().file_bytes);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = SpillFiles::open(dir.path(), SpillOptions::default()).expect("open");
    assert_eq!(
        raw.write(TaskId(1), &zeros).expect("write"),
        HEADER + MIB as u64
    );
}

#[test]
fn max_spill_refuses_and_leaves_store_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SpillOptions {
        max_spill: Some(10_000),
        ..SpillOptions::default()
    };
    let mut store = SpillFiles::open(dir.path(), options).expect("open");
    let a = random(4000, 1);
    let b = random(4000, 2);
    store.write(TaskId(1), &a).expect("first");
    store.write(TaskId(2), &b).expect("second");
    let stats = store.stats();
    let listing = files(dir.path());

    let err = store
        .write(TaskId(3), &random(4000, 3))
        .expect_err("over the cap");
    assert!(
        matches!(err, SpillError::Full { max_spill: 10_000, needed } if needed == HEADER + 4000),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("10000") && message.contains("--max-spill"),
        "{message}"
    );
    assert_eq!(store.stats(), stats);
    assert_eq!(files(dir.path()), listing);
    assert!(!store.contains(TaskId(3)));
    assert_reads(&store, &[(TaskId(1), a), (TaskId(2), b.clone())]);

    // Replacing frees the old value's share of the cap.
    let c = random(5000, 4);
    store.write(TaskId(1), &c).expect("replace within the cap");
    assert_reads(&store, &[(TaskId(1), c), (TaskId(2), b)]);
}

#[test]
fn corrupt_data_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), SpillOptions::default()).expect("open");
    let values: Vec<(TaskId, Vec<u8>)> = (0..3).map(|i| (TaskId(i), random(1000, i))).collect();
    for (id, value) in &values {
        store.write(*id, value).expect("write");
    }
    let path = dir.path().join(file_name(0));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open segment");
    let flip = |offset: u64| {
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).expect("read byte");
        byte[0] ^= 0x01;
        file.write_all_at(&byte, offset).expect("write byte");
    };
    // A byte of the first value's data, and the length field of the second's header.
    flip(HEADER + 500);
    flip(HEADER + 1000 + HEADER + 20);
    for id in [TaskId(0), TaskId(1)] {
        match store.read(id) {
            Err(SpillError::Corrupt { id: bad, path: p }) => {
                assert_eq!((bad, p.as_path()), (id, path.as_path()));
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
    }
    assert_reads(&store, &values[2..]);
}

#[test]
fn clear_and_drop_remove_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), small_segments()).expect("open");
    for i in 0..30 {
        store.write(TaskId(i), &random(5 * KIB, i)).expect("write");
    }
    assert!(files(dir.path()).len() > 1);
    store.clear();
    assert!(files(dir.path()).is_empty());
    assert_eq!(store.stats(), SpillStats::default());
    assert!(!store.contains(TaskId(0)));
    assert!(matches!(store.read(TaskId(0)), Err(SpillError::Missing(_))));

    store.write(TaskId(1), b"again").expect("write after clear");
    assert_eq!(&store.read(TaskId(1)).expect("read")[..], b"again");
    assert_eq!(files(dir.path()).len(), 1);
    drop(store);
    assert!(files(dir.path()).is_empty());
}

#[test]
fn removing_everything_leaves_no_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SpillFiles::open(dir.path(), small_segments()).expect("open");
    for i in 0..50 {
        store.write(TaskId(i), &random(3 * KIB, i)).expect("write");
    }
    for i in 0..50 {
        assert!(store.remove(TaskId(i)));
    }
    assert_eq!(store.stats().file_bytes, 0);
    assert_eq!(file_bytes_in(dir.path()), 0);
    assert!(files(dir.path()).len() <= 1, "{:?}", files(dir.path()));
}

#[test]
fn open_deletes_leftover_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(file_name(0)), b"stale").expect("write");
    fs::write(dir.path().join("notes.txt"), b"keep").expect("write");
    let mut store = SpillFiles::open(dir.path(), SpillOptions::default()).expect("open");
    assert_eq!(files(dir.path()), vec![("notes.txt".to_owned(), 4)]);
    store.write(TaskId(1), b"fresh").expect("write");
    assert_eq!(&store.read(TaskId(1)).expect("read")[..], b"fresh");
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (as `mount -o size=` takes it) on `path`; `None` if
    /// this is not root or mounting fails.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("note: not root; skipping the full-disk test");
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs {
                path: path.to_owned(),
            }),
            other => {
                eprintln!("note: cannot mount a tmpfs ({other:?}); skipping the full-disk test");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            eprintln!("umount {} failed; unmounting lazily", self.path.display());
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Write values of `size(i)` bytes for ids 0, 1, ... until a write fails: the values
/// written, the id that failed and its error.
fn fill(
    store: &mut SpillFiles,
    size: impl Fn(u64) -> usize,
) -> (Vec<(TaskId, Vec<u8>)>, TaskId, SpillError) {
    let mut written = Vec::new();
    for i in 0..10_000u64 {
        let value = random(size(i), i);
        match store.write(TaskId(i), &value) {
            Ok(_) => written.push((TaskId(i), value)),
            Err(e) => return (written, TaskId(i), e),
        }
    }
    panic!("the disk never filled up");
}

/// The files hold exactly the records of `live` and nothing else.
fn assert_only_records(store: &SpillFiles, dir: &Path, live: &[(TaskId, Vec<u8>)]) {
    let records: u64 = live.iter().map(|(_, v)| HEADER + v.len() as u64).sum();
    assert_eq!(store.stats().live_bytes, records);
    assert_eq!(file_bytes_in(dir), store.stats().file_bytes);
    assert_reads(store, live);
}

#[test]
fn full_disk_leaves_store_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mount) = Tmpfs::mount(dir.path(), "1m") else {
        return;
    };
    let root = mount.path.clone();
    let mut store = SpillFiles::open(&root, small_segments()).expect("open");

    let (written, failed, err) = fill(&mut store, |i| 10_000 + (i as usize * 37) % 3000);
    match &err {
        SpillError::Io { path, source, .. } => {
            assert!(path.starts_with(&root), "{err}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
    assert!(!store.contains(failed));
    assert!(written.len() > 20, "only {} values fit", written.len());
    assert_reads(&store, &written);
    // No partial record: the files hold exactly the records written.
    let records: u64 = written.iter().map(|(_, v)| HEADER + v.len() as u64).sum();
    assert_eq!(file_bytes_in(&root), records);
    assert_eq!(store.stats().file_bytes, records);
    assert_eq!(store.stats().live_bytes, records);

    // Dropping the oldest half deletes whole segments.
    let half = written.len() / 2;
    for (id, _) in &written[..half] {
        assert!(store.remove(*id));
    }
    let after_delete = store.stats();
    assert!(after_delete.file_bytes < records, "{after_delete:?}");
    // Dropping two of every three of the rest gets segments compacted.
    let mut kept = Vec::new();
    for (n, (id, value)) in written[half..].iter().enumerate() {
        if n % 3 == 0 {
            kept.push((*id, value.clone()));
        } else {
            assert!(store.remove(*id));
        }
    }
    let after_compact = store.stats();
    assert!(
        after_compact.file_bytes <= 2 * after_compact.live_bytes + 64 * KIB as u64,
        "not compacted: {after_compact:?}"
    );
    assert!(
        after_compact.file_bytes < after_delete.file_bytes / 2,
        "{after_compact:?}"
    );
    assert_eq!(file_bytes_in(&root), after_compact.file_bytes);
    assert_reads(&store, &kept);

    // There is room again.
    for i in 0..10u64 {
        let id = TaskId(10_000 + i);
        let value = random(10_000, 10_000 + i);
        store.write(id, &value).expect("write after freeing space");
        kept.push((id, value));
    }
    assert_reads(&store, &kept);
    drop(store);
    assert!(files(&root).is_empty());
}

#[test]
fn compaction_on_a_full_disk_waits_for_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mount) = Tmpfs::mount(dir.path(), "1m") else {
        return;
    };
    let root = mount.path.clone();
    let mut store = SpillFiles::open(&root, small_segments()).expect("open");
    // Eight values per segment: ids 8k..8k+8 in segment k.
    let (mut live, _, err) = fill(&mut store, |_| 8 * KIB);
    assert!(matches!(err, SpillError::Io { .. }), "{err:?}");
    assert!(live.len() >= 48, "only {} values fit", live.len());

    // Segment 0 becomes mostly dead, but there may be no room to copy its survivors.
    for (id, _) in live.drain(..5) {
        assert!(store.remove(id));
    }
    assert_only_records(&store, &root, &live);

    // Freeing segment 2 whole makes room: compaction goes on.
    live.retain(|(id, _)| !(16..24).contains(&id.as_raw()));
    for i in 16..24 {
        assert!(store.remove(TaskId(i)));
    }
    for i in 0..3u64 {
        let id = TaskId(20_000 + i);
        let value = random(KIB, id.as_raw());
        store.write(id, &value).expect("write after freeing space");
        live.push((id, value));
    }
    assert!(!root.join(file_name(0)).exists(), "segment 0 not compacted");
    assert!(!root.join(file_name(2)).exists(), "segment 2 not deleted");
    assert_only_records(&store, &root, &live);
    assert!(store.stats().file_bytes <= 2 * store.stats().live_bytes + 64 * KIB as u64);
}
