//! Choosing a base directory for scratch space and owning a per-worker directory in it.

use super::fs_kind::FsKind;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// Environment variables naming node-local scratch, in order of preference.
const ENV_CANDIDATES: &[&str] = &["TMPDIR", "SLURM_TMPDIR"];

/// Conventional node-local directories, tried after the environment.
const FIXED_CANDIDATES: &[&str] = &["/local", "/scratch/local", "/tmp"];

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

/// Why a scratch directory cannot be set up. Every message names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The chosen directory is on a network or parallel file system.
    #[error(
        "refusing to use {path} for scratch space: it is on {kind}, a network or parallel \
         file system; spilling there is slow and loads file servers shared by every user of \
         the cluster. Pass --local-directory with a directory on node-local storage (e.g. \
         $TMPDIR or /tmp on the compute node), or --allow-network-spill to use it anyway"
    )]
    NetworkFileSystem {
        /// The refused directory.
        path: PathBuf,
        /// Its file system.
        kind: FsKind,
    },
    /// No candidate directory is usable.
    #[error(
        "no node-local directory for scratch space: {}. Pass --local-directory with a \
         writable directory on node-local storage",
        list_rejected(.rejected)
    )]
    NoLocalDirectory {
        /// Each candidate tried and why it was not taken.
        rejected: Vec<Rejected>,
    },
    /// A directory cannot be created.
    #[error(
        "cannot create {path}: {source}; check that you may write there (another user may \
         own it) or choose another place with --local-directory"
    )]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file cannot be created in the directory.
    #[error(
        "cannot write in {path}: {source}; make it writable or choose another place with \
         --local-directory"
    )]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `statfs` failed.
    #[error(
        "cannot tell which file system {path} is on: {source}; choose another place with \
         --local-directory"
    )]
    FsType {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The worker's lock file cannot be created or locked.
    #[error(
        "cannot create and lock {path}: {source}; choose another place with \
         --local-directory"
    )]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A candidate directory that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The candidate.
    pub path: PathBuf,
    /// Why it was not taken.
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.reason)
    }
}

/// "a (why); b (why)", or a note that there was nothing to try.
fn list_rejected(rejected: &[Rejected]) -> String {
    if rejected.is_empty() {
        return "no candidates".into();
    }
    let parts: Vec<String> = rejected.iter().map(Rejected::to_string).collect();
    format!("tried {}", parts.join("; "))
}

/// Existing directories that may hold node-local scratch, best first: `$TMPDIR`,
/// `$SLURM_TMPDIR`, `/local`, `/scratch/local`, `/tmp`.
pub fn candidates() -> Vec<PathBuf> {
    candidates_with(|name| std::env::var_os(name))
}

/// [`candidates`] with the environment read through `env`.
fn candidates_with(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    proposed_with(env)
        .into_iter()
        .filter(|path| path.is_dir())
        .collect()
}

