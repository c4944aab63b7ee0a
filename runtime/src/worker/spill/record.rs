//! One record of a segment file: a fixed 40-byte header, then the stored bytes.
//!
//! | bytes  | field                                            |
//! |--------|--------------------------------------------------|
//! | 0..4   | magic `SHSP`                                     |
//! | 4..8   | flags (bit 0: lz4-compressed), little endian     |
//! | 8..16  | task id                                          |
//! | 16..24 | stored length (bytes after the header)           |
//! | 24..32 | original length (of the value as written)        |
//! | 32..36 | CRC-32 of bytes 0..32 and the stored bytes       |
//! | 36..40 | zero                                             |
//!
//! The checksum covers the header fields as well as the data, so a record read back
//! is known to be the one for the id asked for, with the lengths it was written with.

use bytes::Bytes;
use shoal_comm::ids::TaskId;
use std::borrow::Cow;

/// Bytes before the stored value.
pub(super) const HEADER_LEN: usize = 40;
/// Header bytes the checksum covers (everything before it).
const CHECKED_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"SHSP";
const FLAG_COMPRESSED: u32 = 1;
/// Values shorter than this are never compressed: lz4 cannot win much on them.
const MIN_COMPRESS: usize = 64;

/// What a record header says about the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub id: TaskId,
    pub compressed: bool,
    pub stored_len: u64,
    pub original_len: u64,
    pub checksum: u32,
}

impl Header {
    /// The header for `stored` (the bytes that follow it), with its checksum.
    pub fn new(id: TaskId, compressed: bool, stored: &[u8], original_len: usize) -> Self {
        let mut header = Header {
            id,
            compressed,
            stored_len: stored.len() as u64,
            original_len: original_len as u64,
            checksum: 0,
        };
        header.checksum = checksum(&header.checked_fields(), stored);
        header
    }

    /// Bytes the record takes in its segment, header included.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.stored_len
    }

    /// The header as written to disk.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..CHECKED_LEN].copy_from_slice(&self.checked_fields());
        out[32..36].copy_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// Parse a header; `None` if it is not one (wrong magic or unknown flags).
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Option<Self> {
        if bytes[0..4] != MAGIC || bytes[36..40] != [0; 4] {
            return None;
        }
        let flags = u32::from_le_bytes(field(bytes, 4)?);
        if flags & !FLAG_COMPRESSED != 0 {
            return None;
        }
        Some(Header {
            id: TaskId(u64::from_le_bytes(field(bytes, 8)?)),
            compressed: flags & FLAG_COMPRESSED != 0,
            stored_len: u64::from_le_bytes(field(bytes, 16)?),
            original_len: u64::from_le_bytes(field(bytes, 24)?),
            checksum: u32::from_le_bytes(field(bytes, 32)?),
        })
    }

    /// Whether `stored` is exactly what this header was made for.
    fn matches(&self, stored: &[u8]) -> bool {
        stored.len() as u64 == self.stored_len
            && checksum(&self.checked_fields(), stored) == self.checksum
    }

    /// The header bytes before the checksum.
    fn checked_fields(&self) -> [u8; CHECKED_LEN] {
        let flags = if self.compressed { FLAG_COMPRESSED } else { 0 };
        let mut out = [0; CHECKED_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.id.as_raw().to_le_bytes());
        out[16..24].copy_from_slice(&self.stored_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.original_len.to_le_bytes());
        out
    }
}

/// `N` bytes of `bytes` from `at`.
fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// CRC-32 of the checked header fields followed by the stored bytes.
fn checksum(fields: &[u8], stored: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(fields);
    hasher.update(stored);
    hasher.finalize()
}

/// The bytes to store for `value`, and whether they are compressed: lz4 when asked for
/// and the result is under 90% of the original, the value itself (no copy) otherwise.
pub(super) fn pack(value: &[u8], compress: bool) -> (Cow<'_, [u8]>, bool) {
    if compress && value.len() >= MIN_COMPRESS {
        let packed = lz4_flex::block::compress(value);
        if (packed.len() as u64) * 10 < (value.len() as u64) * 9 {
            return (Cow::Owned(packed), true);
        }
    }
    (Cow::Borrowed(value), false)
}

/// The value held in a whole record (`record`: header and stored bytes) for `id`;
/// `None` if the record is damaged or is not that id's.
pub(super) fn unpack(id: TaskId, record: Vec<u8>) -> Option<Bytes> {
    let header = Header::decode(record.get(..HEADER_LEN)?.try_into().ok()?)?;
    let stored = &record[HEADER_LEN..];
    if header.id != id || !header.matches(stored) {
        return None;
    }
    let original_len = usize::try_from(header.original_len).ok()?;
    if !header.compressed {
        return (original_len == stored.len()).then(|| Bytes::from(record).slice(HEADER_LEN..));
    }
    let value = lz4_flex::block::decompress(stored, original_len).ok()?;
    (value.len() == original_len).then(|| Bytes::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(header: &Header, stored: &[u8]) -> Vec<u8> {
        let mut out = header.encode().to_vec();
        out.extend_from_slice(stored);
        out
    }

    #[test]
    fn header_round_trips() {
        let header = Header::new(TaskId(7), true, b"abc", 99);
        assert_eq!(Header::decode(&header.encode()), Some(header));
        assert_eq!(header.record_len(), HEADER_LEN as u64 + 3);
    }

    #[test]
    fn unpack_rejects_other_id_and_damage() {
        let header = Header::new(TaskId(1), false, b"hello", 5);
        let good = record(&header, b"hello");
        assert_eq!(
            unpack(TaskId(1), good.clone()).as_deref(),
            Some(&b"hello"[..])
        );
        assert!(unpack(TaskId(2), good.clone()).is_none());
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(unpack(TaskId(1), bad).is_none(), "flip at {at} not caught");
        }
        assert!(unpack(TaskId(1), good[..good.len() - 1].to_vec()).is_none());
    }

    #[test]
    fn pack_compresses_only_when_it_pays() {
        let zeros = vec![0u8; 10_000];
        let (packed, compressed) = pack(&zeros, true);
        assert!(compressed && packed.len() < 1_000);
        let header = Header::new(TaskId(3), true, &packed, zeros.len());
        assert_eq!(
            unpack(TaskId(3), record(&header, &packed)).as_deref(),
            Some(&zeros[..])
        );
        assert!(!pack(&zeros, false).1);
        assert!(!pack(&[0u8; 10], true).1);
    }
}
