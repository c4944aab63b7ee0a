//! The MPI transport: shoal connections over MPI point-to-point inside one MPI job.
//!
//! One [`MpiFabric`] per process owns a duplicate of the job's communicator and a progress
//! thread ([`progress`]) that makes every MPI call. Connections are virtual: a pair of
//! tags between two ranks ([`tag`]), opened with [`MpiFabric::connect`] and accepted through
//! [`MpiFabric::listen`]. Their halves implement [`MessageRead`] and [`MessageWrite`], so
//! the runtime (and the authentication handshake) runs over them unchanged.
//!
//! Data frames travel as their own MPI messages, sent from the sender's buffers and received
//! into the buffers the reader ends up owning: no copy on either side beyond MPI's own.
//!
//! A worker's address names its job and rank, `mpi://JOB/RANK`, next to its TCP address;
//! a peer uses MPI only when it is in the same job (see [`MpiFabric::job`]).

mod progress;
pub mod tag;

use crate::frame::{Limits, RawMessage};
use crate::transport::batch::Done;
use crate::transport::progress_thread::ProgressThread;
use crate::transport::queued::{Outbox, QueuedWriter};
use crate::transport::MessageRead;
use crate::CommError;
use progress::{Accepted, Command, Engine, Inbox, RawComm};
pub use progress::{MAX_MESSAGE, MAX_MESSAGE_VAR};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
pub use tag::Service;
use tokio::sync::mpsc;

/// The MPI transport of this process.
pub struct MpiFabric {
    commands: std_mpsc::Sender<Command>,
    rank: i32,
    job: String,
    next_number: AtomicU32,
    numbers: u32,
    peer_lost: AtomicBool,
    thread: ProgressThread,
}

/// Why the fabric cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// MPI does not allow calls from several threads at once.
    #[error("the MPI library provides thread level {provided} but the MPI transport needs MPI_THREAD_MULTIPLE ({needed}); use --transport tcp, or an MPI built with thread support (Open MPI and MPICH provide it by default)")]
    NoThreadMultiple {
        /// The thread level the library provides.
        provided: i32,
        /// `MPI_THREAD_MULTIPLE`'s level.
        needed: i32,
    },
    /// An MPI call failed.
    #[error("{call} failed with MPI error code {code}")]
    Call {
        /// The MPI function.
        call: &'static str,
        /// The error code it returned.
        code: i32,
    },
    /// `SHOAL_MPI_MAX_MESSAGE` is not usable.
    #[error("{0}")]
    BadSetting(String),
    /// The progress thread could not be started.
    #[error("cannot start the MPI progress thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl MpiFabric {
    /// Start the progress thread on `comm`.
    ///
    /// # Safety
    /// MPI is initialised and stays so until [`MpiFabric::stop`] returned; `comm` is a valid
    /// intra-communicator that nothing else uses (a duplicate of the world made for this).
    ///
    /// # Errors
    /// MPI lacks `MPI_THREAD_MULTIPLE`, an MPI query failed, or the thread cannot start.
    pub unsafe fn start(comm: mpi::ffi::MPI_Comm, job: String) -> Result<Arc<Self>, FabricError> {
        use mpi::ffi;
        let mut provided = 0;
        // SAFETY: MPI is initialised (caller's contract).
        unsafe { ffi::MPI_Query_thread(&mut provided) };
        let needed = ffi::MPI_THREAD_MULTIPLE as i32;
        if provided < needed {
            return Err(FabricError::NoThreadMultiple { provided, needed });
        }
        let mut rank = 0;
        // SAFETY: valid communicator (caller's contract); errors are returned, not fatal.
        let code = unsafe {
            ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN);
            ffi::MPI_Comm_rank(comm, &mut rank)
        };
        if code != 0 {
            return Err(FabricError::Call {
                call: "MPI_Comm_rank",
                code,
            });
        }
        let chunk = progress::max_message().map_err(FabricError::BadSetting)?;
        let (commands, receiver) = std_mpsc::channel();
        let raw = RawComm(comm);
        let thread = std::thread::Builder::new()
            .name("shoal-mpi-progress".into())
            .spawn(move || Engine::new(raw, chunk, receiver).run())?;
        Ok(Arc::new(MpiFabric {
            commands,
            rank,
            job,
            next_number: AtomicU32::new(1),
            peer_lost: AtomicBool::new(false),
            // SAFETY: valid communicator.
            numbers: tag::numbers_below(unsafe { tag_upper_bound(comm) }),
            thread: ProgressThread::new(thread),
        }))
    }

    /// This process's rank in the fabric's communicator.
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// The job this fabric belongs to: ranks of other MPI jobs share no communicator.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This rank's MPI address, `mpi://JOB/RANK`.
    pub fn address(&self) -> String {
        format!("mpi://{}/{}", self.job, self.rank)
    }

    /// Note that the peer on `rank` left (its process may have died; MPI itself does not
    /// tell): connections with it close, sends to it fail, and the launcher bounds
    /// `MPI_Finalize` tightly.
    pub fn note_peer_lost(&self, rank: i32) {
        self.peer_lost.store(true, Ordering::Relaxed);
        let _ = self.commands.send(Command::PeerLost(rank));
    }

    /// True once [`MpiFabric::note_peer_lost`] was called.
    pub fn peer_lost(&self) -> bool {
        self.peer_lost.load(Ordering::Relaxed)
    }

    /// Open a connection to `service` on `rank`.
    pub fn connect(&self, rank: i32, service: Service) -> (MpiReader, MpiWriter) {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed) % self.numbers;
        let sent = tag::opener_tag(number, service);
        let received = tag::reply_tag(sent);
        let (sink, inbox) = mpsc::unbounded_channel();
        // Routed before anything is sent: the answer cannot arrive unrouted.
        let _ = self.commands.send(Command::Route {
            source: rank,
            tag: received,
            sink,
        });
        let _ = self.commands.send(Command::Open {
            dest: rank,
            tag: sent,
        });
        self.halves(rank, received, sent, inbox)
    }

    /// Accept connections opened to `service` on this rank (replacing an earlier listener).
    pub fn listen(self: &Arc<Self>, service: Service) -> MpiListener {
        let (acceptor, accepted) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Listen { service, acceptor });
        MpiListener {
            fabric: self.clone(),
            accepted,
        }
    }

    fn halves(&self, peer: i32, received: i32, sent: i32, inbox: Inbox) -> (MpiReader, MpiWriter) {
        (
            MpiReader {
                peer,
                tag: received,
                inbox,
                limits: Limits::HANDSHAKE,
                commands: self.commands.clone(),
            },
            QueuedWriter::new(MpiOutbox {
                peer,
                tag: sent,
                commands: self.commands.clone(),
            }),
        )
    }

    /// Cancel what is in flight and stop the progress thread; call before `MPI_Finalize`.
    /// Connections fail from then on.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        self.thread.join();
    }
}

