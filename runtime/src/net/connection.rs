//! Authenticated connections and the batching writer task.

use super::address::parse_address;
use anyhow::Context;
use shoal_comm::auth::{self, Role};
use shoal_comm::mpi::{MpiFabric, MpiReader, MpiWriter, Service};
use shoal_comm::transport::{tcp_split, MessageRead, MessageWrite, TcpReader, TcpWriter};
use shoal_comm::{CommError, Limits, RawMessage, Secret};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Queue of messages to one peer; dropping every sender closes the connection after the
/// queue drains.
pub type Outbox = mpsc::UnboundedSender<RawMessage>;

/// Why [`connect`] failed; the cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address cannot be used (the message says why).
    #[error("{0}")]
    Address(String),
    /// Nothing answered in time.
    #[error("connecting to {address} timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// The operating system refused or failed the connection.
    #[error("cannot connect to {address}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// Connected, but the authentication handshake failed.
    #[error("handshake with {address} failed")]
    Handshake {
        address: String,
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

/// Connect to `address`, authenticate as `role`, and return the framed halves and the
/// peer's identity.
///
/// # Errors
/// Connection refused (nothing listens), a refused handshake, or a timeout, with the
/// address in the message.
pub async fn connect(
    address: &str,
    secret: &Secret,
    role: Role,
    name: &str,
    timeout: Duration,
) -> Result<(TcpReader, TcpWriter, String), ConnectError> {
    let target = parse_address(address).map_err(ConnectError::Address)?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(&target))
        .await
        .map_err(|_| ConnectError::Timeout {
            address: address.into(),
            timeout,
        })?
        .map_err(|source| ConnectError::Io {
            address: address.into(),
            source,
        })?;
    let (mut reader, mut writer) = tcp_split(stream);
    let identity = auth::connect(&mut reader, &mut writer, secret, role, name, timeout)
        .await
        .map_err(|source| ConnectError::Handshake {
            address: address.into(),
            source,
        })?;
    Ok((reader, writer, identity))
}

/// Spawn the task that writes queued messages to `writer`, flushing once per batch of
/// whatever is queued. It ends when every [`Outbox`] is dropped or the peer fails.
pub fn spawn_writer<W: MessageWrite>(mut writer: W, label: String) -> (Outbox, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<RawMessage>();
    let handle = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut result = writer.send(&msg).await;
            while result.is_ok() {
                match rx.try_recv() {
                    Ok(msg) => result = writer.send(&msg).await,
                    Err(_) => break,
                }
            }
            if let Err(e) = result.and(writer.flush().await) {
                tracing::debug!(peer = %label, error = %e, "write failed; closing connection");
                return;
            }
        }
    });
    (tx, handle)
}

/// Receiving half of a connection to a peer's data server: TCP, or MPI inside one job.
pub enum PeerReader {
    Tcp(TcpReader),
    Mpi(MpiReader),
}

/// Sending half of a connection to a peer's data server.
pub enum PeerWriter {
    Tcp(TcpWriter),
    Mpi(MpiWriter),
}

impl PeerReader {
    /// "TCP" or "MPI", for logs.
    pub fn transport(&self) -> &'static str {
        match self {
            PeerReader::Tcp(_) => "TCP",
            PeerReader::Mpi(_) => "MPI",
        }
    }
}

impl MessageRead for PeerReader {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        match self {
            PeerReader::Tcp(r) => r.recv().await,
            PeerReader::Mpi(r) => r.recv().await,
        }
    }

    fn set_limits(&mut self, limits: Limits) {
        match self {
            PeerReader::Tcp(r) => r.set_limits(limits),
            PeerReader::Mpi(r) => r.set_limits(limits),
        }
    }
}

impl MessageWrite for PeerWriter {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        match self {
            PeerWriter::Tcp(w) => w.send(msg).await,
            PeerWriter::Mpi(w) => w.send(msg).await,
        }
    }

    async fn flush(&mut self) -> Result<(), CommError> {
        match self {
            PeerWriter::Tcp(w) => w.flush().await,
            PeerWriter::Mpi(w) => w.flush().await,
        }
    }
}

/// This process's MPI fabric and the rank of `address`, if the address has an
/// `mpi://JOB/RANK` alternative of this process's MPI job.
pub fn same_job(address: &str) -> Option<(&'static Arc<MpiFabric>, i32)> {
    let fabric = shoal_comm::mpi::installed()?;
    let (job, rank) = super::mpi_alternative(address)?;
    (job == fabric.job()).then_some((fabric, rank))
}

/// Connect to a peer's data server at `address`: over MPI when the address has an
/// `mpi://JOB/RANK` alternative of this process's MPI job, over TCP otherwise. Either way
/// the connection is authenticated like any other.
///
/// # Errors
/// As [`connect`].
pub async fn connect_peer(
    address: &str,
    secret: &Secret,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<(PeerReader, PeerWriter)> {
    if let Some((fabric, rank)) = same_job(address) {
        let (mut reader, mut writer) = fabric.connect(rank, Service::Data);
        auth::connect(&mut reader, &mut writer, secret, Role::Peer, name, timeout)
            .await
            .with_context(|| format!("handshake with rank {rank} over MPI failed"))?;
        return Ok((PeerReader::Mpi(reader), PeerWriter::Mpi(writer)));
    }
    let (reader, writer, _) = connect(address, secret, Role::Peer, name, timeout).await?;
    Ok((PeerReader::Tcp(reader), PeerWriter::Tcp(writer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_told_apart_from_other_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("tcp://{}", listener.local_addr().expect("address"));
        drop(listener);
        let secret = Secret::random();
        let timeout = Duration::from_secs(5);
        let Err(refused) = connect(&address, &secret, Role::Client, "t", timeout).await else {
            panic!("nothing listens at {address}")
        };
        assert!(refused.nothing_listens(), "{refused:?}");
        let Err(bad) = connect("nonsense", &secret, Role::Client, "t", timeout).await else {
            panic!("not an address")
        };
        assert!(!bad.nothing_listens(), "{bad:?}");
    }
}
