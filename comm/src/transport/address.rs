//! Addresses, parsed here and nowhere else.
//!
//! A peer's address is one or more alternatives separated by spaces, each a URL of one
//! transport:
//!
//! - `tcp://host:port`: everyone can use it (a bare `host:port` means the same);
//! - `mpi://JOB/RANK`: rank RANK of MPI job JOB, usable by the ranks of that job only;
//! - `ucx://HEX`: a UCX worker address (hex of the bytes `ucp_worker_get_address` gave),
//!   usable by processes with a UCX context that reaches it.
//!
//! A worker advertises every alternative it serves, e.g.
//! `tcp://10.0.0.7:40123 mpi://5f3a09c1/3 ucx://0400...`; a connecting side picks the
//! best it can use (see [`crate::transport::Connector`]). Clients outside the job and the
//! scheduler use the TCP alternative.

use std::net::SocketAddr;

/// One alternative of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alternative {
    /// `host:port`, for connecting.
    Tcp(String),
    /// A rank of an MPI job.
    Mpi {
        /// The job's id.
        job: String,
        /// The rank within the job.
        rank: i32,
    },
    /// A UCX worker address.
    Ucx(Vec<u8>),
}

/// Why an address cannot be used; each names the address and the form expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not `host:port` (a TCP alternative).
    #[error("address {0:?} is not of the form tcp://host:port")]
    NotHostPort(String),
    /// Not `mpi://JOB/RANK`.
    #[error("address {0:?} is not of the form mpi://JOB/RANK")]
    NotMpi(String),
    /// Not `ucx://HEX`.
    #[error("address {0:?} is not of the form ucx://HEX (a UCX worker address in hex)")]
    NotUcx(String),
    /// A scheme shoal does not know.
    #[error("address {text:?} uses protocol {scheme:?}; shoal knows tcp://, mpi:// and ucx://")]
    UnknownScheme {
        /// The alternative.
        text: String,
        /// Its scheme.
        scheme: String,
    },
    /// Only MPI or UCX alternatives where a TCP one is needed.
    #[error("address {address:?} uses protocol {scheme:?}; shoal connects over tcp:// (MPI and UCX are chosen with --transport)")]
    NotTcp {
        /// The address.
        address: String,
        /// The scheme of its first alternative.
        scheme: String,
    },
    /// Nothing at all.
    #[error("the address is empty: expected tcp://host:port")]
    Empty,
    /// Well-formed alternatives, none of which this process can use.
    #[error("no usable alternative in address {0:?}")]
    NoUsableAlternative(String),
    /// An MPI or UCX alternative, and this process has no such fabric.
    #[error("this process has no fabric for that address")]
    NoFabric,
}

impl Alternative {
    /// Parse one alternative.
    ///
    /// # Errors
    /// An unknown scheme or a malformed alternative, with the expected form.
    pub fn parse(text: &str) -> Result<Alternative, AddressError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return parse_host_port(text, text).map(Alternative::Tcp);
        };
        match scheme {
            "tcp" => parse_host_port(rest, text).map(Alternative::Tcp),
            "mpi" => {
                let parsed = rest
                    .split_once('/')
                    .filter(|(job, _)| !job.is_empty())
                    .and_then(|(job, rank)| Some((job, rank.parse::<i32>().ok()?)));
                match parsed {
                    Some((job, rank)) if rank >= 0 => Ok(Alternative::Mpi {
                        job: job.to_string(),
                        rank,
                    }),
                    _ => Err(AddressError::NotMpi(text.to_string())),
                }
            }
            "ucx" => match hex::decode(rest) {
                Ok(bytes) if !bytes.is_empty() => Ok(Alternative::Ucx(bytes)),
                _ => Err(AddressError::NotUcx(text.to_string())),
            },
            other => Err(AddressError::UnknownScheme {
                text: text.to_string(),
                scheme: other.to_string(),
            }),
        }
    }

    /// The scheme, for logs: "TCP", "MPI" or "UCX".
    pub fn transport(&self) -> &'static str {
        match self {
            Alternative::Tcp(_) => "TCP",
            Alternative::Mpi { .. } => "MPI",
            Alternative::Ucx(_) => "UCX",
        }
    }
}

impl std::fmt::Display for Alternative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alternative::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Alternative::Mpi { job, rank } => write!(f, "mpi://{job}/{rank}"),
            Alternative::Ucx(bytes) => write!(f, "ucx://{}", hex::encode(bytes)),
        }
    }
}

