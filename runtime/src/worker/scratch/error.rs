//! Why a scratch directory cannot be set up.

use super::fs_kind::FsKind;
use std::fmt;
use std::io;
use std::path::PathBuf;

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
