//! Command-line definitions (clap). Values are parsed and validated here; anything that
//! touches the system happens in `cmd/`.

use crate::memory;
use crate::parse;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shoal_comm::message::Resource;
use std::path::PathBuf;
use std::time::Duration;

/// shoal: a fast distributed task runtime for HPC clusters.
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
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Host name or IP to listen on and advertise.
    #[arg(long, conflicts_with = "interface")]
    pub host: Option<String>,
    /// Network interface whose address to listen on (e.g. ib0).
    #[arg(long)]
    pub interface: Option<String>,
    /// Port; random when a scheduler file is given, 8786 otherwise.
    #[arg(long, value_parser = parse::port)]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Write address and secret here (mode 0600) for workers and clients.
    #[arg(long)]
    pub scheduler_file: Option<PathBuf>,
    /// Exit after this many seconds without clients or work.
    #[arg(long, value_parser = parse::seconds)]
    pub idle_timeout: Option<Duration>,
    #[command(flatten)]
    pub tuning: SchedulerTuning,
}

/// Scheduler tunables.
#[derive(Debug, Clone, Args)]
pub struct SchedulerTuning {
    /// Heartbeat period between scheduler and workers, in seconds.
    #[arg(long, default_value = "1", value_parser = parse::seconds)]
    pub heartbeat: Duration,
    /// Drop a worker silent for this many seconds.
    #[arg(long, default_value = "30", value_parser = parse::seconds)]
    pub worker_timeout: Duration,
    /// A task running on this many workers that died fails with KilledWorker.
    #[arg(long, default_value_t = 3, value_parser = crate::parse::count)]
    pub allowed_failures: u32,
    /// Root tasks (no inputs) a worker is given ahead: threads x this factor (inf: all at
    /// once); the rest wait in the scheduler by priority.
    #[arg(long, default_value = "2", value_parser = crate::parse::factor)]
    pub worker_saturation: f64,
    /// ...but never fewer than this many per worker (keeps short tasks flowing across the
    /// network round trip; 0 when root tasks are long or make large results).
    #[arg(long, default_value_t = 256, value_parser = crate::parse::whole)]
    pub min_worker_queue: u32,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// The scheduler's web dashboard and `/metrics`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Where the dashboard listens: PORT, :PORT or HOST:PORT (HOST: the scheduler's
    /// host). The default 8787 moves to a free port when taken; an explicit port must be free.
    #[arg(long, value_parser = parse::dashboard_address)]
    pub dashboard_address: Option<parse::DashboardAddress>,
    /// Run no dashboard (and no /metrics).
    #[arg(long, conflicts_with = "dashboard_address")]
    pub no_dashboard: bool,
    /// A further token /metrics accepts as `Authorization: Bearer TOKEN` (for a scraper
    /// that should not hold the dashboard's token).
    #[arg(long, env = "SHOAL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    /// Executor threads (default: the machine's cores).
    #[arg(long, value_parser = crate::parse::count)]
    pub nthreads: Option<u32>,
    /// Memory limit: bytes, a fraction of the machine (0.5), a size (4GB, 4GiB), auto, or 0 for none.
    #[arg(long, default_value = "auto", allow_hyphen_values = true)]
    pub memory_limit: String,
    /// Exit with status 3 after this many seconds without the scheduler.
    #[arg(long, default_value = "60", value_parser = parse::seconds)]
    pub death_timeout: Duration,
    /// Scratch directory for this worker.
    #[arg(long)]
    pub local_directory: Option<PathBuf>,
    /// Abstract resources, e.g. "GPU=2 MEM=10e9".
    #[arg(long, value_parser = parse::resources)]
    pub resources: Vec<Resource>,
    /// Report every task done at once without running it (measures scheduler overhead).
    #[arg(long)]
    pub zero: bool,
    /// How worker-to-worker data travels: auto (UCX on an RDMA network, else MPI inside
    /// an MPI job, else TCP), tcp, mpi (shoal mpi only) or ucx.
    #[arg(long, alias = "protocol", value_enum, default_value = "auto")]
    pub transport: Transport,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// Worker memory management (defaults from `~/.config/shoal/worker.toml`, then 0.6, 0.7,
/// 0.8, 0.95 of the memory limit).
#[derive(Debug, Clone, Default, Args)]
pub struct MemoryArgs {
    /// Spill least-recently-used results to disk when they pass this fraction of the
    /// memory limit (or false).
    #[arg(long, value_parser = memory::threshold)]
    pub memory_target: Option<memory::Threshold>,
    /// Spill when the process's RSS passes this fraction (or false).
    #[arg(long, value_parser = memory::threshold)]
    pub memory_spill: Option<memory::Threshold>,
    /// Start no task and fetch no data while RSS is above this fraction (or false).
    #[arg(long, value_parser = memory::threshold)]
    pub memory_pause: Option<memory::Threshold>,
    /// Restart the worker when RSS passes this fraction (or false).
    #[arg(long, value_parser = memory::threshold)]
    pub memory_terminate: Option<memory::Threshold>,
    /// Most bytes spilled to disk (100GiB, bytes, or false for no cap).
    #[arg(long, value_parser = memory::max_spill, allow_hyphen_values = true)]
    pub max_spill: Option<memory::MaxSpill>,
    /// Compress spilled results (lz4) where it pays.
    #[arg(long)]
    pub spill_compression: bool,
    /// Spill even when the local directory is on a network or parallel file system
    /// (NFS, Lustre, GPFS, BeeGFS, CIFS); refused otherwise.
    #[arg(long)]
    pub allow_network_spill: bool,
    /// How often memory is sampled, in seconds.
    #[arg(long, value_parser = parse::seconds)]
    pub memory_monitor_interval: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Scheduler address (tcp://host:port); the secret then comes from SHOAL_SECRET.
    #[arg(conflicts_with = "scheduler_file")]
    pub address: Option<String>,
    /// Scheduler file written by the scheduler.
    #[arg(long)]
    pub scheduler_file: Option<PathBuf>,
    /// Worker name (default: host-pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Host name or IP of this worker's data server.
    #[arg(long, conflicts_with = "interface")]
    pub host: Option<String>,
    /// Network interface for this worker's data server.
    #[arg(long)]
    pub interface: Option<String>,
    /// Run the worker in this process: no supervising process restarts it when its
    /// memory passes the terminate threshold (the worker then restarts itself in-process).
    #[arg(long)]
    pub no_nanny: bool,
    #[command(flatten)]
    pub settings: WorkerSettings,
    #[command(flatten)]
    pub batch: BatchWorkerArgs,
}

/// Worker flags for batch jobs (what `shoal jobqueue` scripts pass).
#[derive(Debug, Clone, Args)]
pub struct BatchWorkerArgs {
    /// Seconds to wait for the scheduler file to appear before the first connection.
    #[arg(long, value_parser = parse::seconds)]
    pub scheduler_file_timeout: Option<Duration>,
    /// Leave gracefully (exit status 0) after this many seconds, before the walltime kills the job.
    #[arg(long, value_parser = parse::seconds)]
    pub lifetime: Option<Duration>,
    /// Random spread of --lifetime: each worker leaves within lifetime ± stagger.
    #[arg(long, default_value = "0", value_parser = parse::seconds, requires = "lifetime")]
    pub lifetime_stagger: Duration,
    /// Start this many worker processes named NAME-0..P-1 and supervise them.
    #[arg(long, default_value_t = 1, value_parser = crate::parse::count)]
    pub nworkers: u32,
}

#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 2, value_parser = crate::parse::count)]
    pub workers: u32,
    /// Scheduler file (default: a new file under the temporary directory).
    #[arg(long)]
    pub scheduler_file: Option<PathBuf>,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Exit after this many seconds without clients or work.
    #[arg(long, value_parser = parse::seconds)]
    pub idle_timeout: Option<Duration>,
    #[command(flatten)]
    pub worker: WorkerSettings,
    #[command(flatten)]
    pub tuning: SchedulerTuning,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Scheduler file written by the scheduler.
    #[arg(long)]
    pub scheduler_file: PathBuf,
    /// Seconds to wait for the file and the connection.
    #[arg(long, default_value = "10", value_parser = parse::seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Refresh every SECONDS (default 2) until Ctrl-C: tasks by state, throughput and
    /// workers, redrawn in place on a terminal, printed one after another otherwise.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = parse::positive_seconds)]
    pub watch: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Graph file (JSON: {"tasks": [...], "outputs": [...]}).
    #[arg(required_unless_present = "generate", conflicts_with = "generate")]
    pub graph: Option<PathBuf>,
    /// Generate a benchmark graph instead: independent:N, merge:N or tree:N (N leaves).
    #[arg(long, value_parser = parse::generated)]
    pub generate: Option<parse::Generated>,
    /// Seconds to wait for the results.
    #[arg(long, default_value = "600", value_parser = parse::seconds)]
    pub wait: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How worker-to-worker data travels (the scheduler and clients always use TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

#[derive(Debug, Clone, Args)]
pub struct MpiArgs {
    /// Write address and secret here (mode 0600) for clients outside the job.
    #[arg(long)]
    pub scheduler_file: Option<PathBuf>,
    /// Scheduler port (default: random).
    #[arg(long, value_parser = parse::port)]
    pub scheduler_port: Option<u16>,
    /// Rank that runs the scheduler.
    #[arg(long, default_value_t = 0)]
    pub scheduler_rank: i32,
    /// Network interface to listen on and advertise (e.g. ib0).
    #[arg(long)]
    pub interface: Option<String>,
    /// Only add workers to the running cluster of --scheduler-file.
    #[arg(long)]
    pub no_scheduler: bool,
    /// Also run a worker on the scheduler rank.
    #[arg(long)]
    pub inclusive_workers: bool,
    /// Pin each worker rank to its share of the node's cores, or to their NUMA domain.
    #[arg(long, value_enum, default_value = "none")]
    pub bind: crate::topology::Bind,
    /// Rank that returns to run the user's script as the client (`shoal.mpi.initialize()`).
    #[arg(long, hide = true)]
    pub client_rank: Option<i32>,
    /// Worker names become NAME-RANK.
    #[arg(long, default_value = "shoal-mpi")]
    pub name: String,
    /// Scheduler exits after this many seconds without clients or work.
    #[arg(long, value_parser = parse::seconds)]
    pub idle_timeout: Option<Duration>,
    #[command(flatten)]
    pub worker: WorkerSettings,
    #[command(flatten)]
    pub tuning: SchedulerTuning,
}
