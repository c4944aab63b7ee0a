//! The `shoal` command as a library, so the Python package can run the same CLI inside the
//! interpreter (with workers that run Python tasks), and its typed entry points
//! ([`mpi_batch`], [`jobqueue`]), which the Python API calls with settings, not argv.
//!
//! # Layout
//!
//! - [`cli`]: flags (clap, with the `cli` feature) and the settings they fill;
//!   [`parse`]: flag value parsers.
//! - `cmd/`: one module per subcommand.
//! - [`Hooks`]: what a host process (the Python package) plugs in.

// Without the command line (the Python API's build) only `mpi` and `jobqueue` are reached,
// through the typed entry points; the other subcommands and their helpers stay compiled.
#![cfg_attr(not(feature = "cli"), allow(dead_code))]

mod advice;
mod cli;
mod cmd;
mod error;
mod graph;
mod iface;
mod logging;
mod memory;
mod parse;
mod progress;
mod settings;
mod signals;
mod topology;
mod transport;
mod worker_process;

pub use advice::task_error_message;
pub use error::LaunchError;

#[cfg(feature = "cli")]
use cli::Command;
#[cfg(feature = "cli")]
use settings::Checked;
use shoal_comm::message::ExecutorKind;
use shoal_runtime::executor::builtin;
use shoal_runtime::executor::pool::Runner;
use std::ffi::OsString;
#[cfg(feature = "cli")]
use std::process::ExitCode;

/// What a host process plugs into the CLI. The default is the pure-Rust binary.
#[derive(Clone)]
pub struct Hooks {
    /// Runs tasks on workers started by `shoal worker`; `None` = the built-in executors.
    pub runner: Option<Runner>,
    /// Executor kinds `runner` supports.
    pub executors: Vec<ExecutorKind>,
    /// The command `shoal local` starts workers with (program and leading arguments, e.g.
    /// `python -m shoal`); `None` = this executable.
    pub worker_command: Option<Vec<OsString>>,
    /// Readies `runner` for its first job (the Python package imports its task module),
    /// run on a thread of its own while the worker starts; `None` = nothing to ready.
    pub warm_up: Option<WarmUp>,
}

/// See [`Hooks::warm_up`].
pub type WarmUp = std::sync::Arc<dyn Fn() + Send + Sync>;

impl Hooks {
    /// Start [`Hooks::warm_up`] in the background, if there is one: the first task then
    /// finds the runner ready instead of paying for its imports.
    pub(crate) fn warm_up_in_background(&self) {
        if let Some(warm_up) = self.warm_up.clone() {
            let spawned = std::thread::Builder::new()
                .name("shoal-warm-up".into())
                .spawn(move || warm_up());
            if let Err(e) = spawned {
                tracing::debug!(error = %e, "no thread to ready the task runner: the first task does it");
            }
        }
    }
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            runner: None,
            executors: builtin::KINDS.to_vec(),
            worker_command: None,
            warm_up: None,
        }
    }
}

/// What `shoal.mpi.initialize()` does on this rank.
pub enum BatchRole {
    /// This rank ran the scheduler or a worker and the cluster has ended: exit with this.
    Exit(u8),
    /// This rank is the client: connect to `address` with the hex `secret`.
    Client {
        /// The scheduler's address.
        address: String,
        /// The cluster secret, hex-encoded.
        secret_hex: String,
    },
}

pub use cli::{MpiArgs, SchedulerTuning, WorkerSettings};
pub use cmd::jobqueue::args::{
    CancelArgs, JobqueueCommand, JobsStatusArgs, ParamArgs, ScaleArgs, ScriptArgs, SubmitArgs,
};
pub use cmd::jobqueue::Output as JobqueueOutput;

/// Flag value parsers the typed entry points share with the command line: a host checks
/// its arguments with the same rules and messages as the flags.
pub mod values {
    pub use crate::parse::{count, seconds};
}

