//! `shoal mpi`: one MPI job is the whole cluster. Under `mpirun`/`srun`, the scheduler rank
//! runs the scheduler, the other ranks run workers. The scheduler's address and secret reach
//! the workers by MPI broadcast (a stale scheduler file from an earlier run is never read);
//! the scheduler file is still written, atomically, for clients outside the job.

use crate::cli::MpiArgs;
use crate::iface::choose_host;
use anyhow::{bail, Context};
use mpi::point_to_point::Source;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Threading;
use shoal_comm::transport::mpi::MpiFabric;
use shoal_comm::Secret;
use shoal_runtime::scheduler::server::Scheduler;
use shoal_runtime::worker::{run_worker, SchedulerSource, WorkerExit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Environment variables through which launchers announce the job size.
const LAUNCHER_SIZE_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "MPI_LOCALNRANKS",
    "SLURM_NTASKS",
    "PMIX_SIZE",
];

/// Environment variables through which launchers announce this process's rank.
const LAUNCHER_RANK_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "PMIX_RANK",
    "SLURM_PROCID",
];

/// The first of `vars` set to a number, with its name.
fn launcher_number(vars: &[&'static str]) -> Option<(&'static str, u32)> {
    vars.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|n| (*var, n))
    })
}

/// The job size a launcher announced in the environment, with the variable that says so.
fn launcher_size() -> Option<(&'static str, u32)> {
    launcher_number(LAUNCHER_SIZE_VARS)
}

/// This process's rank as the launcher announced it in the environment, before MPI starts.
fn launcher_rank() -> Option<i32> {
    launcher_number(LAUNCHER_RANK_VARS).and_then(|(_, r)| i32::try_from(r).ok())
}

/// Whether the rank `rank` (from the launcher; `None`: it did not say) will run a worker,
/// as far as is known before MPI starts: to ready the task runner meanwhile.
fn likely_runs_worker(args: &MpiArgs, rank: Option<i32>) -> bool {
    let Some(rank) = rank else {
        return true;
    };
    let is_scheduler = !args.no_scheduler && rank == args.scheduler_rank;
    args.client_rank != Some(rank) && (!is_scheduler || args.inclusive_workers)
}

/// Check the MPI world against the launcher and the flags.
///
/// # Errors
/// A world of one rank (alone, or because the binary's MPI differs from the launcher's),
/// or a scheduler rank outside the world.
pub fn check_world(
    size: i32,
    scheduler_rank: i32,
    inclusive: bool,
    no_scheduler: bool,
    client_rank: Option<i32>,
) -> anyhow::Result<()> {
    if let Some(client) = client_rank {
        let needed = if inclusive { 2 } else { 3 };
        if size < needed {
            let roles = if inclusive {
                "scheduler and client"
            } else {
                "scheduler, client and a worker"
            };
            bail!("a batch script under shoal.mpi.initialize() needs at least {needed} ranks ({roles}): run it with `mpirun -np {needed}` or more");
        }
        if client == scheduler_rank || !(0..size).contains(&client) {
            bail!("the client rank {client} must be a rank of the world of {size} other than the scheduler rank {scheduler_rank}");
        }
    }
    if size == 1 {
        if let Some((var, n)) = launcher_size().filter(|(_, n)| *n > 1) {
            bail!(
                "MPI_COMM_WORLD has 1 rank but the launcher started {n} processes ({var}={n}): this shoal was built against a different MPI than the mpirun that started it, so every rank believes it is rank 0 of 1. Use the mpirun of the MPI shoal links to (see `ldd $(command -v shoal) | grep -i mpi`), or rebuild shoal after `module load` of the MPI you launch with"
            );
        }
        if !(inclusive || no_scheduler) {
            bail!("a world of 1 rank has no room for workers: run with `mpirun -np 2` or more, or pass --inclusive-workers to run a worker next to the scheduler");
        }
    }
    if !no_scheduler && !(0..size).contains(&scheduler_rank) {
        bail!("--scheduler-rank {scheduler_rank} is outside the world of {size} ranks (valid: 0..={})", size - 1);
    }
    Ok(())
}

/// (this rank's index among the ranks on its node, ranks on the node), through the
/// node-local communicator.
fn place_on_node(world: &SimpleCommunicator) -> (u32, u32) {
    let local = world.split_shared(0);
    (local.rank().max(0) as u32, local.size().max(1) as u32)
}

