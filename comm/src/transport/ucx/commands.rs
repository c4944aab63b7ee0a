//! How the rest of the process talks to the progress thread: commands over a channel
//! plus an eventfd that wakes the thread, and what readers and listeners get back.

use super::wire::ConnKey;
use crate::frame::RawMessage;
use crate::transport::Service;
use crate::CommError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc as std_mpsc, Arc};
use tokio::sync::{mpsc, oneshot};

/// What a reader gets.
pub(crate) enum Delivery {
    Message(RawMessage),
    /// The peer closed its half.
    Closed,
    /// The endpoint failed (peer unreachable or dead) or the fabric stopped.
    Failed(String),
}

pub(crate) type Sink = mpsc::UnboundedSender<Delivery>;

/// A connection another process opened to a service of this one.
pub(crate) struct Accepted {
    pub peer: Arc<[u8]>,
    pub conn: ConnKey,
    pub inbox: mpsc::UnboundedReceiver<Delivery>,
}

/// What the fabric's handles ask the progress thread to do. `conn` is the key of the
/// messages this side receives for `Open`/`Unroute`, and of those it sends otherwise.
pub(crate) enum Command {
    Open {
        peer: Arc<[u8]>,
        conn: ConnKey,
        service: Service,
        sink: Sink,
    },
    Send {
        peer: Arc<[u8]>,
        conn: ConnKey,
        messages: Vec<RawMessage>,
        done: oneshot::Sender<Result<(), CommError>>,
    },
    Close {
        peer: Arc<[u8]>,
        conn: ConnKey,
    },
    Unroute(ConnKey),
    Listen {
        service: Service,
        acceptor: mpsc::UnboundedSender<Accepted>,
    },
    PeerLost(Arc<[u8]>),
    Stop,
}

/// An eventfd that wakes the progress thread.
pub(crate) struct Waker(OwnedFd);

impl Waker {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the returned descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor the thread polls.
    pub(super) fn fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    /// Consume the wake-ups so far (the thread is awake now).
    pub(super) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        unsafe { libc::read(self.0.as_raw_fd(), std::ptr::from_mut(&mut value).cast(), 8) };
    }
}

/// The sending side of the command channel: every send wakes the thread.
#[derive(Clone)]
pub(crate) struct Commands {
    tx: std_mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl Commands {
    pub(crate) fn new() -> std::io::Result<(Self, std_mpsc::Receiver<Command>)> {
        let (tx, rx) = std_mpsc::channel();
        Ok((
            Commands {
                tx,
                waker: Arc::new(Waker::new()?),
            },
            rx,
        ))
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), ()> {
        self.tx.send(command).map_err(|_| ())?;
        self.waker.wake();
        Ok(())
    }
}