/// The batch-script mode behind `shoal.mpi.initialize()`: `args` as `shoal mpi` takes them,
/// with `client_rank` set. Scheduler and worker ranks return when the cluster ends; the
/// client rank returns at once, with MPI initialised until [`mpi_finalize`]. `quiet`: only
/// warnings and errors are logged (as `shoal -q`).
///
/// # Errors
/// A bad setting or world, or a rank that could not start; the message says which.
pub fn mpi_batch(args: MpiArgs, quiet: bool, hooks: Hooks) -> Result<BatchRole, LaunchError> {
    logging::init(0, quiet);
    progress::set_quiet(quiet);
    settings::check_mpi(&args).map_err(LaunchError::Settings)?;
    cmd::mpi::prefer_fast_start(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    let outcome = runtime.block_on(cmd::mpi::run_rank(args, &hooks));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome.map_err(LaunchError::failed)? {
        cmd::mpi::RankOutcome::Exited(code) => Ok(BatchRole::Exit(code)),
        cmd::mpi::RankOutcome::Client { address, secret } => Ok(BatchRole::Client {
            address,
            secret_hex: secret.to_hex(),
        }),
    }
}

/// One `shoal jobqueue` subcommand with its output returned instead of printed: the
/// Python API's cluster classes run the CLI's code through this. Job scripts start shoal
/// with `hooks.worker_command` (e.g. `python -m shoal`).
///
/// # Errors
/// Bad parameters, an unusable state file, or a failing batch command: one message naming
/// the value or command and the fix.
pub fn jobqueue(command: JobqueueCommand, hooks: &Hooks) -> Result<JobqueueOutput, LaunchError> {
    cmd::jobqueue::capture(command, hooks)
}

/// Finalise MPI on the client rank of a batch script (idempotent).
pub fn mpi_finalize() {
    cmd::mpi::finalize();
}

/// Exit status of a command refused for a bad flag or config value (as clap's own).
#[cfg(feature = "cli")]
pub const EXIT_BAD_INPUT: u8 = 2;

/// Run the CLI with `args` (the program name first) and return the exit status.
#[cfg(feature = "cli")]
pub fn main_with(args: Vec<String>, hooks: Hooks) -> ExitCode {
    ExitCode::from(run_with(args, hooks))
}

/// As [`main_with`], with the exit status as a number (for hosts that exit themselves).
#[cfg(feature = "cli")]
pub fn run_with(args: Vec<String>, hooks: Hooks) -> u8 {
    let args = parse::split_resources(args);
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    logging::init(cli.verbose, cli.quiet);
    progress::set_quiet(cli.quiet);
    // Phase one: every value checked before anything starts, binds or writes.
    // A worker that cannot start tells its scheduler why, if it can reach it.
    let report_to = match &cli.command {
        Command::Worker(a) => Some(cmd::start_failure::ReportTo::of(a)),
        _ => None,
    };
    let checked = match settings::check(cli.command) {
        Ok(checked) => checked,
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("shoal: error: {message}");
            if let Some(to) = &report_to {
                report_failure(to, &message);
            }
            return EXIT_BAD_INPUT;
        }
    };
    if let Checked::Mpi(args) = &checked {
        // Before any other thread exists: it sets the environment MPI_Init reads.
        cmd::mpi::prefer_fast_start(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match checked {
            Checked::Scheduler(args) => cmd::scheduler::run(args).await.map(|()| 0),
            Checked::Worker(args, worker) => cmd::worker::run(args, worker, &hooks).await,
            Checked::Local(args, worker) => cmd::local::run(args, worker, &hooks).await,
            Checked::Mpi(args) => cmd::mpi::run(args, &hooks).await,
            Checked::Info { json } => cmd::info::run(json).map(|()| 0),
            Checked::Status(args) => cmd::status::status(args).await.map(|()| 0),
            Checked::Shutdown(args) => cmd::status::shutdown(args).await.map(|()| 0),
            Checked::Run(args, graph) => cmd::run::run(args, graph).await.map(|ok| u8::from(!ok)),
            Checked::Jobqueue(args) => cmd::jobqueue::run(args, &hooks).await,
        }
    });
    // Background tasks (writers, data servers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("shoal: {message}");
            if let Some(to) = &report_to {
                report_failure(to, &message);
            }
            1
        }
    }
}

/// [`cmd::start_failure::report`] on a runtime of its own.
#[cfg(feature = "cli")]
fn report_failure(to: &cmd::start_failure::ReportTo, message: &str) {
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(cmd::start_failure::report(to, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpi_batch_refuses_a_bad_setting_before_mpi_starts() {
        let args = MpiArgs {
            scheduler_rank: -1,
            client_rank: Some(1),
            ..MpiArgs::default()
        };
        match mpi_batch(args, true, Hooks::default()) {
            Err(e @ LaunchError::Settings(_)) => {
                assert!(e.to_string().contains("--scheduler-rank -1"), "{e}");
            }
            Err(e) => panic!("not a settings error: {e:?}"),
            Ok(_) => panic!("a negative scheduler rank was accepted"),
        }
    }
}
