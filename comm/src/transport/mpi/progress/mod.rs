//! The progress thread: the one place that calls MPI for shoal's connections.
//!
//! It posts the sends asked for through [`Command`]s, probes for arriving messages, posts
//! receives for their data frames straight into the buffers the reader will own, tests
//! every request in flight, and hands complete messages to their connection in the order
//! they were sent. While anything is in flight it spins (yielding the core between rounds):
//! MPI's large-message protocols only move while both sides call into MPI. When idle it
//! sleeps a little longer each round, up to a millisecond, and wakes at once for a command.
//!
//! Wire form of one [`RawMessage`] on a connection's tag: one MPI message holding the frame
//! header ([`RawMessage::header`]), the control part and the small data frames (see
//! [`travels_inline`]: thousands of tiny results fetched at once must not become thousands
//! of MPI requests), then each other data frame in
//! chunks of at most [`MAX_MESSAGE`] bytes (MPI counts are C ints; `SHOAL_MPI_MAX_MESSAGE`
//! lowers it for MPI libraries that have trouble with large messages). MPI keeps messages between two
//! ranks on one tag in order, so the receiver knows which bytes come next. A bare header
//! (empty control part, no frames) opens a connection; a message of zero bytes closes it.

mod receive;
mod send;

use super::tag::{self, Service};
use crate::buffer::ReceiveBuffer;
use crate::frame::{RawMessage, HEADER_LEN};
use crate::transport::batch::Batches;
use crate::transport::head::{build as build_head, parse as parse_head, FramePlace};
use crate::CommError;
use bytes::Bytes;
use mpi::ffi;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_int;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Requests of each kind tested per round of the progress loop: with thousands in flight,
/// testing all of them every round would cost more than the transfers.
const TESTS_PER_ROUND: usize = 128;

/// Test up to [`TESTS_PER_ROUND`] of `pending`, going round from `cursor` so that every one
/// is tested in turn; remove and return the completed ones with their MPI result code.
fn test_some<T>(
    pending: &mut Vec<T>,
    cursor: &mut usize,
    request: impl Fn(&mut T) -> &mut ffi::MPI_Request,
) -> Vec<(T, c_int)> {
    let mut done = Vec::new();
    for _ in 0..pending.len().min(TESTS_PER_ROUND) {
        if pending.is_empty() {
            break;
        }
        let index = *cursor % pending.len();
        let mut flag: c_int = 0;
        // SAFETY: an active request from MPI_Isend or MPI_Irecv; MPI sets it to
        // MPI_REQUEST_NULL when complete.
        let code = unsafe {
            ffi::MPI_Test(
                request(&mut pending[index]),
                &mut flag,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        if code != 0 || flag != 0 {
            // The last one moves here and is tested next.
            done.push((pending.swap_remove(index), code));
        } else {
            *cursor = index + 1;
        }
    }
    done
}

/// The byte ranges, at most `chunk` long, in which a frame of `len` bytes travels.
fn pieces(len: usize, chunk: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..len)
        .step_by(chunk.max(1))
        .map(move |start| start..(start + chunk).min(len))
}

/// Largest piece of a data frame sent as one MPI message, unless the environment says less.
pub const MAX_MESSAGE: usize = 1 << 30;

/// The environment variable that lowers [`MAX_MESSAGE`] (bytes; every rank must agree).
pub const MAX_MESSAGE_VAR: &str = "SHOAL_MPI_MAX_MESSAGE";

/// [`MAX_MESSAGE`], or the smaller positive value of [`MAX_MESSAGE_VAR`].
///
/// # Errors
/// The variable is set but is not a positive number of bytes.
pub(crate) fn max_message() -> Result<usize, String> {
    match std::env::var(MAX_MESSAGE_VAR) {
        Err(_) => Ok(MAX_MESSAGE),
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_MESSAGE)),
            _ => Err(format!(
                "{MAX_MESSAGE_VAR}={value:?} is not a positive number of bytes (at most {MAX_MESSAGE}); unset it or give e.g. 67108864"
            )),
        },
    }
}

/// Where a connection's arriving messages go; `None` means the peer closed it.
pub(crate) type Sink = mpsc::UnboundedSender<Option<RawMessage>>;
/// The reading end of a [`Sink`].
pub(crate) type Inbox = mpsc::UnboundedReceiver<Option<RawMessage>>;

/// A connection another rank opened to a service of this rank.
pub(crate) struct Accepted {
    pub source: i32,
    pub tag: i32,
    pub inbox: Inbox,
}

