//! Parsers for flag values, each with an error that names the value and the accepted forms.

use shoal_comm::message::Resource;
use std::time::Duration;

/// Seconds as an integer or decimal (`30`, `0.5`).
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 30 or 0.5)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} is not a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Seconds above 0 (`--watch 2`, `jobqueue scale --timeout 600`).
pub fn positive_seconds(text: &str) -> Result<Duration, String> {
    match seconds(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!(
            "{text:?} is not a number of seconds above 0 (e.g. 2 or 0.5)"
        )),
        Err(e) => Err(e),
    }
}

/// A count of 1 or more (`--workers`, `--nthreads`, `--nworkers`, ...).
pub fn count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number of 1 or more (e.g. 4)"
        )),
    }
}

/// A factor above 0 (`2`, `1.1`), or `inf` for none (`--worker-saturation`).
pub fn factor(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("inf") {
        return Ok(f64::INFINITY);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a factor above 0 (e.g. 2 or 1.1), nor inf (no limit)"
        )),
    }
}

/// A whole number of 0 or more (`--min-worker-queue`).
pub fn whole(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| format!("{text:?} is not a whole number of 0 or more (e.g. 256)"))
}

/// A TCP port, `0` for any free one.
pub fn port(text: &str) -> Result<u16, String> {
    text.trim().parse::<u16>().map_err(|_| {
        format!("{text:?} is not a port: a whole number from 0 to 65535 (0: any free port)")
    })
}

/// `--dashboard-address`: a host (empty: the scheduler's) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardAddress {
    pub host: Option<String>,
    pub port: u16,
}

/// `8787`, `:8787` or `HOST:8787` (`[::1]:8787` for an IPv6 literal).
pub fn dashboard_address(text: &str) -> Result<DashboardAddress, String> {
    let text = text.trim();
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
        None => ("", text),
    };
    let port = port.parse::<u16>().map_err(|_| {
        format!("dashboard address {text:?} is not PORT, :PORT or HOST:PORT (e.g. 8787 or node1:8787); the port is 0 to 65535")
    })?;
    Ok(DashboardAddress {
        host: (!host.is_empty()).then(|| host.to_string()),
        port,
    })
}

/// `"GPU=2 MEM=10e9"` or `"GPU=2,MEM=1"`; empty = none.
pub fn resources(text: &str) -> Result<Resource, String> {
    // clap calls this once per value; a value may hold several space-separated pairs,
    // which `split_resources` expands beforehand.
    let (name, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("resource {text:?} is not NAME=AMOUNT (e.g. GPU=2)"))?;
    let amount: f64 = amount
        .parse()
        .map_err(|_| format!("resource {text:?}: {amount:?} is not a number"))?;
    if name.is_empty() || !(amount.is_finite() && amount > 0.0) {
        return Err(format!(
            "resource {text:?}: needs a name and a positive amount (e.g. GPU=2)"
        ));
    }
    Ok(Resource {
        name: name.to_string(),
        amount,
    })
}

/// Split the raw `--resources` string into NAME=AMOUNT items.
pub fn split_resources(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        out.push(arg.clone());
        if arg == "--resources" {
            if let Some(value) = iter.next() {
                let parts: Vec<&str> = value.split([' ', ',']).filter(|p| !p.is_empty()).collect();
                if parts.is_empty() {
                    out.pop();
                }
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push("--resources".into());
                    }
                    out.push(part.to_string());
                }
            }
        } else if let Some(value) = arg.strip_prefix("--resources=") {
            out.pop();
            for part in value.split([' ', ',']).filter(|p| !p.is_empty()) {
                out.push("--resources".into());
                out.push(part.to_string());
            }
        }
    }
    out
}

/// `--memory-limit`: bytes, a fraction of `machine` (`0.5`), a size (`4GB`, `4GiB`),
/// `auto` (the machine's memory shared by `share` = this process's threads / cores), or
/// `0` for no limit. Limits above the machine's memory are clamped with a warning.
pub fn memory_limit(text: &str, machine: u64, share: f64) -> Result<u64, String> {
    let text = text.trim();
    let limit = if text.eq_ignore_ascii_case("auto") {
        (machine as f64 * share.clamp(0.0, 1.0)) as u64
    } else if let Ok(bytes) = text.parse::<u64>() {
        bytes
    } else if let Ok(fraction) = text.parse::<f64>() {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(format!(
                "--memory-limit {text:?}: a fraction of the machine's memory must be in (0, 1]; or use bytes, a size like 4GiB, auto, or 0 for no limit"
            ));
        }
        (machine as f64 * fraction) as u64
    } else {
        shoal_jobqueue::memory::Memory::parse(text)
            .map_err(|e| {
                format!("--memory-limit: {e}; or use bytes, a fraction like 0.5, auto, or 0")
            })?
            .bytes()
    };
    if machine > 0 && limit > machine {
        tracing::warn!(
            requested = limit,
            machine,
            "--memory-limit above the machine's memory; clamped"
        );
        return Ok(machine);
    }
    Ok(limit)
}

