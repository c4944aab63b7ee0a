//! Addresses: `tcp://host:port`, and for workers inside an MPI job a second alternative,
//! `mpi://JOB/RANK`, separated by a space: `tcp://10.0.0.7:40123 mpi://5f3a09c1/3`.
//! Peers in the same MPI job fetch over MPI; everyone else (clients outside the job,
//! workers of another job) uses the TCP alternative.

use std::net::SocketAddr;

/// `tcp://ip:port` for a socket address.
pub fn format_address(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

/// Accept `tcp://host:port` or `host:port` (or a list of alternatives holding one); returns
/// `host:port` for connecting.
///
/// # Errors
/// Another scheme only, or no port, with a message showing the expected form.
pub fn parse_address(address: &str) -> Result<String, String> {
    let mut alternatives = address.split_whitespace();
    let tcp = alternatives
        .clone()
        .find(|a| a.starts_with("tcp://") || !a.contains("://"));
    let rest = match (tcp, alternatives.next()) {
        (Some(a), _) => a.strip_prefix("tcp://").unwrap_or(a),
        (None, Some(other)) => {
            let scheme = other.split_once("://").map_or(other, |(s, _)| s);
            return Err(format!(
                "address {address:?} uses protocol {scheme:?}; shoal connects over tcp:// (MPI and UCX are chosen with --transport)"
            ));
        }
        (None, None) => return Err("the address is empty: expected tcp://host:port".into()),
    };
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(rest.to_string())
        }
        _ => Err(format!(
            "address {address:?} is not of the form tcp://host:port"
        )),
    }
}

/// The `mpi://JOB/RANK` alternative of an address: (job, rank).
pub fn mpi_alternative(address: &str) -> Option<(&str, i32)> {
    address.split_whitespace().find_map(|a| {
        let (job, rank) = a.strip_prefix("mpi://")?.split_once('/')?;
        Some((job, rank.parse().ok()?))
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
        assert!(parse_address("ucx://a:1").unwrap_err().contains("ucx"));
        assert!(parse_address("tcp://a")
            .unwrap_err()
            .contains("tcp://host:port"));
        assert!(parse_address("  ").unwrap_err().contains("empty"));
    }

    #[test]
    fn worker_addresses_hold_a_tcp_and_an_mpi_alternative() {
        let both = "tcp://10.0.0.7:40123 mpi://5f3a09c1/3";
        assert_eq!(parse_address(both).unwrap(), "10.0.0.7:40123");
        assert_eq!(mpi_alternative(both), Some(("5f3a09c1", 3)));
        assert_eq!(mpi_alternative("tcp://10.0.0.7:40123"), None);
        assert_eq!(mpi_alternative("mpi://job/x"), None);
        assert!(parse_address("mpi://5f3a09c1/3")
            .unwrap_err()
            .contains("\"mpi\""));
        assert!(is_alternative(both, "mpi://5f3a09c1/3"));
        assert!(!is_alternative(both, "tcp://10.0.0.7"));
    }
}