/// What the scheduler rank broadcasts: `ok ADDRESS SECRET` or `err MESSAGE`, so that
/// workers never wait for a scheduler that failed to start.
fn encode_contact(contact: &anyhow::Result<(String, Secret)>) -> Vec<u8> {
    match contact {
        Ok((address, secret)) => format!("ok\n{address}\n{}", secret.to_hex()).into_bytes(),
        Err(e) => format!("err\n{e:#}").into_bytes(),
    }
}

fn decode_contact(bytes: &[u8]) -> anyhow::Result<(String, Secret)> {
    let text = std::str::from_utf8(bytes).context("scheduler contact broadcast is not UTF-8")?;
    match text.split_once('\n') {
        Some(("ok", rest)) => {
            let (address, secret) = rest
                .split_once('\n')
                .context("malformed scheduler contact broadcast")?;
            Ok((
                address.to_string(),
                Secret::from_hex(secret).context("malformed secret in broadcast")?,
            ))
        }
        Some(("err", message)) => bail!("the scheduler rank failed to start: {message}"),
        _ => bail!("malformed scheduler contact broadcast"),
    }
}

/// Broadcast bytes from `root` (length first, then the bytes).
fn broadcast(world: &SimpleCommunicator, root: i32, payload: Option<Vec<u8>>) -> Vec<u8> {
    let root_process = world.process_at_rank(root);
    let mut len = payload.as_ref().map_or(0u64, |p| p.len() as u64);
    root_process.broadcast_into(&mut len);
    let mut buf = payload.unwrap_or_else(|| vec![0u8; len as usize]);
    root_process.broadcast_into(&mut buf[..]);
    buf
}

/// Bind the scheduler. The secret reaches workers by broadcast; the scheduler file (if
/// any) is for clients outside the job.
async fn start_scheduler(
    args: &MpiArgs,
) -> anyhow::Result<(Scheduler, Secret, Option<super::dashboard::Serving>)> {
    let listen = crate::cli::ListenArgs {
        host: None,
        interface: args.interface.clone(),
        port: Some(args.scheduler_port.unwrap_or(0)),
    };
    let secret = super::scheduler::secret_from_env()?.unwrap_or_else(Secret::random);
    let mut options = super::scheduler::options_with_secret(
        &listen,
        args.scheduler_file.clone(),
        args.idle_timeout,
        &args.tuning,
        secret.clone(),
    )?;
    let dashboard = super::dashboard::bind(&args.tuning.dashboard, &mut options).await?;
    let mut scheduler = Scheduler::bind(options).await?;
    let serving =
        dashboard.map(|d| super::dashboard::serve(d, &mut scheduler, &secret, "shoal mpi"));
    Ok((scheduler, secret, serving))
}

/// Tag of the message with which the scheduler rank ends the job.
const STOP_TAG: i32 = 0x5707;
/// Tag of the message with which the scheduler rank says a worker rank was lost: Open
/// MPI's finalize may wait for the dead process, so the survivors bound their wait there
/// by [`LOST_PEER_FINALIZE_TIMEOUT`] (a rank that never exchanged data with the dead one
/// has no other way to know).
const PEER_LOST_TAG: i32 = 0x5708;

/// Tell the worker ranks that never registered that the cluster stopped, so they do not
/// wait out their death timeout (registered workers were told over their connection; a
/// message to a rank that died would stay pending and hold up MPI_Finalize).
fn send_stop(world: &SimpleCommunicator, ranks: &[i32]) {
    send_notice(world, ranks, STOP_TAG);
}

/// One byte with `tag` to each of `ranks`, sent without waiting.
fn send_notice(world: &SimpleCommunicator, ranks: &[i32], tag: i32) {
    use mpi::raw::AsRaw;
    static NOTICE: u8 = 1;
    for &rank in ranks {
        // SAFETY: the buffer is a static that outlives the send; the request is released at
        // once (MPI completes it in the background), which MPI_Request_free allows.
        unsafe {
            let mut request = std::mem::MaybeUninit::uninit();
            let sent = mpi::ffi::MPI_Isend(
                std::ptr::from_ref(&NOTICE).cast(),
                1,
                mpi::ffi::RSMPI_UINT8_T,
                rank,
                tag,
                world.as_raw(),
                request.as_mut_ptr(),
            );
            if sent == 0 {
                mpi::ffi::MPI_Request_free(request.as_mut_ptr());
            }
        }
    }
}

