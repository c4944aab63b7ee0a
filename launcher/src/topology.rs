//! The node's topology through hwloc: cores, NUMA domains and memory for `shoal info`,
//! and binding a rank to its share of the node (`shoal mpi --bind`).

use anyhow::{bail, Context};
use hwlocality::cpu::binding::CpuBindingFlags;
use hwlocality::cpu::cpuset::CpuSet;
use hwlocality::object::types::ObjectType;
use hwlocality::Topology;

/// One NUMA domain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NumaDomain {
    pub index: usize,
    /// Logical CPU (PU) numbers in the domain.
    pub cpus: Vec<usize>,
    pub memory: u64,
}

/// What `shoal info` reports about this node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub packages: usize,
    pub cores: usize,
    pub hardware_threads: usize,
    pub memory: u64,
    pub numa: Vec<NumaDomain>,
    /// (interface, address).
    pub interfaces: Vec<(String, String)>,
}

fn topology() -> anyhow::Result<Topology> {
    Topology::new().context("hwloc could not read this node's topology")
}

fn cpus(set: &CpuSet) -> Vec<usize> {
    set.iter_set().map(usize::from).collect()
}

/// Read this node's topology and interfaces.
///
/// # Errors
/// hwloc fails to read the topology, or interfaces cannot be listed.
pub fn node_info() -> anyhow::Result<NodeInfo> {
    let t = topology()?;
    let numa = t
        .objects_with_type(ObjectType::NUMANode)
        .enumerate()
        .map(|(i, n)| NumaDomain {
            index: n.os_index().unwrap_or(i),
            cpus: n.cpuset().map(|s| cpus(&s)).unwrap_or_default(),
            memory: n.total_memory(),
        })
        .collect();
    let mut interfaces: Vec<(String, String)> = if_addrs::get_if_addrs()
        .context("cannot list network interfaces")?
        .into_iter()
        .map(|i| (i.name.clone(), i.ip().to_string()))
        .collect();
    interfaces.sort();
    let packages = t.objects_with_type(ObjectType::Package).len();
    let cores = t.objects_with_type(ObjectType::Core).len();
    let hardware_threads = t.objects_with_type(ObjectType::PU).len();
    // The kernel's figure: hwloc's NUMA totals can miss memory on virtual machines.
    let memory = shoal_runtime::sys::total_memory().unwrap_or_else(|| {
        t.objects_with_type(ObjectType::Machine)
            .map(|m| m.total_memory())
            .sum()
    });
    Ok(NodeInfo {
        hostname: shoal_runtime::sys::hostname(),
        packages,
        cores,
        hardware_threads,
        memory,
        numa,
        interfaces,
    })
}

/// How a rank's worker is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Bind {
    /// This rank's contiguous share of the node's cores.
    Cores,
    /// The NUMA domain holding this rank's share of cores.
    Numa,
    /// No pinning.
    None,
}

/// The cores a rank `local_rank` of `local_size` ranks on this node gets: an equal,
/// contiguous share (at least one core; ranks wrap around when oversubscribed).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // placement of MPI ranks
pub fn share_of_cores(
    n_cores: usize,
    local_rank: usize,
    local_size: usize,
) -> std::ops::Range<usize> {
    let local_size = local_size.max(1);
    if n_cores == 0 {
        return 0..0;
    }
    if local_size >= n_cores {
        let c = local_rank % n_cores;
        return c..c + 1;
    }
    let per = n_cores / local_size;
    let extra = n_cores % local_size;
    let start = local_rank * per + local_rank.min(extra);
    start..start + per + usize::from(local_rank < extra)
}

/// Pin this process to its share of the node. Returns the CPUs it is bound to.
///
/// # Errors
/// hwloc cannot read the topology or refuses the binding.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // placement of MPI ranks
pub fn bind_process(
    mode: Bind,
    local_rank: usize,
    local_size: usize,
) -> anyhow::Result<Option<Vec<usize>>> {
    if mode == Bind::None {
        return Ok(None);
    }
    let t = topology()?;
    let cores: Vec<_> = t.objects_with_type(ObjectType::Core).collect();
    if cores.is_empty() {
        bail!("hwloc found no cores on this node: cannot --bind {mode:?}; use --bind none");
    }
    let share = share_of_cores(cores.len(), local_rank, local_size);
    let mut set = CpuSet::new();
    for core in &cores[share] {
        if let Some(s) = core.cpuset() {
            set |= &*s;
        }
    }
    if mode == Bind::Numa {
        let domain = t
            .objects_with_type(ObjectType::NUMANode)
            .find(|n| n.cpuset().is_some_and(|s| s.intersects(&set)));
        if let Some(s) = domain.and_then(|d| d.cpuset()) {
            set = s.clone_target();
        }
    }
    t.bind_cpu(&set, CpuBindingFlags::PROCESS)
        .map_err(|e| anyhow::anyhow!("hwloc refused to bind to CPUs {set}: {e}"))?;
    Ok(Some(cpus(&set)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_contiguous_and_cover_the_node() {
        let shares: Vec<_> = (0..3).map(|r| share_of_cores(8, r, 3)).collect();
        assert_eq!(shares, vec![0..3, 3..6, 6..8]);
        assert_eq!(share_of_cores(2, 3, 4), 1..2, "oversubscribed ranks wrap");
        assert_eq!(share_of_cores(4, 0, 1), 0..4);
    }

    #[test]
    fn this_node_is_read() {
        let info = node_info().unwrap();
        assert!(info.cores >= 1 && info.hardware_threads >= info.cores);
        assert!(info.memory > 0);
        assert!(info.interfaces.iter().any(|(name, _)| name == "lo"));
        let all: usize = info.numa.iter().map(|n| n.cpus.len()).sum();
        assert!(
            info.numa.is_empty() || all >= info.hardware_threads,
            "{info:?}"
        );
    }

    #[test]
    fn binding_to_a_share_restricts_the_process() {
        let bound = bind_process(Bind::Cores, 0, 1).unwrap().unwrap();
        assert!(!bound.is_empty());
        assert_eq!(bind_process(Bind::None, 0, 1).unwrap(), None);
    }
}
