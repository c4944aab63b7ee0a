//! `tcp://host:port` addresses.

use std::net::SocketAddr;

/// `tcp://ip:port` for a socket address.
pub fn format_address(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

/// Accept `tcp://host:port` or `host:port`; returns `host:port` for connecting.
///
/// # Errors
/// Another scheme, or no port, with a message showing the expected form.
pub fn parse_address(address: &str) -> Result<String, String> {
    let rest = match address.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "address {address:?} uses protocol {scheme:?}; shoal connects over tcp:// (MPI and UCX are chosen with --transport)"
            ))
        }
        None => address,
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
    }
}
