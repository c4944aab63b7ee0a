//! The handshake every connection starts with: protocol version check and mutual
//! challenge-response authentication with HMAC-SHA256 over the cluster secret.
//!
//! ```text
//! acceptor  → Challenge { magic, version, nonce_a, identity }
//! connector → Response  { version, role, name, nonce_c, mac_c = HMAC(secret, "c" | role | nonce_a | nonce_c) }
//! acceptor  → Accept    { mac_a = HMAC(secret, "a" | nonce_c | nonce_a) }   or Refuse { reason }
//! ```
//!
//! The secret never crosses the wire; each side proves it knows it, so a client cannot be
//! fooled by an impostor scheduler either. Both sides use tight size limits until the
//! handshake completes.

use crate::frame::{Limits, RawMessage};
use crate::transport::{MessageRead, MessageWrite};
use crate::{CommError, Secret, PROTOCOL_VERSION};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

const MAGIC: &str = "shoal";

/// What the connecting side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A worker registering with the scheduler.
    Worker,
    /// A client submitting work.
    Client,
    /// A worker or client fetching data from a worker's data server.
    Peer,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Role::Worker => 1,
            Role::Client => 2,
            Role::Peer => 3,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Challenge {
        magic: String,
        version: u32,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        identity: String,
    },
    Response {
        version: u32,
        role: Role,
        name: String,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    Accept {
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    Refuse {
        reason: String,
    },
}

/// What the acceptor learns about an authenticated peer.
#[derive(Debug, Clone)]
pub struct PeerHello {
    /// What the peer is (scheduler, worker, client, peer worker).
    pub role: Role,
    /// The name the peer gave (worker name, client label); informational only.
    pub name: String,
}

fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// The label of the dashboard's access token.
pub const DASHBOARD_TOKEN_LABEL: &str = "shoal dashboard token v1";

/// A token for a service outside the wire protocol (the dashboard): HMAC-SHA256 of a
/// fixed label under the cluster secret, as hex. Whoever knows the secret can derive it;
/// the token does not reveal the secret.
pub fn derive_token(secret: &Secret, label: &str) -> String {
    hex::encode(mac(secret, &[label.as_bytes()]).finalize().into_bytes())
}

/// The dashboard's access token of this cluster.
pub fn dashboard_token(secret: &Secret) -> String {
    derive_token(secret, DASHBOARD_TOKEN_LABEL)
}

/// Compare two tokens in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(secret: &Secret, parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    for part in parts {
        m.update(part);
    }
    m
}

async fn send<W: MessageWrite>(writer: &mut W, msg: &Handshake) -> Result<(), CommError> {
    writer.send(&RawMessage::encode(msg, Vec::new())?).await?;
    writer.flush().await
}

async fn recv<R: MessageRead>(reader: &mut R) -> Result<Handshake, CommError> {
    let raw = reader
        .recv()
        .await?
        .ok_or(CommError::ClosedDuringHandshake)?;
    raw.decode::<Handshake>()
        .map_err(|e| CommError::NotAHandshake(e.to_string()))
}

/// Run the acceptor side (scheduler, worker data server). `identity` is sent to the
/// connector in clear (the scheduler's id, so clients can detect a stale scheduler file).
///
/// # Errors
/// Version mismatch, a wrong secret, garbage or a timeout: the peer is told why (where it
/// speaks the protocol) and the error is returned for the caller to log.
pub async fn accept<R: MessageRead, W: MessageWrite>(
    reader: &mut R,
    writer: &mut W,
    secret: &Secret,
    identity: &str,
    timeout: Duration,
) -> Result<PeerHello, CommError> {
    accept_version(reader, writer, secret, identity, timeout, PROTOCOL_VERSION).await
}

