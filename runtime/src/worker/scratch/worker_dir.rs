//! A worker's own directory under the base: created private and locked, removed on
//! drop, and directories of dead workers removed by the next worker on the node.

use super::error::ScratchError;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// The directory under a base that holds the workers' directories.
const SPACE_DIR: &str = "shoal-worker-space";

/// Prefix of each worker's directory name.
const WORKER_PREFIX: &str = "worker-";

/// The file each worker keeps locked while it is alive.
const LOCK_FILE: &str = "lock";

/// The subdirectory for spilled data.
const SPILL_DIR: &str = "spill";

/// At most this many characters of a worker's name go into its directory name.
const MAX_NAME_LEN: usize = 48;

/// A worker's private directory under `<base>/shoal-worker-space/`, removed on drop.
///
/// While the worker lives it holds an exclusive `flock` on the directory's `lock` file.
/// The kernel drops that lock when the process dies, however it dies, so any directory
/// whose lock can be taken belongs to a dead worker and is removed by the next
/// [`WorkerDir::create`] on the node.
#[derive(Debug)]
pub struct WorkerDir {
    path: PathBuf,
    /// The locked `lock` file; open for as long as the directory is in use.
    _lock: File,
}

impl WorkerDir {
    /// Removes stale worker directories under `base`, then creates this worker's:
    /// `<base>/shoal-worker-space/worker-<name>-<pid>-<random>`, with a `spill`
    /// subdirectory.
    pub fn create(base: &Path, name: &str) -> Result<WorkerDir, ScratchError> {
        let space = base.join(SPACE_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&space)
            .map_err(|source| ScratchError::Create {
                path: space.clone(),
                source,
            })?;
        remove_stale(&space);
        let leaf = format!(
            "{WORKER_PREFIX}{}-{}-{:08x}",
            sanitize(name),
            std::process::id(),
            rand::random::<u32>()
        );
        // Built under a hidden name and renamed once locked, so that no other worker's
        // cleanup ever sees a `worker-*` directory whose owner has not locked it yet.
        let staging = space.join(format!(".{leaf}"));
        let path = space.join(&leaf);
        let built = build(&staging).and_then(|lock| {
            fs::rename(&staging, &path).map_err(|source| ScratchError::Create {
                path: path.clone(),
                source,
            })?;
            Ok(lock)
        });
        match built {
            Ok(lock) => {
                debug!("worker scratch directory {}", path.display());
                Ok(WorkerDir { path, _lock: lock })
            }
            Err(err) => {
                let _ = fs::remove_dir_all(&staging);
                Err(err)
            }
        }
    }

    /// This worker's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory for spilled data (it exists).
    pub fn spill_dir(&self) -> PathBuf {
        self.path.join(SPILL_DIR)
    }
}

impl Drop for WorkerDir {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.path) {
            warn!(
                "cannot remove scratch directory {}: {err}",
                self.path.display()
            );
        }
    }
}

/// Makes the directory `dir` with its `spill` subdirectory and returns its locked lock file.
fn build(dir: &Path) -> Result<File, ScratchError> {
    let create = |path: &Path| {
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|source| ScratchError::Create {
                path: path.into(),
                source,
            })
    };
    create(dir)?;
    create(&dir.join(SPILL_DIR))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock_error = |source| ScratchError::Lock {
        path: lock_path.clone(),
        source,
    };
    let lock = File::create(&lock_path).map_err(lock_error)?;
    match try_lock(&lock) {
        Ok(true) => Ok(lock),
        Ok(false) => Err(lock_error(io::ErrorKind::WouldBlock.into())),
        Err(err) if locking_unsupported(&err) => {
            warn!(
                "file locks are not supported for {} ({err}); this worker's directory will \
                 not be recognised as stale if the worker dies",
                lock_path.display()
            );
            Ok(lock)
        }
        Err(err) => Err(lock_error(err)),
    }
}