/// A generated benchmark graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// N independent tasks, all wanted.
    Independent(u64),
    /// N independent tasks feeding one sum.
    Merge(u64),
    /// A binary tree reduction of N leaves.
    Tree(u64),
}

/// `independent:N`, `merge:N`, `tree:N`.
pub fn generated(text: &str) -> Result<Generated, String> {
    let bad =
        || format!("{text:?} is not one of independent:N, merge:N, tree:N (N a positive integer)");
    let (kind, n) = text.split_once(':').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    match kind {
        "independent" => Ok(Generated::Independent(n)),
        "merge" => Ok(Generated::Merge(n)),
        "tree" => Ok(Generated::Tree(n)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_accepted_forms() {
        assert_eq!(seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert!(seconds("-1").unwrap_err().contains("non-negative"));
        assert!(seconds("soon").unwrap_err().contains("e.g. 30"));
        assert_eq!(positive_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(positive_seconds("0").unwrap_err().contains("above 0"));
        assert!(positive_seconds("-2").unwrap_err().contains("non-negative"));
        assert_eq!(
            resources("GPU=2").unwrap(),
            Resource {
                name: "GPU".into(),
                amount: 2.0
            }
        );
        assert!(resources("GPU").unwrap_err().contains("NAME=AMOUNT"));
        assert!(resources("GPU=0").unwrap_err().contains("positive"));
        assert_eq!(generated("merge:10").unwrap(), Generated::Merge(10));
        assert_eq!(count("3").unwrap(), 3);
        assert!(count("0").unwrap_err().contains("1 or more"));
        assert!(count("two").unwrap_err().contains("\"two\""));
        assert_eq!(port("0").unwrap(), 0);
        assert!(port("70000").unwrap_err().contains("0 to 65535"));
        assert!(port("-1").unwrap_err().contains("\"-1\""));
        assert!(generated("star:3").unwrap_err().contains("independent:N"));
    }

    #[test]
    fn memory_limits_in_every_form() {
        let gib = 1u64 << 30;
        assert_eq!(memory_limit("auto", 8 * gib, 0.25).unwrap(), 2 * gib);
        assert_eq!(memory_limit("0", 8 * gib, 1.0).unwrap(), 0);
        assert_eq!(memory_limit("0.5", 8 * gib, 1.0).unwrap(), 4 * gib);
        assert_eq!(memory_limit("2GiB", 8 * gib, 1.0).unwrap(), 2 * gib);
        assert_eq!(memory_limit("4GB", 8 * gib, 1.0).unwrap(), 4_000_000_000);
        assert_eq!(
            memory_limit("100GiB", 8 * gib, 1.0).unwrap(),
            8 * gib,
            "clamped"
        );
        assert!(memory_limit("1.5", 8 * gib, 1.0)
            .unwrap_err()
            .contains("fraction"));
        assert!(memory_limit("lots", 8 * gib, 1.0)
            .unwrap_err()
            .contains("auto"));
    }

    #[test]
    fn resource_strings_split_into_flags() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_resources(args(&["shoal", "worker", "--resources", "GPU=2 MEM=1e9"])),
            args(&[
                "shoal",
                "worker",
                "--resources",
                "GPU=2",
                "--resources",
                "MEM=1e9"
            ])
        );
        assert_eq!(
            split_resources(args(&["w", "--resources=A=1,B=2"])),
            args(&["w", "--resources", "A=1", "--resources", "B=2"])
        );
        assert_eq!(
            split_resources(args(&["w", "--resources", ""])),
            args(&["w"])
        );
    }

    #[test]
    fn dashboard_addresses() {
        let a = |host: Option<&str>, port| DashboardAddress {
            host: host.map(str::to_string),
            port,
        };
        assert_eq!(dashboard_address("8787"), Ok(a(None, 8787)));
        assert_eq!(dashboard_address(":0"), Ok(a(None, 0)));
        assert_eq!(dashboard_address("node1:9000"), Ok(a(Some("node1"), 9000)));
        assert_eq!(dashboard_address("[::1]:9000"), Ok(a(Some("::1"), 9000)));
        for bad in ["", "node1", "node1:", ":70000", "x:y"] {
            let e = dashboard_address(bad).unwrap_err();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }
}
