//! `shoal mpi` in a build without the `mpi` cargo feature: every entry point says how to
//! get a shoal that has it.

use crate::cli::MpiArgs;
use shoal_comm::Secret;

/// What a build without MPI says when asked to run as an MPI job.
pub const MISSING: &str = "this shoal was built without MPI support (cargo feature `mpi` off): \
    rebuild with it after loading an MPI (`module load openmpi`, or ./scripts/setup on Debian): \
    `cargo build --release -p shoal-launcher --features mpi`; or start the cluster without MPI \
    (`shoal scheduler` + `shoal worker`, or `shoal jobqueue`)";

/// How this rank's part ended (as with MPI; never reached here).
#[allow(dead_code)] // the shape callers match on; a build without MPI never makes one
pub enum RankOutcome {
    Exited(u8),
    Client { address: String, secret: Secret },
}

/// Nothing to finalise.
pub fn finalize() {}

/// Nothing to prepare.
pub fn prefer_fast_start(_args: &MpiArgs) {}

/// Refuses: see [`MISSING`].
///
/// # Errors
/// Always.
pub async fn run(_args: MpiArgs, _hooks: &crate::Hooks) -> anyhow::Result<u8> {
    anyhow::bail!(MISSING)
}

/// Refuses: see [`MISSING`].
///
/// # Errors
/// Always.
pub async fn run_rank(_args: MpiArgs, _hooks: &crate::Hooks) -> anyhow::Result<RankOutcome> {
    anyhow::bail!(MISSING)
}