/// Every candidate path, whether it exists or not, without repeats.
fn proposed_with(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let from_env = ENV_CANDIDATES
        .iter()
        .filter_map(|name| env(name))
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let fixed = FIXED_CANDIDATES.iter().map(PathBuf::from);
    let mut paths: Vec<PathBuf> = Vec::new();
    for path in from_env.chain(fixed) {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// The base directory for scratch space and its file system.
///
/// With `explicit` (`--local-directory`), that directory, created if missing; it is
/// refused if it is on a network file system unless `allow_network`. Without, the first of
/// [`candidates`] that is a writable directory not on a network file system (one of an
/// unrecognised type is taken, with a warning).
pub fn choose_base(
    explicit: Option<&Path>,
    allow_network: bool,
) -> Result<(PathBuf, FsKind), ScratchError> {
    choose_base_with(
        explicit,
        allow_network,
        |name| std::env::var_os(name),
        FsKind::of,
    )
}

/// [`choose_base`] with the environment and the file-system lookup passed in.
fn choose_base_with(
    explicit: Option<&Path>,
    allow_network: bool,
    env: impl Fn(&str) -> Option<OsString>,
    kind_of: impl Fn(&Path) -> io::Result<FsKind>,
) -> Result<(PathBuf, FsKind), ScratchError> {
    match explicit {
        Some(path) => explicit_base(path, allow_network, kind_of),
        None => first_usable(&proposed_with(env), kind_of),
    }
}

/// The explicitly configured base `path`, checked.
fn explicit_base(
    path: &Path,
    allow_network: bool,
    kind_of: impl Fn(&Path) -> io::Result<FsKind>,
) -> Result<(PathBuf, FsKind), ScratchError> {
    fs::create_dir_all(path).map_err(|source| ScratchError::Create {
        path: path.into(),
        source,
    })?;
    let kind = kind_of(path).map_err(|source| ScratchError::FsType {
        path: path.into(),
        source,
    })?;
    match kind {
        FsKind::Network(_) if !allow_network => {
            return Err(ScratchError::NetworkFileSystem {
                path: path.into(),
                kind,
            })
        }
        FsKind::Network(_) => warn!(
            "scratch space in {} is on {kind}, a network file system, as allowed by \
             --allow-network-spill; spilling will be slow and load the shared servers",
            path.display()
        ),
        FsKind::Unknown(_) => warn!(
            "scratch space in {} is on an {kind}; assuming it is node-local",
            path.display()
        ),
        FsKind::Local(_) => {}
    }
    probe_writable(path).map_err(|source| ScratchError::NotWritable {
        path: path.into(),
        source,
    })?;
    Ok((path.into(), kind))
}

/// Checks, without creating anything, that `path` can become a base directory for scratch
/// space: it is a writable directory, or the first of its ancestors that exists is, and that
/// directory is not on a network file system unless `allow_network`. Commands run this
/// before they start any process, so that a worker never fails on its directory later.
///
/// # Errors
/// The [`ScratchError`] [`choose_base`] would return for `path`.
pub fn check_base(path: &Path, allow_network: bool) -> Result<FsKind, ScratchError> {
    check_base_with(path, allow_network, FsKind::of)
}

fn check_base_with(
    path: &Path,
    allow_network: bool,
    kind_of: impl Fn(&Path) -> io::Result<FsKind>,
) -> Result<FsKind, ScratchError> {
    let mut existing = path;
    loop {
        match fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(ScratchError::Create {
                    path: path.into(),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is not a directory", existing.display()),
                    ),
                })
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match existing.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(parent) => existing = parent,
                    None => {
                        existing = Path::new(".");
                        break;
                    }
                }
            }
            Err(source) => {
                return Err(ScratchError::Create {
                    path: path.into(),
                    source,
                })
            }
        }
    }
    let kind = kind_of(existing).map_err(|source| ScratchError::FsType {
        path: path.into(),
        source,
    })?;
    if kind.is_network() && !allow_network {
        return Err(ScratchError::NetworkFileSystem {
            path: path.into(),
            kind,
        });
    }
    probe_writable(existing).map_err(|source| {
        if existing == path {
            ScratchError::NotWritable {
                path: path.into(),
                source,
            }
        } else {
            ScratchError::Create {
                path: path.into(),
                source: io::Error::new(
                    source.kind(),
                    format!(
                        "{} cannot be written ({})",
                        existing.display(),
                        source.kind()
                    ),
                ),
            }
        }
    })?;
    Ok(kind)
}

/// The first of `paths` that is a writable directory not on a network file system.
fn first_usable(
    paths: &[PathBuf],
    kind_of: impl Fn(&Path) -> io::Result<FsKind>,
) -> Result<(PathBuf, FsKind), ScratchError> {
    let mut rejected = Vec::new();
    for path in paths {
        match examine(path, &kind_of) {
            Ok(kind) => {
                if let FsKind::Unknown(_) = kind {
                    warn!(
                        "scratch space in {} is on an {kind}; assuming it is node-local",
                        path.display()
                    );
                }
                debug!("scratch base {} ({kind})", path.display());
                return Ok((path.clone(), kind));
            }
            Err(reason) => rejected.push(Rejected {
                path: path.clone(),
                reason,
            }),
        }
    }
    Err(ScratchError::NoLocalDirectory { rejected })
}

/// The file system of candidate `path` if it can take scratch space, or why not.
fn examine(path: &Path, kind_of: impl Fn(&Path) -> io::Result<FsKind>) -> Result<FsKind, String> {
    match fs::metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err("does not exist".into()),
        Err(err) => return Err(format!("cannot be read: {err}")),
        Ok(meta) if !meta.is_dir() => return Err("not a directory".into()),
        Ok(_) => {}
    }
    let kind = kind_of(path).map_err(|err| format!("file-system type unknown: {err}"))?;
    if kind.is_network() {
        return Err(format!("on {kind}, a network file system"));
    }
    probe_writable(path).map_err(|err| format!("not writable: {err}"))?;
    Ok(kind)
}

