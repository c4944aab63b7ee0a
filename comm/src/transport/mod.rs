//! Transports: anything that moves [`RawMessage`]s between two peers.
//!
//! - [`MessageRead`] / [`MessageWrite`]: the two halves of a connection. Writes are
//!   buffered: callers send several messages and then flush once, which is how the
//!   scheduler batches thousands of task messages into a few system calls.
//! - [`Reader`] / [`Writer`]: a connection of any backend, what the runtime holds.
//! - [`Connector`]: opens authenticated connections to an [`address`], over the best
//!   backend this process and the address share; [`Listener`]: accepts them on every
//!   backend this process serves.
//! - Backends, one module each: [`tcp`] (always), [`mpi`] (cargo feature `mpi`: point-to-point
//!   inside one MPI job), [`ucx`] (cargo feature `ucx`: UCX active messages, RDMA where the
//!   network has it). [`stream`] frames any byte stream (TCP's framing).
//!
//! Adding a backend means a module here, a variant of [`Reader`]/[`Writer`], an
//! [`address::Alternative`], and a branch of [`Connector::open`] and [`Listener::accept`];
//! the runtime only sees the types of this module.

pub mod address;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod batch;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod head;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod progress_thread;
#[cfg(any(feature = "mpi", feature = "ucx"))]
mod queued;
pub mod stream;
pub mod tcp;
#[cfg(feature = "ucx")]
pub mod ucx;

use crate::auth::{self, PeerHello, Role};
use crate::frame::{Limits, RawMessage};
use crate::{CommError, Secret};
use address::Alternative;
use std::future::Future;
#[cfg(any(feature = "mpi", feature = "ucx"))]
use std::sync::Arc;
use std::time::Duration;
pub use stream::{StreamReader, StreamWriter};
pub use tcp::{tcp_split, TcpReader, TcpWriter};

/// The receiving half of a connection.
pub trait MessageRead: Send + 'static {
    /// The next message, or `None` when the peer closed the connection cleanly between
    /// messages.
    fn recv(&mut self) -> impl Future<Output = Result<Option<RawMessage>, CommError>> + Send;

    /// Replace the size limits (the handshake uses tight ones).
    fn set_limits(&mut self, limits: Limits);
}

/// The sending half of a connection.
pub trait MessageWrite: Send + 'static {
    /// Queue a message; it may stay in a buffer until [`MessageWrite::flush`].
    fn send(&mut self, msg: &RawMessage) -> impl Future<Output = Result<(), CommError>> + Send;

    /// Push everything queued to the peer.
    fn flush(&mut self) -> impl Future<Output = Result<(), CommError>> + Send;
}

/// What a connection was opened to; an accepting process hands it to that service's
/// listener (MPI and UCX connections name it; a TCP port is one service already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    /// A worker's data server (results fetched by peers).
    Data = 0,
    /// The scheduler.
    Scheduler = 1,
}

impl Service {
    /// The service numbered `n` on the wire.
    pub fn from_u8(n: u8) -> Option<Service> {
        match n {
            0 => Some(Service::Data),
            1 => Some(Service::Scheduler),
            _ => None,
        }
    }
}

/// The receiving half of a connection of any backend.
pub enum Reader {
    /// Over TCP.
    Tcp(TcpReader),
    /// Over MPI.
    #[cfg(feature = "mpi")]
    Mpi(mpi::MpiReader),
    /// Over UCX.
    #[cfg(feature = "ucx")]
    Ucx(ucx::UcxReader),
}

/// The sending half of a connection of any backend.
pub enum Writer {
    /// Over TCP.
    Tcp(TcpWriter),
    /// Over MPI.
    #[cfg(feature = "mpi")]
    Mpi(mpi::MpiWriter),
    /// Over UCX.
    #[cfg(feature = "ucx")]
    Ucx(ucx::UcxWriter),
}

impl Reader {
    /// "TCP", "MPI" or "UCX", for logs.
    pub fn transport(&self) -> &'static str {
        match self {
            Reader::Tcp(_) => "TCP",
            #[cfg(feature = "mpi")]
            Reader::Mpi(_) => "MPI",
            #[cfg(feature = "ucx")]
            Reader::Ucx(_) => "UCX",
        }
    }
}

impl MessageRead for Reader {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        match self {
            Reader::Tcp(r) => r.recv().await,
            #[cfg(feature = "mpi")]
            Reader::Mpi(r) => r.recv().await,
            #[cfg(feature = "ucx")]
            Reader::Ucx(r) => r.recv().await,
        }
    }

    fn set_limits(&mut self, limits: Limits) {
        match self {
            Reader::Tcp(r) => r.set_limits(limits),
            #[cfg(feature = "mpi")]
            Reader::Mpi(r) => r.set_limits(limits),
            #[cfg(feature = "ucx")]
            Reader::Ucx(r) => r.set_limits(limits),
        }
    }
}

