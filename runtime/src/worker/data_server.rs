//! The worker's data server: peers and clients fetch results here (authenticated), over
//! TCP and, between workers of one MPI job, over MPI.

use super::store::DataStore;
use crate::scheduler::server::HANDSHAKE_TIMEOUT;
use shoal_comm::auth::{self, Role};
use shoal_comm::message::{DataReply, DataRequest};
use shoal_comm::mpi::MpiListener;
use shoal_comm::transport::{tcp_split, MessageRead, MessageWrite};
use shoal_comm::{RawMessage, Secret};
use std::fmt::Display;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What every connection needs: the results and the cluster's identity.
#[derive(Clone)]
struct Served {
    store: Arc<dyn DataStore>,
    secret: Secret,
    name: String,
}

/// Serve data requests from `listener` (and from other ranks through `mpi`) until the task
/// is aborted.
pub async fn serve(
    listener: TcpListener,
    mpi: Option<MpiListener>,
    store: Arc<dyn DataStore>,
    secret: Secret,
    name: String,
) {
    let served = Served {
        store,
        secret,
        name,
    };
    let over_tcp = async {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (reader, writer) = tcp_split(stream);
            tokio::spawn(serve_connection(reader, writer, peer, served.clone()));
        }
    };
    let over_mpi = async {
        if let Some(mut mpi) = mpi {
            while let Some((reader, writer, rank)) = mpi.accept().await {
                let peer = format!("MPI rank {rank}");
                tokio::spawn(serve_connection(reader, writer, peer, served.clone()));
            }
        }
    };
    // The TCP loop never ends: the task ends when aborted.
    tokio::join!(over_tcp, over_mpi);
}

/// Authenticate one connection and answer its requests until it closes.
async fn serve_connection<R, W, P>(mut reader: R, mut writer: W, peer: P, served: Served)
where
    R: MessageRead,
    W: MessageWrite,
    P: Display,
{
    let Served {
        store,
        secret,
        name,
    } = served;
    match auth::accept(&mut reader, &mut writer, &secret, &name, HANDSHAKE_TIMEOUT).await {
        Ok(hello) if hello.role == Role::Peer => {}
        Ok(hello) => {
            tracing::warn!(%peer, role = ?hello.role, "refused: the data server only answers data requests");
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused data connection");
            return;
        }
    }
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
