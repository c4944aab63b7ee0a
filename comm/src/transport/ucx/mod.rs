//! The UCX transport: shoal connections over UCX active messages (`ucp_am_send_nbx`).
//!
//! One [`UcxFabric`] per process owns a UCP context and worker and the progress thread
//! ([`engine`]) that makes every UCX call, as the MPI fabric does. A fabric's address is
//! its host, process and UCX worker address ([`peer`]), advertised as `ucx://HEX` next to the worker's `tcp://` address
//! and exchanged through the scheduler; a peer opens an endpoint from it. Connections are
//! virtual, many per endpoint ([`wire`]).
//!
//! A message travels as one active message holding its head (the control part and the
//! small frames, sent eagerly) and one active message per large data frame, sent with
//! UCX's rendezvous protocol (zero-copy from the sender's buffer, RDMA where the network
//! has it) and received straight into a [`crate::buffer::ReceiveBuffer`] (pooled,
//! huge-page backed memory that UCX's registration cache keeps registered when it is
//! reused).
//!
//! Endpoints use UCX's peer error handling: an unreachable peer, a closed endpoint or a
//! peer that died fails every connection over that endpoint at once (reads and flushes
//! return an error), so a fetch fails and its input is recomputed.
//!
//! UCX is configured from the environment as usual (`UCX_TLS`, `UCX_NET_DEVICES`, ...).

mod callbacks;
mod commands;
mod context;
mod engine;
pub mod info;
mod log;
mod peer;
pub mod wire;

use crate::frame::{Limits, RawMessage};
use crate::transport::batch::Done;
use crate::transport::progress_thread::ProgressThread;
use crate::transport::queued::{Outbox, QueuedWriter};
use crate::transport::{MessageRead, Service};
use crate::CommError;
use engine::{Command, Delivery, Engine};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use tokio::sync::mpsc;
use wire::ConnKey;

/// Why the UCX fabric cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UcxError {
    /// A UCX call failed.
    #[error("{call} failed: {status} (check UCX_TLS / UCX_NET_DEVICES, or use --transport tcp)")]
    Call {
        /// The UCX function.
        call: &'static str,
        /// UCX's description of the status it returned.
        status: String,
    },
    /// The progress thread could not be started, or a system call failed.
    #[error("cannot start the UCX transport: {0}")]
    System(#[from] std::io::Error),
}

/// The UCX transport of this process.
pub struct UcxFabric {
    commands: engine::Commands,
    id: u64,
    address: Vec<u8>,
    next_number: AtomicU64,
    thread: ProgressThread,
}

impl UcxFabric {
    /// Create the UCP context and worker (configured by the `UCX_*` environment) and
    /// start the progress thread.
    ///
    /// # Errors
    /// UCX cannot initialise (no usable transport, bad `UCX_*` settings), or the thread
    /// cannot start.
    pub fn start() -> Result<Arc<Self>, UcxError> {
        let id = rand::random::<u64>();
        let (commands, receiver) = engine::Commands::new()?;
        let (ready, started) = std_mpsc::channel();
        let wake = commands.waker();
        let thread = std::thread::Builder::new()
            .name("shoal-ucx-progress".into())
            .spawn(move || match Engine::new(id, receiver, wake) {
                Ok((engine, address)) => {
                    let _ = ready.send(Ok(address));
                    engine.run();
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })?;
        let address = match started.recv() {
            Ok(Ok(address)) => address,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(UcxError::Call {
                    call: "the UCX progress thread",
                    status: "ended before starting".into(),
                });
            }
        };
        Ok(Arc::new(UcxFabric {
            commands,
            id,
            address,
            next_number: AtomicU64::new(1),
            thread: ProgressThread::new(thread),
        }))
    }

    /// This process's address, `ucx://HEX`.
    pub fn address(&self) -> String {
        crate::transport::address::Alternative::Ucx(self.address.clone()).to_string()
    }

