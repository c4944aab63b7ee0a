//! Command-line definitions (clap). Values are parsed and validated here; anything that
//! touches the system happens in `cmd/`.
//!
//! The argument structs are plain settings as well: without the `cli` feature (the Python
//! API's build) they are made by the typed entry points, from their [`Default`]s.

use crate::memory;
use crate::parse;
#[cfg(feature = "cli")]
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shoal_comm::message::Resource;
use std::path::PathBuf;
use std::time::Duration;

/// shoal: a fast distributed task runtime for HPC clusters.
#[cfg(feature = "cli")]
#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). Also: SHOAL_LOG=debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Parse a command line. Negative numbers are taken as values everywhere, so that
/// `--death-timeout -1` is refused by the flag's own check, with its message.
///
/// # Errors
/// Clap's error for unknown flags or bad values (printed as clap prints them).
#[cfg(feature = "cli")]
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    fn allow_negative(command: clap::Command) -> clap::Command {
        command
            .allow_negative_numbers(true)
            .mut_subcommands(allow_negative)
    }
    let mut matches = allow_negative(Cli::command()).try_get_matches_from(args)?;
    Cli::from_arg_matches_mut(&mut matches)
}

#[cfg(feature = "cli")]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scheduler.
    Scheduler(SchedulerArgs),
    /// Run a worker connected to a scheduler.
    Worker(WorkerArgs),
    /// Run a scheduler and N worker processes on this machine.
    Local(LocalArgs),
    /// Show the workers and tasks of a running cluster.
    Status(StatusArgs),
    /// Stop a running cluster (workers and scheduler).
    Shutdown(ConnectArgs),
    /// Run a whole cluster as one MPI job: `mpirun -np N shoal mpi --scheduler-file F`.
    Mpi(MpiArgs),
    /// Show this node's cores, NUMA domains, memory and network interfaces.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Submit a graph of built-in tasks (JSON file or generated) and print results and timing.
    Run(RunArgs),
    /// Batch jobs: print, submit, scale, list and cancel scheduler and worker jobs.
    Jobqueue(crate::cmd::jobqueue::JobqueueArgs),
}

/// Where the scheduler listens.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct ListenArgs {
    /// Host name or IP to listen on and advertise.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "interface"))]
    pub host: Option<String>,
    /// Network interface whose address to listen on (e.g. ib0).
    #[cfg_attr(feature = "cli", arg(long))]
    pub interface: Option<String>,
    /// Port; random when a scheduler file is given, 8786 otherwise.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::port))]
    pub port: Option<u16>,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct SchedulerArgs {
    #[cfg_attr(feature = "cli", command(flatten))]
    pub listen: ListenArgs,
    /// Write address and secret here (mode 0600) for workers and clients.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: Option<PathBuf>,
    /// Exit after this many seconds without clients or work.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub idle_timeout: Option<Duration>,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub tuning: SchedulerTuning,
}

/// Scheduler tunables.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct SchedulerTuning {
    /// Heartbeat period between scheduler and workers, in seconds.
    #[cfg_attr(feature = "cli", arg(long, default_value = "1", value_parser = parse::seconds))]
    pub heartbeat: Duration,
    /// Drop a worker silent for this many seconds.
    #[cfg_attr(feature = "cli", arg(long, default_value = "30", value_parser = parse::seconds))]
    pub worker_timeout: Duration,
    /// A task running on this many workers that died fails with KilledWorker.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3, value_parser = crate::parse::count))]
    pub allowed_failures: u32,
    /// Root tasks (no inputs) a worker is given ahead: threads x this factor (inf: all at
    /// once); the rest wait in the scheduler by priority.
    #[cfg_attr(feature = "cli", arg(long, default_value = "2", value_parser = crate::parse::factor))]
    pub worker_saturation: f64,
    /// ...but never fewer than this many per worker (keeps short tasks flowing across the
    /// network round trip; 0 when root tasks are long or make large results).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 256, value_parser = crate::parse::whole))]
    pub min_worker_queue: u32,
    /// The dashboard.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub dashboard: DashboardArgs,
}

