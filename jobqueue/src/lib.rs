//! Batch-system knowledge for shoal: job scripts, memory and walltime
//! formats, submit/cancel/status commands and job ids for SLURM, PBS Pro,
//! Torque, Grid Engine, LSF and HTCondor.
//!
//! The path a CLI takes:
//! [`Config::load`] → [`Config::params_for`] (config table under flags,
//! old names reported as [`Deprecation`]s) → [`JobParams::validate`] →
//! [`render`] → [`submit()`] → [`status()`] / [`cancel()`].
//!
//! # Layout
//! - `memory`, `walltime`, `lifetime`: values and their per-system formats;
//! - `keys`, `params`, `config`: parameters from key/value layers;
//! - `validate`: checks and defaults, the only maker of [`ValidParams`];
//! - `system`: the [`BatchSystem`] trait and [`System`] enum, implemented in
//!   `slurm`, `pbs` (PBS Pro and Torque), `sge`, `lsf`, `htcondor`;
//! - `script`: the job script and worker command; `shell`: quoting;
//! - `jobid`: job ids from submit output; `status`: [`JobState`];
//! - `submit`: commands through a [`CommandRunner`]; `error`: [`Error`].

pub mod config;
pub mod error;
pub mod htcondor;
pub mod jobid;
pub mod keys;
pub mod lifetime;
pub mod lsf;
pub mod memory;
pub mod params;
pub mod pbs;
pub mod script;
pub mod sge;
pub mod shell;
pub mod slurm;
pub mod status;
pub mod submit;
pub mod system;
pub mod validate;
pub mod walltime;

pub use config::{config_path, user_config_path, Config, ConfigError};
pub use error::Error;
pub use jobid::{parse_job_id, IdPattern, JobId, JobIdError};
pub use lifetime::{auto_lifetime, Lifetime};
pub use memory::{LsfUnit, Memory, MemoryError};
pub use params::{Deprecation, JobParams, Layer, ParamError};
pub use script::{render, render_scheduler, scheduler_command, worker_command, JobScript};
pub use status::JobState;
pub use submit::{
    cancel, status, submit, CommandFailure, CommandOutput, CommandRunner, Invocation,
    ProcessRunner, SubmitError,
};
pub use system::{BatchSystem, System, UnknownSystem};
pub use validate::ValidParams;
pub use walltime::{Walltime, WalltimeError};
