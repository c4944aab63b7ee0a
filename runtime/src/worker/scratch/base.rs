//! Choosing and checking the base directory for scratch space: an explicit
//! `--local-directory`, or the first usable node-local candidate.

use super::error::{Rejected, ScratchError};
use super::fs_kind::FsKind;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// Environment variables naming node-local scratch, in order of preference.
const ENV_CANDIDATES: &[&str] = &["TMPDIR", "SLURM_TMPDIR"];

/// Conventional node-local directories, tried after the environment.
const FIXED_CANDIDATES: &[&str] = &["/local", "/scratch/local", "/tmp"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