/// What the fabric's handles ask the progress thread to do.
pub(crate) enum Command {
    /// Send these messages in order; `done` learns when MPI is finished with every buffer.
    Send {
        dest: i32,
        tag: i32,
        messages: Vec<RawMessage>,
        done: oneshot::Sender<Result<(), CommError>>,
    },
    /// Announce a new connection to the peer, whose service may speak first (the
    /// handshake's challenge comes from the accepting side).
    Open { dest: i32, tag: i32 },
    /// Tell the peer the connection is closed.
    Close { dest: i32, tag: i32 },
    /// Deliver messages from `source` on `tag` to `sink` (sent before the first message
    /// of a connection this rank opens, so no answer can arrive unrouted).
    Route { source: i32, tag: i32, sink: Sink },
    /// The reader is gone: drop what still arrives on this route.
    Unroute { source: i32, tag: i32 },
    /// Hand connections opened to `service` to `acceptor` (replacing an earlier one).
    Listen {
        service: Service,
        acceptor: mpsc::UnboundedSender<Accepted>,
    },
    /// That rank's process left (it may have died: MPI does not say). Its connections
    /// close and sends to it fail now, instead of waiting for ever.
    PeerLost(i32),
    /// Cancel what is in flight and end the thread.
    Stop,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Send { .. } => "send",
            Command::Open { .. } => "open",
            Command::Close { .. } => "close",
            Command::Route { .. } => "route",
            Command::Unroute { .. } => "unroute",
            Command::Listen { .. } => "listen",
            Command::PeerLost(_) => "peer lost",
            Command::Stop => "stop",
        }
    }
}

/// The communicator handle, moved into the progress thread.
pub(crate) struct RawComm(pub ffi::MPI_Comm);
// SAFETY: an MPI communicator handle may be used from any thread when MPI was initialised
// with MPI_THREAD_MULTIPLE (checked before the fabric starts); only the progress thread
// uses this one.
unsafe impl Send for RawComm {}

/// Memory a send reads from, kept alive until MPI is done with it.
enum SendBuffer {
    Bytes(Bytes),
    Header(Vec<u8>),
    Empty,
}

struct PendingSend {
    request: ffi::MPI_Request,
    dest: i32,
    buffer: SendBuffer,
    batch: Option<u64>,
}

struct PendingRecv {
    request: ffi::MPI_Request,
    route: (i32, i32),
    seq: u64,
}

/// A message being received: its control part and frames still filling.
struct Arrival {
    seq: u64,
    control: Bytes,
    frames: Vec<ArrivingFrame>,
    remaining: usize,
    close: bool,
}

/// One data frame of an arriving message.
enum ArrivingFrame {
    /// Came inside the first MPI message.
    Inline(Bytes),
    /// Filling through receives of its own: the buffer and the frame's length.
    Separate(ReceiveBuffer, usize),
}

#[derive(Default)]
struct Route {
    sink: Option<Sink>,
    queue: VecDeque<Arrival>,
    next_seq: u64,
}

pub(crate) struct Engine {
    comm: ffi::MPI_Comm,
    chunk: usize,
    commands: std_mpsc::Receiver<Command>,
    routes: HashMap<(i32, i32), Route>,
    acceptors: HashMap<Service, mpsc::UnboundedSender<Accepted>>,
    sends: Vec<PendingSend>,
    send_cursor: usize,
    batches: Batches,
    recvs: Vec<PendingRecv>,
    recv_cursor: usize,
}

/// Why no command was taken.
enum Idle {
    /// None queued (within the wait).
    Empty,
    /// Every handle is gone.
    Gone,
}

fn mpi_error(call: &str, code: c_int) -> CommError {
    CommError::Io(std::io::Error::other(format!(
        "{call} failed with MPI error code {code}"
    )))
}

impl Engine {
    pub(crate) fn new(comm: RawComm, chunk: usize, commands: std_mpsc::Receiver<Command>) -> Self {
        Engine {
            comm: comm.0,
            chunk,
            commands,
            routes: HashMap::new(),
            acceptors: HashMap::new(),
            sends: Vec::new(),
            send_cursor: 0,
            batches: Batches::default(),
            recvs: Vec::new(),
            recv_cursor: 0,
        }
    }

    /// Run until [`Command::Stop`] or until every handle is gone.
    pub(crate) fn run(mut self) {
        let mut last_activity = Instant::now();
        loop {
            let busy = !self.sends.is_empty() || !self.recvs.is_empty();
            let mut wait = if busy {
                std::thread::yield_now();
                Duration::ZERO
            } else {
                let idle = last_activity.elapsed() / 16;
                idle.clamp(Duration::from_micros(10), Duration::from_millis(1))
            };
            let mut active = false;
            loop {
                let next = if wait.is_zero() {
                    self.commands.try_recv().map_err(|e| match e {
                        std_mpsc::TryRecvError::Empty => Idle::Empty,
                        std_mpsc::TryRecvError::Disconnected => Idle::Gone,
                    })
                } else {
                    self.commands.recv_timeout(wait).map_err(|e| match e {
                        std_mpsc::RecvTimeoutError::Timeout => Idle::Empty,
                        std_mpsc::RecvTimeoutError::Disconnected => Idle::Gone,
                    })
                };
                // Only the first command is waited for; the rest are taken as they are.
                wait = Duration::ZERO;
                match next {
                    Ok(Command::Stop) | Err(Idle::Gone) => {
                        self.stop();
                        return;
                    }
                    Ok(command) => {
                        active = true;
                        self.handle(command);
                    }
                    Err(Idle::Empty) => break,
                }
            }
            active |= self.probe_arrivals();
            active |= self.test_requests();
            if active || busy {
                last_activity = Instant::now();
            }
        }
    }

