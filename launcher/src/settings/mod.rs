//! The first phase of every command: flags and config files are turned into validated
//! settings before anything is started, bound or written (parse, then act). A value that
//! only a child process (a worker under `shoal local`, the nanny or `--nworkers`) would
//! use is checked here too, where the user typed it, and children's flags are derived
//! from the validated settings.
//!
//! - [`worker`]: [`ValidWorker`], the settings every worker-starting command shares.
//! - [`paths`]: scheduler files to write or read, and network interfaces.

pub mod paths;
pub mod worker;

pub use worker::ValidWorker;

#[cfg(feature = "cli")]
use crate::cli::{self, Command};

/// A command after phase one: its flags, with the validated settings it acts on.
#[cfg(feature = "cli")]
#[derive(Debug)]
pub enum Checked {
    Scheduler(cli::SchedulerArgs),
    Worker(cli::WorkerArgs, ValidWorker),
    Local(cli::LocalArgs, ValidWorker),
    Mpi(cli::MpiArgs),
    Info {
        json: bool,
    },
    Status(cli::StatusArgs),
    Shutdown(cli::ConnectArgs),
    /// `shoal run`, with its graph read.
    Run(cli::RunArgs, crate::graph::Graph),
    Jobqueue(crate::cmd::jobqueue::JobqueueArgs),
}

/// Phase one: every flag and config value of `command` checked, nothing started,
/// bound, created or written.
///
/// # Errors
/// The first bad value, naming it, its flag or key, the accepted forms and the fix.
#[cfg(feature = "cli")]
pub fn check(command: Command) -> anyhow::Result<Checked> {
    Ok(match command {
        Command::Worker(a) => {
            outside_mpi(a.settings.transport)?;
            if let Some(f) = &a.scheduler_file {
                paths::scheduler_file_to_read(f)?;
            }
            if let Some(address) = &a.address {
                paths::address(address)?;
            }
            paths::interface(a.interface.as_deref())?;
            paths::host(a.host.as_deref())?;
            crate::cmd::scheduler::secret_from_env()?;
            let worker = ValidWorker::validate(&a.settings, a.batch.nworkers)?;
            Checked::Worker(a, worker)
        }
        Command::Local(a) => {
            outside_mpi(a.worker.transport)?;
            let file = a
                .scheduler_file
                .clone()
                .unwrap_or_else(crate::cmd::local::default_scheduler_file);
            paths::scheduler_file_to_write(&file)?;
            paths::interface(a.listen.interface.as_deref())?;
            paths::host(a.listen.host.as_deref())?;
            crate::cmd::scheduler::secret_from_env()?;
            let worker = ValidWorker::validate(&a.worker, a.workers)?;
            Checked::Local(a, worker)
        }
        Command::Scheduler(a) => {
            if let Some(f) = &a.scheduler_file {
                paths::scheduler_file_to_write(f)?;
            }
            paths::interface(a.listen.interface.as_deref())?;
            paths::host(a.listen.host.as_deref())?;
            crate::cmd::scheduler::secret_from_env()?;
            Checked::Scheduler(a)
        }
        Command::Mpi(a) => {
            check_mpi(&a)?;
            Checked::Mpi(a)
        }
        Command::Status(a) => {
            paths::scheduler_file_to_read(&a.connect.scheduler_file)?;
            Checked::Status(a)
        }
        Command::Shutdown(a) => {
            paths::scheduler_file_to_read(&a.scheduler_file)?;
            Checked::Shutdown(a)
        }
        Command::Run(a) => {
            paths::scheduler_file_to_read(&a.connect.scheduler_file)?;
            let graph = match (&a.graph, a.generate) {
                (Some(path), _) => crate::graph::Graph::from_file(path)?,
                (None, Some(what)) => crate::graph::Graph::generate(what),
                (None, None) => anyhow::bail!("give a graph file or --generate"),
            };
            Checked::Run(a, graph)
        }
        // Its own phase one: parameters and config files are checked before any script
        // is written or submitted.
        Command::Jobqueue(a) => Checked::Jobqueue(a),
        Command::Info { json } => Checked::Info { json },
    })
}

/// `--transport` of a worker outside an MPI job: `mpi` needs one.
///
/// # Errors
/// `--transport mpi`.
#[cfg(feature = "cli")]
fn outside_mpi(transport: crate::cli::Transport) -> anyhow::Result<()> {
    if transport == crate::cli::Transport::Mpi {
        anyhow::bail!(
            "--transport mpi works inside an MPI job only (mpirun -np N shoal mpi); use --transport ucx, tcp or auto here"
        );
    }
    Ok(())
}

/// `shoal mpi`'s flags; every rank checks the same, so a bad value stops them all.
///
/// # Errors
/// The first bad value.
pub fn check_mpi(a: &crate::cli::MpiArgs) -> anyhow::Result<()> {
    match (&a.scheduler_file, a.no_scheduler) {
        (Some(f), false) => paths::scheduler_file_to_write(f)?,
        (Some(f), true) => paths::scheduler_file_to_read(f)?,
        (None, true) => anyhow::bail!(
            "--no-scheduler needs --scheduler-file F of the running scheduler to join"
        ),
        (None, false) => {}
    }
    if a.scheduler_rank < 0 {
        anyhow::bail!(
            "--scheduler-rank {}: a rank is 0 or more (default 0)",
            a.scheduler_rank
        );
    }
    paths::interface(a.interface.as_deref())?;
    crate::cmd::scheduler::secret_from_env()?;
    ValidWorker::validate(&a.worker, 1)?;
    Ok(())
}
