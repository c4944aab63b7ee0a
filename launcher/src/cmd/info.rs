//! `shoal info`: this node's topology and network interfaces (to find `ib0`).

use crate::topology::node_info;

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Print the node's cores, NUMA domains, memory and interfaces.
///
/// # Errors
/// hwloc cannot read the topology.
pub fn run(json: bool) -> anyhow::Result<()> {
    let info = node_info()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("host {}", info.hostname);
    println!(
        "packages {}  cores {}  hardware threads {}  memory {}",
        info.packages,
        info.cores,
        info.hardware_threads,
        gib(info.memory)
    );
    for n in &info.numa {
        let first = n.cpus.first().copied().unwrap_or(0);
        let last = n.cpus.last().copied().unwrap_or(0);
        println!(
            "numa {}: cpus {first}-{last} ({} cpus), memory {}",
            n.index,
            n.cpus.len(),
            gib(n.memory)
        );
    }
    println!("network interfaces (pass one to --interface):");
    for (name, addr) in &info.interfaces {
        println!("  {name:<12} {addr}");
    }
    Ok(())
}
