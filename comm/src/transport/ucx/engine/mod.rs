//! The progress thread: the one place that calls UCX for shoal's connections.
//!
//! It owns the UCP context and worker (created in this thread, single-threaded mode),
//! the endpoints (one per peer process, from the peer's worker address), and every
//! connection's routing. Commands come through a channel plus an eventfd; UCX callbacks,
//! which run inside `ucp_worker_progress` on this thread, only queue [`Event`]s that the
//! loop then handles, so no callback touches the engine's state. While requests are in
//! flight the loop spins (yielding the core between rounds); when idle it arms the
//! worker's wakeup and sleeps in `poll` on the worker's event fd and the command eventfd.

mod peers;
mod receive;
mod send;

use super::callbacks::*;
use super::commands::Waker;
pub(crate) use super::commands::{Accepted, Command, Commands, Delivery, Sink};
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
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The active-message id of shoal's messages.
const AM_ID: u32 = 0x5c;

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
            fd: self.waker.fd(),
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
