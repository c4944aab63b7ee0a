//! Spill store throughput next to raw sequential I/O in the same directory, measured in
//! the same run. Writes include an fsync at the end; the page cache is dropped for the
//! files (`posix_fadvise(DONTNEED)`) before reading back, so reads come from the disk.
//! Raw and spill rounds alternate; the best of three of each is printed as one JSON line.
//!
//! `spill_throughput DIR [TOTAL_MiB] [VALUE_MiB]`

use shoal_comm::ids::TaskId;
use shoal_runtime::worker::spill::{SpillFiles, SpillOptions};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// Rounds of each measurement; the best is reported.
const ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        anyhow::bail!("usage: spill_throughput DIR [TOTAL_MiB] [VALUE_MiB]");
    };
    let total_mib: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1024);
    let value_mib: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir = Path::new(dir);
    let value = incompressible(value_mib << 20);
    let count = total_mib / value_mib;
    let bytes = (count * value.len()) as f64;

    // Interleaved rounds, best of each: the disk's own variation hits both sides alike.
    let (mut raw_write, mut raw_read, mut spill_write, mut spill_read) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let (w, r) = raw_round(dir, &value, count)?;
        raw_write = raw_write.min(w);
        raw_read = raw_read.min(r);
        let (w, r) = spill_round(dir, &value, count)?;
        spill_write = spill_write.min(w);
        spill_read = spill_read.min(r);
    }
    let mbps = |seconds: f64| bytes / seconds / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "bytes": bytes, "value_bytes": value.len(),
            "raw_write_mbps": mbps(raw_write), "spill_write_mbps": mbps(spill_write),
            "raw_read_mbps": mbps(raw_read), "spill_read_mbps": mbps(spill_read),
        })
    );
    Ok(())
}

/// Write `count` copies of `value` to one file with fsync, then read them back cold:
/// (write seconds, read seconds).
fn raw_round(dir: &Path, value: &[u8], count: usize) -> anyhow::Result<(f64, f64)> {
    let raw_dir = tempfile::tempdir_in(dir)?;
    let raw_path = raw_dir.path().join("raw");
    let start = Instant::now();
    let mut raw = File::create(&raw_path)?;
    for _ in 0..count {
        raw.write_all(value)?;
    }
    raw.sync_all()?;
    let write = start.elapsed().as_secs_f64();
    drop_cache(&raw_path)?;
    let start = Instant::now();
    let mut raw = File::open(&raw_path)?;
    for _ in 0..count {
        // A fresh buffer per value, as any store that hands values out must allocate.
        let mut buffer = vec![0u8; value.len()];
        raw.read_exact(&mut buffer)?;
        std::hint::black_box(&buffer);
    }
    Ok((write, start.elapsed().as_secs_f64()))
}

/// The same through the spill store: (write seconds, read seconds).
fn spill_round(dir: &Path, value: &[u8], count: usize) -> anyhow::Result<(f64, f64)> {
    let spill_dir = tempfile::tempdir_in(dir)?;
    let mut spill = SpillFiles::open(spill_dir.path(), SpillOptions::default())?;
    let start = Instant::now();
    for i in 0..count {
        spill.write(TaskId(i as u64), value)?;
    }
    for_each_file(spill_dir.path(), |f| f.sync_all())?;
    let write = start.elapsed().as_secs_f64();
    for_each_file(spill_dir.path(), advise_dontneed)?;
    let start = Instant::now();
    for i in 0..count {
        let back = spill.read(TaskId(i as u64))?;
        anyhow::ensure!(back.len() == value.len(), "value {i} came back short");
    }
    Ok((write, start.elapsed().as_secs_f64()))
}

/// Bytes that do not compress (xorshift).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn for_each_file(
    dir: &Path,
    mut f: impl FnMut(&File) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        f(&File::open(entry?.path())?)?;
    }
    Ok(())
}

fn drop_cache(path: &Path) -> std::io::Result<()> {
    advise_dontneed(&File::open(path)?)
}

fn advise_dontneed(file: &File) -> std::io::Result<()> {
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps open.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}
