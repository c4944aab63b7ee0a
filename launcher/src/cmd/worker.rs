//! `shoal worker`.

use crate::cli::WorkerArgs;
use crate::iface::choose_host;
use crate::settings::ValidWorker;
use shoal_runtime::executor::builtin;
use shoal_runtime::worker::{run_worker, SchedulerSource, WorkerExit, WorkerOptions};

/// Exit status of a worker that lost its scheduler.
pub const EXIT_SCHEDULER_LOST: u8 = 3;

/// Build worker options from flags and the validated settings.
///
/// # Errors
/// No way to find the scheduler, or the data server's host cannot be chosen.
pub fn options(args: &WorkerArgs, settings: &ValidWorker) -> anyhow::Result<WorkerOptions> {
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
    Ok(settings_to_options(settings, scheduler, name, bind))
}

/// Worker options shared by `shoal worker` and `shoal mpi`.
pub fn settings_to_options(
    s: &ValidWorker,
    scheduler: SchedulerSource,
    name: String,
    host: String,
) -> WorkerOptions {
    WorkerOptions {
        scheduler,
        name,
        nthreads: s.nthreads,
        memory_limit: s.memory_limit,
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
        memory: s.memory.clone(),
        transports: shoal_comm::transport::Connector::tcp(),
        on_registered: None,
    }
}

/// Run a worker; status 3 when the scheduler was lost.
///
/// # Errors
/// Bad options or the data server cannot start.
pub async fn run(
    args: WorkerArgs,
    settings: ValidWorker,
    hooks: &crate::Hooks,
) -> anyhow::Result<u8> {
    let supervised = std::env::var_os(super::nanny::SUPERVISED_ENV).is_some();
    let mut options = options(&args, &settings)?;
    // The nanny watches memory: without a limit and a terminate threshold it has nothing to
    // do, and the worker runs in this process.
    let watched = options.memory_limit > 0 && options.memory.thresholds.terminate.is_some();
    if args.batch.nworkers > 1 || (watched && !(args.no_nanny || supervised)) {
        return super::batch_worker::supervise(&args, &settings, hooks).await;
    }
    hooks.warm_up_in_background();
    super::batch_worker::wait_for_scheduler_file(&args).await?;
    options.runner = hooks.runner.clone();
    options.executors = hooks.executors.clone();
    options.memory.supervised = supervised;
    options.transports = crate::transport::worker_connector(settings.transport, None)?;
    let ready = super::ready::ReadySignal::from_env();
    options.on_registered = Some(std::sync::Arc::new(move || ready.send()));
    match run_worker(options, super::batch_worker::stop(&args.batch)).await? {
        WorkerExit::Shutdown => Ok(0),
        WorkerExit::SchedulerLost(reason) => {
            tracing::error!(%reason, "worker exits: scheduler lost");
            Ok(EXIT_SCHEDULER_LOST)
        }
    }
}
