//! The sending half of a connection over a message-based transport (MPI, UCX): messages
//! wait in the writer until [`MessageWrite::flush`] hands them to the transport's progress
//! thread as one batch of sends, and the flush returns once the transport is done with
//! every buffer (or failed).

use crate::frame::RawMessage;
use crate::transport::batch::Done;
use crate::transport::MessageWrite;
use crate::CommError;
use tokio::sync::oneshot;

/// Where a connection's flushed messages go: one command to a progress thread. Closing
/// the connection is the outbox's `Drop`.
pub trait Outbox: Send + 'static {
    /// Hand `messages` to the progress thread as one batch; `done` learns when the
    /// transport is done with their buffers, or why not.
    ///
    /// # Errors
    /// The progress thread has stopped.
    fn post(&self, messages: Vec<RawMessage>, done: Done) -> Result<(), CommError>;

    /// The error of a connection whose transport has stopped.
    fn stopped(&self) -> CommError;
}

/// The sending half of a connection whose flushes go to `O`.
pub struct QueuedWriter<O> {
    queued: Vec<RawMessage>,
    outbox: O,
}

impl<O> QueuedWriter<O> {
    pub(crate) fn new(outbox: O) -> Self {
        QueuedWriter {
            queued: Vec::new(),
            outbox,
        }
    }
}

impl<O: Outbox> MessageWrite for QueuedWriter<O> {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        self.queued.push(msg.clone());
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CommError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        self.outbox.post(std::mem::take(&mut self.queued), done)?;
        finished.await.map_err(|_| self.outbox.stopped())?
    }
}
