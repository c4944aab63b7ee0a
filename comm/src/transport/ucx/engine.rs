//! The progress thread: the one place that calls UCX for shoal's connections.
//!
//! It owns the UCP context and worker (created in this thread, single-threaded mode),
//! the endpoints (one per peer process, from the peer's worker address), and every
//! connection's routing. Commands come through a channel plus an eventfd; UCX callbacks,
//! which run inside `ucp_worker_progress` on this thread, only queue [`Event`]s that the
//! loop then handles, so no callback touches the engine's state. While requests are in
//! flight the loop spins (yielding the core between rounds); when idle it arms the
//! worker's wakeup and sleeps in `poll` on the worker's event fd and the command eventfd.

use super::context::{check, status_text};
use super::peer::Identity;
use super::wire::{ConnKey, Header, Kind, LEN as HEADER_LEN};
use super::UcxError;
use crate::buffer::ReceiveBuffer;
use crate::frame::RawMessage;
use crate::transport::batch::{Batches, Done};
use crate::transport::head::{build as build_head, parse as parse_head, FramePlace};
use crate::transport::Service;
use crate::CommError;
use bytes::Bytes;
use shoal_ucx_sys as ucx;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The active-message id of shoal's messages.
const AM_ID: u32 = 0x5c;

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

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    fn drain(&self) {
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

/// What a UCX callback saw; handled by the loop after `ucp_worker_progress` returns.
enum Event {
    /// An eager active message, copied out of UCX's buffer.
    Message {
        header: Header,
        data: Bytes,
    },
    /// A rendezvous active message: its data waits behind `desc`.
    Rendezvous {
        header: Header,
        desc: *mut c_void,
        len: usize,
    },
    SendDone {
        id: u64,
        status: ucx::ucs_status_t,
    },
    RecvDone {
        id: u64,
        status: ucx::ucs_status_t,
    },
    EndpointFailed {
        id: u64,
        status: ucx::ucs_status_t,
    },
}

thread_local! {
    static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

fn push(event: Event) {
    EVENTS.with(|e| e.borrow_mut().push(event));
}

fn ucx_error(call: &str, status: ucx::ucs_status_t) -> CommError {
    CommError::Io(std::io::Error::other(format!(
        "{call} failed: {}",
        status_text(status)
    )))
}

unsafe extern "C" fn on_am(
    _arg: *mut c_void,
    header: *const c_void,
    header_length: usize,
    data: *mut c_void,
    length: usize,
    param: *const ucx::ucp_am_recv_param_t,
) -> ucx::ucs_status_t {
    // SAFETY: UCX passes `header_length` readable bytes at `header`.
    let raw = unsafe { std::slice::from_raw_parts(header.cast::<u8>(), header_length) };
    let Some(header) = Header::decode(raw) else {
        return ucx::ucs_status_t::UCS_OK;
    };
    // SAFETY: `param` is valid during the callback.
    let attr = unsafe { (*param).recv_attr };
    if attr & u64::from(ucx::UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 {
        push(Event::Rendezvous {
            header,
            desc: data,
            len: length,
        });
        // The descriptor stays valid until ucp_am_recv_data_nbx.
        return ucx::ucs_status_t::UCS_INPROGRESS;
    }
    let bytes = if length == 0 {
        Bytes::new()
    } else {
        // SAFETY: eager data: `length` readable bytes at `data` during the callback.
        let slice = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) };
        let mut buffer = ReceiveBuffer::new(length);
        buffer.vec().extend_from_slice(slice);
        buffer.into_bytes()
    };
    push(Event::Message {
        header,
        data: bytes,
    });
    ucx::ucs_status_t::UCS_OK
}

unsafe extern "C" fn on_sent(request: *mut c_void, status: ucx::ucs_status_t, user: *mut c_void) {
    push(Event::SendDone {
        id: user as u64,
        status,
    });
    // SAFETY: a request UCX handed to this callback; freed once.
    unsafe { ucx::ucp_request_free(request) };
}

unsafe extern "C" fn on_received(
    request: *mut c_void,
    status: ucx::ucs_status_t,
    _length: usize,
    user: *mut c_void,
) {
    push(Event::RecvDone {
        id: user as u64,
        status,
    });
    // SAFETY: as in on_sent.
    unsafe { ucx::ucp_request_free(request) };
}

unsafe extern "C" fn on_endpoint_error(
    arg: *mut c_void,
    _ep: ucx::ucp_ep_h,
    status: ucx::ucs_status_t,
) {
    push(Event::EndpointFailed {
        id: arg as u64,
        status,
    });
}

/// Memory a send reads from, kept until UCX is done with it.
struct PendingSend {
    _header: Box<[u8; HEADER_LEN]>,
    _data: SendData,
    batch: Option<u64>,
    peer: Arc<[u8]>,
}

enum SendData {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl SendData {
    fn as_slice(&self) -> &[u8] {
        match self {
            SendData::Owned(v) => v,
            SendData::Shared(b) => b,
        }
    }
}

struct PendingRecv {
    header: Header,
    buffer: ReceiveBuffer,
    len: usize,
}

/// A message being received, in whatever order its parts arrive.
#[derive(Default)]
struct Arrival {
    /// Control part and frames (inline, or the index of a separate one).
    head: Option<(Bytes, Vec<Place>)>,
    separate: HashMap<u32, Bytes>,
    close: bool,
}

enum Place {
    Inline(Bytes),
    Separate(u32),
}

impl Arrival {
    fn complete(&self) -> bool {
        self.close
            || self.head.as_ref().is_some_and(|(_, places)| {
                places.iter().all(|p| match p {
                    Place::Inline(_) => true,
                    Place::Separate(i) => self.separate.contains_key(i),
                })
            })
    }
}

#[derive(Default)]
struct Route {
    sink: Option<Sink>,
    /// The reader is gone or the connection failed: what arrives is dropped.
    detached: bool,
    /// The peer's worker address (for failing the route with its endpoint).
    peer: Option<Arc<[u8]>>,
    next_seq: u64,
    arrivals: BTreeMap<u64, Arrival>,
}

struct Endpoint {
    ep: ucx::ucp_ep_h,
    id: u64,
    /// Created with peer error handling (it may be force-closed after a failure).
    handles_errors: bool,
}

pub(crate) struct Engine {
    id: u64,
    context: ucx::ucp_context_h,
    worker: ucx::ucp_worker_h,
    address: *mut ucx::ucp_address_t,
    /// This process's identity, then the worker address: what peers connect to.
    advertised: Vec<u8>,
    identity: Identity,
    /// Peers on this host whose endpoints lack peer error handling: watched here.
    watched: HashMap<Arc<[u8]>, Identity>,
    last_watch: Instant,
    /// The context has shared-memory transports (endpoints to this host's processes go
    /// without peer error handling, which they lack).
    shared_memory: bool,
    event_fd: Option<i32>,
    commands: std_mpsc::Receiver<Command>,
    waker: Arc<Waker>,
    endpoints: HashMap<Arc<[u8]>, Endpoint>,
    endpoint_peers: HashMap<u64, Arc<[u8]>>,
    next_endpoint: u64,
    routes: HashMap<ConnKey, Route>,
    send_seq: HashMap<ConnKey, u64>,
    acceptors: HashMap<Service, mpsc::UnboundedSender<Accepted>>,
    sends: HashMap<u64, PendingSend>,
    recvs: HashMap<u64, PendingRecv>,
    next_request: u64,
    batches: Batches,
}

impl Engine {
    /// Create the context and worker; returns the engine and the worker's address.
    pub(crate) fn new(
        id: u64,
        commands: std_mpsc::Receiver<Command>,
        waker: Arc<Waker>,
    ) -> Result<(Self, Vec<u8>), UcxError> {
        let context = super::context::create(ucx::UCP_FEATURE_AM | ucx::UCP_FEATURE_WAKEUP)?;
        let worker_params = ucx::ucp_worker_params_t {
            field_mask: u64::from(ucx::UCP_WORKER_PARAM_FIELD_THREAD_MODE),
            thread_mode: ucx::UCS_THREAD_MODE_SINGLE,
            ..Default::default()
        };
        let mut worker = std::ptr::null_mut();
        // SAFETY: a valid context; the worker is used by this thread only.
        if let Err(e) = check("ucp_worker_create", unsafe {
            ucx::ucp_worker_create(context, &worker_params, &mut worker)
        }) {
            // SAFETY: the context has no worker.
            unsafe { ucx::ucp_cleanup(context) };
            return Err(e);
        }
        let mut engine = Engine {
            id,
            context,
            worker,
            address: std::ptr::null_mut(),
            advertised: Vec::new(),
            identity: Identity::own(),
            watched: HashMap::new(),
            last_watch: Instant::now(),
            // SAFETY: a valid context.
            shared_memory: unsafe { super::info::print_context(context) }
                .is_ok_and(|t| super::info::lists_shared_memory(&t)),
            event_fd: None,
            commands,
            waker,
            endpoints: HashMap::new(),
            endpoint_peers: HashMap::new(),
            next_endpoint: 1,
            routes: HashMap::new(),
            send_seq: HashMap::new(),
            acceptors: HashMap::new(),
            sends: HashMap::new(),
            recvs: HashMap::new(),
            next_request: 1,
            batches: Batches::default(),
        };
        let handler = ucx::ucp_am_handler_param_t {
            field_mask: u64::from(
                ucx::UCP_AM_HANDLER_PARAM_FIELD_ID
                    | ucx::UCP_AM_HANDLER_PARAM_FIELD_CB
                    | ucx::UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
            ),
            id: AM_ID,
            flags: ucx::UCP_AM_FLAG_WHOLE_MSG,
            cb: Some(on_am),
            arg: std::ptr::null_mut(),
        };
        // SAFETY: a valid worker; the callback only queues events.
        check("ucp_worker_set_am_recv_handler", unsafe {
            ucx::ucp_worker_set_am_recv_handler(worker, &handler)
        })?;
        let mut len = 0usize;
        // SAFETY: UCX allocates the address; released in `destroy`.
        check("ucp_worker_get_address", unsafe {
            ucx::ucp_worker_get_address(worker, &mut engine.address, &mut len)
        })?;
        // SAFETY: UCX wrote `len` bytes at `address`.
        let worker_address =
            unsafe { std::slice::from_raw_parts(engine.address.cast::<u8>(), len) };
        let address = engine.identity.address(worker_address);
        engine.advertised = address.clone();
        let mut fd = -1;
        // SAFETY: a valid worker with the wakeup feature; without it we poll on a timer.
        if unsafe { ucx::ucp_worker_get_efd(worker, &mut fd) } == ucx::ucs_status_t::UCS_OK {
            engine.event_fd = Some(fd);
        }
        Ok((engine, address))
    }

    /// Run until [`Command::Stop`] or until every handle is gone.
    pub(crate) fn run(mut self) {
        let mut last_activity = Instant::now();
        loop {
            let mut active = false;
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.stop();
                        return;
                    }
                    Ok(command) => {
                        active = true;
                        self.handle(command);
                    }
                    Err(std_mpsc::TryRecvError::Empty) => break,
                }
            }
            // SAFETY: the worker is valid and used by this thread only.
            while unsafe { ucx::ucp_worker_progress(self.worker) } != 0 {
                active = true;
            }
            let events = EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()));
            active |= !events.is_empty();
            for event in events {
                self.on_event(event);
            }
            self.watch_peers();
            if active {
                last_activity = Instant::now();
                continue;
            }
            let busy = !self.sends.is_empty() || !self.recvs.is_empty();
            if busy && last_activity.elapsed() < Duration::from_millis(10) {
                std::thread::yield_now();
                continue;
            }
            self.sleep(if busy {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(100)
            });
        }
    }

    /// Wait for UCX or a command, at most `limit`.
    fn sleep(&mut self, limit: Duration) {
        let mut fds = vec![libc::pollfd {
            fd: self.waker.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut timeout = limit;
        match self.event_fd {
            Some(fd) => {
                // SAFETY: a valid worker; BUSY means events are pending: no sleep.
                let status = unsafe { ucx::ucp_worker_arm(self.worker) };
                if status == ucx::ucs_status_t::UCS_ERR_BUSY {
                    return;
                }
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            None => timeout = timeout.min(Duration::from_millis(1)),
        }
        // SAFETY: `fds` is a live array of pollfd.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
        self.waker.drain();
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Open {
                peer,
                conn,
                service,
                sink,
            } => {
                let route = self.routes.entry(conn).or_default();
                route.sink = Some(sink);
                route.peer = Some(peer.clone());
                let header = Header {
                    kind: Kind::Open,
                    service: service as u8,
                    conn: ConnKey {
                        from_opener: true,
                        ..conn
                    },
                    seq: 0,
                    index: 0,
                };
                let own = self.advertised.clone();
                let sent = self.post(&peer, header, SendData::Owned(own), false, None);
                if let Err(e) = sent {
                    self.fail_route(conn, &format!("cannot reach the UCX peer: {e}"));
                }
            }
            Command::Send {
                peer,
                conn,
                messages,
                done,
            } => self.send_messages(&peer, conn, &messages, done),
            Command::Close { peer, conn } => {
                let seq = self.send_seq.remove(&conn).unwrap_or(0);
                if self.endpoints.contains_key(&peer) {
                    let header = Header {
                        kind: Kind::Close,
                        service: 0,
                        conn,
                        seq,
                        index: 0,
                    };
                    let _ = self.post(&peer, header, SendData::Owned(Vec::new()), false, None);
                }
            }
            Command::Unroute(conn) => {
                self.routes.remove(&conn);
            }
            Command::Listen { service, acceptor } => {
                self.acceptors.insert(service, acceptor);
            }
            Command::PeerLost(peer) => self.endpoint_failed(&peer, "the peer left the cluster"),
            Command::Stop => {}
        }
    }

    /// The endpoint to `peer`, created on first use, with peer error handling unless the
    /// peer is on this host and shared memory may carry the traffic (UCX 1.13's
    /// shared-memory transports lack it: a dead peer then shows as failed transfers, and
    /// as [`Command::PeerLost`] when the scheduler says it left).
    fn endpoint(&mut self, peer: &Arc<[u8]>) -> Result<ucx::ucp_ep_h, CommError> {
        if let Some(e) = self.endpoints.get(peer) {
            return Ok(e.ep);
        }
        let (identity, worker) = Identity::split(peer).ok_or_else(|| {
            CommError::Io(std::io::Error::other("a UCX address too short to be one"))
        })?;
        let watch = identity.host == self.identity.host && self.shared_memory;
        let mode = if watch {
            ucx::UCP_ERR_HANDLING_MODE_NONE
        } else {
            ucx::UCP_ERR_HANDLING_MODE_PEER
        };
        let id = self.next_endpoint;
        self.next_endpoint += 1;
        let params = ucx::ucp_ep_params_t {
            field_mask: u64::from(
                ucx::UCP_EP_PARAM_FIELD_REMOTE_ADDRESS
                    | ucx::UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE
                    | ucx::UCP_EP_PARAM_FIELD_ERR_HANDLER,
            ),
            address: worker.as_ptr().cast(),
            err_mode: mode,
            err_handler: ucx::ucp_err_handler_t {
                cb: Some(on_endpoint_error),
                arg: id as *mut c_void,
            },
            ..Default::default()
        };
        let mut ep = std::ptr::null_mut();
        // SAFETY: a valid worker; `worker` is an address another process gave, which UCX
        // validates (a malformed one fails the call).
        let status = unsafe { ucx::ucp_ep_create(self.worker, &params, &mut ep) };
        if status != ucx::ucs_status_t::UCS_OK {
            return Err(ucx_error("ucp_ep_create", status));
        }
        self.endpoints.insert(
            peer.clone(),
            Endpoint {
                ep,
                id,
                handles_errors: !watch,
            },
        );
        self.endpoint_peers.insert(id, peer.clone());
        if watch {
            self.watched.insert(peer.clone(), identity);
        }
        Ok(ep)
    }

    fn send_messages(
        &mut self,
        peer: &Arc<[u8]>,
        conn: ConnKey,
        messages: &[RawMessage],
        done: Done,
    ) {
        let batch = self.batches.open(done);
        let posted = messages
            .iter()
            .try_for_each(|msg| self.post_message(peer, conn, msg, batch));
        if let Err(e) = posted {
            self.batches.fail(batch, e);
        }
        self.batches.finish_if_done(batch);
    }

    fn post_message(
        &mut self,
        peer: &Arc<[u8]>,
        conn: ConnKey,
        msg: &RawMessage,
        batch: u64,
    ) -> Result<(), CommError> {
        let seq = self.send_seq.entry(conn).or_insert(0);
        let this = *seq;
        *seq += 1;
        let (head, separate) = build_head(msg)?;
        let header = Header {
            kind: Kind::Head,
            service: 0,
            conn,
            seq: this,
            index: 0,
        };
        self.post(peer, header, SendData::Owned(head), false, Some(batch))?;
        for (index, frame) in separate.into_iter().enumerate() {
            let header = Header {
                kind: Kind::Frame,
                index: index as u32,
                ..header
            };
            self.post(
                peer,
                header,
                SendData::Shared(frame.clone()),
                true,
                Some(batch),
            )?;
        }
        Ok(())
    }

    /// Post one active message; `rendezvous` forces the zero-copy protocol (large frames).
    fn post(
        &mut self,
        peer: &Arc<[u8]>,
        header: Header,
        data: SendData,
        rendezvous: bool,
        batch: Option<u64>,
    ) -> Result<(), CommError> {
        let ep = self.endpoint(peer)?;
        let header = Box::new(header.encode());
        let id = self.next_request;
        self.next_request += 1;
        let flags = if rendezvous {
            ucx::UCP_AM_SEND_FLAG_RNDV
        } else {
            0
        };
        let mut param = ucx::ucp_request_param_t {
            op_attr_mask: ucx::UCP_OP_ATTR_FIELD_CALLBACK
                | ucx::UCP_OP_ATTR_FIELD_USER_DATA
                | ucx::UCP_OP_ATTR_FIELD_FLAGS,
            flags,
            user_data: id as *mut c_void,
            ..Default::default()
        };
        param.cb.send = Some(on_sent);
        let bytes = data.as_slice();
        // SAFETY: header and data stay alive (in `sends`) until the send completes: freed
        // at once if it completed inside the call, else when its callback reports.
        let request = unsafe {
            ucx::ucp_am_send_nbx(
                ep,
                AM_ID,
                header.as_ptr().cast(),
                HEADER_LEN,
                bytes.as_ptr().cast(),
                bytes.len(),
                &param,
            )
        };
        if request.is_null() {
            return Ok(());
        }
        if ucx::ucs_ptr_is_err(request) {
            return Err(ucx_error("ucp_am_send_nbx", ucx::ucs_ptr_status(request)));
        }
        if let Some(b) = batch {
            self.batches.add(b);
        }
        self.sends.insert(
            id,
            PendingSend {
                _header: header,
                _data: data,
                batch,
                peer: peer.clone(),
            },
        );
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Message { header, data } => self.arrived(header, data),
            Event::Rendezvous { header, desc, len } => self.receive_rendezvous(header, desc, len),
            Event::SendDone { id, status } => {
                let Some(send) = self.sends.remove(&id) else {
                    return;
                };
                if let Some(batch) = send.batch {
                    let failed = (status != ucx::ucs_status_t::UCS_OK)
                        .then(|| ucx_error("a UCX send", status));
                    self.batches.completed(batch, failed);
                }
            }
            Event::RecvDone { id, status } => {
                if let Some(recv) = self.recvs.remove(&id) {
                    self.received(recv, status);
                }
            }
            Event::EndpointFailed { id, status } => {
                if let Some(peer) = self.endpoint_peers.get(&id).cloned() {
                    let reason = format!("UCX endpoint failed: {}", status_text(status));
                    self.endpoint_failed(&peer, &reason);
                }
            }
        }
    }

    fn receive_rendezvous(&mut self, header: Header, desc: *mut c_void, len: usize) {
        let wanted = matches!(header.kind, Kind::Head | Kind::Frame)
            && self.routes.get(&header.conn).is_none_or(|r| !r.detached);
        let buffer = if wanted {
            ReceiveBuffer::try_new(len)
        } else {
            None
        };
        let Some(mut buffer) = buffer else {
            // SAFETY: a descriptor UCX gave to the AM callback and that was not received.
            unsafe { ucx::ucp_am_data_release(self.worker, desc) };
            if wanted {
                self.fail_route(
                    header.conn,
                    "cannot allocate a data frame announced over UCX",
                );
            }
            return;
        };
        let id = self.next_request;
        self.next_request += 1;
        let mut param = ucx::ucp_request_param_t {
            op_attr_mask: ucx::UCP_OP_ATTR_FIELD_CALLBACK | ucx::UCP_OP_ATTR_FIELD_USER_DATA,
            user_data: id as *mut c_void,
            ..Default::default()
        };
        param.cb.recv_am = Some(on_received);
        // SAFETY: the buffer has capacity `len` and its heap block does not move while it
        // waits in `recvs`; it is read only after the receive completed.
        let request = unsafe {
            ucx::ucp_am_recv_data_nbx(
                self.worker,
                desc,
                buffer.vec().as_mut_ptr().cast(),
                len,
                &param,
            )
        };
        let recv = PendingRecv {
            header,
            buffer,
            len,
        };
        if request.is_null() {
            self.received(recv, ucx::ucs_status_t::UCS_OK);
        } else if ucx::ucs_ptr_is_err(request) {
            self.received(recv, ucx::ucs_ptr_status(request));
        } else {
            self.recvs.insert(id, recv);
        }
    }

    fn received(&mut self, mut recv: PendingRecv, status: ucx::ucs_status_t) {
        if status != ucx::ucs_status_t::UCS_OK {
            let reason = format!("a UCX receive failed: {}", status_text(status));
            self.fail_route(recv.header.conn, &reason);
            return;
        }
        // SAFETY: the receive completed: `len` bytes written.
        unsafe { recv.buffer.vec().set_len(recv.len) };
        self.arrived(recv.header, recv.buffer.into_bytes());
    }

    /// One active message's data is here.
    fn arrived(&mut self, header: Header, data: Bytes) {
        let key = header.conn;
        if header.kind == Kind::Open {
            self.opened(header, data);
            return;
        }
        if !self.routes.contains_key(&key) && key.origin == self.id {
            // A connection this side opened and has forgotten: nobody reads it.
            return;
        }
        let route = self.routes.entry(key).or_default();
        if route.detached {
            return;
        }
        let arrival = route.arrivals.entry(header.seq).or_default();
        match header.kind {
            Kind::Head => match parse_head(&data) {
                Ok((control, places)) => {
                    let mut index = 0;
                    let places = places
                        .into_iter()
                        .map(|p| match p {
                            FramePlace::Inline(range) => Place::Inline(data.slice(range)),
                            FramePlace::Separate(_) => {
                                index += 1;
                                Place::Separate(index - 1)
                            }
                        })
                        .collect();
                    arrival.head = Some((data.slice(control), places));
                }
                Err(e) => {
                    let reason = format!("malformed message over UCX: {e}");
                    tracing::error!(%reason, "closing the connection");
                    self.fail_route(key, &reason);
                    return;
                }
            },
            Kind::Frame => {
                arrival.separate.insert(header.index, data);
            }
            Kind::Close => arrival.close = true,
            Kind::Open => {}
        }
        self.deliver(key);
    }

    fn opened(&mut self, header: Header, peer: Bytes) {
        let key = header.conn;
        let peer: Arc<[u8]> = peer.as_ref().into();
        let acceptor = Service::from_u8(header.service).and_then(|s| self.acceptors.get(&s));
        let (sink, inbox) = mpsc::unbounded_channel();
        let accepted = acceptor.is_some_and(|a| {
            a.send(Accepted {
                peer: peer.clone(),
                conn: key,
                inbox,
            })
            .is_ok()
        });
        // The endpoint back now: replies go out at once, and a dead opener is noticed.
        if let Err(e) = self.endpoint(&peer) {
            tracing::debug!(error = %e, "no UCX endpoint back to a connecting peer");
        }
        let route = self.routes.entry(key).or_default();
        route.peer = Some(peer);
        if accepted {
            route.sink = Some(sink);
            self.deliver(key);
        } else {
            tracing::debug!(
                service = header.service,
                "UCX connection to a service nobody listens to"
            );
            route.detached = true;
            route.arrivals.clear();
        }
    }

    /// Hand the complete messages at the front of a route to its reader, in order.
    fn deliver(&mut self, key: ConnKey) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        let Some(sink) = route.sink.clone() else {
            return;
        };
        loop {
            let next = route.next_seq;
            if !route.arrivals.get(&next).is_some_and(Arrival::complete) {
                break;
            }
            let Some(mut arrival) = route.arrivals.remove(&next) else {
                break;
            };
            route.next_seq += 1;
            let delivery = match arrival.head.take() {
                Some((control, places)) => {
                    let frames = places
                        .into_iter()
                        .map(|p| match p {
                            Place::Inline(b) => b,
                            Place::Separate(i) => arrival.separate.remove(&i).unwrap_or_default(),
                        })
                        .collect();
                    Delivery::Message(RawMessage { control, frames })
                }
                None => Delivery::Closed,
            };
            let closed = matches!(delivery, Delivery::Closed);
            if sink.send(delivery).is_err() || closed {
                route.sink = None;
                route.detached = true;
                route.arrivals.clear();
                break;
            }
        }
    }

    fn fail_route(&mut self, key: ConnKey, reason: &str) {
        let route = self.routes.entry(key).or_default();
        if let Some(sink) = route.sink.take() {
            let _ = sink.send(Delivery::Failed(reason.to_string()));
        }
        route.detached = true;
        route.arrivals.clear();
    }

    /// The endpoint to `peer` failed (or the peer left): every connection with it fails.
    fn endpoint_failed(&mut self, peer: &Arc<[u8]>, reason: &str) {
        tracing::debug!(%reason, "UCX peer lost");
        self.watched.remove(peer);
        let keys: Vec<ConnKey> = self
            .routes
            .iter()
            .filter(|(_, r)| r.peer.as_ref() == Some(peer))
            .map(|(k, _)| *k)
            .collect();
        let Some(endpoint) = self.endpoints.remove(peer) else {
            for key in keys {
                self.fail_route(key, reason);
            }
            return;
        };
        self.endpoint_peers.remove(&endpoint.id);
        if endpoint.handles_errors {
            // Its requests in flight complete with an error through their callbacks.
            self.close_endpoint(endpoint.ep);
        } else {
            // UCX would wait for ever on a dead peer's requests: they fail here, and their
            // buffers (which UCX may still touch) are left to the process's exit, as is
            // the endpoint.
            let sends: Vec<u64> = self
                .sends
                .iter()
                .filter(|(_, s)| &s.peer == peer)
                .map(|(id, _)| *id)
                .collect();
            for id in sends {
                let Some(send) = self.sends.remove(&id) else {
                    continue;
                };
                let batch = send.batch;
                std::mem::forget(send);
                if let Some(batch) = batch {
                    let lost = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        reason.to_string(),
                    );
                    self.batches.completed(batch, Some(CommError::Io(lost)));
                }
            }
            let recvs: Vec<u64> = self
                .recvs
                .iter()
                .filter(|(_, r)| keys.contains(&r.header.conn))
                .map(|(id, _)| *id)
                .collect();
            for id in recvs {
                if let Some(recv) = self.recvs.remove(&id) {
                    std::mem::forget(recv);
                }
            }
        }
        for key in keys {
            self.fail_route(key, reason);
        }
    }

    /// Peers on this host whose process is gone have failed (checked every 200 ms).
    fn watch_peers(&mut self) {
        if self.watched.is_empty() || self.last_watch.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_watch = Instant::now();
        let gone: Vec<Arc<[u8]>> = self
            .watched
            .iter()
            .filter(|(_, identity)| !identity.alive())
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in gone {
            self.endpoint_failed(&peer, "the UCX peer's process exited");
        }
    }

    /// Close an endpoint at once (its sends in flight complete with an error).
    fn close_endpoint(&mut self, ep: ucx::ucp_ep_h) {
        let param = ucx::ucp_request_param_t {
            op_attr_mask: ucx::UCP_OP_ATTR_FIELD_FLAGS,
            flags: ucx::UCP_EP_CLOSE_FLAG_FORCE,
            ..Default::default()
        };
        // SAFETY: an endpoint of this worker, closed once.
        let request = unsafe { ucx::ucp_ep_close_nbx(ep, &param) };
        if ucx::ucs_ptr_is_ptr(request) {
            let deadline = Instant::now() + Duration::from_secs(1);
            // SAFETY: a live close request, progressed until done, then freed.
            unsafe {
                while ucx::ucp_request_check_status(request) == ucx::ucs_status_t::UCS_INPROGRESS
                    && Instant::now() < deadline
                {
                    ucx::ucp_worker_progress(self.worker);
                }
                ucx::ucp_request_free(request);
            }
        }
    }

    /// Fail every connection, close the endpoints, and destroy the worker and context
    /// when nothing is in flight (otherwise leave them, and the buffers UCX may still
    /// use, to the process's exit).
    fn stop(&mut self) {
        let keys: Vec<ConnKey> = self.routes.keys().copied().collect();
        for key in keys {
            self.fail_route(key, "the UCX transport has stopped");
        }
        let endpoints: Vec<Endpoint> = self.endpoints.drain().map(|(_, e)| e).collect();
        for endpoint in endpoints {
            self.close_endpoint(endpoint.ep);
        }
        // SAFETY: the worker is valid; completions queue events dropped below.
        while unsafe { ucx::ucp_worker_progress(self.worker) } != 0 {}
        for event in EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut())) {
            match event {
                Event::SendDone { id, .. } => {
                    self.sends.remove(&id);
                }
                Event::RecvDone { id, .. } => {
                    self.recvs.remove(&id);
                }
                Event::Rendezvous { desc, .. } => {
                    // SAFETY: an unreceived descriptor.
                    unsafe { ucx::ucp_am_data_release(self.worker, desc) };
                }
                _ => {}
            }
        }
        self.batches.fail_all();
        if !self.sends.is_empty() || !self.recvs.is_empty() {
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::take(&mut self.recvs));
            return;
        }
        // SAFETY: nothing is in flight; the address, worker and context are released once.
        unsafe {
            ucx::ucp_worker_release_address(self.worker, self.address);
            ucx::ucp_worker_destroy(self.worker);
            ucx::ucp_cleanup(self.context);
        }
    }
}