    /// Open a connection to `service` of the process whose address (the bytes of its
    /// `ucx://` alternative: a host id, then its UCX worker address) is `worker`.
    /// The endpoint is created by the progress thread; if the peer is unreachable, the
    /// connection's first read fails.
    ///
    /// # Errors
    /// The fabric has stopped.
    pub fn connect(
        &self,
        worker: &[u8],
        service: Service,
    ) -> std::io::Result<(UcxReader, UcxWriter)> {
        let conn = ConnKey {
            origin: self.id,
            number: self.next_number.fetch_add(1, Ordering::Relaxed),
            from_opener: false,
        };
        let peer: Arc<[u8]> = worker.into();
        let (sink, inbox) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Open {
                peer: peer.clone(),
                conn,
                service,
                sink,
            })
            .map_err(|_| stopped())?;
        Ok(self.halves(peer, conn, inbox))
    }

    /// Accept connections opened to `service` of this process (replacing an earlier
    /// listener).
    pub fn listen(self: &Arc<Self>, service: Service) -> UcxListener {
        let (acceptor, accepted) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Listen { service, acceptor });
        UcxListener {
            fabric: self.clone(),
            accepted,
        }
    }

    /// The peer with worker address `worker` left: its connections fail now instead of
    /// when UCX notices.
    pub fn note_peer_lost(&self, worker: &[u8]) {
        let _ = self.commands.send(Command::PeerLost(worker.into()));
    }

    /// `received` is the key of messages this side receives; this side sends with the
    /// direction bit flipped.
    fn halves(
        &self,
        peer: Arc<[u8]>,
        received: ConnKey,
        inbox: mpsc::UnboundedReceiver<Delivery>,
    ) -> (UcxReader, UcxWriter) {
        let sent = ConnKey {
            from_opener: !received.from_opener,
            ..received
        };
        (
            UcxReader {
                conn: received,
                inbox,
                limits: Limits::HANDSHAKE,
                commands: self.commands.clone(),
            },
            QueuedWriter::new(UcxOutbox {
                peer,
                conn: sent,
                commands: self.commands.clone(),
            }),
        )
    }

    /// Fail what is in flight, close every endpoint and stop the progress thread.
    /// Connections fail from then on. Also done when the last handle is dropped.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        self.thread.join();
    }
}

impl Drop for UcxFabric {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connections other processes open to one service of this process.
pub struct UcxListener {
    fabric: Arc<UcxFabric>,
    accepted: mpsc::UnboundedReceiver<engine::Accepted>,
}

impl UcxListener {
    /// The next connection and a description of its peer; `None` once the fabric stopped
    /// or another listener replaced this one.
    pub async fn accept(&mut self) -> Option<(UcxReader, UcxWriter, String)> {
        let engine::Accepted { peer, conn, inbox } = self.accepted.recv().await?;
        let label = format!("UCX peer {:016x}", conn.origin);
        let (reader, writer) = self.fabric.halves(peer, conn, inbox);
        Some((reader, writer, label))
    }
}

/// The receiving half of a UCX connection.
pub struct UcxReader {
    conn: ConnKey,
    inbox: mpsc::UnboundedReceiver<Delivery>,
    limits: Limits,
    commands: engine::Commands,
}

impl MessageRead for UcxReader {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        match self.inbox.recv().await {
            None | Some(Delivery::Closed) => Ok(None),
            Some(Delivery::Failed(reason)) => Err(CommError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                reason,
            ))),
            Some(Delivery::Message(msg)) => {
                // The progress thread parsed it under the default limits; the reader's may
                // be tighter (the handshake's).
                self.limits.check(msg.control.len(), msg.frames.len())?;
                Ok(Some(msg))
            }
        }
    }

    fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}

impl Drop for UcxReader {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unroute(self.conn));
    }
}

/// The sending half of a UCX connection. Messages wait in the writer until
/// [`MessageWrite::flush`], which returns once UCX is done with their buffers.
pub type UcxWriter = QueuedWriter<UcxOutbox>;

/// Where a UCX connection's flushes go: its peer and connection, through the progress
/// thread.
pub struct UcxOutbox {
    peer: Arc<[u8]>,
    conn: ConnKey,
    commands: engine::Commands,
}

impl Outbox for UcxOutbox {
    fn post(&self, messages: Vec<RawMessage>, done: Done) -> Result<(), CommError> {
        self.commands
            .send(Command::Send {
                peer: self.peer.clone(),
                conn: self.conn,
                messages,
                done,
            })
            .map_err(|_| CommError::Io(stopped()))
    }

    fn stopped(&self) -> CommError {
        CommError::Io(stopped())
    }
}

impl Drop for UcxOutbox {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close {
            peer: self.peer.clone(),
            conn: self.conn,
        });
    }
}

fn stopped() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the UCX transport has stopped",
    )
}
