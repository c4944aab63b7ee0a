//! The progress thread a fabric (MPI, UCX) drives its library from, joined once when the
//! fabric stops.

use std::sync::Mutex;
use std::thread::JoinHandle;

/// A fabric's progress thread, until it was joined.
pub(crate) struct ProgressThread(Mutex<Option<JoinHandle<()>>>);

impl ProgressThread {
    pub(crate) fn new(thread: JoinHandle<()>) -> ProgressThread {
        ProgressThread(Mutex::new(Some(thread)))
    }

    /// Wait for the thread to end (it was told to stop); later calls return at once.
    pub(crate) fn join(&self) {
        let thread = self.0.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