/// The scheduler's web dashboard and `/metrics`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct DashboardArgs {
    /// Where the dashboard listens: PORT, :PORT or HOST:PORT (HOST: the scheduler's
    /// host). The default 8787 moves to a free port when taken; an explicit port must be free.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::dashboard_address))]
    pub dashboard_address: Option<parse::DashboardAddress>,
    /// Run no dashboard (and no /metrics).
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "dashboard_address"))]
    pub no_dashboard: bool,
    /// A further token /metrics accepts as `Authorization: Bearer TOKEN` (for a scraper
    /// that should not hold the dashboard's token).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SHOAL_METRICS_TOKEN", hide_env_values = true)
    )]
    pub metrics_token: Option<String>,
}

/// The settings every worker-starting command shares.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct WorkerSettings {
    /// Executor threads (default: the machine's cores).
    #[cfg_attr(feature = "cli", arg(long, value_parser = crate::parse::count))]
    pub nthreads: Option<u32>,
    /// Memory limit: bytes, a fraction of the machine (0.5), a size (4GB, 4GiB), auto, or 0 for none.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value = "auto", allow_hyphen_values = true)
    )]
    pub memory_limit: String,
    /// Exit with status 3 after this many seconds without the scheduler.
    #[cfg_attr(feature = "cli", arg(long, default_value = "60", value_parser = parse::seconds))]
    pub death_timeout: Duration,
    /// Scratch directory for this worker.
    #[cfg_attr(feature = "cli", arg(long))]
    pub local_directory: Option<PathBuf>,
    /// Abstract resources, e.g. "GPU=2 MEM=10e9".
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::resources))]
    pub resources: Vec<Resource>,
    /// Report every task done at once without running it (measures scheduler overhead).
    #[cfg_attr(feature = "cli", arg(long))]
    pub zero: bool,
    /// How worker-to-worker data travels: auto (UCX on an RDMA network, else MPI inside
    /// an MPI job, else TCP), tcp, mpi (shoal mpi only) or ucx.
    #[cfg_attr(
        feature = "cli",
        arg(long, alias = "protocol", value_enum, default_value = "auto")
    )]
    pub transport: Transport,
    /// Memory management.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub memory: MemoryArgs,
}

/// Worker memory management (defaults from `~/.config/shoal/worker.toml`, then 0.6, 0.7,
/// 0.8, 0.95 of the memory limit).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct MemoryArgs {
    /// Spill least-recently-used results to disk when they pass this fraction of the
    /// memory limit (or false).
    #[cfg_attr(feature = "cli", arg(long, value_parser = memory::threshold))]
    pub memory_target: Option<memory::Threshold>,
    /// Spill when the process's RSS passes this fraction (or false).
    #[cfg_attr(feature = "cli", arg(long, value_parser = memory::threshold))]
    pub memory_spill: Option<memory::Threshold>,
    /// Start no task and fetch no data while RSS is above this fraction (or false).
    #[cfg_attr(feature = "cli", arg(long, value_parser = memory::threshold))]
    pub memory_pause: Option<memory::Threshold>,
    /// Restart the worker when RSS passes this fraction (or false).
    #[cfg_attr(feature = "cli", arg(long, value_parser = memory::threshold))]
    pub memory_terminate: Option<memory::Threshold>,
    /// Most bytes spilled to disk (100GiB, bytes, or false for no cap).
    #[cfg_attr(feature = "cli", arg(long, value_parser = memory::max_spill, allow_hyphen_values = true))]
    pub max_spill: Option<memory::MaxSpill>,
    /// Compress spilled results (lz4) where it pays.
    #[cfg_attr(feature = "cli", arg(long))]
    pub spill_compression: bool,
    /// Spill even when the local directory is on a network or parallel file system
    /// (NFS, Lustre, GPFS, BeeGFS, CIFS); refused otherwise.
    #[cfg_attr(feature = "cli", arg(long))]
    pub allow_network_spill: bool,
    /// How often memory is sampled, in seconds.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub memory_monitor_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct WorkerArgs {
    /// Scheduler address (tcp://host:port); the secret then comes from SHOAL_SECRET.
    #[cfg_attr(feature = "cli", arg(conflicts_with = "scheduler_file"))]
    pub address: Option<String>,
    /// Scheduler file written by the scheduler.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: Option<PathBuf>,
    /// Worker name (default: host-pid).
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// Host name or IP of this worker's data server.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "interface"))]
    pub host: Option<String>,
    /// Network interface for this worker's data server.
    #[cfg_attr(feature = "cli", arg(long))]
    pub interface: Option<String>,
    /// Run the worker in this process: no supervising process restarts it when its
    /// memory passes the terminate threshold (the worker then restarts itself in-process).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_nanny: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub settings: WorkerSettings,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub batch: BatchWorkerArgs,
}

