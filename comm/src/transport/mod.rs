//! Transports: anything that moves [`RawMessage`]s between two peers.
//!
//! - [`MessageRead`] / [`MessageWrite`]: the two halves of a connection. Writes are
//!   buffered: callers send several messages and then flush once, which is how the
//!   scheduler batches thousands of task messages into a few system calls.
//! - [`Reader`] / [`Writer`]: a connection of any backend, what the runtime holds.
//! - [`Connector`]: opens authenticated connections to an [`address`], over the best
//!   backend this process and the address share; [`Listener`]: accepts them on every
//!   backend this process serves.
//! - Backends, one module each: [`tcp`] (always), [`mpi`] (cargo feature `mpi`: point-to-point
//!   inside one MPI job), [`ucx`] (cargo feature `ucx`: UCX active messages, RDMA where the
//!   network has it). [`stream`] frames any byte stream (TCP's framing).
//!
//! Adding a backend means a module here, a variant of [`Reader`]/[`Writer`], an
//! [`address::Alternative`], and a branch of [`Connector::open`] and [`Listener::accept`];
//! the runtime only sees the types of this module.

pub mod address;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod batch;
mod connector;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod head;
mod listener;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(any(feature = "mpi", feature = "ucx"))]
pub(crate) mod progress_thread;
#[cfg(any(feature = "mpi", feature = "ucx"))]
mod queued;
pub mod stream;
pub mod tcp;
#[cfg(feature = "ucx")]
pub mod ucx;

use crate::frame::{Limits, RawMessage};
use crate::CommError;
pub use connector::{ConnectError, Connector};
pub use listener::{Incoming, Listener};
use std::future::Future;
pub use stream::{StreamReader, StreamWriter};
pub use tcp::{tcp_split, TcpReader, TcpWriter};

/// The receiving half of a connection.
pub trait MessageRead: Send + 'static {
    /// The next message, or `None` when the peer closed the connection cleanly between
    /// messages.
    fn recv(&mut self) -> impl Future<Output = Result<Option<RawMessage>, CommError>> + Send;

    /// Replace the size limits (the handshake uses tight ones).
    fn set_limits(&mut self, limits: Limits);
}

/// The sending half of a connection.
pub trait MessageWrite: Send + 'static {
    /// Queue a message; it may stay in a buffer until [`MessageWrite::flush`].
    fn send(&mut self, msg: &RawMessage) -> impl Future<Output = Result<(), CommError>> + Send;

    /// Push everything queued to the peer.
    fn flush(&mut self) -> impl Future<Output = Result<(), CommError>> + Send;
}

/// What a connection was opened to; an accepting process hands it to that service's
/// listener (MPI and UCX connections name it; a TCP port is one service already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    /// A worker's data server (results fetched by peers).
    Data = 0,
    /// The scheduler.
    Scheduler = 1,
}

impl Service {
    /// The service numbered `n` on the wire.
    pub fn from_u8(n: u8) -> Option<Service> {
        match n {
            0 => Some(Service::Data),
            1 => Some(Service::Scheduler),
            _ => None,
        }
    }
}

/// The receiving half of a connection of any backend.
pub enum Reader {
    /// Over TCP.
    Tcp(TcpReader),
    /// Over MPI.
    #[cfg(feature = "mpi")]
    Mpi(mpi::MpiReader),
    /// Over UCX.
    #[cfg(feature = "ucx")]
    Ucx(ucx::UcxReader),
}

/// The sending half of a connection of any backend.
pub enum Writer {
    /// Over TCP.
    Tcp(TcpWriter),
    /// Over MPI.
    #[cfg(feature = "mpi")]
    Mpi(mpi::MpiWriter),
    /// Over UCX.
    #[cfg(feature = "ucx")]
    Ucx(ucx::UcxWriter),
}

impl Reader {
    /// "TCP", "MPI" or "UCX", for logs.
    pub fn transport(&self) -> &'static str {
        match self {
            Reader::Tcp(_) => "TCP",
            #[cfg(feature = "mpi")]
            Reader::Mpi(_) => "MPI",
            #[cfg(feature = "ucx")]
            Reader::Ucx(_) => "UCX",
        }
    }
}

impl MessageRead for Reader {
    async fn recv(&mut self) -> Result<Option<RawMessage>, CommError> {
        match self {
            Reader::Tcp(r) => r.recv().await,
            #[cfg(feature = "mpi")]
            Reader::Mpi(r) => r.recv().await,
            #[cfg(feature = "ucx")]
            Reader::Ucx(r) => r.recv().await,
        }
    }

