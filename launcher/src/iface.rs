//! Choosing the address to listen on and advertise: `--host`, `--interface`, or this
//! machine's host name.

use anyhow::{bail, Context};
use std::net::IpAddr;

/// The IPv4 (else IPv6) address of a network interface.
///
/// # Errors
/// The interface does not exist (the error lists those that do) or has no address.
pub fn interface_address(name: &str) -> anyhow::Result<IpAddr> {
    let interfaces = if_addrs::get_if_addrs().context("cannot list network interfaces")?;
    let mut matching: Vec<IpAddr> = interfaces
        .iter()
        .filter(|i| i.name == name)
        .map(|i| i.ip())
        .collect();
    if matching.is_empty() {
        let mut names: Vec<String> = interfaces
            .iter()
            .map(|i| format!("{} ({})", i.name, i.ip()))
            .collect();
        names.sort();
        names.dedup();
        bail!(
            "network interface {name:?} does not exist here; interfaces with addresses: {}",
            names.join(", ")
        );
    }
    matching.sort_by_key(|ip| ip.is_ipv6());
    Ok(matching[0])
}

/// The host to bind and advertise: an explicit host, an interface's address, or the
/// machine's host name (falling back to loopback when it does not resolve).
///
/// # Errors
/// A bad interface name.
pub fn choose_host(
    host: Option<&str>,
    interface: Option<&str>,
) -> anyhow::Result<(String, String)> {
    if let Some(host) = host {
        return Ok((host.to_string(), host.to_string()));
    }
    if let Some(name) = interface {
        let ip = interface_address(name)?.to_string();
        return Ok((ip.clone(), ip));
    }
    let hostname = shoal_runtime::sys::hostname();
    let resolves = std::net::ToSocketAddrs::to_socket_addrs(&(hostname.as_str(), 0))
        .is_ok_and(|mut a| a.next().is_some());
    if resolves {
        Ok(("0.0.0.0".into(), hostname))
    } else {
        Ok(("127.0.0.1".into(), "127.0.0.1".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_interface_is_found_and_unknown_ones_are_listed() {
        assert!(interface_address("lo").unwrap().is_loopback());
        let err = interface_address("ib7").unwrap_err().to_string();
        assert!(
            err.contains("\"ib7\" does not exist") && err.contains("lo (127.0.0.1)"),
            "{err}"
        );
    }
}
