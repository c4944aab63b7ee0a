//! Sending: a connection's messages posted as MPI sends, the head and small frames in one, large frames in chunks.

use super::*;

impl Engine {
    pub(super) fn post_messages(
        &mut self,
        dest: i32,
        tag: i32,
        messages: &[RawMessage],
        done: oneshot::Sender<Result<(), CommError>>,
    ) {
        let batch = self.batches.open(done);
        let posted = messages
            .iter()
            .try_for_each(|msg| self.post_message(dest, tag, msg, batch));
        if let Err(e) = posted {
            self.batches.fail(batch, e);
        }
        self.batches.finish_if_done(batch);
    }

    /// Post the sends of one message: its first MPI message (header, control part, inline
    /// frames), then the pieces of every other frame.
    pub(super) fn post_message(
        &mut self,
        dest: i32,
        tag: i32,
        msg: &RawMessage,
        batch: u64,
    ) -> Result<(), CommError> {
        let (head, separate) = build_head(msg)?;
        self.post_send(dest, tag, SendBuffer::Header(head), Some(batch))?;
        for frame in separate {
            for piece in pieces(frame.len(), self.chunk) {
                self.post_send(
                    dest,
                    tag,
                    SendBuffer::Bytes(frame.slice(piece)),
                    Some(batch),
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn post_send(
        &mut self,
        dest: i32,
        tag: i32,
        buffer: SendBuffer,
        batch: Option<u64>,
    ) -> Result<(), CommError> {
        let (ptr, len): (*const u8, usize) = match &buffer {
            SendBuffer::Bytes(b) => (b.as_ptr(), b.len()),
            SendBuffer::Header(v) => (v.as_ptr(), v.len()),
            SendBuffer::Empty => (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0),
        };
        let count = c_int::try_from(len).map_err(|_| mpi_error("MPI_Isend (count)", -1))?;
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `ptr` points to `len` readable bytes owned by `buffer`, which is stored with
        // the request below and freed only once MPI reports the send complete (or leaked at
        // stop). The communicator is valid until the fabric stops.
        let code = unsafe {
            ffi::MPI_Isend(
                ptr.cast(),
                count,
                ffi::RSMPI_UINT8_T,
                dest,
                tag,
                self.comm,
                request.as_mut_ptr(),
            )
        };
        if code != 0 {
            return Err(mpi_error("MPI_Isend", code));
        }
        if let Some(b) = batch {
            self.batches.add(b);
        }
        self.sends.push(PendingSend {
            // SAFETY: MPI_Isend succeeded and wrote the request.
            request: unsafe { request.assume_init() },
            dest,
            buffer,
            batch,
        });
        Ok(())
    }
}
