//! The background task reading the scheduler's messages: key states into the shared map,
//! replies to their waiting requests, and why the connection closed.

use rustc_hash::FxHashMap;
use shoal_comm::message::{KeyState, KeyUpdate, ToClient};
use shoal_comm::transport::{MessageRead, Reader};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// What the reader task and the client share.
#[derive(Default)]
pub(super) struct Shared {
    /// The final state of every key heard of.
    pub(super) states: FxHashMap<String, KeyState>,
    /// Requests waiting for their reply, by request id.
    pub(super) replies: FxHashMap<u64, oneshot::Sender<ToClient>>,
    /// Why the connection closed, once it did.
    pub(super) closed: Option<String>,
    /// Where every update is forwarded as well, once someone subscribed.
    pub(super) subscriber: Option<mpsc::UnboundedSender<KeyUpdate>>,
}

/// Read until the connection closes, then record why and wake every waiter.
pub(super) async fn read_loop(
    mut reader: Reader,
    shared: Arc<Mutex<Shared>>,
    bump: watch::Sender<u64>,
) {
    let reason = loop {
        let raw = match reader.recv().await {
            Ok(Some(raw)) => raw,
            Ok(None) => break "the scheduler closed the connection".to_string(),
            Err(e) => break format!("connection failed: {e}"),
        };
        let msg = match raw.decode::<ToClient>() {
            Ok(msg) => msg,
            Err(e) => break format!("the scheduler sent a malformed message: {e}"),
        };
        let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            ToClient::Updates(updates) => {
                for u in updates {
                    if let Some(tx) = &guard.subscriber {
                        if tx.send(u.clone()).is_err() {
                            guard.subscriber = None;
                        }
                    }
                    guard.states.insert(u.key, u.state);
                }
                drop(guard);
                bump.send_modify(|g| *g += 1);
            }
            ToClient::SubmitReply { request, .. }
            | ToClient::WhoHasReply { request, .. }
            | ToClient::StatusReply { request, .. }
            | ToClient::CoordReply { request, .. }
            | ToClient::TaskStreamReply { request, .. } => {
                if let Some(tx) = guard.replies.remove(&request) {
                    let _ = tx.send(msg);
                }
            }
            ToClient::Error { message } => {
                tracing::error!(%message, "the scheduler reported an error")
            }
            ToClient::Heartbeat => {}
        }
    };
    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
    guard.closed = Some(reason);
    guard.replies.clear();
    guard.subscriber = None;
    drop(guard);
    bump.send_modify(|g| *g += 1);
}
