//! The state file `F.jobs.json` next to scheduler file `F`: the jobs submitted for one
//! cluster, so that `status`, `scale` and `cancel` work from any later shell. Mode 0600,
//! replaced atomically, changed under an exclusive lock on `F.jobs.lock`; job scripts are
//! written into `F.jobs.d/`.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shoal_jobqueue::{JobId, System};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a submission is made of, kept in the state file so `scale` can submit more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recipe {
    /// The command-line pairs.
    pub params: Vec<(String, String)>,
    /// `--config`, if given.
    pub config: Option<PathBuf>,
    /// The command jobs start shoal with.
    pub shoal: String,
}

/// One submitted job, or one element of an array.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRecord {
    /// The id cancel and status commands take (an element id for arrays).
    pub job: JobId,
    /// The id the submission returned (the array's).
    pub array: String,
    /// Seconds since the epoch.
    pub submitted: u64,
}

/// The state file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub version: u32,
    pub system: System,
    /// How the worker jobs were made (for `scale`); `None` before any were submitted.
    pub workers_recipe: Option<Recipe>,
    pub scheduler_job: Option<JobRecord>,
    pub workers: Vec<JobRecord>,
}

pub const STATE_VERSION: u32 = 1;

impl State {
    /// An empty state for `system`.
    pub fn new(system: System) -> State {
        State {
            version: STATE_VERSION,
            system,
            workers_recipe: None,
            scheduler_job: None,
            workers: Vec::new(),
        }
    }
}

pub fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `F.jobs.json` next to scheduler file `F`.
pub fn state_path(scheduler_file: &Path) -> PathBuf {
    with_suffix(scheduler_file, ".jobs.json")
}

/// `F.jobs.lock`.
pub fn lock_path(scheduler_file: &Path) -> PathBuf {
    with_suffix(scheduler_file, ".jobs.lock")
}

/// `F.jobs.d/`, where job scripts are written before submission.
pub fn scripts_dir(scheduler_file: &Path) -> PathBuf {
    with_suffix(scheduler_file, ".jobs.d")
}

pub fn load_state(path: &Path) -> anyhow::Result<Option<State>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: State = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a shoal job list; remove it if no jobs are running",
            path.display()
        )
    })?;
    if state.version != STATE_VERSION {
        bail!(
            "{} has version {}, this shoal reads version {STATE_VERSION}",
            path.display(),
            state.version
        );
    }
    Ok(Some(state))
}

/// Writes `state` to `path` atomically (a 0600 temporary file renamed over it).
pub fn save_state(path: &Path, state: &State) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = with_suffix(path, &format!(".tmp{}", std::process::id()));
    let text = serde_json::to_vec_pretty(state)?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the state file, the lock file and the job scripts of scheduler file `F` (the
/// caller holds the lock; a process waiting for it then works on the unlinked file and
/// finds no state).
pub fn remove_state(scheduler_file: &Path) -> anyhow::Result<()> {
    let path = state_path(scheduler_file);
    fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    let dir = scripts_dir(scheduler_file);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
    let lock = lock_path(scheduler_file);
    match fs::remove_file(&lock) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", lock.display())),
    }
}

/// An exclusive lock on `F.jobs.lock`, released when dropped (the file closes).
pub struct StateLock(#[allow(dead_code)] fs::File);

pub fn lock_state(scheduler_file: &Path) -> anyhow::Result<StateLock> {
    use std::os::fd::AsRawFd;
    let path = lock_path(scheduler_file);
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock on an open descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(StateLock(file))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(super) fn record(id: &str, submitted: u64) -> JobRecord {
    JobRecord {
        job: JobId {
            id: id.into(),
            number: 1,
            cluster: None,
        },
        array: "1".into(),
        submitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("s.json");
        let path = state_path(&file);
        assert!(path.ends_with("s.json.jobs.json"));
        let state = State {
            version: STATE_VERSION,
            system: System::Slurm,
            workers_recipe: None,
            scheduler_job: Some(record("7", 1)),
            workers: vec![record("8_1", 2)],
        };
        save_state(&path, &state).unwrap_or_else(|e| panic!("{e}"));
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let back = load_state(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(state));
    }

    #[test]
    fn remove_state_leaves_nothing_next_to_the_scheduler_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("s.json");
        let lock = lock_state(&file).unwrap_or_else(|e| panic!("{e}"));
        save_state(&state_path(&file), &State::new(System::Slurm))
            .unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(scripts_dir(&file)).unwrap_or_else(|e| panic!("{e}"));
        fs::write(scripts_dir(&file).join("workers-1.sh"), "#!/bin/sh\n")
            .unwrap_or_else(|e| panic!("{e}"));
        remove_state(&file).unwrap_or_else(|e| panic!("{e}"));
        drop(lock);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