/// Worker flags for batch jobs (what `shoal jobqueue` scripts pass).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct BatchWorkerArgs {
    /// Seconds to wait for the scheduler file to appear before the first connection.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub scheduler_file_timeout: Option<Duration>,
    /// Leave gracefully (exit status 0) after this many seconds, before the walltime kills the job.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub lifetime: Option<Duration>,
    /// Random spread of --lifetime: each worker leaves within lifetime ± stagger.
    #[cfg_attr(feature = "cli", arg(long, default_value = "0", value_parser = parse::seconds, requires = "lifetime"))]
    pub lifetime_stagger: Duration,
    /// Start this many worker processes named NAME-0..P-1 and supervise them.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1, value_parser = crate::parse::count))]
    pub nworkers: u32,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct LocalArgs {
    /// Worker processes.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, value_parser = crate::parse::count))]
    pub workers: u32,
    /// Scheduler file (default: a new file under the temporary directory).
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: Option<PathBuf>,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub listen: ListenArgs,
    /// Exit after this many seconds without clients or work.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub idle_timeout: Option<Duration>,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub worker: WorkerSettings,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub tuning: SchedulerTuning,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct ConnectArgs {
    /// Scheduler file written by the scheduler.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: PathBuf,
    /// Seconds to wait for the file and the connection.
    #[cfg_attr(feature = "cli", arg(long, default_value = "10", value_parser = parse::seconds))]
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct StatusArgs {
    #[cfg_attr(feature = "cli", command(flatten))]
    pub connect: ConnectArgs,
    /// Print JSON instead of a table.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "watch"))]
    pub json: bool,
    /// Refresh every SECONDS (default 2) until Ctrl-C: tasks by state, throughput and
    /// workers, redrawn in place on a terminal, printed one after another otherwise.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
            value_parser = parse::positive_seconds)
    )]
    pub watch: Option<Duration>,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct RunArgs {
    #[cfg_attr(feature = "cli", command(flatten))]
    pub connect: ConnectArgs,
    /// Graph file (JSON: {"tasks": [...], "outputs": [...]}).
    #[cfg_attr(
        feature = "cli",
        arg(required_unless_present = "generate", conflicts_with = "generate")
    )]
    pub graph: Option<PathBuf>,
    /// Generate a benchmark graph instead: independent:N, merge:N or tree:N (N leaves).
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::generated))]
    pub generate: Option<parse::Generated>,
    /// Seconds to wait for the results.
    #[cfg_attr(feature = "cli", arg(long, default_value = "600", value_parser = parse::seconds))]
    pub wait: Duration,
    /// Print one JSON object instead of text.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

/// How worker-to-worker data travels (the scheduler and clients always use TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Transport {
    /// UCX where UCX sees an RDMA device, else MPI inside an MPI job, else TCP.
    Auto,
    /// TCP sockets.
    Tcp,
    /// MPI point-to-point between the ranks of one MPI job (`shoal mpi` only).
    Mpi,
    /// UCX active messages (RDMA where the network has it; `UCX_TLS` chooses as usual).
    Ucx,
}

