//! One error type for callers that do not care which step failed.

use thiserror::Error;

use crate::config::ConfigError;
use crate::jobid::JobIdError;
use crate::memory::MemoryError;
use crate::params::ParamError;
use crate::submit::SubmitError;
use crate::system::UnknownSystem;
use crate::walltime::WalltimeError;

/// Any error of this crate; each message already names the bad value and
/// the accepted forms or the fix.
#[derive(Debug, Error)]
pub enum Error {
    /// An unknown batch-system name.
    #[error(transparent)]
    System(#[from] UnknownSystem),
    /// A bad memory string.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A bad walltime or duration.
    #[error(transparent)]
    Walltime(#[from] WalltimeError),
    /// Bad or inconsistent parameters.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// An unusable config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No job id in a submit output.
    #[error(transparent)]
    JobId(#[from] JobIdError),
    /// A batch-system command failed or is missing.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}
