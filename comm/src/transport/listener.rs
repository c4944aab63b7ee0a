//! Accepting connections on every backend this process serves, then the handshake.

use super::*;
use crate::auth::{self, PeerHello};
use crate::{CommError, Secret};
use std::time::Duration;

/// A connection accepted by a [`Listener`], not yet authenticated.
pub struct Incoming {
    /// Where the peer's messages arrive.
    pub reader: Reader,
    /// Where messages to the peer go.
    pub writer: Writer,
    /// Who connected, for logs: a socket address, `MPI rank N`, `UCX peer ...`.
    pub peer: String,
}

impl Incoming {
    /// Run the accepting side of the handshake.
    ///
    /// # Errors
    /// The peer does not know the secret, speaks another version, or is too slow.
    pub async fn authenticate(
        mut self,
        secret: &Secret,
        name: &str,
        timeout: Duration,
    ) -> Result<(Reader, Writer, PeerHello), CommError> {
        let hello = auth::accept(&mut self.reader, &mut self.writer, secret, name, timeout).await?;
        Ok((self.reader, self.writer, hello))
    }
}

/// Accepts connections to one service on TCP and on every fabric of a [`Connector`].
pub struct Listener {
    tcp: tokio::net::TcpListener,
    address: String,
    #[cfg(feature = "mpi")]
    mpi: Option<mpi::MpiListener>,
    #[cfg(feature = "ucx")]
    ucx: Option<ucx::UcxListener>,
}

impl Listener {
    /// Listen for `service` on `tcp` and on every fabric of `connector` (replacing earlier
    /// listeners of that service on them).
    ///
    /// # Errors
    /// The TCP listener has no local address.
    pub fn new(
        tcp: tokio::net::TcpListener,
        connector: &Connector,
        service: Service,
    ) -> std::io::Result<Self> {
        let mut address = address::format_address(tcp.local_addr()?);
        for extra in connector.extra_alternatives() {
            address.push(' ');
            address.push_str(&extra);
        }
        let _ = service;
        Ok(Listener {
            tcp,
            address,
            #[cfg(feature = "mpi")]
            mpi: connector.mpi().map(|f| f.listen(service)),
            #[cfg(feature = "ucx")]
            ucx: connector.ucx().map(|f| f.listen(service)),
        })
    }

    /// Every alternative this listener serves, e.g. `tcp://10.0.0.7:40123 ucx://...`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The TCP socket address.
    ///
    /// # Errors
    /// As [`tokio::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection on any backend. A fabric that stopped is left out from then on.
    #[cfg_attr(not(any(feature = "mpi", feature = "ucx")), allow(clippy::never_loop))]
    pub async fn accept(&mut self) -> Incoming {
        loop {
            match self.next().await {
                Accepted::Connection(incoming) => return incoming,
                #[cfg(feature = "mpi")]
                Accepted::MpiGone => self.mpi = None,
                #[cfg(feature = "ucx")]
                Accepted::UcxGone => self.ucx = None,
            }
        }
    }

    async fn next(&mut self) -> Accepted {
        #[cfg(feature = "mpi")]
        let mpi = async {
            match self.mpi.as_mut() {
                Some(l) => match l.accept().await {
                    Some((reader, writer, rank)) => Accepted::Connection(Incoming {
                        reader: Reader::Mpi(reader),
                        writer: Writer::Mpi(writer),
                        peer: format!("MPI rank {rank}"),
                    }),
                    None => Accepted::MpiGone,
                },
                None => std::future::pending().await,
            }
        };
        #[cfg(not(feature = "mpi"))]
        let mpi = std::future::pending::<Accepted>();
        #[cfg(feature = "ucx")]
        let ucx = async {
            match self.ucx.as_mut() {
                Some(l) => match l.accept().await {
                    Some((reader, writer, peer)) => Accepted::Connection(Incoming {
                        reader: Reader::Ucx(reader),
                        writer: Writer::Ucx(writer),
                        peer,
                    }),
                    None => Accepted::UcxGone,
                },
                None => std::future::pending().await,
            }
        };
        #[cfg(not(feature = "ucx"))]
        let ucx = std::future::pending::<Accepted>();
        tokio::select! {
            (reader, writer, peer) = tcp::accept(&self.tcp) => Accepted::Connection(Incoming {
                reader: Reader::Tcp(reader),
                writer: Writer::Tcp(writer),
                peer,
            }),
            got = mpi => got,
            got = ucx => got,
        }
    }
}

/// What one round of [`Listener::accept`] got.
enum Accepted {
    Connection(Incoming),
    #[cfg(feature = "mpi")]
    MpiGone,
    #[cfg(feature = "ucx")]
    UcxGone,
}
