//! The worker's data server: peers and clients fetch results here (authenticated), over
//! every backend the worker's [`Listener`] serves (TCP, MPI inside one job, UCX).

use super::store::DataStore;
use crate::scheduler::server::HANDSHAKE_TIMEOUT;
use shoal_comm::auth::Role;
use shoal_comm::message::{DataReply, DataRequest};
use shoal_comm::transport::{Incoming, Listener, MessageRead, MessageWrite};
use shoal_comm::{RawMessage, Secret};
use std::sync::Arc;

/// What every connection needs: the results and the cluster's identity.
#[derive(Clone)]
struct Served {
    store: Arc<dyn DataStore>,
    secret: Secret,
    name: String,
}

/// Serve data requests from `listener` (TCP, and the MPI and UCX fabrics it listens on)
/// until the task is aborted.
pub async fn serve(
    mut listener: Listener,
    store: Arc<dyn DataStore>,
    secret: Secret,
    name: String,
) {
    let served = Served {
        store,
        secret,
        name,
    };
    loop {
        let incoming = listener.accept().await;
        tokio::spawn(serve_connection(incoming, served.clone()));
    }
}

/// Authenticate one connection and answer its requests until it closes.
async fn serve_connection(incoming: Incoming, served: Served) {
    let Served {
        store,
        secret,
        name,
    } = served;
    let peer = incoming.peer.clone();
    let (mut reader, mut writer) = match incoming
        .authenticate(&secret, &name, HANDSHAKE_TIMEOUT)
        .await
    {
        Ok((reader, writer, hello)) if hello.role == Role::Peer => (reader, writer),
        Ok((_, _, hello)) => {
            tracing::warn!(%peer, role = ?hello.role, "refused: the data server only answers data requests");
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused data connection");
            return;
        }
    };
    loop {
        let raw = match reader.recv().await {
            Ok(Some(raw)) => raw,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "data connection failed");
                return;
            }
        };
        let ids = match raw.decode::<DataRequest>() {
            Ok(DataRequest::Get(ids)) => ids,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "malformed data request");
                return;
            }
        };
        let mut reply = DataReply {
            found: Vec::new(),
            missing: Vec::new(),
        };
        let mut frames = Vec::new();
        // Encoding native values may need the host interpreter: one scope for all.
        crate::executor::pool::in_batch_scope(&mut || {
            for id in &ids {
                let id = *id;
                // A value that cannot be encoded is reported missing; the reader's
                // task then fails with MissingData rather than hanging.
                match store.get_for_peer(id).map(|v| v.to_bytes()) {
                    Some(Ok(bytes)) => {
                        reply.found.push((id, frames.len() as u32));
                        frames.push(bytes);
                    }
                    Some(Err(e)) => {
                        tracing::error!(task = %id, error = %e, "cannot encode a result for a peer");
                        reply.missing.push(id);
                    }
                    None => reply.missing.push(id),
                }
            }
        });
        let sent = match RawMessage::encode(&reply, frames) {
            Ok(msg) => writer.send(&msg).await.and(writer.flush().await),
            Err(e) => Err(e),
        };
        if sent.is_err() {
            return;
        }
    }
}
