//! The TCP backend: framed streams over TCP sockets. Every peer can use it, so the
//! scheduler, clients and every worker's data server listen on TCP.

use super::stream::{StreamReader, StreamWriter};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Reading half of a TCP connection.
pub type TcpReader = StreamReader<OwnedReadHalf>;
/// Writing half of a TCP connection.
pub type TcpWriter = StreamWriter<OwnedWriteHalf>;

/// Split a TCP stream into framed halves (with `TCP_NODELAY`, since we batch ourselves).
pub fn tcp_split(stream: TcpStream) -> (TcpReader, TcpWriter) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    (StreamReader::new(read), StreamWriter::new(write))
}

/// Open a TCP connection to `host_port` within `timeout`.
///
/// # Errors
/// Nothing listens, the name does not resolve, or the timeout passed; the message names
/// the address.
pub async fn connect(
    host_port: &str,
    timeout: Duration,
) -> std::io::Result<(TcpReader, TcpWriter)> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(host_port))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to tcp://{host_port} timed out after {timeout:?}"),
            )
        })?
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot connect to tcp://{host_port}: {e}"),
            )
        })?;
    Ok(tcp_split(stream))
}

/// The next connection of `listener` and the peer's socket address; transient accept
/// errors (a connection reset before it was taken, out of descriptors) are retried after
/// a short pause instead of ending the listener.
pub async fn accept(listener: &TcpListener) -> (TcpReader, TcpWriter, String) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (reader, writer) = tcp_split(stream);
                return (reader, writer, peer.to_string());
            }
            Err(e) => {
                tracing::debug!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
