//! Opening connections: the best backend this process and an address share, then the
//! handshake.

use super::*;
use crate::auth::{self, Role};
use crate::{CommError, Secret};
use address::Alternative;
#[cfg(any(feature = "mpi", feature = "ucx"))]
use std::sync::Arc;
use std::time::Duration;
pub use tcp::tcp_split;

/// Why a connection could not be opened; the cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address has no alternative this process can use.
    #[error(transparent)]
    Address(#[from] address::AddressError),
    /// Nothing answered in time.
    #[error("connecting to {address} timed out after {timeout:?}")]
    Timeout {
        /// The address dialled.
        address: String,
        /// How long the connection was given.
        timeout: Duration,
    },
    /// The operating system (or the fabric) refused or failed the connection.
    #[error("cannot connect to {address}")]
    Io {
        /// The address dialled.
        address: String,
        /// What the operating system (or fabric) said.
        #[source]
        source: std::io::Error,
    },
    /// Connected, but the authentication handshake failed.
    #[error("handshake with {address} over {transport} failed")]
    Handshake {
        /// The address dialled.
        address: String,
        /// The transport it was reached over (`tcp`, `mpi`, `ucx`).
        transport: &'static str,
        /// Why the handshake failed.
        #[source]
        source: CommError,
    },
}

impl ConnectError {
    /// Nothing listens at the address (the connection was actively refused).
    pub fn nothing_listens(&self) -> bool {
        matches!(self, ConnectError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// The backends this process can open connections over: TCP always, plus the MPI and UCX
/// fabrics it started. Cheap to clone.
#[derive(Clone, Default)]
pub struct Connector {
    #[cfg(feature = "mpi")]
    mpi: Option<Arc<mpi::MpiFabric>>,
    #[cfg(feature = "ucx")]
    ucx: Option<Arc<ucx::UcxFabric>>,
}

impl Connector {
    /// TCP only.
    pub fn tcp() -> Self {
        Connector::default()
    }

    /// Also over MPI, to ranks of `fabric`'s job.
    #[cfg(feature = "mpi")]
    pub fn with_mpi(mut self, fabric: Arc<mpi::MpiFabric>) -> Self {
        self.mpi = Some(fabric);
        self
    }

    /// Also over UCX, to peers advertising a `ucx://` address.
    #[cfg(feature = "ucx")]
    pub fn with_ucx(mut self, fabric: Arc<ucx::UcxFabric>) -> Self {
        self.ucx = Some(fabric);
        self
    }

    /// This process's MPI fabric, if it has one.
    #[cfg(feature = "mpi")]
    pub fn mpi(&self) -> Option<&Arc<mpi::MpiFabric>> {
        self.mpi.as_ref()
    }

    /// This process's UCX fabric, if it has one.
    #[cfg(feature = "ucx")]
    pub fn ucx(&self) -> Option<&Arc<ucx::UcxFabric>> {
        self.ucx.as_ref()
    }

    /// The alternatives a listener of this process advertises next to its TCP address.
    pub fn extra_alternatives(&self) -> Vec<String> {
        #[allow(unused_mut)]
        let mut extra = Vec::new();
        #[cfg(feature = "mpi")]
        if let Some(f) = &self.mpi {
            extra.push(f.address());
        }
        #[cfg(feature = "ucx")]
        if let Some(f) = &self.ucx {
            extra.push(f.address());
        }
        extra
    }

    /// The alternative of `address` a connection would use: UCX if both sides have it,
    /// else MPI inside one job, else TCP.
    ///
    /// # Errors
    /// No alternative this process can use.
    pub fn choose(&self, address: &str) -> Result<Alternative, ConnectError> {
        let all: Vec<Alternative> = address::alternatives(address).collect();
        let usable = |a: &&Alternative| match a {
            Alternative::Tcp(_) => true,
            #[cfg(feature = "mpi")]
            Alternative::Mpi { job, .. } => self.mpi.as_ref().is_some_and(|f| f.job() == job),
            #[cfg(feature = "ucx")]
            Alternative::Ucx(_) => self.ucx.is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        };
        let rank = |a: &Alternative| match a {
            Alternative::Ucx(_) => 0,
            Alternative::Mpi { .. } => 1,
            Alternative::Tcp(_) => 2,
        };
        all.iter()
            .filter(usable)
            .min_by_key(|a| rank(a))
            .cloned()
            .ok_or_else(|| {
                ConnectError::Address(match address::parse_address(address) {
                    Err(e) => e,
                    Ok(_) => address::AddressError::NoUsableAlternative(address.to_string()),
                })
            })
    }

    /// Open a connection to `service` at `address` over [`Connector::choose`]'s backend.
    ///
    /// # Errors
    /// As [`Connector::choose`], or the connection cannot be made in `timeout`.
    pub async fn open(
        &self,
        address: &str,
        service: Service,
        timeout: Duration,
    ) -> Result<(Reader, Writer), ConnectError> {
        let _ = service;
        let io = |source| ConnectError::Io {
            address: address.to_string(),
            source,
        };
        match self.choose(address)? {
            Alternative::Tcp(host_port) => {
                let stream =
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&host_port))
                        .await
                        .map_err(|_| ConnectError::Timeout {
                            address: address.to_string(),
                            timeout,
                        })?
                        .map_err(io)?;
                let (r, w) = tcp_split(stream);
                Ok((Reader::Tcp(r), Writer::Tcp(w)))
            }
            #[cfg(feature = "mpi")]
            Alternative::Mpi { rank, .. } => {
                let fabric = self.mpi.as_ref().ok_or_else(unusable)?;
                let (r, w) = fabric.connect(rank, service);
                Ok((Reader::Mpi(r), Writer::Mpi(w)))
            }
            #[cfg(feature = "ucx")]
            Alternative::Ucx(worker) => {
                let fabric = self.ucx.as_ref().ok_or_else(unusable)?;
                let (r, w) = fabric.connect(&worker, service).map_err(io)?;
                Ok((Reader::Ucx(r), Writer::Ucx(w)))
            }
            #[allow(unreachable_patterns)]
            _ => Err(unusable()),
        }
    }

    /// Open a connection and authenticate as `role`; returns the halves and the peer's
    /// identity.
    ///
    /// # Errors
    /// As [`Connector::open`], or the handshake failed (wrong secret, other version).
    pub async fn connect(
        &self,
        address: &str,
        service: Service,
        secret: &Secret,
        role: Role,
        name: &str,
        timeout: Duration,
    ) -> Result<(Reader, Writer, String), ConnectError> {
        let (mut reader, mut writer) = self.open(address, service, timeout).await?;
        let transport = reader.transport();
        let identity = auth::connect(&mut reader, &mut writer, secret, role, name, timeout)
            .await
            .map_err(|source| ConnectError::Handshake {
                address: address.to_string(),
                transport,
                source,
            })?;
        Ok((reader, writer, identity))
    }

    /// The peer at `address` left (its process may have died): backends that cannot see
    /// that at once themselves (MPI; UCX over shared memory) fail its connections now.
    pub fn note_peer_lost(&self, address: &str) {
        #[cfg(feature = "mpi")]
        if let (Some(fabric), Some((job, rank))) = (&self.mpi, address::mpi_alternative(address)) {
            if job == fabric.job() {
                fabric.note_peer_lost(rank);
            }
        }
        #[cfg(feature = "ucx")]
        if let (Some(fabric), Some(worker)) = (&self.ucx, address::ucx_alternative(address)) {
            fabric.note_peer_lost(&worker);
        }
        let _ = address;
    }
}

fn unusable() -> ConnectError {
    ConnectError::Address(address::AddressError::NoFabric)
}
