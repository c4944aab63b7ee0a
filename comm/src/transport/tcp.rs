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