/// The communicator's largest tag (`MPI_TAG_UB`), or the standard's minimum if unknown.
///
/// # Safety
/// `comm` is valid and MPI initialised.
unsafe fn tag_upper_bound(comm: mpi::ffi::MPI_Comm) -> i32 {
    let mut value: *mut std::ffi::c_int = std::ptr::null_mut();
    let mut flag = 0;
    // SAFETY: MPI stores a pointer to the attribute's int in `value`.
    let code = unsafe {
        mpi::ffi::MPI_Comm_get_attr(
            comm,
            mpi::ffi::MPI_TAG_UB as std::ffi::c_int,
            std::ptr::from_mut(&mut value).cast(),
            &mut flag,
        )
    };
    if code != 0 || flag == 0 || value.is_null() {
        return 32767;
    }
    // SAFETY: flag set: `value` points to the attribute.
    unsafe { *value }
}

/// Connections other ranks open to one service of this rank.
pub struct MpiListener {
    fabric: Arc<MpiFabric>,
    accepted: mpsc::UnboundedReceiver<Accepted>,
}

impl MpiListener {
    /// The next connection and the rank that opened it; `None` once the fabric stopped or
    /// another listener replaced this one.
    pub async fn accept(&mut self) -> Option<(MpiReader, MpiWriter, i32)> {
        let Accepted { source, tag, inbox } = self.accepted.recv().await?;
        let (reader, writer) = self.fabric.halves(source, tag, tag::reply_tag(tag), inbox);
        Some((reader, writer, source))
    }
}

/// The receiving half of an MPI connection.
pub struct MpiReader {
    peer: i32,
    tag: i32,
    inbox: Inbox,
    limits: Limits,
    commands: std_mpsc::Sender<Command>,
}

impl MessageRead for MpiReader {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        let Some(Some(msg)) = self.inbox.recv().await else {
            return Ok(None);
        };
        // The progress thread parsed it under the default limits; the reader's may be
        // tighter (the handshake's).
        self.limits.check(msg.control.len(), msg.frames.len())?;
        Ok(Some(msg))
    }

    fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}

impl Drop for MpiReader {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unroute {
            source: self.peer,
            tag: self.tag,
        });
    }
}

/// The sending half of an MPI connection. Messages wait in the writer until
/// [`MessageWrite::flush`], which returns once MPI is done with their buffers.
pub type MpiWriter = QueuedWriter<MpiOutbox>;

/// Where an MPI connection's flushes go: its peer and tag, through the progress thread.
pub struct MpiOutbox {
    peer: i32,
    tag: i32,
    commands: std_mpsc::Sender<Command>,
}

impl Outbox for MpiOutbox {
    fn post(&self, messages: Vec<RawMessage>, done: Done) -> Result<(), CommError> {
        self.commands
            .send(Command::Send {
                dest: self.peer,
                tag: self.tag,
                messages,
                done,
            })
            .map_err(|_| fabric_stopped())
    }

    fn stopped(&self) -> CommError {
        fabric_stopped()
    }
}

impl Drop for MpiOutbox {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close {
            dest: self.peer,
            tag: self.tag,
        });
    }
}

fn fabric_stopped() -> CommError {
    CommError::Io(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the MPI transport has stopped",
    ))
}
