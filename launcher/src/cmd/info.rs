//! `shoal info`: this node's topology, network interfaces (to find `ib0`) and the UCX
//! transports and devices (what `--transport auto` decides from).

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
    let ucx = crate::transport::ucx_resources();
    if json {
        let mut value = serde_json::to_value(&info)?;
        value["ucx"] = match &ucx {
            None => {
                serde_json::json!({"available": false, "reason": "built without the ucx feature"})
            }
            Some(Err(e)) => serde_json::json!({"available": false, "reason": e}),
            Some(Ok(resources)) => serde_json::json!({
                "available": true,
                "rdma": resources.iter().any(|(t, _)| crate::transport::is_rdma(t)),
                "resources": resources
                    .iter()
                    .map(|(t, d)| serde_json::json!({"transport": t, "device": d}))
                    .collect::<Vec<_>>(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
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
    match ucx {
        None => println!("UCX: not in this build (cargo feature ucx)"),
        Some(Err(e)) => println!("UCX: unavailable: {e}"),
        Some(Ok(resources)) => {
            let rdma = resources.iter().any(|(t, _)| crate::transport::is_rdma(t));
            println!(
                "UCX transports and devices ({}; UCX_TLS and UCX_NET_DEVICES restrict them):",
                if rdma {
                    "RDMA: --transport auto uses UCX"
                } else {
                    "no RDMA device: --transport auto uses MPI in an MPI job, else TCP"
                }
            );
            for (transport, device) in &resources {
                println!("  {transport:<12} {device}");
            }
        }
    }
    Ok(())
}
