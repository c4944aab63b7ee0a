//! Peers that fail or go away: their connections failed at once, their endpoints closed.

use super::*;

impl Engine {
    pub(super) fn fail_route(&mut self, key: ConnKey, reason: &str) {
        let route = self.routes.entry(key).or_default();
        if let Some(sink) = route.sink.take() {
            let _ = sink.send(Delivery::Failed(reason.to_string()));
        }
        route.detached = true;
        route.arrivals.clear();
    }

    /// The endpoint to `peer` failed (or the peer left): every connection with it fails.
    pub(super) fn endpoint_failed(&mut self, peer: &Arc<[u8]>, reason: &str) {
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
    pub(super) fn watch_peers(&mut self) {
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
    pub(super) fn close_endpoint(&mut self, ep: ucx::ucp_ep_h) {
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
}
