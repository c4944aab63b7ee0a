//! Framed messages over any byte stream (TCP, and in-memory pipes in tests).

use crate::frame::{check_frame_len, parse_header, Limits, RawMessage, HEADER_LEN};
use crate::transport::{MessageRead, MessageWrite};
use crate::CommError;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};

/// Most bytes reserved for one control part or data frame before they arrive.
const RESERVE_AHEAD: u64 = 64 << 20;
/// Most frame-length slots reserved before the frame-length table arrives.
const FRAMES_AHEAD: u32 = 1024;
/// Read buffer of a connection, allocated (zeroed) when the connection opens: a scheduler
/// holds one per worker, so it is small (1,000 workers: 32 MiB, where 256 KiB each made
/// 256 MiB of page faults while they joined). Parts larger than it are read straight into
/// their own buffer, so its size only bounds how many small messages one read returns.
const READ_BUFFER: usize = 32 * 1024;
/// Write buffer of a connection: touched only as far as messages fill it; larger frames
/// bypass it.
const WRITE_BUFFER: usize = 64 * 1024;

/// Reads framed messages from any byte stream.
pub struct StreamReader<R> {
    inner: BufReader<R>,
    limits: Limits,
}

impl<R: AsyncRead + Unpin + Send + 'static> StreamReader<R> {
    /// Wrap a byte stream, starting with handshake limits.
    pub fn new(inner: R) -> Self {
        StreamReader {
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            limits: Limits::HANDSHAKE,
        }
    }

    async fn read_exact_bytes(&mut self, len: u64) -> Result<bytes::Bytes, CommError> {
        // Memory comes as the bytes do: an announced length alone (up to the limits)
        // reserves at most RESERVE_AHEAD.
        let mut buf = crate::buffer::ReceiveBuffer::new(len.min(RESERVE_AHEAD) as usize);
        while (buf.vec().len() as u64) < len {
            let remaining = len - buf.vec().len() as u64;
            let vec = buf.vec();
            if vec.len() == vec.capacity() {
                // Double what has arrived, never past the announced length.
                let more = remaining.min(vec.capacity().max(1 << 20) as u64) as usize;
                vec.try_reserve_exact(more)
                    .map_err(|_| CommError::OutOfMemory {
                        what: "message part",
                        size: len,
                    })?;
            }
            let n = (&mut self.inner)
                .take(remaining)
                .read_buf(buf.vec())
                .await?;
            if n == 0 {
                return Err(CommError::Truncated);
            }
        }
        Ok(buf.into_bytes())
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> MessageRead for StreamReader<R> {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        if self.inner.fill_buf().await?.is_empty() {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        read_exact_or_truncated(&mut self.inner, &mut header).await?;
        let (control_len, n_frames) = parse_header(header, &self.limits)?;
        let mut frame_lens = Vec::with_capacity(n_frames.min(FRAMES_AHEAD) as usize);
        for _ in 0..n_frames {
            let mut len = [0u8; 8];
            read_exact_or_truncated(&mut self.inner, &mut len).await?;
            let len = u64::from_le_bytes(len);
            check_frame_len(len, &self.limits)?;
            frame_lens.push(len);
        }
        let control = self.read_exact_bytes(control_len as u64).await?;
        let mut frames = Vec::with_capacity(frame_lens.len());
        for len in frame_lens {
            frames.push(self.read_exact_bytes(len).await?);
        }
        Ok(Some(RawMessage { control, frames }))
    }

    fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}

async fn read_exact_or_truncated<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), CommError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(CommError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Writes framed messages to any byte stream.
pub struct StreamWriter<W> {
    inner: BufWriter<W>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> StreamWriter<W> {
    /// Wrap a byte stream.
    pub fn new(inner: W) -> Self {
        StreamWriter {
            inner: BufWriter::with_capacity(WRITE_BUFFER, inner),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> MessageWrite for StreamWriter<W> {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        self.inner.write_all(&msg.header()?).await?;
        self.inner.write_all(&msg.control).await?;
        for frame in &msg.frames {
            // Large frames bypass the buffer inside BufWriter: no extra copy.
            self.inner.write_all(frame).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CommError> {
        self.inner.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn messages_round_trip_over_a_pipe() {
        let (a, b) = tokio::io::duplex(64);
        let mut writer = StreamWriter::new(a);
        let mut reader = StreamReader::new(b);
        reader.set_limits(Limits::DEFAULT);
        let big = Bytes::from(vec![7u8; 100_000]);
        let msg = RawMessage::encode(&("hello", 42u32), vec![big.clone(), Bytes::new()]).unwrap();
        let send = async {
            writer.send(&msg).await.unwrap();
            writer.send(&msg).await.unwrap();
            writer.flush().await.unwrap();
            drop(writer);
        };
        let recv = async {
            let first = reader.recv().await.unwrap().unwrap();
            let second = reader.recv().await.unwrap().unwrap();
            let end = reader.recv().await.unwrap();
            (first, second, end)
        };
        let ((), (first, second, end)) = tokio::join!(send, recv);
        assert_eq!(first, msg);
        assert_eq!(
            second.decode::<(String, u32)>().unwrap(),
            ("hello".into(), 42)
        );
        assert_eq!(second.frames[0], big);
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn a_cut_message_is_truncated_not_clean_eof() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut reader = StreamReader::new(b);
        a.write_all(&[3, 0, 0, 0, 0, 0, 0, 0, 1]).await.unwrap();
        drop(a);
        assert!(matches!(reader.recv().await, Err(CommError::Truncated)));
    }

    #[tokio::test]
    async fn garbage_is_refused_by_handshake_limits() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut reader = StreamReader::new(b);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(
            reader.recv().await,
            Err(CommError::TooLarge { .. })
        ));
    }
}
