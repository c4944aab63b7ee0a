//! `shoal jobqueue`: job scripts for SLURM, PBS, Torque, SGE, LSF and HTCondor, and the
//! worker (and scheduler) jobs of one cluster across invocations.
//!
//! Everything batch-system specific is in the `shoal-jobqueue` crate; this module turns
//! flags into its parameter layers, runs its commands, and keeps the jobs it submitted in
//! a state file next to the scheduler file (`F.jobs.json`, see [`state`]), so that
//! `status`, `scale` and `cancel` work from any later shell.
//!
//! Parameters, lowest priority first: shoal's own (`shoal` = this executable or the
//! host's worker command, `scheduler_file`), the config file's table for the system
//! (`~/.config/shoal/jobqueue.toml` or `--config`), then the command line (`--param
//! key=value` and the `--cores`-style flags), then `--jobs`.
//!
//! - [`args`]: flags; [`commands`]: the subcommands; [`state`]: the state file;
//!   [`wait`]: `scale --wait`.

pub mod args;
pub mod commands;
pub mod state;
pub mod wait;

#[cfg(feature = "cli")]
pub use args::JobqueueArgs;
#[cfg(feature = "cli")]
pub use commands::run;
pub use commands::{capture, Output};
