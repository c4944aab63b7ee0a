//! The scheduler file: how workers and clients find a scheduler and learn its secret.
//!
//! It carries the keys Dask writes (`type`, `id`, `address`, `services`, `started`,
//! `n_workers`, `total_threads`, `total_memory`, `workers`) plus `protocol_version` and
//! `secret`. It is written atomically (temporary file in the same directory, fsync,
//! rename) with mode 0600, and removed on clean shutdown. Readers expand `~`, wait up to a
//! timeout for the file to appear and parse, and say precisely what is wrong otherwise.

use serde::{Deserialize, Serialize};
use shoal_comm::{Secret, PROTOCOL_VERSION};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a scheduler file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerFile {
    /// Always `Scheduler` (the field Dask's scheduler files call `type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The scheduler's unique id for this run.
    pub id: String,
    /// The address workers and clients connect to.
    pub address: String,
    /// Other ports by service name (`dashboard`).
    pub services: serde_json::Map<String, serde_json::Value>,
    /// When the scheduler started (Unix seconds).
    pub started: f64,
    /// Dask's worker count: 0, the file is written once, before any worker joins.
    pub n_workers: u64,
    /// Dask's thread total: 0, as `n_workers`.
    pub total_threads: u64,
    /// Dask's memory total: 0, as `n_workers`.
    pub total_memory: u64,
    /// Dask's workers by address: empty, as `n_workers`.
    pub workers: serde_json::Map<String, serde_json::Value>,
    /// The wire protocol version the scheduler speaks.
    pub protocol_version: u32,
    /// Hex-encoded cluster secret.
    pub secret: String,
    /// Process id of the scheduler, for tools that stop it.
    #[serde(default)]
    pub pid: u32,
}

impl SchedulerFile {
    /// A file describing a scheduler that just started.
    pub fn new(id: &str, address: &str, secret: &Secret) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        SchedulerFile {
            kind: "Scheduler".into(),
            id: id.into(),
            address: address.into(),
            services: Default::default(),
            started,
            n_workers: 0,
            total_threads: 0,
            total_memory: 0,
            workers: Default::default(),
            protocol_version: PROTOCOL_VERSION,
            secret: secret.to_hex(),
            pid: std::process::id(),
        }
    }

    /// The secret, decoded.
    pub fn secret(&self, path: &Path) -> Result<Secret, SchedulerFileError> {
        Secret::from_hex(&self.secret).map_err(|e| SchedulerFileError::Malformed {
            path: path.to_owned(),
            problem: format!("field `secret` is not a hex string ({e})"),
        })
    }
}

/// What can be wrong with a scheduler file.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerFileError {
    /// The file did not appear within the timeout.
    #[error("scheduler file {} does not exist (waited {waited:?}): start the scheduler first (`shoal scheduler --scheduler-file {}`), or check the path", path.display(), path.display())]
    Missing {
        /// The file's path.
        path: PathBuf,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The file exists but never became valid JSON within the timeout.
    #[error("scheduler file {} is not valid JSON after waiting {waited:?} ({problem}); a scheduler that crashed while writing it may have left it: delete it and restart the scheduler", path.display())]
    NotJson {
        /// The file's path.
        path: PathBuf,
        /// How long it was waited for.
        waited: Duration,
        /// What the JSON parser said.
        problem: String,
    },
    /// Valid JSON without the fields shoal needs.
    #[error("scheduler file {} is malformed: {problem}; it was not written by a running shoal scheduler (Dask's scheduler files carry no secret): restart the scheduler to rewrite it", path.display())]
    Malformed {
        /// The file's path.
        path: PathBuf,
        /// What is missing or wrong.
        problem: String,
    },
    /// The file describes a scheduler that no longer runs.
    #[error("scheduler file {} is stale: {problem}; the scheduler that wrote it (id {id}) is gone: delete the file and start a new scheduler", path.display())]
    Stale {
        /// The file's path.
        path: PathBuf,
        /// The id of the scheduler that wrote it.
        id: String,
        /// How it was found stale.
        problem: String,
    },
    /// Reading or writing failed.
    #[error("cannot {action} scheduler file {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`).
        action: &'static str,
        /// The file's path.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Expand a leading `~` to the home directory.
pub fn expand_tilde(path: &Path) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path.to_owned();
    };
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(rest),
        None => path.to_owned(),
    }
}

