//! The scheduler's dashboard as `shoal scheduler`, `local` and `mpi` start it: bound
//! before the scheduler writes its file (whose `services` name its port), then fed by
//! the scheduler's snapshots.

use crate::cli::DashboardArgs;
use anyhow::Context;
use shoal_dashboard::{Access, Dashboard};
use shoal_runtime::dashboard_link::{dashboard_link, SERVICE};
use shoal_runtime::scheduler::server::{Scheduler, SchedulerOptions};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};

/// Dask's dashboard port.
pub const DEFAULT_PORT: u16 = 8787;

/// A dashboard being served; dropping it stops it.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind the dashboard (none with `--no-dashboard`) on the scheduler's host and list it
/// among the scheduler's services.
///
/// # Errors
/// The host does not resolve, or an explicitly requested port is taken.
pub async fn bind(
    args: &DashboardArgs,
    options: &mut SchedulerOptions,
) -> anyhow::Result<Option<Dashboard>> {
    if args.no_dashboard {
        return Ok(None);
    }
    let host = args
        .dashboard_address
        .as_ref()
        .and_then(|a| a.host.clone())
        .unwrap_or_else(|| options.contact_host.clone());
    let explicit = args.dashboard_address.as_ref().map(|a| a.port);
    let resolve = |port: u16| -> anyhow::Result<SocketAddr> {
        (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| {
                format!(
                    "cannot resolve the dashboard's host {host:?} (--dashboard-address HOST:PORT)"
                )
            })
    };
    let access = Access {
        token: shoal_comm::auth::dashboard_token(&options.secret),
        metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
    };
    let port = explicit.unwrap_or(DEFAULT_PORT);
    let dashboard = match Dashboard::bind(resolve(port)?, access.clone()).await {
        Ok(d) => d,
        Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!("port {DEFAULT_PORT} is taken (another dashboard on this host?): the dashboard uses a free port instead");
            Dashboard::bind(resolve(0)?, access).await.with_context(|| {
                format!("cannot listen on {host} for the dashboard (--no-dashboard runs none)")
            })?
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot listen on {host}:{port} for the dashboard: pick another port with --dashboard-address HOST:PORT, or --no-dashboard")
            })
        }
    };
    options
        .services
        .push((SERVICE.to_string(), dashboard.port()));
    Ok(Some(dashboard))
}

/// Serve `dashboard` from the snapshots of `scheduler` and say where it is: the link
/// with its token on a terminal; elsewhere (a batch job's log) the address only.
pub fn serve(
    dashboard: Dashboard,
    scheduler: &mut Scheduler,
    secret: &shoal_comm::Secret,
    who: &str,
) -> Serving {
    let services = [(SERVICE.to_string(), dashboard.port())];
    let token = shoal_comm::auth::dashboard_token(secret);
    let link = dashboard_link(scheduler.address(), &services, &token).unwrap_or_default();
    let snapshots = scheduler.snapshots();
    let task = tokio::spawn(async move {
        if let Err(e) = dashboard.serve(snapshots).await {
            tracing::error!(error = %format!("{e:#}"), "the dashboard stopped");
        }
    });
    if crate::progress::quiet() {
        tracing::debug!("dashboard on port {}", services[0].1);
    } else if std::io::stderr().is_terminal() {
        eprintln!("{who}: dashboard at {link}");
    } else {
        let bare = link.split('?').next().unwrap_or(&link);
        eprintln!("{who}: dashboard at {bare} (`shoal status --scheduler-file F` prints the link with its token)");
    }
    Serving { task }
}