async fn accept_version<R: MessageRead, W: MessageWrite>(
    reader: &mut R,
    writer: &mut W,
    secret: &Secret,
    identity: &str,
    timeout: Duration,
    our_version: u32,
) -> Result<PeerHello, CommError> {
    let run = async {
        reader.set_limits(Limits::HANDSHAKE);
        let our_nonce = nonce();
        send(
            writer,
            &Handshake::Challenge {
                magic: MAGIC.into(),
                version: our_version,
                nonce: our_nonce.clone(),
                identity: identity.into(),
            },
        )
        .await?;
        let (version, role, name, their_nonce, their_mac) = match recv(reader).await? {
            Handshake::Response {
                version,
                role,
                name,
                nonce,
                mac,
            } => (version, role, name, nonce, mac),
            other => {
                return Err(CommError::NotAHandshake(format!(
                    "expected a response, got {other:?}"
                )))
            }
        };
        if version != our_version {
            let err = CommError::VersionMismatch {
                ours: our_version,
                theirs: version,
            };
            let reason = format!(
                "protocol version mismatch: the peer speaks version {our_version}, you speak version {version}; run the same shoal release everywhere"
            );
            let _ = send(writer, &Handshake::Refuse { reason }).await;
            return Err(err);
        }
        let expected = mac(secret, &[b"c", &[role.tag()], &our_nonce, &their_nonce]);
        if expected.verify_slice(&their_mac).is_err() {
            let reason = "authentication failed: wrong cluster secret (read the scheduler file written by the running scheduler)".to_string();
            let _ = send(writer, &Handshake::Refuse { reason }).await;
            return Err(CommError::AuthFailed);
        }
        let proof = mac(secret, &[b"a", &their_nonce, &our_nonce])
            .finalize()
            .into_bytes()
            .to_vec();
        send(writer, &Handshake::Accept { mac: proof }).await?;
        reader.set_limits(Limits::DEFAULT);
        Ok(PeerHello { role, name })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| CommError::HandshakeTimeout(timeout))?
}