    fn set_limits(&mut self, limits: Limits) {
        match self {
            Reader::Tcp(r) => r.set_limits(limits),
            #[cfg(feature = "mpi")]
            Reader::Mpi(r) => r.set_limits(limits),
            #[cfg(feature = "ucx")]
            Reader::Ucx(r) => r.set_limits(limits),
        }
    }
}

impl MessageWrite for Writer {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        match self {
            Writer::Tcp(w) => w.send(msg).await,
            #[cfg(feature = "mpi")]
            Writer::Mpi(w) => w.send(msg).await,
            #[cfg(feature = "ucx")]
            Writer::Ucx(w) => w.send(msg).await,
        }
    }

    async fn flush(&mut self) -> Result<(), CommError> {
        match self {
            Writer::Tcp(w) => w.flush().await,
            #[cfg(feature = "mpi")]
            Writer::Mpi(w) => w.flush().await,
            #[cfg(feature = "ucx")]
            Writer::Ucx(w) => w.flush().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::message::{DataReply, DataRequest};
    use crate::Secret;
    use address::Alternative;
    use std::time::Duration;

    #[test]
    fn a_tcp_connector_takes_the_tcp_alternative_and_names_what_is_missing() {
        let tcp = Connector::tcp();
        let both = "tcp://10.0.0.7:40123 mpi://job/3 ucx://00ff";
        assert_eq!(
            tcp.choose(both).unwrap(),
            Alternative::Tcp("10.0.0.7:40123".into())
        );
        let e = tcp.choose("mpi://job/3").unwrap_err().to_string();
        assert!(e.contains("\"mpi\"") && e.contains("tcp://"), "{e}");
        assert!(tcp.choose("").unwrap_err().to_string().contains("empty"));
    }

    /// A listener on TCP (and UCX when built with it) and a connector reaching it over
    /// each alternative: the handshake, a request and its reply with a data frame.
    #[tokio::test]
    async fn connections_over_every_backend_authenticate_and_carry_messages() {
        #[allow(unused_mut)]
        let mut connector = Connector::tcp();
        #[cfg(feature = "ucx")]
        {
            connector = connector.with_ucx(ucx::UcxFabric::start().unwrap());
        }
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = Listener::new(tcp, &connector, Service::Data).unwrap();
        let address = listener.address().to_string();
        assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
        let secret = Secret::random();
        let server_secret = secret.clone();
        let server = tokio::spawn(async move {
            let mut served = Vec::new();
            loop {
                let incoming = listener.accept().await;
                let (mut reader, mut writer, hello) = incoming
                    .authenticate(&server_secret, "server", Duration::from_secs(10))
                    .await
                    .unwrap();
                assert_eq!(hello.role, Role::Peer);
                reader.set_limits(Limits::DEFAULT);
                let request = reader.recv().await.unwrap().unwrap();
                assert!(matches!(
                    request.decode::<DataRequest>(),
                    Ok(DataRequest::Get(_))
                ));
                let reply = DataReply {
                    found: vec![(crate::ids::TaskId(1), 0)],
                    missing: vec![],
                };
                let frame = bytes::Bytes::from(vec![7u8; 300_000]);
                writer
                    .send(&RawMessage::encode(&reply, vec![frame]).unwrap())
                    .await
                    .unwrap();
                writer.flush().await.unwrap();
                served.push(reader.transport());
                if reader.recv().await.unwrap().is_none() && served.len() == expected() {
                    return served;
                }
            }
        });
        let mut used = Vec::new();
        for alternative in address::alternatives(&address) {
            let only = alternative.to_string();
            let (mut reader, mut writer, identity) = connector
                .connect(
                    &only,
                    Service::Data,
                    &secret,
                    Role::Peer,
                    "client",
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_eq!(identity, "server");
            reader.set_limits(Limits::DEFAULT);
            let ask = DataRequest::Get(vec![crate::ids::TaskId(1)]);
            writer
                .send(&RawMessage::encode(&ask, vec![]).unwrap())
                .await
                .unwrap();
            writer.flush().await.unwrap();
            let reply = reader.recv().await.unwrap().unwrap();
            assert_eq!(reply.frames[0].len(), 300_000);
            assert!(reply.frames[0].iter().all(|b| *b == 7));
            used.push(reader.transport());
        }
        assert_eq!(used.len(), expected());
        let served = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server saw every connection close")
            .unwrap();
        assert_eq!(served, used);
    }

    fn expected() -> usize {
        1 + usize::from(cfg!(feature = "ucx"))
    }
}