/// Whether `err` from `flock` means the file system does not do locking (some network
/// file systems); a directory without a lock is simply never cleaned by others.
fn locking_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::ENOLCK | libc::EOPNOTSUPP)
    )
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` if someone holds it.
///
/// `flock` locks belong to the open file description, so a second `open` of the same file
/// conflicts with the first even within one process.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: the descriptor is open for the duration of the call; flock touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Removes every `worker-*` directory in `space` whose owner is dead. Failures are logged
/// and skipped: cleaning is a courtesy and must not stop this worker from starting.
fn remove_stale(space: &Path) {
    let entries = match fs::read_dir(space) {
        Ok(entries) => entries,
        Err(err) => {
            warn!("cannot list {} to clean it: {err}", space.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let is_worker = entry
            .file_name()
            .to_string_lossy()
            .starts_with(WORKER_PREFIX);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_worker && is_dir {
            remove_if_stale(&entry.path());
        }
    }
}

/// Removes the worker directory `dir` if its lock can be taken (or it has no lock file).
fn remove_if_stale(dir: &Path) {
    let lock_path = dir.join(LOCK_FILE);
    // Held until the directory is gone, so that a concurrent cleaner skips it.
    let _lock = match File::open(&lock_path) {
        Ok(file) => match try_lock(&file) {
            Ok(true) => Some(file),
            Ok(false) => return,
            Err(err) => {
                debug!("cannot lock {}: {err}; leaving it", lock_path.display());
                return;
            }
        },
        // Workers lock before their directory gets its `worker-` name, so no live
        // owner lacks a lock file: this one died while its directory was being removed.
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            debug!("cannot open {}: {err}; leaving it", lock_path.display());
            return;
        }
    };
    let bytes = tree_size(dir);
    match fs::remove_dir_all(dir) {
        Ok(()) => info!(
            "removed stale worker directory {} ({bytes} bytes)",
            dir.display()
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => warn!(
            "cannot remove stale worker directory {}: {err}",
            dir.display()
        ),
    }
}

/// Total size in bytes of the files under `dir` (symbolic links not followed).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let meta = entry.path().symlink_metadata().ok()?;
            Some(if meta.is_dir() {
                tree_size(&entry.path())
            } else {
                meta.len()
            })
        })
        .sum()
}

/// `name` reduced to characters safe in a file name, at most [`MAX_NAME_LEN`] of them.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    if clean.is_empty() {
        "unnamed".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::scratch::{choose_base, FsKind};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn worker_dir_is_private_locked_and_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let worker = WorkerDir::create(base.path(), "tcp://10.0.0.1:7000").unwrap();
        let path = worker.path().to_path_buf();
        let leaf = path.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = format!("worker-tcp___10.0.0.1_7000-{}-", std::process::id());
        assert!(leaf.starts_with(&prefix), "{leaf}");
        assert_eq!(path.parent().unwrap(), base.path().join(SPACE_DIR));
        assert!(worker.spill_dir().is_dir());
        for dir in [path.parent().unwrap(), &path] {
            let mode = fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", dir.display());
        }
        let second_open = File::open(path.join(LOCK_FILE)).unwrap();
        assert!(!try_lock(&second_open).unwrap());
        fs::write(worker.spill_dir().join("data"), b"spilled").unwrap();
        drop(worker);
        assert!(!path.exists());
        assert!(base.path().join(SPACE_DIR).is_dir());
    }

    #[test]
    fn stale_directories_are_removed_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let live = WorkerDir::create(base.path(), "live").unwrap();
        let space = base.path().join(SPACE_DIR);
        let stale = space.join("worker-old-1-x");
        fs::create_dir_all(stale.join(SPILL_DIR)).unwrap();
        File::create(stale.join(LOCK_FILE)).unwrap();
        fs::write(stale.join(SPILL_DIR).join("segment"), vec![0; 1000]).unwrap();
        let unlocked = space.join("worker-old-2-y");
        fs::create_dir(&unlocked).unwrap();
        let other = space.join("not-a-worker");
        fs::create_dir(&other).unwrap();

        let next = WorkerDir::create(base.path(), "next").unwrap();
        assert!(!stale.exists());
        assert!(!unlocked.exists());
        assert!(other.exists());
        assert!(live.path().is_dir());
        assert!(next.path().is_dir());
        assert_ne!(live.path(), next.path());
    }

    #[test]
    fn a_directory_being_cleaned_elsewhere_is_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let space = base.path().join(SPACE_DIR);
        let busy = space.join("worker-old-1-x");
        fs::create_dir_all(&busy).unwrap();
        let held = File::create(busy.join(LOCK_FILE)).unwrap();
        assert!(try_lock(&held).unwrap());
        let _worker = WorkerDir::create(base.path(), "w").unwrap();
        assert!(busy.exists());
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("a/b c:1"), "a_b_c_1");
        assert_eq!(sanitize(""), "unnamed");
        assert_eq!(sanitize(&"x".repeat(100)).len(), MAX_NAME_LEN);
        assert_eq!(sanitize("../.."), ".._..");
    }

    #[test]
    fn worker_dir_on_tmpfs() {
        let shm = Path::new("/dev/shm");
        if !matches!(FsKind::of(shm), Ok(FsKind::Local("tmpfs"))) {
            return;
        }
        let base = tempfile::tempdir_in(shm).unwrap();
        let (chosen, kind) = choose_base(Some(base.path()), false).unwrap();
        assert_eq!(kind, FsKind::Local("tmpfs"));
        let worker = WorkerDir::create(&chosen, "shm").unwrap();
        assert!(worker.spill_dir().is_dir());
    }
}
