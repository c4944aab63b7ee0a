//! A worker that cannot start tells its scheduler why before it exits (if it can reach
//! it within a few seconds), so that `shoal status` shows why the workers of a batch job
//! never came: the job's own log is on a compute node the user rarely reads.

use crate::cli::WorkerArgs;
use shoal_comm::auth::{self, Role};
use shoal_comm::message::{FromWorker, StartFailure};
use shoal_comm::transport::{tcp_split, MessageWrite};
use shoal_comm::{RawMessage, Secret};
use shoal_runtime::scheduler_file;
use std::path::PathBuf;
use std::time::Duration;

/// How long a failing worker tries to reach its scheduler: a running scheduler answers
/// in milliseconds, and a refused command must still end within a few seconds.
const REPORT_WITHIN: Duration = Duration::from_secs(2);

/// Where a failing worker reports: what it needs from its flags, taken before they are
/// checked (the check is what may fail).
#[derive(Debug, Clone)]
pub struct ReportTo {
    scheduler_file: Option<PathBuf>,
    /// How long to wait for the file: `--scheduler-file-timeout` (the scheduler's job may
    /// start after the workers'), at most [`REPORT_WITHIN`]; none without the flag.
    file_wait: Duration,
    address: Option<String>,
    name: Option<String>,
}

impl ReportTo {
    pub fn of(args: &WorkerArgs) -> ReportTo {
        ReportTo {
            scheduler_file: args.scheduler_file.clone(),
            file_wait: args
                .batch
                .scheduler_file_timeout
                .unwrap_or_default()
                .min(REPORT_WITHIN),
            address: args.address.clone(),
            name: args.name.clone(),
        }
    }
}

/// Tell the scheduler that this worker failed with `error`; quietly gives up when the
/// scheduler cannot be reached within [`REPORT_WITHIN`].
pub async fn report(to: &ReportTo, error: &str) {
    // Supervised workers (`--nworkers`, the nanny) report too: their supervisor has no
    // more than their exit status.
    match tokio::time::timeout(REPORT_WITHIN, send(to, error)).await {
        Ok(Ok(())) => tracing::info!("told the scheduler why this worker did not start"),
        Ok(Err(e)) => tracing::debug!(error = %e, "could not tell the scheduler"),
        Err(_) => tracing::debug!("the scheduler could not be reached to tell it"),
    }
}

async fn send(to: &ReportTo, error: &str) -> anyhow::Result<()> {
    let (address, secret) = match (&to.scheduler_file, &to.address) {
        (Some(path), _) => {
            let (owned, wait) = (path.clone(), to.file_wait);
            let file =
                tokio::task::spawn_blocking(move || scheduler_file::read(&owned, wait)).await??;
            let secret = file.secret(path)?;
            (file.address, secret)
        }
        (None, Some(address)) => {
            let hex = std::env::var("SHOAL_SECRET")?;
            (address.clone(), Secret::from_hex(&hex)?)
        }
        (None, None) => anyhow::bail!("no scheduler named"),
    };
    let stream = tokio::net::TcpStream::connect(address.trim_start_matches("tcp://")).await?;
    let (mut reader, mut writer) = tcp_split(stream);
    let host = shoal_runtime::sys::hostname();
    let pid = std::process::id();
    let name = to.name.clone().unwrap_or_else(|| format!("{host}-{pid}"));
    auth::connect(
        &mut reader,
        &mut writer,
        &secret,
        Role::Worker,
        &name,
        REPORT_WITHIN,
    )
    .await?;
    let failure = StartFailure {
        name,
        host,
        pid,
        error: error.to_string(),
        at: 0.0,
    };
    writer
        .send(&RawMessage::encode(
            &FromWorker::StartFailed(failure),
            Vec::new(),
        )?)
        .await?;
    writer.flush().await?;
    Ok(())
}
