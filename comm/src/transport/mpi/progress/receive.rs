//! Receiving: probing for arrivals, receives posted straight into the reader's buffers, messages handed over in the order they were sent.

use super::*;

impl Engine {
    /// Receive every message that has arrived; true if there was one.
    pub(super) fn probe_arrivals(&mut self) -> bool {
        let mut any = false;
        for _ in 0..64 {
            let mut flag: c_int = 0;
            let mut message = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
            let mut status = std::mem::MaybeUninit::<ffi::MPI_Status>::uninit();
            // SAFETY: out-pointers to local storage; valid communicator.
            let code = unsafe {
                ffi::MPI_Improbe(
                    ffi::RSMPI_ANY_SOURCE,
                    ffi::RSMPI_ANY_TAG,
                    self.comm,
                    &mut flag,
                    message.as_mut_ptr(),
                    status.as_mut_ptr(),
                )
            };
            if code != 0 || flag == 0 {
                if code != 0 {
                    tracing::error!(code, "MPI_Improbe failed");
                }
                return any;
            }
            any = true;
            // SAFETY: flag set: MPI wrote the message handle and the status.
            let (mut message, mut status) =
                unsafe { (message.assume_init(), status.assume_init()) };
            let mut count: c_int = 0;
            // SAFETY: a status filled by MPI_Improbe.
            unsafe { ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count) };
            let len = usize::try_from(count).unwrap_or(0);
            let mut buffer = Vec::<u8>::with_capacity(len.max(1));
            // SAFETY: the buffer has room for `count` bytes; the matched message is
            // received exactly once.
            let code = unsafe {
                ffi::MPI_Mrecv(
                    buffer.as_mut_ptr().cast(),
                    count,
                    ffi::RSMPI_UINT8_T,
                    &mut message,
                    &mut status,
                )
            };
            if code != 0 {
                tracing::error!(code, "MPI_Mrecv failed");
                continue;
            }
            // SAFETY: MPI_Mrecv wrote `len` bytes.
            unsafe { buffer.set_len(len) };
            self.arrived(status.MPI_SOURCE, status.MPI_TAG, buffer);
        }
        any
    }

    /// The route of a connection's first message from `source` on `tag`: handed to the
    /// listener of its service if it opens a connection to one, else drained.
    pub(super) fn new_route(&mut self, source: i32, tag: i32, opens: bool) -> Route {
        let mut route = Route::default();
        let Some(service) = tag::opened_service(tag).filter(|_| opens) else {
            return route;
        };
        if let Some(acceptor) = self.acceptors.get(&service) {
            let (sink, inbox) = mpsc::unbounded_channel();
            if acceptor.send(Accepted { source, tag, inbox }).is_ok() {
                route.sink = Some(sink);
            } else {
                self.acceptors.remove(&service);
            }
        }
        route
    }

    /// The first MPI message of a shoal message (or a close) arrived.
    pub(super) fn arrived(&mut self, source: i32, tag: i32, head: Vec<u8>) {
        tracing::trace!(source, tag, bytes = head.len(), "MPI message arrived");
        let key = (source, tag);
        if !self.routes.contains_key(&key) {
            let route = self.new_route(source, tag, !head.is_empty());
            self.routes.insert(key, route);
        }
        let parsed = if head.is_empty() {
            None
        } else {
            match parse_head(&head) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(source, error = %e, "malformed message over MPI; closing the connection");
                    None
                }
            }
        };
        if parsed
            .as_ref()
            .is_some_and(|(control, frames)| control.is_empty() && frames.is_empty())
        {
            // The opening announcement (no real message has an empty control part): the
            // route now exists and the listener has the connection.
            return;
        }
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        let seq = route.next_seq;
        route.next_seq += 1;
        let mut arrival = Arrival {
            seq,
            control: Bytes::new(),
            frames: Vec::new(),
            remaining: 0,
            close: parsed.is_none(),
        };
        if let Some((control_range, frames)) = parsed {
            let head = Bytes::from(head);
            arrival.control = head.slice(control_range);
            for frame in frames {
                arrival.frames.push(match frame {
                    FramePlace::Inline(range) => ArrivingFrame::Inline(head.slice(range)),
                    FramePlace::Separate(len) => match ReceiveBuffer::try_new(len) {
                        Some(buffer) => ArrivingFrame::Separate(buffer, len),
                        None => {
                            tracing::error!(source, len, "cannot allocate a data frame announced over MPI; closing the connection");
                            arrival.close = true;
                            arrival.frames.clear();
                            break;
                        }
                    },
                });
            }
        }
        // Receives for the frames are posted now, before the next probe: the frames are
        // the next messages on this tag from this source, and a posted receive takes them
        // before any probe can.
        'frames: for frame in &mut arrival.frames {
            let ArrivingFrame::Separate(buffer, len) = frame else {
                continue;
            };
            for piece in pieces(*len, self.chunk) {
                let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
                // SAFETY: the buffer has capacity `len`, and `piece` lies within it. The
                // Vec's heap block does not move while the arrival waits in its route's
                // queue, and it is only read after every receive completed.
                let code = unsafe {
                    ffi::MPI_Irecv(
                        buffer.vec().as_mut_ptr().add(piece.start).cast(),
                        piece.len() as c_int,
                        ffi::RSMPI_UINT8_T,
                        source,
                        tag,
                        self.comm,
                        request.as_mut_ptr(),
                    )
                };
                if code != 0 {
                    tracing::error!(code, source, "MPI_Irecv failed; closing the connection");
                    arrival.close = true;
                    break 'frames;
                }
                arrival.remaining += 1;
                self.recvs.push(PendingRecv {
                    // SAFETY: MPI_Irecv succeeded and wrote the request.
                    request: unsafe { request.assume_init() },
                    route: key,
                    seq,
                });
            }
        }
        route.queue.push_back(arrival);
        self.deliver(key);
    }

    /// Hand the complete messages at the front of a route's queue to its reader, in order,
    /// and forget the route once nothing more can reach a reader.
    pub(super) fn deliver(&mut self, key: (i32, i32)) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        while route.queue.front().is_some_and(|a| a.remaining == 0) {
            let Some(arrival) = route.queue.pop_front() else {
                break;
            };
            let Some(sink) = &route.sink else {
                continue;
            };
            if arrival.close {
                let _ = sink.send(None);
                // Receives still in flight after a close belong to a broken stream: they
                // complete into their buffers and are dropped here.
                route.sink = None;
                continue;
            }
            let frames = arrival
                .frames
                .into_iter()
                .map(|frame| match frame {
                    ArrivingFrame::Inline(bytes) => bytes,
                    ArrivingFrame::Separate(mut buffer, len) => {
                        // SAFETY: every receive into this buffer completed: `len` bytes
                        // written.
                        unsafe { buffer.vec().set_len(len) };
                        buffer.into_bytes()
                    }
                })
                .collect();
            let msg = RawMessage {
                control: arrival.control,
                frames,
            };
            if sink.send(Some(msg)).is_err() {
                route.sink = None;
            }
        }
        if route.queue.is_empty() && route.sink.is_none() {
            self.routes.remove(&key);
        }
    }
}