/// Run the connector side. Returns the acceptor's identity (the scheduler id for a
/// scheduler).
///
/// # Errors
/// A refusal carries the acceptor's reason; an acceptor that cannot prove it knows the
/// secret gives [`CommError::AuthFailed`].
pub async fn connect<R: MessageRead, W: MessageWrite>(
    reader: &mut R,
    writer: &mut W,
    secret: &Secret,
    role: Role,
    name: &str,
    timeout: Duration,
) -> Result<String, CommError> {
    let run = async {
        reader.set_limits(Limits::HANDSHAKE);
        let (magic, version, their_nonce, identity) = match recv(reader).await? {
            Handshake::Challenge {
                magic,
                version,
                nonce,
                identity,
            } => (magic, version, nonce, identity),
            Handshake::Refuse { reason } => return Err(CommError::Refused(reason)),
            other => {
                return Err(CommError::NotAHandshake(format!(
                    "expected a challenge, got {other:?}"
                )))
            }
        };
        if magic != MAGIC {
            return Err(CommError::NotAHandshake(format!(
                "unexpected magic {magic:?}"
            )));
        }
        if version != PROTOCOL_VERSION {
            return Err(CommError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        let our_nonce = nonce();
        let proof = mac(secret, &[b"c", &[role.tag()], &their_nonce, &our_nonce])
            .finalize()
            .into_bytes()
            .to_vec();
        send(
            writer,
            &Handshake::Response {
                version: PROTOCOL_VERSION,
                role,
                name: name.into(),
                nonce: our_nonce.clone(),
                mac: proof,
            },
        )
        .await?;
        match recv(reader).await? {
            Handshake::Accept { mac: their_mac } => {
                let expected = mac(secret, &[b"a", &our_nonce, &their_nonce]);
                if expected.verify_slice(&their_mac).is_err() {
                    return Err(CommError::AuthFailed);
                }
            }
            Handshake::Refuse { reason } => return Err(CommError::Refused(reason)),
            other => {
                return Err(CommError::NotAHandshake(format!(
                    "expected accept, got {other:?}"
                )))
            }
        }
        reader.set_limits(Limits::DEFAULT);
        Ok(identity)
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| CommError::HandshakeTimeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{StreamReader, StreamWriter};

    type Pipe = (
        StreamReader<tokio::io::DuplexStream>,
        StreamWriter<tokio::io::DuplexStream>,
    );

    fn pipes() -> (Pipe, Pipe) {
        let (a_to_b_w, a_to_b_r) = tokio::io::duplex(1 << 16);
        let (b_to_a_w, b_to_a_r) = tokio::io::duplex(1 << 16);
        (
            (StreamReader::new(b_to_a_r), StreamWriter::new(a_to_b_w)),
            (StreamReader::new(a_to_b_r), StreamWriter::new(b_to_a_w)),
        )
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn same_secret_is_accepted_both_ways() {
        let ((mut ar, mut aw), (mut br, mut bw)) = pipes();
        let secret = Secret::random();
        let (acc, con) = tokio::join!(
            accept(&mut ar, &mut aw, &secret, "Scheduler-1", T),
            connect(&mut br, &mut bw, &secret, Role::Worker, "w-1", T)
        );
        let hello = acc.unwrap();
        assert_eq!(hello.role, Role::Worker);
        assert_eq!(hello.name, "w-1");
        assert_eq!(con.unwrap(), "Scheduler-1");
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let ((mut ar, mut aw), (mut br, mut bw)) = pipes();
        let (one, two) = (Secret::random(), Secret::random());
        let (acc, con) = tokio::join!(
            accept(&mut ar, &mut aw, &one, "s", T),
            connect(&mut br, &mut bw, &two, Role::Client, "c", T)
        );
        assert!(matches!(acc, Err(CommError::AuthFailed)));
        let err = con.unwrap_err().to_string();
        assert!(err.contains("wrong cluster secret"), "{err}");
    }

    #[tokio::test]
    async fn version_mismatch_names_both_versions() {
        let ((mut ar, mut aw), (mut br, mut bw)) = pipes();
        let secret = Secret::random();
        let (acc, con) = tokio::join!(
            accept_version(
                &mut ar,
                &mut aw,
                &secret,
                "s",
                Duration::from_millis(100),
                PROTOCOL_VERSION + 1
            ),
            connect(&mut br, &mut bw, &secret, Role::Client, "c", T)
        );
        let theirs = PROTOCOL_VERSION + 1;
        let ours = PROTOCOL_VERSION;
        let con = con.unwrap_err().to_string();
        assert!(
            con.contains(&format!(
                "this side speaks version {ours}, the peer speaks version {theirs}"
            )),
            "{con}"
        );
        // An acceptor at the same version refuses a connector at another version, naming both.
        drop(acc);
        let ((mut ar, mut aw), (mut br, mut bw)) = pipes();
        let (acc, _con) = tokio::join!(accept(&mut ar, &mut aw, &secret, "s", T), async {
            // A connector claiming another version: answer the challenge by hand.
            let _ = recv(&mut br).await;
            let reply = Handshake::Response {
                version: 99,
                role: Role::Client,
                name: "old".into(),
                nonce: vec![0; 32],
                mac: vec![0; 32],
            };
            send(&mut bw, &reply).await.unwrap();
            recv(&mut br).await
        });
        let acc = acc.unwrap_err().to_string();
        assert!(
            acc.contains(&format!(
                "this side speaks version {ours}, the peer speaks version 99"
            )),
            "{acc}"
        );
        assert!(
            matches!(_con, Ok(Handshake::Refuse { ref reason }) if reason.contains("you speak version 99"))
        );
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let ((mut ar, mut aw), _b) = pipes();
        let err = accept(
            &mut ar,
            &mut aw,
            &Secret::random(),
            "s",
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CommError::HandshakeTimeout(_)));
    }

    #[test]
    fn dashboard_tokens_depend_on_the_secret_and_compare_exactly() {
        let a = Secret::from_bytes(b"one".to_vec());
        let b = Secret::from_bytes(b"two".to_vec());
        let ta = dashboard_token(&a);
        assert_eq!(ta.len(), 64);
        assert_eq!(ta, dashboard_token(&a));
        assert_ne!(ta, dashboard_token(&b));
        assert!(tokens_match(&ta, &dashboard_token(&a)));
        assert!(!tokens_match(&ta, &dashboard_token(&b)));
        assert!(!tokens_match(&ta[..63], &ta));
    }
}