/// Resolves when the scheduler rank says the cluster stopped, or on SIGINT/SIGTERM. Sets
/// `peer_lost` when the scheduler rank says a worker rank was lost meanwhile.
async fn stopped(world: &SimpleCommunicator, scheduler_rank: Option<i32>, peer_lost: &AtomicBool) {
    let from_mpi = async {
        let Some(root) = scheduler_rank else {
            return std::future::pending().await;
        };
        let process = world.process_at_rank(root);
        loop {
            if process.immediate_probe_with_tag(PEER_LOST_TAG).is_some() {
                let _: (u8, _) = process.receive_with_tag(PEER_LOST_TAG);
                if !peer_lost.swap(true, Ordering::Relaxed) {
                    tracing::info!("the scheduler rank lost a worker rank: MPI_Finalize will not wait long for it");
                }
            }
            if process.immediate_probe_with_tag(STOP_TAG).is_some() {
                let _: (u8, _) = process.receive_with_tag(STOP_TAG);
                tracing::info!("the scheduler rank ended the job");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = from_mpi => {}
        () = crate::signals::terminated() => {}
    }
}

/// How this rank's part ended.
pub enum RankOutcome {
    /// The rank ran a scheduler or a worker to the end; MPI is finalised.
    Exited(u8),
    /// The client rank of a batch script: the cluster runs; MPI stays initialised until
    /// [`finalize`] (called when the script ends).
    Client { address: String, secret: Secret },
}

/// Finalise MPI left initialised by a client rank (at the end of a batch script).
pub fn finalize() {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        // SAFETY: MPI is initialised and not finalised; this is the initialising thread's
        // process, and nothing else uses MPI on the client rank.
        unsafe {
            mpi::ffi::MPI_Finalize();
        }
    }
}

/// Run this rank's part of the cluster (`shoal mpi`).
///
/// # Errors
/// Bad world or flags, the scheduler cannot start, or a worker cannot start.
pub async fn run(args: MpiArgs, hooks: &crate::Hooks) -> anyhow::Result<u8> {
    match run_rank(args, hooks).await? {
        RankOutcome::Exited(code) => Ok(code),
        RankOutcome::Client { .. } => {
            bail!("--client-rank is for shoal.mpi.initialize() in a Python batch script")
        }
    }
}

/// Open MPI's point-to-point layer (PML) for this job, unless the user chose one.
const FAST_START_PML: &str = "ob1";

/// Open MPI would otherwise probe for high-speed point-to-point layers (`cm` over OFI/PSM,
/// UCX) in `MPI_Init`, which costs about 0.2 s of a 0.35 s start on this machine; the basic
/// `ob1` layer starts at once, and it is what Open MPI ends up choosing anyway on a node
/// without a high-speed network (shared memory within the node, TCP between nodes). So:
/// with TCP as the data transport (shoal's own MPI traffic is then the start-up broadcast),
/// or on a node without InfiniBand, Omni-Path or Slingshot devices, `ob1`; otherwise Open
/// MPI's choice, so data over MPI uses the fabric. A user's own choice (`OMPI_MCA_pml`,
/// also what `mpirun --mca pml X` sets) is always kept; other MPIs ignore the variable.
/// Call before other threads exist: it sets this process's environment.
pub fn prefer_fast_start(args: &MpiArgs) {
    let needs_fabric = args.worker.transport.data_over_mpi() && high_speed_network_present();
    if !needs_fabric && std::env::var_os("OMPI_MCA_pml").is_none() {
        std::env::set_var("OMPI_MCA_pml", FAST_START_PML);
        tracing::debug!(
            pml = FAST_START_PML,
            "Open MPI point-to-point layer for a fast start"
        );
    }
}

/// True if this node has a high-speed network device (InfiniBand/RoCE, Omni-Path,
/// Slingshot) that Open MPI's other point-to-point layers would use.
fn high_speed_network_present() -> bool {
    let infiniband = std::fs::read_dir("/sys/class/infiniband")
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    infiniband
        || ["/dev/hfi1_0", "/dev/cxi0"]
            .iter()
            .any(|d| std::path::Path::new(d).exists())
}

/// Start this process's MPI transport on a duplicate of the world (collective: every rank
/// calls it, in the same order as the other collectives). Rank 0 names the job, so that
/// workers of another MPI job never take this job's `mpi://` addresses for their own.
/// `None` on a rank that takes no part (the client rank of a batch script).
fn start_fabric(
    world: &SimpleCommunicator,
    takes_part: bool,
) -> anyhow::Result<Option<RunningFabric>> {
    use mpi::raw::AsRaw;
    let job = (world.rank() == 0).then(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{:x}{nanos:08x}", std::process::id()).into_bytes()
    });
    let job = String::from_utf8_lossy(&broadcast(world, 0, job)).into_owned();
    let comm = world.duplicate();
    let raw = comm.as_raw();
    // Freed by MPI_Finalize, after the fabric stopped.
    std::mem::forget(comm);
    if !takes_part {
        return Ok(None);
    }
    // SAFETY: MPI is initialised and finalised only after `MpiFabric::stop` (end of
    // `run_rank`); the duplicate communicator is used by the fabric alone.
    let fabric = unsafe { MpiFabric::start(raw, job) }.context("cannot start --transport mpi")?;
    Ok(Some(RunningFabric(fabric)))
}