/// Creates and deletes a file in `dir`: the only reliable test that it can be written
/// (permissions, read-only mounts, quotas, root's exemption from `access`).
fn probe_writable(dir: &Path) -> io::Result<()> {
    tempfile::Builder::new()
        .prefix(".shoal-probe-")
        .tempfile_in(dir)
        .map(drop)
}

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
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    /// An environment lookup from a fixed table.
    fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn nfs(_: &Path) -> io::Result<FsKind> {
        Ok(FsKind::from_magic(0x6969))
    }

    #[test]
    fn bases_are_checked_without_creating_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("new/base");
        assert!(!check_base(&base, false).unwrap().is_network());
        assert!(!dir.path().join("new").exists(), "nothing is created");
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let e = check_base(&file.join("sub"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a directory") && e.contains("--local-directory"),
            "{e}"
        );
        let e = check_base_with(&base, false, nfs).unwrap_err().to_string();
        assert!(e.contains("--allow-network-spill"), "{e}");
        assert!(check_base_with(&base, true, nfs).is_ok());
        let e = check_base(Path::new("/proc/nope"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc/nope"), "{e}");
    }

    #[test]
    fn explicit_local_base_is_created_and_used() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("new/base");
        let (chosen, kind) = choose_base(Some(&base), false).unwrap();
        assert_eq!(chosen, base);
        assert!(base.is_dir());
        assert!(!kind.is_network(), "{kind}");
    }

    #[test]
    fn explicit_network_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = choose_base_with(Some(dir.path()), false, env_of(&[]), nfs).unwrap_err();
        assert!(matches!(err, ScratchError::NetworkFileSystem { .. }));
        let message = err.to_string();
        println!("{message}");
        assert!(message.contains(&dir.path().display().to_string()));
        assert!(message.contains("NFS"));
        assert!(message.contains("--allow-network-spill"));
        assert!(message.contains("--local-directory"));
    }

    #[test]
    fn explicit_network_base_is_allowed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let (chosen, kind) = choose_base_with(Some(dir.path()), true, env_of(&[]), nfs).unwrap();
        assert_eq!(chosen, dir.path());
        assert_eq!(kind, FsKind::Network("NFS"));
    }

    #[test]
    fn candidates_honour_the_environment_first() {
        let tmpdir = tempfile::tempdir().unwrap();
        let slurm = tempfile::tempdir().unwrap();
        let env = env_of(&[("TMPDIR", tmpdir.path()), ("SLURM_TMPDIR", slurm.path())]);
        let found = candidates_with(env);
        assert_eq!(found[..2], [tmpdir.path(), slurm.path()]);
        if Path::new("/tmp").is_dir() {
            assert_eq!(found.last().unwrap(), Path::new("/tmp"));
        }
    }

    #[test]
    fn candidates_skip_missing_and_repeated_paths() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let env = env_of(&[("TMPDIR", &missing), ("SLURM_TMPDIR", Path::new("/tmp"))]);
        let found = candidates_with(env);
        assert!(!found.contains(&missing));
        let tmps = found.iter().filter(|p| *p == Path::new("/tmp")).count();
        assert!(tmps <= 1);
        let env = env_of(&[("TMPDIR", Path::new(""))]);
        assert!(!proposed_with(env).contains(&PathBuf::new()));
    }

    #[test]
    fn auto_choice_skips_network_candidates() {
        let tmpdir = tempfile::tempdir().unwrap();
        let slurm = tempfile::tempdir().unwrap();
        let env = env_of(&[("TMPDIR", tmpdir.path()), ("SLURM_TMPDIR", slurm.path())]);
        let network_tmpdir = |path: &Path| {
            if path == tmpdir.path() {
                nfs(path)
            } else {
                FsKind::of(path)
            }
        };
        let (chosen, kind) = choose_base_with(None, false, env, network_tmpdir).unwrap();
        assert_eq!(chosen, slurm.path());
        assert!(!kind.is_network());
    }

    #[test]
    fn auto_choice_lists_every_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let env = env_of(&[("TMPDIR", &missing), ("SLURM_TMPDIR", dir.path())]);
        let err = choose_base_with(None, false, env, nfs).unwrap_err();
        let message = err.to_string();
        println!("{message}");
        let ScratchError::NoLocalDirectory { rejected } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(rejected[0].path, missing);
        assert_eq!(rejected[0].reason, "does not exist");
        assert_eq!(rejected[1].path, dir.path());
        assert!(rejected[1].reason.contains("NFS"));
        assert_eq!(rejected.len(), 2 + FIXED_CANDIDATES.len());
        assert!(message.contains(&missing.display().to_string()));
        assert!(message.contains("--local-directory"));
    }

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
