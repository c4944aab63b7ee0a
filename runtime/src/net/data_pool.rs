//! Data connections from a client to workers' data servers, opened once and reused:
//! a `result()` per future would otherwise pay a TCP connect and a handshake each.

use super::connection::connect;
use rustc_hash::FxHashMap;
use shoal_comm::auth::Role;
use shoal_comm::ids::TaskId;
use shoal_comm::message::DataRequest;
use shoal_comm::transport::{ConnectError, MessageRead, MessageWrite, Reader, Writer};
use shoal_comm::{CommError, RawMessage, Secret};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long opening a data connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker's data could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The request did not encode (a bug).
    #[error(transparent)]
    Encode(CommError),
    /// The worker could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request or its reply failed on a fresh connection.
    #[error("{holder}")]
    Exchange {
        /// The worker's address.
        holder: String,
        /// What failed.
        #[source]
        source: CommError,
    },
}

/// One open connection; a request and its reply hold it (one request at a time).
type Slot = Arc<tokio::sync::Mutex<Option<(Reader, Writer)>>>;

/// Open data connections by worker address.
#[derive(Clone)]
pub struct DataPool {
    secret: Secret,
    slots: Arc<Mutex<FxHashMap<String, Slot>>>,
}

impl DataPool {
    /// No connections yet; they authenticate with `secret`.
    pub fn new(secret: Secret) -> DataPool {
        DataPool {
            secret,
            slots: Arc::default(),
        }
    }

    fn slot(&self, holder: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slots.entry(holder.to_owned()).or_default())
    }

    /// Ask `holder` for `ids`; the raw reply (a `DataReply` with its frames). A kept
    /// connection that fails (the worker restarted, or closed it) is replaced once.
    ///
    /// # Errors
    /// The worker cannot be reached or the exchange failed on a fresh connection.
    pub async fn get(&self, holder: &str, ids: Vec<TaskId>) -> Result<RawMessage, DataError> {
        let slot = self.slot(holder);
        let mut conn = slot.lock().await;
        let request =
            RawMessage::encode(&DataRequest::Get(ids), Vec::new()).map_err(DataError::Encode)?;
        let reused = conn.is_some();
        for fresh in [!reused, true] {
            if fresh {
                let (reader, writer, _) =
                    connect(holder, &self.secret, Role::Peer, "client", CONNECT_TIMEOUT).await?;
                *conn = Some((reader, writer));
            }
            let Some((reader, writer)) = conn.as_mut() else {
                continue;
            };
            let exchange = async {
                writer.send(&request).await?;
                writer.flush().await?;
                reader.recv().await?.ok_or(CommError::Truncated)
            };
            match exchange.await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *conn = None;
                    if fresh {
                        return Err(DataError::Exchange {
                            holder: holder.to_owned(),
                            source: e,
                        });
                    }
                    tracing::debug!(%holder, error = %e, "a kept data connection failed; opening another");
                }
            }
        }
        unreachable!("the second round always uses a fresh connection")
    }

    /// Forget the connection to `holder` (it left the cluster).
    pub fn forget(&self, holder: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(holder);
    }
}
