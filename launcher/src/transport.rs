//! `--transport`: which backends carry worker-to-worker data, and the fabrics it starts.
//! The scheduler and clients always use TCP.

use crate::cli::Transport;
use shoal_comm::transport::Connector;

/// This rank's MPI fabric (a build without MPI has none).
#[cfg(feature = "mpi")]
pub type MpiFabric = std::sync::Arc<shoal_comm::transport::mpi::MpiFabric>;
/// This rank's MPI fabric (a build without MPI has none).
#[cfg(not(feature = "mpi"))]
pub type MpiFabric = std::convert::Infallible;

/// The connector a worker's data server and fetches use for `requested`; `mpi` is this
/// rank's MPI fabric inside an MPI job (`shoal mpi`), `None` elsewhere.
///
/// `auto`: UCX where UCX sees an RDMA device (InfiniBand or RoCE; restricted by `UCX_TLS`
/// and `UCX_NET_DEVICES` as usual), else MPI inside an MPI job, else TCP. Inside an MPI
/// job both fabrics run under `auto`, and fetches prefer UCX.
///
/// # Errors
/// The requested transport is not in this build, needs an MPI job, or cannot start.
pub fn worker_connector(requested: Transport, mpi: Option<MpiFabric>) -> anyhow::Result<Connector> {
    #[allow(unused_mut)]
    let mut connector = Connector::tcp();
    let in_mpi_job = mpi.is_some();
    match requested {
        Transport::Tcp => return Ok(connector),
        Transport::Mpi if !in_mpi_job => anyhow::bail!(
            "--transport mpi works inside an MPI job only (mpirun ... shoal mpi); use --transport tcp or ucx here"
        ),
        Transport::Ucx => connector = with_ucx(connector)?,
        Transport::Auto if ucx_sees_rdma() => match with_ucx(connector.clone()) {
            Ok(with) => connector = with,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "UCX sees an RDMA device but cannot start; worker data goes without it"),
        },
        Transport::Auto | Transport::Mpi => {}
    }
    #[cfg(feature = "mpi")]
    if let Some(fabric) = mpi {
        connector = connector.with_mpi(fabric);
    }
    Ok(connector)
}

#[cfg(feature = "ucx")]
fn with_ucx(connector: Connector) -> anyhow::Result<Connector> {
    use anyhow::Context;
    let fabric =
        shoal_comm::transport::ucx::UcxFabric::start().context("cannot start --transport ucx")?;
    tracing::info!("worker data over UCX");
    Ok(connector.with_ucx(fabric))
}

#[cfg(not(feature = "ucx"))]
fn with_ucx(_connector: Connector) -> anyhow::Result<Connector> {
    anyhow::bail!("{}", UCX_MISSING)
}

/// What a build without UCX says to `--transport ucx`.
#[cfg(not(feature = "ucx"))]
const UCX_MISSING: &str = "this shoal was built without UCX support (cargo feature `ucx` off): \
    rebuild with it after loading UCX (`module load ucx`, or ./scripts/setup on Debian): \
    `cargo build --release -p shoal-launcher --features ucx`; or use --transport tcp";

#[cfg(feature = "ucx")]
fn ucx_sees_rdma() -> bool {
    shoal_comm::transport::ucx::info::has_rdma()
}

#[cfg(not(feature = "ucx"))]
fn ucx_sees_rdma() -> bool {
    false
}

/// True for an RDMA transport of UCX (InfiniBand and RoCE verbs: rc, ud, dc and their
/// accelerated variants).
#[cfg(feature = "ucx")]
pub fn is_rdma(transport: &str) -> bool {
    shoal_comm::transport::ucx::info::is_rdma_transport(transport)
}

/// No UCX in this build.
#[cfg(not(feature = "ucx"))]
pub fn is_rdma(_transport: &str) -> bool {
    false
}

/// The transports and devices UCX sees, for `shoal info`: `None` in a build without UCX.
pub fn ucx_resources() -> Option<Result<Vec<(String, String)>, String>> {
    #[cfg(feature = "ucx")]
    {
        Some(
            shoal_comm::transport::ucx::info::resources()
                .map(|r| r.into_iter().map(|r| (r.transport, r.device)).collect())
                .map_err(|e| e.to_string()),
        )
    }
    #[cfg(not(feature = "ucx"))]
    None
}
