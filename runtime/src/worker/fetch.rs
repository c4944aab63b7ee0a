//! Fetching inputs from peers: one task per peer owns an authenticated connection (over
//! the best backend both workers have: UCX, MPI inside one job, else TCP) and batches every
//! queued request into one round trip. A failed connection fails the fetch at once.

use bytes::Bytes;
use shoal_comm::auth::Role;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::{DataReply, DataRequest};
use shoal_comm::transport::{Connector, MessageRead, MessageWrite, Service};
use shoal_comm::{RawMessage, Secret};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The outcome of one batch fetched from one peer.
pub struct FetchDone {
    /// The peer asked.
    pub peer: WorkerId,
    /// The results it delivered.
    pub found: Vec<(TaskId, Bytes)>,
    /// Ids the peer did not have, or could not deliver because the connection failed.
    pub failed: Vec<TaskId>,
    /// The transport the results came over (`tcp`, `mpi`), if any came.
    pub transport: &'static str,
}

impl FetchDone {
    /// Nothing of `ids` could be fetched from `peer`.
    pub fn failed(peer: WorkerId, ids: Vec<TaskId>) -> Self {
        FetchDone {
            peer,
            found: Vec::new(),
            failed: ids,
            transport: "",
        }
    }
}

/// Handle to a peer's fetch task. Dropping it (the peer left) ends the task, and a round
/// trip in flight fails at once: a peer that died may never answer (MPI has no notion of a
/// closed connection).
pub struct PeerFetcher {
    requests: mpsc::UnboundedSender<Vec<TaskId>>,
    _cancel: oneshot::Sender<()>,
}

impl PeerFetcher {
    /// Start the fetch task for the peer at `address`; results go to `done`.
    pub fn start(
        peer: WorkerId,
        address: String,
        transports: Connector,
        secret: Secret,
        name: String,
        done: mpsc::UnboundedSender<FetchDone>,
    ) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let (cancel, cancelled) = oneshot::channel();
        tokio::spawn(fetch_loop(
            peer, address, transports, secret, name, rx, done, cancelled,
        ));
        PeerFetcher {
            requests,
            _cancel: cancel,
        }
    }

    /// Ask for these ids; they come back if the fetch task is gone.
    pub fn request(&self, ids: Vec<TaskId>) -> Result<(), Vec<TaskId>> {
        self.requests.send(ids).map_err(|e| e.0)
    }
}

#[allow(clippy::too_many_arguments)] // the fetch task's whole context, moved in once
async fn fetch_loop(
    peer: WorkerId,
    address: String,
    transports: Connector,
    secret: Secret,
    name: String,
    mut requests: mpsc::UnboundedReceiver<Vec<TaskId>>,
    done: mpsc::UnboundedSender<FetchDone>,
    mut cancelled: oneshot::Receiver<()>,
) {
    let mut conn = None;
    while let Some(mut ids) = requests.recv().await {
        while let Ok(more) = requests.try_recv() {
            ids.extend(more);
        }
        if conn.is_none() {
            let connected = transports
                .connect(
                    &address,
                    Service::Data,
                    &secret,
                    Role::Peer,
                    &name,
                    Duration::from_secs(10),
                )
                .await;
            match connected {
                Ok((r, w, _)) => {
                    tracing::info!(%peer, "fetching from peer over {}", r.transport());
                    conn = Some((r, w));
                }
                Err(e) => {
                    tracing::warn!(%peer, %address, error = %format!("{e:#}"), "cannot reach peer");
                    let _ = done.send(FetchDone::failed(peer, ids));
                    continue;
                }
            }
        }
        let Some((reader, writer)) = conn.as_mut() else {
            continue;
        };
        let transport = reader.transport();
        let outcome = tokio::select! {
            outcome = round_trip(reader, writer, &ids) => outcome,
            _ = &mut cancelled => {
                let _ = done.send(FetchDone::failed(peer, ids));
                return;
            }
        };
        match outcome {
            Ok((found, failed)) => {
                let _ = done.send(FetchDone {
                    peer,
                    found,
                    failed,
                    transport,
                });
            }
            Err(e) => {
                tracing::warn!(%peer, %address, error = %e, "fetch failed");
                conn = None;
                let _ = done.send(FetchDone::failed(peer, ids));
            }
        }
    }
}

async fn round_trip<R: MessageRead, W: MessageWrite>(
    reader: &mut R,
    writer: &mut W,
    ids: &[TaskId],
) -> Result<(Vec<(TaskId, Bytes)>, Vec<TaskId>), shoal_comm::CommError> {
    writer
        .send(&RawMessage::encode(
            &DataRequest::Get(ids.to_vec()),
            Vec::new(),
        )?)
        .await?;
    writer.flush().await?;
    let raw = reader
        .recv()
        .await?
        .ok_or(shoal_comm::CommError::Truncated)?;
    let reply: DataReply = raw.decode()?;
    let mut found = Vec::with_capacity(reply.found.len());
    for (id, frame) in reply.found {
        found.push((id, raw.frame(frame)?.clone()));
    }
    Ok((found, reply.missing))
}