fn parse_host_port(rest: &str, text: &str) -> Result<String, AddressError> {
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(rest.to_string())
        }
        _ => Err(AddressError::NotHostPort(text.to_string())),
    }
}

/// Every alternative of `address` that parses, in order; malformed ones are skipped.
pub fn alternatives(address: &str) -> impl Iterator<Item = Alternative> + '_ {
    address
        .split_whitespace()
        .filter_map(|a| Alternative::parse(a).ok())
}

/// `tcp://ip:port` for a socket address.
pub fn format_address(addr: SocketAddr) -> String {
    Alternative::Tcp(addr.to_string()).to_string()
}

/// The `host:port` of the TCP alternative of `address` (`tcp://host:port`, a bare
/// `host:port`, or a list of alternatives holding one).
///
/// # Errors
/// No TCP alternative, or a malformed one, with a message showing the expected form.
pub fn parse_address(address: &str) -> Result<String, AddressError> {
    let mut first = None;
    for text in address.split_whitespace() {
        match Alternative::parse(text) {
            Ok(Alternative::Tcp(host_port)) => return Ok(host_port),
            Ok(other) => {
                first.get_or_insert_with(|| AddressError::NotTcp {
                    address: address.to_string(),
                    scheme: other.transport().to_lowercase(),
                });
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or(AddressError::Empty))
}

/// The `mpi://JOB/RANK` alternative of an address: (job, rank).
pub fn mpi_alternative(address: &str) -> Option<(String, i32)> {
    alternatives(address).find_map(|a| match a {
        Alternative::Mpi { job, rank } => Some((job, rank)),
        _ => None,
    })
}

/// The `ucx://HEX` alternative of an address: the UCX worker address.
pub fn ucx_alternative(address: &str) -> Option<Vec<u8>> {
    alternatives(address).find_map(|a| match a {
        Alternative::Ucx(bytes) => Some(bytes),
        _ => None,
    })
}

/// True if `name` is one of the alternatives of `address`.
pub fn is_alternative(address: &str, name: &str) -> bool {
    address.split_whitespace().any(|a| a == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_scheme() {
        assert_eq!(
            parse_address("tcp://10.0.0.1:8786").unwrap(),
            "10.0.0.1:8786"
        );
        assert_eq!(parse_address("node7:8786").unwrap(), "node7:8786");
        assert!(matches!(
            parse_address("ucx://0a0b"),
            Err(AddressError::NotTcp { scheme, .. }) if scheme == "ucx"
        ));
        let e = parse_address("tcp://a").unwrap_err();
        assert_eq!(e, AddressError::NotHostPort("tcp://a".into()));
        assert!(e.to_string().contains("tcp://host:port"), "{e}");
        assert_eq!(parse_address("  ").unwrap_err(), AddressError::Empty);
        assert!(parse_address("udp://a:1")
            .unwrap_err()
            .to_string()
            .contains("\"udp\""));
    }

    #[test]
    fn worker_addresses_hold_tcp_mpi_and_ucx_alternatives() {
        let all = "tcp://10.0.0.7:40123 mpi://5f3a09c1/3 ucx://00ff10";
        assert_eq!(parse_address(all).unwrap(), "10.0.0.7:40123");
        assert_eq!(mpi_alternative(all), Some(("5f3a09c1".into(), 3)));
        assert_eq!(ucx_alternative(all), Some(vec![0, 255, 16]));
        assert_eq!(mpi_alternative("tcp://10.0.0.7:40123"), None);
        assert_eq!(mpi_alternative("mpi://job/x"), None);
        assert!(parse_address("mpi://5f3a09c1/3")
            .unwrap_err()
            .to_string()
            .contains("\"mpi\""));
        assert!(is_alternative(all, "mpi://5f3a09c1/3"));
        assert!(!is_alternative(all, "tcp://10.0.0.7"));
        let texts: Vec<String> = alternatives(all).map(|a| a.to_string()).collect();
        assert_eq!(texts.join(" "), all, "alternatives print as they parse");
    }

    #[test]
    fn malformed_alternatives_name_the_expected_form() {
        for (text, form) in [
            ("mpi://job", "mpi://JOB/RANK"),
            ("mpi:///3", "mpi://JOB/RANK"),
            ("mpi://job/-1", "mpi://JOB/RANK"),
            ("ucx://xyz", "ucx://HEX"),
            ("ucx://", "ucx://HEX"),
            ("tcp://:80", "tcp://host:port"),
        ] {
            let e = Alternative::parse(text).unwrap_err().to_string();
            assert!(e.contains(form), "{text}: {e}");
        }
    }
}
