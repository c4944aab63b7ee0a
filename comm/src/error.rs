//! Errors of the wire layer.

use std::io;

/// Everything that can go wrong while framing, decoding or authenticating a connection.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// The underlying socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A frame announced a size above the configured limit; the connection is dropped
    /// before anything is allocated.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was announced (a control part, a data frame).
        what: &'static str,
        /// Its announced size in bytes.
        size: u64,
        /// The most this connection accepts.
        limit: u64,
    },
    /// Memory for an announced part could not be had: the connection is closed instead
    /// of the process aborting.
    #[error("cannot allocate {size} bytes for a {what} the peer announced")]
    OutOfMemory {
        /// What was announced.
        what: &'static str,
        /// Its announced size in bytes.
        size: u64,
    },
    /// The control part did not decode as the expected message.
    #[error("malformed message: {0}")]
    Decode(String),
    /// A message could not be encoded (a bug, or a value serde cannot represent).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// The peer closed the connection before the handshake completed.
    #[error("connection closed during the handshake")]
    ClosedDuringHandshake,
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: this side speaks version {ours}, the peer speaks version {theirs}; run the same shoal release everywhere")]
    VersionMismatch {
        /// The version this side speaks.
        ours: u32,
        /// The version the peer speaks.
        theirs: u32,
    },
    /// The peer does not know the cluster secret.
    #[error("authentication failed: the peer does not know the cluster secret (use the scheduler file written by the running scheduler)")]
    AuthFailed,
    /// The remote side refused us and said why.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The first bytes were not a shoal handshake at all.
    #[error("not a shoal handshake: {0}")]
    NotAHandshake(String),
    /// The handshake did not complete in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(std::time::Duration),
}

impl CommError {
    /// Build a decode error from any displayable cause.
    pub fn decode(e: impl std::fmt::Display) -> Self {
        CommError::Decode(e.to_string())
    }
}
