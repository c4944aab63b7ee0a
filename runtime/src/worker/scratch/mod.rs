//! Node-local scratch space for a worker.
//!
//! A worker spills data that does not fit in memory to disk. That disk must be local to
//! the node: on HPC clusters the obvious places (the home or project directory, the
//! current directory of a batch job) are often on a network or parallel file system
//! (NFS, Lustre, GPFS, BeeGFS, CIFS, ...). Spilling there is slow, and hundreds of workers
//! doing it at once can overload file servers shared by every user of the cluster.
//!
//! So the base directory is checked before use ([`choose_base`]): its file-system type is
//! read with `statfs` ([`FsKind`]) and a network file system is refused unless the user
//! insists (`--allow-network-spill`). Without an explicit `--local-directory` the usual
//! node-local places are tried in order ([`candidates`]).
//!
//! Each worker then owns a directory below the base ([`WorkerDir`]), removed when the
//! worker exits. A worker that is killed cannot clean up, so its directory stays locked
//! only for as long as its process lives, and the next worker started on the node removes
//! directories whose lock is free.

mod base;
mod error;
mod fs_kind;
mod worker_dir;

pub use base::{candidates, check_base, choose_base};
pub use error::{Rejected, ScratchError};
pub use fs_kind::FsKind;
pub use worker_dir::WorkerDir;
