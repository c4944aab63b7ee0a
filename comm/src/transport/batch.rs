//! Flushes in flight on a message-based transport (MPI, UCX): a writer's flush hands its
//! messages to the progress thread as one batch of sends and learns, through the batch's
//! channel, when the transport is done with every buffer, or why not.

use crate::CommError;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// What a flush waits for.
pub(crate) type Done = oneshot::Sender<Result<(), CommError>>;

struct Batch {
    remaining: usize,
    done: Done,
    failed: Option<CommError>,
}

/// Every batch in flight, by id.
#[derive(Default)]
pub(crate) struct Batches {
    batches: HashMap<u64, Batch>,
    next: u64,
}

impl Batches {
    /// A new batch with no sends yet; its flush learns the outcome through `done`.
    pub(crate) fn open(&mut self, done: Done) -> u64 {
        let id = self.next;
        self.next += 1;
        self.batches.insert(
            id,
            Batch {
                remaining: 0,
                done,
                failed: None,
            },
        );
        id
    }

    /// One more send of `batch` is in flight.
    pub(crate) fn add(&mut self, batch: u64) {
        if let Some(b) = self.batches.get_mut(&batch) {
            b.remaining += 1;
        }
    }

    /// The batch failed (posting a send failed; what is in flight still completes).
    pub(crate) fn fail(&mut self, batch: u64, error: CommError) {
        if let Some(b) = self.batches.get_mut(&batch) {
            b.failed = Some(error);
        }
    }

    /// One send of `batch` completed, with `error` if it failed; the flush learns the
    /// outcome once nothing of the batch is in flight.
    pub(crate) fn completed(&mut self, batch: u64, error: Option<CommError>) {
        if let Some(b) = self.batches.get_mut(&batch) {
            b.remaining -= 1;
            if let Some(e) = error {
                b.failed = Some(e);
            }
        }
        self.finish_if_done(batch);
    }

    /// Tell the flush if nothing of `batch` is in flight (after posting every send).
    pub(crate) fn finish_if_done(&mut self, batch: u64) {
        if self.batches.get(&batch).is_some_and(|b| b.remaining == 0) {
            if let Some(b) = self.batches.remove(&batch) {
                let _ = b.done.send(b.failed.map_or(Ok(()), Err));
            }
        }
    }

    /// Fail every batch (the transport stops).
    pub(crate) fn fail_all(&mut self) {
        for (_, batch) in self.batches.drain() {
            let _ = batch.done.send(Err(CommError::Truncated));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_learns_the_outcome_when_its_last_send_completes() {
        let mut batches = Batches::default();
        let (done, mut outcome) = oneshot::channel();
        let b = batches.open(done);
        batches.add(b);
        batches.add(b);
        batches.finish_if_done(b);
        batches.completed(b, None);
        assert!(outcome.try_recv().is_err(), "one send still in flight");
        batches.completed(b, Some(CommError::Truncated));
        assert!(matches!(outcome.try_recv(), Ok(Err(CommError::Truncated))));

        let (done, mut outcome) = oneshot::channel();
        let empty = batches.open(done);
        batches.finish_if_done(empty);
        assert!(matches!(outcome.try_recv(), Ok(Ok(()))));
    }
}
