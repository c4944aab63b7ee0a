//! The head of a message on a message-based transport (MPI, UCX): one transport message
//! holding the frame header ([`RawMessage::header`]), the control part and the small data
//! frames (see [`travels_inline`]: thousands of tiny results fetched at once must not become
//! thousands of transport messages); every other data frame travels as messages of its
//! own, received straight into the buffer the reader ends up owning. Sender and receiver
//! decide which frames travel inline from the lengths alone.

use crate::frame::{check_frame_len, parse_header, Limits, RawMessage, HEADER_LEN};
use crate::CommError;
use bytes::Bytes;

/// The head of `msg` and the frames that travel separately, in order.
///
/// # Errors
/// The message is too large to frame.
pub(crate) fn build(msg: &RawMessage) -> Result<(Vec<u8>, Vec<&Bytes>), CommError> {
    let mut head = msg.header()?;
    head.extend_from_slice(&msg.control);
    let mut inline_bytes = 0;
    let mut separate = Vec::new();
    for frame in &msg.frames {
        if travels_inline(frame.len(), &mut inline_bytes) {
            head.extend_from_slice(frame);
        } else {
            separate.push(frame);
        }
    }
    Ok((head, separate))
}

/// Data frames up to this size travel inside the head of their message.
const INLINE_FRAME_MAX: usize = 64 << 10;
/// At most this many bytes of frames travel inline per message.
const INLINE_BUDGET: usize = 8 << 20;

/// True if a frame of `len` bytes travels inside the head, given the inline
/// bytes of the message so far (updated). Sender and receiver decide alike from the lengths.
pub(crate) fn travels_inline(len: usize, inline_bytes: &mut usize) -> bool {
    let fits = len <= INLINE_FRAME_MAX && *inline_bytes + len <= INLINE_BUDGET;
    if fits {
        *inline_bytes += len;
    }
    fits
}

/// Where a data frame of an arriving message is.
#[derive(Debug, PartialEq)]
pub(crate) enum FramePlace {
    /// This byte range of the head.
    Inline(std::ops::Range<usize>),
    /// MPI messages of its own, this many bytes in all.
    Separate(usize),
}

/// Split the head of a shoal message: the control part's byte range and where
/// each data frame is.
pub(crate) fn parse(head: &[u8]) -> Result<(std::ops::Range<usize>, Vec<FramePlace>), CommError> {
    let limits = Limits::DEFAULT;
    let fixed: [u8; HEADER_LEN] = head
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(CommError::Truncated)?;
    let (control_len, n_frames) = parse_header(fixed, &limits)?;
    let table_end = HEADER_LEN + 8 * n_frames as usize;
    let table = head
        .get(HEADER_LEN..table_end)
        .ok_or(CommError::Truncated)?;
    let control_end = table_end + control_len as usize;
    let mut places = Vec::with_capacity(n_frames as usize);
    let mut offset = control_end;
    let mut inline_bytes = 0;
    for raw in table.chunks_exact(8) {
        let mut len = [0u8; 8];
        len.copy_from_slice(raw);
        let len = u64::from_le_bytes(len);
        check_frame_len(len, &limits)?;
        let len = usize::try_from(len).map_err(|_| CommError::TooLarge {
            what: "data frame",
            size: len,
            limit: usize::MAX as u64,
        })?;
        if travels_inline(len, &mut inline_bytes) {
            places.push(FramePlace::Inline(offset..offset + len));
            offset += len;
        } else {
            places.push(FramePlace::Separate(len));
        }
    }
    if head.len() != offset {
        return Err(CommError::Decode(format!(
            "MPI message of {} bytes, but its header announces {offset}",
            head.len()
        )));
    }
    Ok((table_end..control_end, places))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_travel_inline_within_a_budget() {
        let mut inline = 0;
        assert!(travels_inline(0, &mut inline));
        assert!(travels_inline(INLINE_FRAME_MAX, &mut inline));
        assert!(!travels_inline(INLINE_FRAME_MAX + 1, &mut inline));
        let mut many = 0;
        let fitting = (0..1000)
            .filter(|_| travels_inline(INLINE_FRAME_MAX, &mut many))
            .count();
        assert_eq!(fitting, INLINE_BUDGET / INLINE_FRAME_MAX);
        assert!(many <= INLINE_BUDGET);
    }

    /// A head as the sender builds it: the header, the control part, the inline frames.
    fn head_of(msg: &RawMessage) -> Vec<u8> {
        build(msg).unwrap().0
    }

    #[test]
    fn fuzz_mpi_first_message_splitter() {
        let msgs = [
            RawMessage {
                control: Bytes::from_static(b"ctl"),
                frames: vec![Bytes::from(vec![1u8; 10]), Bytes::new()],
            },
            RawMessage {
                control: Bytes::from_static(b"c"),
                frames: vec![
                    Bytes::from(vec![2u8; INLINE_FRAME_MAX + 1]),
                    Bytes::from_static(b"s"),
                ],
            },
            RawMessage {
                control: Bytes::from_static(b"only control"),
                frames: vec![],
            },
        ];
        let seeds: Vec<Vec<u8>> = msgs.iter().map(head_of).collect();
        crate::fuzz::run("mpi-first-message", 41, &seeds, |head| {
            let Ok((control, places)) = parse(head) else {
                return;
            };
            // Everything the receiver slices out of the head lies within it.
            assert!(control.start <= control.end && control.end <= head.len());
            for place in places {
                if let FramePlace::Inline(r) = place {
                    assert!(
                        r.start <= r.end && r.end <= head.len(),
                        "{r:?} of {}",
                        head.len()
                    );
                }
            }
        });
    }

    #[test]
    fn heads_split_into_control_and_frame_places() {
        let msg = RawMessage {
            control: Bytes::from_static(b"ctl"),
            frames: vec![Bytes::from(vec![1u8; 10]), Bytes::new()],
        };
        let mut head = msg.header().unwrap();
        head.extend_from_slice(&msg.control);
        head.extend_from_slice(&msg.frames[0]);
        let (range, places) = parse(&head).unwrap();
        assert_eq!(&head[range], b"ctl");
        let start = head.len() - 10;
        assert_eq!(
            places,
            vec![
                FramePlace::Inline(start..start + 10),
                FramePlace::Inline(head.len()..head.len())
            ]
        );
        head.push(0);
        assert!(parse(&head).unwrap_err().to_string().contains("announces"));
        assert!(matches!(parse(&[1, 2]), Err(CommError::Truncated)));
    }
}
