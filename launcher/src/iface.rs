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
    let resolved: Vec<IpAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(hostname.as_str(), 0))
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    if resolved.iter().any(|ip| !ip.is_loopback()) {
        return Ok(("0.0.0.0".into(), hostname));
    }
    // A host name that does not resolve, or resolves to loopback only (`127.0.1.1 node12`
    // in /etc/hosts), would send peers on other hosts to their own loopback: advertise
    // this host's network address instead.
    match network_address() {
        Some((name, ip)) => {
            tracing::info!(
                %hostname, interface = %name, %ip,
                "the host name does not resolve to a network address; using the interface's"
            );
            let ip = ip.to_string();
            Ok((ip.clone(), ip))
        }
        None => Ok(("127.0.0.1".into(), "127.0.0.1".into())),
    }
}

/// The IPv4 address of the interface of the default route, else of the first interface
/// that is not loopback; `None` on a machine with loopback only.
fn network_address() -> Option<(String, IpAddr)> {
    let interfaces = if_addrs::get_if_addrs().ok()?;
    let v4 = |i: &&if_addrs::Interface| !i.is_loopback() && i.ip().is_ipv4();
    // /proc/net/route: "Iface Destination ..."; destination 00000000 is the default route.
    let default = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| {
            t.lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.get(1) == Some(&"00000000"))
                .and_then(|f| f.first().map(|s| (*s).to_string()))
        });
    default
        .and_then(|d| interfaces.iter().filter(v4).find(|i| i.name == d))
        .or_else(|| interfaces.iter().find(v4))
        .map(|i| (i.name.clone(), i.ip()))
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