/// Write the file atomically with mode 0600.
///
/// # Errors
/// The directory is missing or not writable.
pub fn write(path: &Path, file: &SchedulerFile) -> Result<(), SchedulerFileError> {
    let path = expand_tilde(path);
    let io = |action, source| SchedulerFileError::Io {
        action,
        path: path.clone(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".shoal-scheduler-")
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file next to", e))?;
    // tempfile creates files with mode 0600 already; make it explicit.
    set_owner_only(tmp.path()).map_err(|e| io("restrict permissions of", e))?;
    let text =
        serde_json::to_vec_pretty(file).map_err(|e| io("encode", std::io::Error::other(e)))?;
    tmp.write_all(&text).map_err(|e| io("write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    tmp.persist(&path)
        .map_err(|e| io("rename into place", e.error))?;
    Ok(())
}

fn set_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Remove the file if it still describes the scheduler `id`.
pub fn remove_if_ours(path: &Path, id: &str) {
    let path = expand_tilde(path);
    if let Ok(text) = std::fs::read(&path) {
        if let Ok(file) = serde_json::from_slice::<SchedulerFile>(&text) {
            if file.id == id {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Read the file, waiting up to `timeout` for it to exist and parse.
///
/// # Errors
/// [`SchedulerFileError::Missing`], [`SchedulerFileError::NotJson`] or
/// [`SchedulerFileError::Malformed`], each naming the file.
pub fn read(path: &Path, timeout: Duration) -> Result<SchedulerFile, SchedulerFileError> {
    let path = expand_tilde(path);
    let start = Instant::now();
    loop {
        let waited = start.elapsed();
        let give_up = waited >= timeout;
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if give_up {
                    return Err(SchedulerFileError::Missing { path, waited });
                }
            }
            Err(e) => {
                return Err(SchedulerFileError::Io {
                    action: "read",
                    path,
                    source: e,
                })
            }
            Ok(bytes) => match from_bytes(&path, &bytes, waited) {
                Err(SchedulerFileError::NotJson { .. }) if !give_up => {}
                result => return result,
            },
        }
        std::thread::sleep(
            Duration::from_millis(10)
                .min(timeout.saturating_sub(waited))
                .max(Duration::from_millis(1)),
        );
    }
}

/// Parse the bytes of the scheduler file at `path` (read after waiting `waited`).
///
/// # Errors
/// [`SchedulerFileError::NotJson`] or [`SchedulerFileError::Malformed`].
pub fn from_bytes(
    path: &Path,
    bytes: &[u8],
    waited: Duration,
) -> Result<SchedulerFile, SchedulerFileError> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => Err(SchedulerFileError::NotJson {
            path: path.to_owned(),
            waited,
            problem: e.to_string(),
        }),
        Ok(value) => parse(path, value),
    }
}

fn parse(path: &Path, value: serde_json::Value) -> Result<SchedulerFile, SchedulerFileError> {
    let file: SchedulerFile =
        serde_json::from_value(value).map_err(|e| SchedulerFileError::Malformed {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
    if file.protocol_version != PROTOCOL_VERSION {
        return Err(SchedulerFileError::Malformed {
            path: path.to_owned(),
            problem: format!(
                "it was written by a scheduler speaking protocol version {}, this shoal speaks version {PROTOCOL_VERSION}",
                file.protocol_version
            ),
        });
    }
    file.secret(path)?;
    if !file.address.starts_with("tcp://") {
        return Err(SchedulerFileError::Malformed {
            path: path.to_owned(),
            problem: format!(
                "address {:?} is not of the form tcp://host:port",
                file.address
            ),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> SchedulerFile {
        let mut file = SchedulerFile::new("Scheduler-1", "tcp://127.0.0.1:1234", &Secret::random());
        // JSON keeps about 16 significant digits: a time that survives the round trip.
        file.started = 1_795_327_647.5;
        file
    }

    #[test]
    fn written_file_round_trips_owner_only_with_dask_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let file = sample();
        write(&path, &file).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path, Duration::ZERO).unwrap(), file);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for key in [
            "type",
            "id",
            "address",
            "services",
            "started",
            "n_workers",
            "total_threads",
            "total_memory",
            "workers",
            "secret",
            "protocol_version",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        remove_if_ours(&path, "Scheduler-other");
        assert!(path.exists());
        remove_if_ours(&path, "Scheduler-1");
        assert!(!path.exists());
    }

    #[test]
    fn each_bad_file_has_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let err = read(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, SchedulerFileError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("does not exist"));
        std::fs::write(&path, "{\"type\": \"Sched").unwrap();
        let err = read(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, SchedulerFileError::NotJson { .. }), "{err}");
        std::fs::write(&path, r#"{"type": "Scheduler", "id": "x", "address": "tcp://1.2.3.4:5", "services": {}, "started": 1.0, "n_workers": 0, "total_threads": 0, "total_memory": 0, "workers": {}}"#).unwrap();
        let err = read(&path, Duration::ZERO).unwrap_err();
        assert!(
            err.to_string().contains("missing field `protocol_version`"),
            "{err}"
        );
        let mut f = sample();
        f.secret = "zz".into();
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        assert!(read(&path, Duration::ZERO)
            .unwrap_err()
            .to_string()
            .contains("`secret` is not a hex string"));
        let mut f = sample();
        f.protocol_version += 1;
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        assert!(read(&path, Duration::ZERO)
            .unwrap_err()
            .to_string()
            .contains("protocol version"));
    }

    #[test]
    fn reader_waits_for_a_file_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.json");
        let file = sample();
        let (p, f) = (path.clone(), file.clone());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            write(&p, &f).unwrap();
        });
        assert_eq!(read(&path, Duration::from_secs(5)).unwrap(), file);
        writer.join().unwrap();
    }

    #[test]
    fn fuzz_scheduler_file_reader() {
        let path = Path::new("/fuzz/s.json");
        let seeds: Vec<Vec<u8>> = [sample(), {
            let mut f = sample();
            f.workers
                .insert("w".into(), serde_json::json!({"nthreads": 2}));
            f
        }]
        .iter()
        .map(|f| serde_json::to_vec_pretty(f).unwrap())
        .collect();
        shoal_comm::fuzz::run("scheduler-file", 61, &seeds, |input| {
            if let Ok(file) = from_bytes(path, input, Duration::ZERO) {
                // What a reader accepts, a client can use: a secret and a tcp address.
                assert!(file.secret(path).is_ok());
                assert!(file.address.starts_with("tcp://"));
            }
        });
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            expand_tilde(Path::new("~/a.json")),
            PathBuf::from(home).join("a.json")
        );
        assert_eq!(expand_tilde(Path::new("/x/~")), PathBuf::from("/x/~"));
    }
}
