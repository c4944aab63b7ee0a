//! Authenticated connections and the batching writer task.

use shoal_comm::auth::Role;
use shoal_comm::transport::{ConnectError, Connector, MessageWrite, Reader, Service, Writer};
use shoal_comm::{RawMessage, Secret};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Queue of messages to one peer; dropping every sender closes the connection after the
/// queue drains.
pub type Outbox = mpsc::UnboundedSender<RawMessage>;

/// Connect to the TCP alternative of `address` (the scheduler, or a worker's data server
/// from a client), authenticate as `role`, and return the framed halves and the peer's
/// identity.
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
) -> Result<(Reader, Writer, String), ConnectError> {
    let service = if role == Role::Peer {
        Service::Data
    } else {
        Service::Scheduler
    };
    Connector::tcp()
        .connect(address, service, secret, role, name, timeout)
        .await
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