    fn handle(&mut self, command: Command) {
        tracing::trace!(command = command.name(), "MPI transport command");
        match command {
            Command::Send {
                dest,
                tag,
                messages,
                done,
            } => self.post_messages(dest, tag, &messages, done),
            Command::Open { dest, tag } => {
                let open = SendBuffer::Header(vec![0; HEADER_LEN]);
                if let Err(e) = self.post_send(dest, tag, open, None) {
                    tracing::warn!(dest, error = %e, "cannot open a connection over MPI");
                }
            }
            Command::Close { dest, tag } => {
                if let Err(e) = self.post_send(dest, tag, SendBuffer::Empty, None) {
                    tracing::debug!(dest, error = %e, "cannot send a close over MPI");
                }
            }
            Command::Route { source, tag, sink } => {
                self.routes.entry((source, tag)).or_default().sink = Some(sink);
            }
            Command::Unroute { source, tag } => {
                if let Some(route) = self.routes.get_mut(&(source, tag)) {
                    route.sink = None;
                }
                self.deliver((source, tag));
            }
            Command::Listen { service, acceptor } => {
                self.acceptors.insert(service, acceptor);
            }
            Command::PeerLost(rank) => self.forget_peer(rank),
            Command::Stop => {}
        }
    }

    /// Close every connection with `rank` and fail the sends to it. Requests in flight stay
    /// with MPI, and their buffers with them, until MPI lets go of them.
    fn forget_peer(&mut self, rank: i32) {
        for ((source, _), route) in &mut self.routes {
            if *source == rank {
                if let Some(sink) = route.sink.take() {
                    let _ = sink.send(None);
                }
            }
        }
        self.routes
            .retain(|(source, _), route| *source != rank || !route.queue.is_empty());
        let failed: Vec<u64> = self
            .sends
            .iter_mut()
            .filter(|send| send.dest == rank)
            .filter_map(|send| send.batch.take())
            .collect();
        for batch in failed {
            let left = std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!("MPI rank {rank} left"),
            );
            self.batches.completed(batch, Some(CommError::Io(left)));
        }
    }

    /// Test requests in flight, at most [`TESTS_PER_ROUND`] of each kind per round, in
    /// turn; true if one completed.
    fn test_requests(&mut self) -> bool {
        let sent = test_some(&mut self.sends, &mut self.send_cursor, |s| &mut s.request);
        let received = test_some(&mut self.recvs, &mut self.recv_cursor, |r| &mut r.request);
        let any = !sent.is_empty() || !received.is_empty();
        for (send, code) in sent {
            let Some(batch) = send.batch else {
                continue;
            };
            let failed = (code != 0).then(|| mpi_error("MPI_Isend completion", code));
            self.batches.completed(batch, failed);
        }
        for (recv, code) in received {
            if let Some(arrival) = self.routes.get_mut(&recv.route).and_then(|r| {
                let front = r.queue.front()?.seq;
                r.queue.get_mut(usize::try_from(recv.seq - front).ok()?)
            }) {
                arrival.remaining -= 1;
                if code != 0 {
                    tracing::error!(code, "an MPI receive failed; closing the connection");
                    arrival.close = true;
                }
            }
            self.deliver(recv.route);
        }
        any
    }

    /// Cancel receives in flight; let sends in flight go (their buffers are leaked, since
    /// MPI may still read them) and end.
    fn stop(&mut self) {
        for mut recv in self.recvs.drain(..) {
            // SAFETY: active receive requests; a cancelled request completes at once.
            unsafe {
                ffi::MPI_Cancel(&mut recv.request);
                ffi::MPI_Wait(&mut recv.request, ffi::RSMPI_STATUS_IGNORE);
            }
        }
        // Buffers of cancelled receives may now be freed.
        self.routes.clear();
        for mut send in self.sends.drain(..) {
            // SAFETY: an active send request; freeing it lets MPI complete it on its own.
            unsafe { ffi::MPI_Request_free(&mut send.request) };
            std::mem::forget(send.buffer);
        }
        self.batches.fail_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_pieces_of_at_most_a_chunk() {
        assert_eq!(pieces(0, 4).count(), 0);
        assert_eq!(pieces(10, 4).collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
        assert_eq!(pieces(8, 4).collect::<Vec<_>>(), vec![0..4, 4..8]);
    }
}
