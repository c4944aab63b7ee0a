//! The header of every UCX active message shoal sends.
//!
//! A connection is named by the fabric id of the side that opened it (random per process)
//! and a number that side chose; the direction bit tells the two halves apart, so a process
//! that connects to itself never confuses them. Messages of one direction are numbered:
//! the receiver puts them back in order (UCX does not promise the order of active messages
//! that take different protocols or lanes), and a data frame names its message and its
//! place among that message's separate frames.

/// What an active message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A new connection; the data is the opener's UCX worker address.
    Open = 1,
    /// The head of a message (see `transport::head`).
    Head = 2,
    /// One separate data frame of a message.
    Frame = 3,
    /// The sending half is closed.
    Close = 4,
}

/// The connection a message belongs to, as the receiving side names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Fabric id of the side that opened the connection.
    pub origin: u64,
    /// The opener's number for it.
    pub number: u64,
    /// True for messages sent by the opener.
    pub from_opener: bool,
}

/// One active message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the message is.
    pub kind: Kind,
    /// The service the connection is for.
    pub service: u8,
    /// The connection it belongs to.
    pub conn: ConnKey,
    /// Message number within the direction.
    pub seq: u64,
    /// For [`Kind::Frame`]: which separate frame of the message.
    pub index: u32,
}

/// Bytes of an encoded header.
pub const LEN: usize = 36;

impl Header {
    /// Fixed little-endian layout: kind, service, direction, pad, origin, number, seq, index.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = self.kind as u8;
        out[1] = self.service;
        out[2] = u8::from(self.conn.from_opener);
        out[4..12].copy_from_slice(&self.conn.origin.to_le_bytes());
        out[12..20].copy_from_slice(&self.conn.number.to_le_bytes());
        out[20..28].copy_from_slice(&self.seq.to_le_bytes());
        out[28..32].copy_from_slice(&self.index.to_le_bytes());
        out
    }

    /// The header in `bytes`, or `None` if it is not one of ours.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        if bytes.len() != LEN {
            return None;
        }
        let kind = match bytes[0] {
            1 => Kind::Open,
            2 => Kind::Head,
            3 => Kind::Frame,
            4 => Kind::Close,
            _ => return None,
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[28..32]);
        Some(Header {
            kind,
            service: bytes[1],
            conn: ConnKey {
                origin: u64_at(4),
                number: u64_at(12),
                from_opener: bytes[2] != 0,
            },
            seq: u64_at(20),
            index: u32::from_le_bytes(index),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_strangers_are_refused() {
        let h = Header {
            kind: Kind::Frame,
            service: 0,
            conn: ConnKey {
                origin: u64::MAX - 3,
                number: 7,
                from_opener: true,
            },
            seq: 1 << 40,
            index: 9,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&[0u8; LEN]), None);
        assert_eq!(Header::decode(&h.encode()[..LEN - 1]), None);
        crate::fuzz::run("ucx-header", 17, &[h.encode().to_vec()], |bytes| {
            if let Some(d) = Header::decode(bytes) {
                assert_eq!(Header::decode(&d.encode()), Some(d));
            }
        });
    }
}
