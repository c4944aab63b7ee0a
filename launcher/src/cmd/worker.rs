//! `shoal worker`.

use crate::cli::{WorkerArgs, WorkerSettings};
use crate::iface::choose_host;
use crate::parse;
use shoal_runtime::executor::builtin;
use shoal_runtime::worker::{run_worker, SchedulerSource, WorkerExit, WorkerOptions};

/// Exit status of a worker that lost its scheduler.
pub const EXIT_SCHEDULER_LOST: u8 = 3;

/// Build worker options from flags.
///
/// # Errors
/// No way to find the scheduler, a bad memory limit, or a bad interface.
pub fn options(args: &WorkerArgs, processes_on_node: u32) -> anyhow::Result<WorkerOptions> {
    let scheduler = match (&args.address, &args.scheduler_file) {
        (_, Some(path)) => SchedulerSource::File(path.clone()),
        (Some(address), None) => {
            let secret = super::scheduler::secret_from_env()?.ok_or_else(|| {
                anyhow::anyhow!("connecting by address needs the cluster secret: set SHOAL_SECRET as for the scheduler, or use --scheduler-file F")
            })?;
            SchedulerSource::Address { address: address.clone(), secret }
        }
        (None, None) => anyhow::bail!("say where the scheduler is: --scheduler-file F, or an address tcp://host:port with SHOAL_SECRET set"),
    };
    let (bind, _) = choose_host(args.host.as_deref(), args.interface.as_deref())?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", shoal_runtime::sys::hostname(), std::process::id()));
    settings_to_options(&args.settings, scheduler, name, bind, processes_on_node)
}

/// Worker options shared by `shoal worker` and `shoal local`.
///
/// # Errors
/// A bad memory limit.
pub fn settings_to_options(
    s: &WorkerSettings,
    scheduler: SchedulerSource,
    name: String,
    host: String,
    processes_on_node: u32,
) -> anyhow::Result<WorkerOptions> {
    let cores = shoal_runtime::sys::cpu_count();
    let nthreads = s
        .nthreads
        .unwrap_or_else(|| (cores / processes_on_node.max(1)).max(1));
    let machine = shoal_runtime::sys::machine_memory().effective();
    // `auto`: this process's threads' share of the machine, and never more than an equal
    // share among the worker processes on this node (oversubscribed MPI ranks).
    let share = (f64::from(nthreads) / f64::from(cores.max(1)))
        .min(1.0 / f64::from(processes_on_node.max(1)));
    let memory_limit =
        parse::memory_limit(&s.memory_limit, machine, share).map_err(anyhow::Error::msg)?;
    Ok(WorkerOptions {
        scheduler,
        name,
        nthreads,
        memory_limit,
        resources: s.resources.clone(),
        death_timeout: s.death_timeout,
        host: if host == "0.0.0.0" {
            shoal_runtime::sys::hostname()
        } else {
            host
        },
        zero: s.zero,
        runner: None,
        executors: builtin::KINDS.to_vec(),
        local_directory: s.local_directory.clone(),
        memory: crate::memory::policy(&s.memory, crate::memory::config_path().as_deref())?,
        data_over_mpi: false,
    })
}

/// Run a worker; status 3 when the scheduler was lost.
///
/// # Errors
/// Bad options or the data server cannot start.
pub async fn run(args: WorkerArgs, hooks: &crate::Hooks) -> anyhow::Result<u8> {
    let supervised = std::env::var_os(super::nanny::SUPERVISED_ENV).is_some();
    let mut options = options(&args, 1)?;
    // The nanny watches memory: without a limit and a terminate threshold it has nothing to
    // do, and the worker runs in this process.
    let watched = options.memory_limit > 0 && options.memory.thresholds.terminate.is_some();
    if args.batch.nworkers > 1 || (watched && !(args.no_nanny || supervised)) {
        return super::batch_worker::supervise(&args, hooks).await;
    }
    super::batch_worker::wait_for_scheduler_file(&args).await?;
    options.runner = hooks.runner.clone();
    options.executors = hooks.executors.clone();
    options.memory.supervised = supervised;
    match run_worker(options, super::batch_worker::stop(&args.batch)).await? {
        WorkerExit::Shutdown => Ok(0),
        WorkerExit::SchedulerLost(reason) => {
            tracing::error!(%reason, "worker exits: scheduler lost");
            Ok(EXIT_SCHEDULER_LOST)
        }
    }
}
