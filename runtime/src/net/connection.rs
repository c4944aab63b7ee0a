//! Authenticated connections and the batching writer task.

use super::parse_address;
use anyhow::Context;
use shoal_comm::auth::{self, Role};
use shoal_comm::transport::{
    tcp_split, Connector, MessageWrite, Reader, Service, TcpReader, TcpWriter, Writer,
};
use shoal_comm::{RawMessage, Secret};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Queue of messages to one peer; dropping every sender closes the connection after the
/// queue drains.
pub type Outbox = mpsc::UnboundedSender<RawMessage>;

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
) -> anyhow::Result<(TcpReader, TcpWriter, String)> {
    let target = parse_address(address).map_err(anyhow::Error::msg)?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(&target))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {address} timed out after {timeout:?}"))?
        .with_context(|| format!("cannot connect to {address}"))?;
    let (mut reader, mut writer) = tcp_split(stream);
    let identity = auth::connect(&mut reader, &mut writer, secret, role, name, timeout)
        .await
        .with_context(|| format!("handshake with {address} failed"))?;
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

/// The connector for worker data: TCP, plus the MPI and UCX fabrics this process started.
pub fn data_connector() -> Connector {
    #[allow(unused_mut)]
    let mut connector = Connector::tcp();
    #[cfg(feature = "mpi")]
    if let Some(fabric) = shoal_comm::transport::mpi::installed() {
        connector = connector.with_mpi(fabric.clone());
    }
    connector
}

/// Connect to a peer's data server at `address` over the best backend both sides have
/// (UCX, MPI inside one job, else TCP). Either way the connection is authenticated like
/// any other.
///
/// # Errors
/// As [`connect`].
pub async fn connect_peer(
    address: &str,
    secret: &Secret,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<(Reader, Writer)> {
    let (reader, writer, _) = data_connector()
        .connect(address, Service::Data, secret, Role::Peer, name, timeout)
        .await?;
    Ok((reader, writer))
}
