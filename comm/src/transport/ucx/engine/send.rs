//! Sending: messages queued by writers posted as UCX active messages, eager or rendezvous.

use super::*;

impl Engine {
    pub(super) fn send_messages(
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

    pub(super) fn post_message(
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
    pub(super) fn post(
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
}
