//! Receiving: what the callbacks saw, rendezvous data fetched into pooled buffers, messages reordered and delivered per connection.

use super::*;

impl Engine {
    pub(super) fn on_event(&mut self, event: Event) {
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

    pub(super) fn receive_rendezvous(&mut self, header: Header, desc: *mut c_void, len: usize) {
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

    pub(super) fn received(&mut self, mut recv: PendingRecv, status: ucx::ucs_status_t) {
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
    pub(super) fn arrived(&mut self, header: Header, data: Bytes) {
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

    pub(super) fn opened(&mut self, header: Header, peer: Bytes) {
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
    pub(super) fn deliver(&mut self, key: ConnKey) {
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
}