/// The MPI transport of this rank, stopped when dropped: on every way out of
/// [`run_rank`], errors included, before the universe (declared earlier) finalises MPI.
struct RunningFabric(Arc<MpiFabric>);

impl Drop for RunningFabric {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Run this rank's part: scheduler, worker, or (batch scripts) return as the client.
///
/// # Errors
/// Bad world or flags, the scheduler cannot start, or a worker cannot start.
pub async fn run_rank(args: MpiArgs, hooks: &crate::Hooks) -> anyhow::Result<RankOutcome> {
    // MPI_Init mostly waits for the other ranks: a worker's imports fit in that wait.
    if likely_runs_worker(&args, launcher_rank()) {
        hooks.warm_up_in_background();
    }
    let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
        .context("MPI was already initialised in this process")?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    tracing::debug!(rank, size, ?threading, "MPI initialised");
    check_world(
        size,
        args.scheduler_rank,
        args.inclusive_workers,
        args.no_scheduler,
        args.client_rank,
    )?;
    let (local_rank, on_node) = place_on_node(&world);
    let is_scheduler = !args.no_scheduler && rank == args.scheduler_rank;
    let is_client = args.client_rank == Some(rank);
    let fabric = if args.worker.transport.data_over_mpi() {
        start_fabric(&world, !is_client)?
    } else {
        None
    };
    let runs_worker = if is_scheduler {
        args.inclusive_workers
    } else {
        !is_client
    };

    // The scheduler binds first; everyone learns where it is by broadcast.
    let mut scheduler = None;
    let mut _dashboard = None;
    let contact = if args.no_scheduler {
        None
    } else {
        let payload = if is_scheduler {
            let started = start_scheduler(&args).await;
            let contact = started
                .as_ref()
                .map(|(s, secret, _)| (s.address().to_string(), secret.clone()))
                .map_err(|e| anyhow::anyhow!("{e:#}"));
            let payload = encode_contact(&contact);
            scheduler = started.ok().map(|(s, _, serving)| {
                _dashboard = serving;
                s
            });
            if let Some(s) = scheduler.as_mut() {
                let workers = size - 1 - i32::from(args.client_rank.is_some())
                    + i32::from(args.inclusive_workers);
                crate::progress::watch_start_up(s, workers.max(0) as u64, "(shoal mpi)");
            }
            Some(payload)
        } else {
            None
        };
        Some(decode_contact(&broadcast(
            &world,
            args.scheduler_rank,
            payload,
        ))?)
    };

    if is_client {
        let (address, secret) = contact.context("a client rank needs a scheduler in the job")?;
        // MPI stays initialised until the script ends (see `finalize`).
        std::mem::forget(world);
        std::mem::forget(universe);
        return Ok(RankOutcome::Client { address, secret });
    }

    let peer_lost = AtomicBool::new(false);
    let worker_future = async {
        if !runs_worker {
            return Ok(0u8);
        }
        let source = match (&contact, &args.scheduler_file) {
            (Some((address, secret)), _) => SchedulerSource::Address {
                address: address.clone(),
                secret: secret.clone(),
            },
            (None, Some(path)) => SchedulerSource::File(path.clone()),
            (None, None) => {
                bail!("--no-scheduler needs --scheduler-file F of the running scheduler to join")
            }
        };
        let (host, _) = choose_host(None, args.interface.as_deref())?;
        let name = worker_name(&args.name, rank);
        if let Some(cpus) =
            crate::topology::bind_process(args.bind, local_rank as usize, on_node as usize)?
        {
            tracing::info!(rank, ?cpus, "bound to CPUs");
        }
        let settings = crate::settings::ValidWorker::validate(&args.worker, on_node)?;
        let mut options = super::worker::settings_to_options(&settings, source, name, host);
        options.runner = hooks.runner.clone();
        options.executors = hooks.executors.clone();
        options.transports = crate::transport::worker_connector(
            settings.transport,
            fabric.as_ref().map(|f| f.0.clone()),
        )?;
        let scheduler_rank = (!args.no_scheduler).then_some(args.scheduler_rank);
        Ok(
            match run_worker(options, stopped(&world, scheduler_rank, &peer_lost)).await? {
                WorkerExit::Shutdown => 0,
                WorkerExit::SchedulerLost(reason) => {
                    tracing::error!(%reason, "worker exits: scheduler lost");
                    super::worker::EXIT_SCHEDULER_LOST
                }
            },
        )
    };
    let mut rank_lost = false;
    let code = match scheduler {
        Some(mut s) => {
            let mut losses = s.worker_losses();
            // Each worker rank lost is announced to the other ranks as it happens.
            let announce_losses = async {
                let mut lost = Vec::new();
                while let Some(name) = losses.recv().await {
                    let Some(r) = rank_of_worker(&name, &args.name) else {
                        continue; // a worker from outside this job
                    };
                    lost.push(r);
                    let survivors: Vec<i32> = (0..size)
                        .filter(|x| *x != rank && Some(*x) != args.client_rank)
                        .filter(|x| !lost.contains(x))
                        .collect();
                    send_notice(&world, &survivors, PEER_LOST_TAG);
                }
            };
            let scheduler = async {
                let (summary, ()) =
                    tokio::join!(s.run(crate::signals::terminated()), announce_losses);
                let rank_name = |r: i32| worker_name(&args.name, r);
                let unseen: Vec<i32> = (0..size)
                    .filter(|r| *r != rank || runs_worker)
                    .filter(|r| Some(*r) != args.client_rank)
                    .filter(|r| !summary.workers_seen.contains(&rank_name(*r)))
                    .collect();
                send_stop(&world, &unseen);
                (0..size).any(|r| summary.workers_lost.contains(&rank_name(r)))
            };
            // This rank's own worker (--inclusive-workers) failing at start stops the job
            // as any worker rank's does.
            tokio::pin!(scheduler, worker_future);
            let (sched, worker) = tokio::select! {
                worker = &mut worker_future => match worker {
                    Err(e) => abort_job(&world, rank, &args, contact.as_ref(), &e),
                    Ok(code) => (scheduler.await, code),
                },
                sched = &mut scheduler => (sched, worker_future.await?),
            };
            rank_lost = sched;
            worker
        }
        None => match worker_future.await {
            Ok(code) => code,
            Err(e) => abort_job(&world, rank, &args, contact.as_ref(), &e),
        },
    };
    rank_lost |= peer_lost.load(Ordering::Relaxed);
    rank_lost |= fabric.as_ref().is_some_and(|f| f.0.peer_lost());
    drop(fabric);
    drop(world);
    // A rank that lost its scheduler, or saw a worker rank go, lost a peer: Open MPI's
    // finalize may wait for it.
    let timeout = if code == super::worker::EXIT_SCHEDULER_LOST || rank_lost {
        LOST_PEER_FINALIZE_TIMEOUT
    } else {
        FINALIZE_TIMEOUT
    };
    finalize_within(universe, timeout, code);
    Ok(RankOutcome::Exited(code))
}

/// The name a rank gives its worker: `{prefix}-{rank}` (`--name` is the prefix).
fn worker_name(prefix: &str, rank: i32) -> String {
    format!("{prefix}-{rank}")
}

/// The rank of this job's worker named `name` ([`worker_name`]'s inverse), if it is one.
fn rank_of_worker(name: &str, prefix: &str) -> Option<i32> {
    name.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

/// A worker rank that failed to start stops the whole job (no half-started cluster):
/// its error is printed, the scheduler file of this job's scheduler is removed, and
/// `MPI_Abort` ends every rank with status 1 (mpirun exits non-zero).
fn abort_job(
    world: &SimpleCommunicator,
    rank: i32,
    args: &MpiArgs,
    contact: Option<&(String, Secret)>,
    error: &anyhow::Error,
) -> ! {
    eprintln!("shoal: rank {rank}: the worker failed to start: {error:#}; stopping the whole job");
    if let (Some(path), Some((address, _))) = (&args.scheduler_file, contact) {
        let ours = shoal_runtime::scheduler_file::read(path, std::time::Duration::ZERO)
            .is_ok_and(|f| f.address == *address);
        if ours {
            let _ = std::fs::remove_file(shoal_runtime::scheduler_file::expand_tilde(path));
        }
    }
    world.abort(1)
}

/// How long MPI_Finalize may take before the rank leaves without it. Ranks legitimately
/// wait there for the others (in batch scripts, for the client rank to finish), so this
/// only bounds a real hang.
const FINALIZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The same after a peer rank died: the survivors have nobody to wait for.
const LOST_PEER_FINALIZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// MPI_Finalize (dropping the universe), but never hang in it: after a rank was killed,
/// Open MPI's finalize can wait for a peer that is gone. A watchdog then exits with the
/// rank's status (mpirun notes the missing finalize; nothing hangs).
fn finalize_within(universe: mpi::environment::Universe, timeout: std::time::Duration, code: u8) {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(timeout).is_err() {
            eprintln!("shoal: MPI_Finalize did not return within {timeout:?} (a peer rank died?); exiting without it");
            std::process::exit(i32::from(code));
        }
    });
    drop(universe);
    let _ = done.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_give_their_rank_only_for_this_jobs_prefix() {
        assert_eq!(rank_of_worker("shoal-mpi-3", "shoal-mpi"), Some(3));
        assert_eq!(rank_of_worker("shoal-mpi-12", "shoal-mpi"), Some(12));
        assert_eq!(rank_of_worker("other-3", "shoal-mpi"), None);
        assert_eq!(rank_of_worker("shoal-mpi3", "shoal-mpi"), None);
        assert_eq!(rank_of_worker("shoal-mpi-x", "shoal-mpi"), None);
    }