impl Transport {
    /// True if an MPI job starts its MPI fabric (MPI may carry the data).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub fn data_over_mpi(self) -> bool {
        matches!(self, Transport::Auto | Transport::Mpi)
    }

    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Tcp => "tcp",
            Transport::Mpi => "mpi",
            Transport::Ucx => "ucx",
        }
    }
}

/// `shoal mpi` (and `shoal.mpi.initialize()`): a whole cluster as one MPI job.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct MpiArgs {
    /// Write address and secret here (mode 0600) for clients outside the job.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: Option<PathBuf>,
    /// Scheduler port (default: random).
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::port))]
    pub scheduler_port: Option<u16>,
    /// Rank that runs the scheduler.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub scheduler_rank: i32,
    /// Network interface to listen on and advertise (e.g. ib0).
    #[cfg_attr(feature = "cli", arg(long))]
    pub interface: Option<String>,
    /// Only add workers to the running cluster of --scheduler-file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_scheduler: bool,
    /// Also run a worker on the scheduler rank.
    #[cfg_attr(feature = "cli", arg(long))]
    pub inclusive_workers: bool,
    /// Pin each worker rank to its share of the node's cores, or to their NUMA domain.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "none"))]
    pub bind: crate::topology::Bind,
    /// Rank that returns to run the user's script as the client (`shoal.mpi.initialize()`).
    #[cfg_attr(feature = "cli", arg(long, hide = true))]
    pub client_rank: Option<i32>,
    /// Worker names become NAME-RANK.
    #[cfg_attr(feature = "cli", arg(long, default_value = "shoal-mpi"))]
    pub name: String,
    /// Scheduler exits after this many seconds without clients or work.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse::seconds))]
    pub idle_timeout: Option<Duration>,
    /// The workers' settings.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub worker: WorkerSettings,
    /// The scheduler's settings.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub tuning: SchedulerTuning,
}

// The flags' defaults, for settings made without a command line (the typed entry points);
// `defaults_are_the_flags_defaults` keeps them equal to the clap attributes above.

impl Default for SchedulerTuning {
    fn default() -> Self {
        SchedulerTuning {
            heartbeat: Duration::from_secs(1),
            worker_timeout: Duration::from_secs(30),
            allowed_failures: 3,
            worker_saturation: 2.0,
            min_worker_queue: 256,
            dashboard: DashboardArgs::default(),
        }
    }
}

impl Default for DashboardArgs {
    /// No flags: the default dashboard address; the metrics token from
    /// `SHOAL_METRICS_TOKEN`, as the flag reads it.
    fn default() -> Self {
        DashboardArgs {
            dashboard_address: None,
            no_dashboard: false,
            metrics_token: std::env::var("SHOAL_METRICS_TOKEN").ok(),
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            nthreads: None,
            memory_limit: "auto".to_string(),
            death_timeout: Duration::from_secs(60),
            local_directory: None,
            resources: Vec::new(),
            zero: false,
            transport: Transport::Auto,
            memory: MemoryArgs::default(),
        }
    }
}

impl Default for MpiArgs {
    fn default() -> Self {
        MpiArgs {
            scheduler_file: None,
            scheduler_port: None,
            scheduler_rank: 0,
            interface: None,
            no_scheduler: false,
            inclusive_workers: false,
            bind: crate::topology::Bind::None,
            client_rank: None,
            name: "shoal-mpi".to_string(),
            idle_timeout: None,
            worker: WorkerSettings::default(),
            tuning: SchedulerTuning::default(),
        }
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_flags_defaults() {
        let cli = parse(["shoal", "mpi"]).unwrap_or_else(|e| panic!("{e}"));
        let Command::Mpi(parsed) = cli.command else {
            panic!("not mpi: {:?}", cli.command)
        };
        // Every field of the settings (and of those it holds) is compared.
        assert_eq!(format!("{parsed:?}"), format!("{:?}", MpiArgs::default()));
    }
}
