//! The TCP backend: framed streams over TCP sockets. Every peer can use it, so the
//! scheduler, clients and every worker's data server listen on TCP.

use super::stream::{StreamReader, StreamWriter};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};

/// The listen backlog asked for: connections the kernel completes and holds until they
/// are accepted. Linux caps it at `net.core.somaxconn` (4096 by default), so this means
/// "as many as the system allows". The 128 of a plain `bind` overflows when a thousand
/// workers connect at once: the kernel then drops SYNs and final ACKs, and each dropped
/// connection waits out SYN retransmits or, as the scheduler speaks first, the whole
/// handshake timeout.
pub const LISTEN_BACKLOG: u32 = 65_535;

/// Listen on `address` (a socket address or `host:port`; the first that binds wins) with
/// the [`LISTEN_BACKLOG`].
///
/// # Errors
/// The name does not resolve, or no address of it can be bound.
pub async fn bind(address: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        match listen_on(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn listen_on(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As a plain bind on Unix: a restarted scheduler can take its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_name_binds_and_a_taken_port_is_an_error() {
        let listener = bind(("localhost", 0)).await.unwrap();
        let taken = listener.local_addr().unwrap();
        assert!(bind(taken).await.is_err());
    }
}
