//! Received bytes handed to Python without a copy: Python builds a buffer over
//! `address()` (see `shoal/_serialize.py`) that keeps the `Frame` alive.

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;

enum Data {
    /// Shared with the worker's store: read-only for Python.
    Shared(Bytes),
    /// Owned by this frame alone: Python may write into it.
    Owned(BytesMut),
}

/// Bytes received from the cluster.
#[pyclass(frozen, module = "shoal._native")]
pub struct Frame {
    data: Data,
    /// Start of the data; taken once, from the owner, when the frame is built.
    ptr: usize,
}

impl Frame {
    /// A frame that may share its bytes with others (read-only in Python).
    pub fn shared(bytes: Bytes) -> Frame {
        let ptr = bytes.as_ptr() as usize;
        Frame {
            data: Data::Shared(bytes),
            ptr,
        }
    }

    /// A frame over bytes nobody else holds (writable in Python); copies only when the
    /// bytes are shared after all.
    pub fn owned(bytes: Bytes) -> Frame {
        let mut owned = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let ptr = owned.as_mut_ptr() as usize;
        Frame {
            data: Data::Owned(owned),
            ptr,
        }
    }

    fn len(&self) -> usize {
        match &self.data {
            Data::Shared(b) => b.len(),
            Data::Owned(b) => b.len(),
        }
    }
}

#[pymethods]
impl Frame {
    /// (address, length, writable) of the bytes, valid while this frame lives.
    fn buffer_info(&self) -> (usize, usize, bool) {
        (self.ptr, self.len(), matches!(self.data, Data::Owned(_)))
    }

    fn __len__(&self) -> usize {
        self.len()
    }
}
