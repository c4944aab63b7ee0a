//! The link to a scheduler's dashboard, with the token that opens it.

/// The name of the dashboard among a scheduler's services (as Dask's scheduler file has it).
pub const SERVICE: &str = "dashboard";

/// `http://HOST:PORT/status?token=T` for the scheduler at `scheduler_address`
/// (`tcp://HOST:PORT`) whose services list a dashboard; `None` without one. `token` is
/// [`shoal_comm::auth::dashboard_token`] of the cluster secret.
pub fn dashboard_link(
    scheduler_address: &str,
    services: &[(String, u16)],
    token: &str,
) -> Option<String> {
    let port = services.iter().find(|(name, _)| name == SERVICE)?.1;
    let host = scheduler_host(scheduler_address)?;
    Some(format!("http://{host}:{port}/status?token={token}"))
}

/// The host part of `tcp://HOST:PORT` (IPv6 literals keep their brackets).
fn scheduler_host(address: &str) -> Option<&str> {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let (host, _port) = rest.rsplit_once(':')?;
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_scheduler_host_the_dashboard_port_and_the_token() {
        let token = "t0k";
        let services = vec![("dashboard".to_string(), 8787)];
        assert_eq!(
            dashboard_link("tcp://node3:4000", &services, token),
            Some(format!("http://node3:8787/status?token={token}"))
        );
        assert_eq!(
            dashboard_link("tcp://[::1]:4000", &services, token),
            Some(format!("http://[::1]:8787/status?token={token}"))
        );
        assert_eq!(dashboard_link("tcp://node3:4000", &[], token), None);
    }
}