    #[test]
    fn contact_round_trips() {
        let secret = Secret::random();
        let (address, back) = decode_contact(&encode_contact(&Ok((
            "tcp://10.0.0.1:4000".into(),
            secret.clone(),
        ))))
        .unwrap();
        assert_eq!(address, "tcp://10.0.0.1:4000");
        assert_eq!(back, secret);
        assert!(decode_contact(b"nonsense").is_err());
        let failed =
            decode_contact(&encode_contact(&Err(anyhow::anyhow!("no ib0 here")))).unwrap_err();
        assert_eq!(
            failed.to_string(),
            "the scheduler rank failed to start: no ib0 here"
        );
    }

    #[test]
    fn workers_are_readied_on_every_rank_but_the_scheduler_and_client() {
        let args = MpiArgs::default();
        assert!(!likely_runs_worker(&args, Some(0)), "the scheduler rank");
        assert!(likely_runs_worker(&args, Some(1)));
        assert!(
            likely_runs_worker(&args, None),
            "a launcher that does not say"
        );
        let batch = MpiArgs {
            client_rank: Some(1),
            ..MpiArgs::default()
        };
        assert!(!likely_runs_worker(&batch, Some(1)), "the client rank");
        assert!(likely_runs_worker(&batch, Some(2)));
        let inclusive = MpiArgs {
            inclusive_workers: true,
            ..MpiArgs::default()
        };
        assert!(likely_runs_worker(&inclusive, Some(0)));
        let no_scheduler = MpiArgs {
            no_scheduler: true,
            ..MpiArgs::default()
        };
        assert!(likely_runs_worker(&no_scheduler, Some(0)));
    }

    #[test]
    fn bad_worlds_are_explained() {
        assert!(check_world(4, 0, false, false, None).is_ok());
        let err = check_world(4, 7, false, false, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--scheduler-rank 7 is outside the world of 4 ranks (valid: 0..=3)"),
            "{err}"
        );
        let err = check_world(1, 0, false, false, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--inclusive-workers") || err.contains("different MPI"),
            "{err}"
        );
        assert!(
            check_world(1, 0, true, false, None).is_ok()
                || launcher_size().is_some_and(|(_, n)| n > 1)
        );
        let err = check_world(2, 0, false, false, Some(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs at least 3 ranks"), "{err}");
        assert!(check_world(3, 0, false, false, Some(0)).is_err());
        assert!(check_world(3, 0, false, false, Some(1)).is_ok());
    }
}
