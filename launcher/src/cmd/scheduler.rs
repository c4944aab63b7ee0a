//! `shoal scheduler`.

use crate::cli::{ListenArgs, SchedulerArgs, SchedulerTuning};
use crate::iface::choose_host;
use anyhow::Context;
use shoal_comm::Secret;
use shoal_runtime::scheduler::server::{Scheduler, SchedulerOptions};
use shoal_runtime::scheduler::CoreConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The secret from `SHOAL_SECRET` (hex), or a new random one.
///
/// # Errors
/// `SHOAL_SECRET` is set but not hex.
pub fn secret_from_env() -> anyhow::Result<Option<Secret>> {
    match std::env::var("SHOAL_SECRET") {
        Ok(text) => Secret::from_hex(&text).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "SHOAL_SECRET is not a hex string ({e}); generate one with `openssl rand -hex 32`"
            )
        }),
        Err(_) => Ok(None),
    }
}

/// Build scheduler options from flags.
///
/// # Errors
/// A bad interface, or nobody could ever connect (no scheduler file and no SHOAL_SECRET).
pub fn options(
    listen: &ListenArgs,
    scheduler_file: Option<PathBuf>,
    idle_timeout: Option<Duration>,
    tuning: &SchedulerTuning,
) -> anyhow::Result<SchedulerOptions> {
    let secret = match secret_from_env()? {
        Some(s) => s,
        None if scheduler_file.is_some() => Secret::random(),
        None => anyhow::bail!(
            "without --scheduler-file nobody could learn this scheduler's secret: pass --scheduler-file F (recommended), or export SHOAL_SECRET=$(openssl rand -hex 32) for the scheduler, its workers and clients"
        ),
    };
    options_with_secret(listen, scheduler_file, idle_timeout, tuning, secret)
}

/// Build scheduler options with a secret chosen by the caller (`shoal mpi` hands it to
/// its workers by broadcast).
///
/// # Errors
/// A bad interface or host.
pub fn options_with_secret(
    listen: &ListenArgs,
    scheduler_file: Option<PathBuf>,
    idle_timeout: Option<Duration>,
    tuning: &SchedulerTuning,
    secret: Secret,
) -> anyhow::Result<SchedulerOptions> {
    let (bind, contact) = choose_host(listen.host.as_deref(), listen.interface.as_deref())?;
    let port = listen
        .port
        .unwrap_or(if scheduler_file.is_some() { 0 } else { 8786 });
    let listen_addr = std::net::ToSocketAddrs::to_socket_addrs(&(bind.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve host {bind:?}"))?;
    Ok(SchedulerOptions {
        listen: listen_addr,
        contact_host: contact,
        secret,
        scheduler_file,
        idle_timeout,
        heartbeat: tuning.heartbeat.max(Duration::from_millis(10)),
        core: CoreConfig {
            allowed_failures: tuning.allowed_failures,
            worker_timeout: tuning.worker_timeout,
            worker_saturation: tuning.worker_saturation,
            min_worker_queue: tuning.min_worker_queue,
            ..CoreConfig::default()
        },
        services: Vec::new(),
    })
}

/// Bind the dashboard (unless `--no-dashboard`), then the scheduler, whose file lists the
/// dashboard's port; the dashboard serves while the returned handle lives.
///
/// # Errors
/// A port is taken, or the scheduler file cannot be written.
pub async fn bind_with_dashboard(
    mut options: SchedulerOptions,
    tuning: &SchedulerTuning,
    who: &str,
) -> anyhow::Result<(Scheduler, Option<super::dashboard::Serving>)> {
    let dashboard = super::dashboard::bind(&tuning.dashboard, &mut options).await?;
    let secret = options.secret.clone();
    let mut scheduler = Scheduler::bind(options).await?;
    let serving = dashboard.map(|d| super::dashboard::serve(d, &mut scheduler, &secret, who));
    Ok((scheduler, serving))
}

/// Run a scheduler until shutdown.
///
/// # Errors
/// Binding or writing the scheduler file failed.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let options = options(
        &args.listen,
        args.scheduler_file,
        args.idle_timeout,
        &args.tuning,
    )?;
    let (scheduler, _dashboard) =
        bind_with_dashboard(options, &args.tuning, "shoal scheduler").await?;
    scheduler.run(crate::signals::terminated()).await;
    Ok(())
}
