//! One message on the wire: a msgpack control part followed by raw data frames.
//!
//! ```text
//! u32 LE  control length
//! u32 LE  number of data frames (n)
//! n × u64 LE  data frame lengths
//! control bytes (msgpack)
//! data frame bytes, one after the other
//! ```
//!
//! Payloads (task inputs and results, pickled functions) travel as data frames and are
//! never re-encoded inside msgpack: the control part refers to them by index. Every length
//! is checked against [`Limits`] before anything is allocated.

use crate::CommError;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

/// Size limits applied to every incoming message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest control part accepted.
    pub max_control: u32,
    /// Most data frames in one message.
    pub max_frames: u32,
    /// Largest single data frame.
    pub max_frame: u64,
}

impl Limits {
    /// Limits for established connections: large graphs and large payloads pass.
    pub const DEFAULT: Limits = Limits {
        max_control: 1 << 30,
        max_frames: 1 << 24,
        max_frame: 1 << 36,
    };
    /// Tight limits for the handshake, so garbage on a socket is refused at once.
    pub const HANDSHAKE: Limits = Limits {
        max_control: 4096,
        max_frames: 0,
        max_frame: 0,
    };
}

impl Limits {
    /// Check a message's control part length and frame count against these limits.
    ///
    /// # Errors
    /// [`CommError::TooLarge`] naming the part over its limit.
    pub fn check(&self, control_len: usize, n_frames: usize) -> Result<(), CommError> {
        if control_len as u64 > u64::from(self.max_control) {
            return Err(CommError::TooLarge {
                what: "control message",
                size: control_len as u64,
                limit: u64::from(self.max_control),
            });
        }
        if n_frames as u64 > u64::from(self.max_frames) {
            return Err(CommError::TooLarge {
                what: "frame count",
                size: n_frames as u64,
                limit: u64::from(self.max_frames),
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Bytes of the fixed header before the frame-length table.
pub const HEADER_LEN: usize = 8;

/// A message as it travels: the encoded control part and its data frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawMessage {
    /// The msgpack-encoded control message.
    pub control: Bytes,
    /// Raw payload frames the control message refers to by index.
    pub frames: Vec<Bytes>,
}

impl RawMessage {
    /// Encode a control message (msgpack, structs as arrays) with its data frames.
    pub fn encode<T: Serialize>(body: &T, frames: Vec<Bytes>) -> Result<Self, CommError> {
        let control = rmp_serde::to_vec(body).map_err(|e| CommError::Encode(e.to_string()))?;
        Ok(RawMessage {
            control: control.into(),
            frames,
        })
    }

    /// Decode the control part as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CommError> {
        rmp_serde::from_slice(&self.control).map_err(CommError::decode)
    }

    /// The data frame at `index`, or a decode error naming the bad index.
    pub fn frame(&self, index: u32) -> Result<&Bytes, CommError> {
        self.frames.get(index as usize).ok_or_else(|| {
            CommError::Decode(format!(
                "data frame {index} referenced but the message carries {} frames",
                self.frames.len()
            ))
        })
    }

    /// The header and frame-length table that precede the control part on the wire.
    pub fn header(&self) -> Result<Vec<u8>, CommError> {
        let control_len = u32::try_from(self.control.len()).map_err(|_| CommError::TooLarge {
            what: "control message",
            size: self.control.len() as u64,
            limit: u32::MAX as u64,
        })?;
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.frames.len());
        out.extend_from_slice(&control_len.to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        for frame in &self.frames {
            out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
        }
        Ok(out)
    }

    /// Total bytes this message occupies on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN
            + 8 * self.frames.len()
            + self.control.len()
            + self.frames.iter().map(Bytes::len).sum::<usize>()
    }
}

/// Parse and check the fixed header: returns (control length, frame count).
pub fn parse_header(header: [u8; HEADER_LEN], limits: &Limits) -> Result<(u32, u32), CommError> {
    let control_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let n_frames = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    limits.check(control_len as usize, n_frames as usize)?;
    Ok((control_len, n_frames))
}

/// Check one announced data frame length.
pub fn check_frame_len(len: u64, limits: &Limits) -> Result<(), CommError> {
    if len > limits.max_frame {
        return Err(CommError::TooLarge {
            what: "data frame",
            size: len,
            limit: limits.max_frame,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_frame_lengths() {
        let msg = RawMessage {
            control: Bytes::from_static(b"abc"),
            frames: vec![Bytes::from_static(b"12345"), Bytes::new()],
        };
        let header = msg.header().unwrap();
        assert_eq!(header.len(), HEADER_LEN + 16);
        assert_eq!(&header[0..4], &3u32.to_le_bytes());
        assert_eq!(&header[4..8], &2u32.to_le_bytes());
        assert_eq!(&header[8..16], &5u64.to_le_bytes());
        assert_eq!(msg.wire_len(), HEADER_LEN + 16 + 3 + 5);
    }

    #[test]
    fn oversized_parts_are_refused_before_allocation() {
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&5000u32.to_le_bytes());
        let err = parse_header(header, &Limits::HANDSHAKE).unwrap_err();
        assert!(err
            .to_string()
            .contains("control message of 5000 bytes exceeds the limit of 4096"));
        header[0..4].copy_from_slice(&10u32.to_le_bytes());
        header[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            parse_header(header, &Limits::HANDSHAKE),
            Err(CommError::TooLarge {
                what: "frame count",
                ..
            })
        ));
        assert!(check_frame_len(1 << 40, &Limits::DEFAULT).is_err());
    }

    #[test]
    fn missing_frame_index_is_a_decode_error() {
        let msg = RawMessage::encode(&(1u8, 2u8), vec![]).unwrap();
        assert_eq!(msg.decode::<(u8, u8)>().unwrap(), (1, 2));
        assert!(msg
            .frame(0)
            .unwrap_err()
            .to_string()
            .contains("carries 0 frames"));
    }
}