impl MessageWrite for Writer {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        match self {
            Writer::Tcp(w) => w.send(msg).await,
            #[cfg(feature = "mpi")]
            Writer::Mpi(w) => w.send(msg).await,
            #[cfg(feature = "ucx")]
            Writer::Ucx(w) => w.send(msg).await,
        }
    }

    async fn flush(&mut self) -> Result<(), CommError> {
        match self {
            Writer::Tcp(w) => w.flush().await,
            #[cfg(feature = "mpi")]
            Writer::Mpi(w) => w.flush().await,
            #[cfg(feature = "ucx")]
            Writer::Ucx(w) => w.flush().await,
        }
    }
}

/// Why a connection could not be opened; the cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address has no alternative this process can use (the message says why).
    #[error("{0}")]
    Address(String),
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
                    Ok(_) => format!("no usable alternative in address {address:?}"),
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
    ConnectError::Address("this process has no fabric for that address".into())
}

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
            mpi: connector.mpi.as_ref().map(|f| f.listen(service)),
            #[cfg(feature = "ucx")]
            ucx: connector.ucx.as_ref().map(|f| f.listen(service)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DataReply, DataRequest};

    #[test]
    fn a_tcp_connector_takes_the_tcp_alternative_and_names_what_is_missing() {
        let tcp = Connector::tcp();
        let both = "tcp://10.0.0.7:40123 mpi://job/3 ucx://00ff";
        assert_eq!(
            tcp.choose(both).unwrap(),
            Alternative::Tcp("10.0.0.7:40123".into())
        );
        let e = tcp.choose("mpi://job/3").unwrap_err().to_string();
        assert!(e.contains("\"mpi\"") && e.contains("tcp://"), "{e}");
        assert!(tcp.choose("").unwrap_err().to_string().contains("empty"));
    }

    /// A listener on TCP (and UCX when built with it) and a connector reaching it over
    /// each alternative: the handshake, a request and its reply with a data frame.
    #[tokio::test]
    async fn connections_over_every_backend_authenticate_and_carry_messages() {
        #[allow(unused_mut)]
        let mut connector = Connector::tcp();
        #[cfg(feature = "ucx")]
        {
            connector = connector.with_ucx(ucx::UcxFabric::start().unwrap());
        }
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = Listener::new(tcp, &connector, Service::Data).unwrap();
        let address = listener.address().to_string();
        assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
        let secret = Secret::random();
        let server_secret = secret.clone();
        let server = tokio::spawn(async move {
            let mut served = Vec::new();
            loop {
                let incoming = listener.accept().await;
                let (mut reader, mut writer, hello) = incoming
                    .authenticate(&server_secret, "server", Duration::from_secs(10))
                    .await
                    .unwrap();
                assert_eq!(hello.role, Role::Peer);
                reader.set_limits(Limits::DEFAULT);
                let request = reader.recv().await.unwrap().unwrap();
                assert!(matches!(
                    request.decode::<DataRequest>(),
                    Ok(DataRequest::Get(_))
                ));
                let reply = DataReply {
                    found: vec![(crate::ids::TaskId(1), 0)],
                    missing: vec![],
                };
                let frame = bytes::Bytes::from(vec![7u8; 300_000]);
                writer
                    .send(&RawMessage::encode(&reply, vec![frame]).unwrap())
                    .await
                    .unwrap();
                writer.flush().await.unwrap();
                served.push(reader.transport());
                if reader.recv().await.unwrap().is_none() && served.len() == expected() {
                    return served;
                }
            }
        });
        let mut used = Vec::new();
        for alternative in address::alternatives(&address) {
            let only = alternative.to_string();
            let (mut reader, mut writer, identity) = connector
                .connect(
                    &only,
                    Service::Data,
                    &secret,
                    Role::Peer,
                    "client",
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_eq!(identity, "server");
            reader.set_limits(Limits::DEFAULT);
            let ask = DataRequest::Get(vec![crate::ids::TaskId(1)]);
            writer
                .send(&RawMessage::encode(&ask, vec![]).unwrap())
                .await
                .unwrap();
            writer.flush().await.unwrap();
            let reply = reader.recv().await.unwrap().unwrap();
            assert_eq!(reply.frames[0].len(), 300_000);
            assert!(reply.frames[0].iter().all(|b| *b == 7));
            used.push(reader.transport());
        }
        assert_eq!(used.len(), expected());
        let served = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server saw every connection close")
            .unwrap();
        assert_eq!(served, used);
    }

    fn expected() -> usize {
        1 + usize::from(cfg!(feature = "ucx"))
    }
}
