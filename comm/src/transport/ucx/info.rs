//! What UCX sees on this machine: its transports and devices, as `shoal info` lists them
//! and `--transport auto` decides from.

use super::UcxError;
use shoal_ucx_sys as ucx;

/// One transport on one device, e.g. `rc_mlx5` on `mlx5_0:1`, or `tcp` on `eth0`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// The transport's name (`rc_mlx5`, `tcp`).
    pub transport: String,
    /// The device it runs on (`mlx5_0:1`, `eth0`).
    pub device: String,
}

impl Resource {
    /// True for RDMA transports (InfiniBand and RoCE verbs: rc, ud, dc and their
    /// accelerated variants).
    pub fn is_rdma(&self) -> bool {
        is_rdma_transport(&self.transport)
    }
}

/// True for an RDMA transport name of UCX (`rc_mlx5`, `ud_verbs`, `dc_x`, ...).
pub fn is_rdma_transport(transport: &str) -> bool {
    matches!(
        transport.split('_').next().unwrap_or_default(),
        "rc" | "ud" | "dc"
    )
}

/// The transports and devices a UCP context gets here, under the current `UCX_*`
/// environment (`UCX_TLS`, `UCX_NET_DEVICES` restrict them).
///
/// # Errors
/// UCX cannot initialise.
pub fn resources() -> Result<Vec<Resource>, UcxError> {
    let text = context_info()?;
    Ok(parse_resources(&text))
}

/// True if UCX sees an RDMA device (the case `--transport auto` picks UCX for).
pub fn has_rdma() -> bool {
    resources().is_ok_and(|r| r.iter().any(Resource::is_rdma))
}

/// The lines `ucp_context_print_info` writes: `#      resource 1  :  md 1  dev 1  flags -- tcp/lo`.
fn parse_resources(text: &str) -> Vec<Resource> {
    text.lines()
        .filter(|l| {
            l.trim_start_matches('#')
                .trim_start()
                .starts_with("resource")
        })
        .filter_map(|l| l.rsplit_once(" -- "))
        .filter_map(|(_, tl_dev)| tl_dev.trim().split_once('/'))
        .map(|(tl, dev)| Resource {
            transport: tl.to_string(),
            device: dev.to_string(),
        })
        .collect()
}

fn context_info() -> Result<String, UcxError> {
    let context = super::context::create(ucx::UCP_FEATURE_AM)?;
    // SAFETY: a context just created, cleaned up once.
    let text = unsafe { print_context(context) };
    // SAFETY: as above.
    unsafe { ucx::ucp_cleanup(context) };
    text.map_err(UcxError::System)
}

/// What `ucp_context_print_info` writes about `context`.
///
/// # Safety
/// `context` is a valid UCP context.
pub(super) unsafe fn print_context(context: ucx::ucp_context_h) -> std::io::Result<String> {
    let mut buffer: *mut libc::c_char = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: open_memstream allocates `buffer`, valid after fclose and freed below.
    unsafe {
        let stream = libc::open_memstream(&mut buffer, &mut size);
        if stream.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        ucx::ucp_context_print_info(context, stream.cast());
        libc::fclose(stream);
        let bytes = std::slice::from_raw_parts(buffer.cast::<u8>(), size);
        let text = String::from_utf8_lossy(bytes).into_owned();
        libc::free(buffer.cast());
        Ok(text)
    }
}

/// True if `text` (of [`print_context`]) lists a shared-memory transport: UCX 1.13's lack
/// peer failure handling, so endpoints to processes on this host go without it.
pub(super) fn lists_shared_memory(text: &str) -> bool {
    parse_resources(text)
        .iter()
        .any(|r| matches!(r.transport.as_str(), "posix" | "sysv" | "xpmem" | "knem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_the_context_info() {
        let text = "#\n#      resource 0  :  md 0  dev 0  flags -- self/memory0\n#      resource 1  :  md 1  dev 1  flags -- tcp/eth0\n#      resource 2  :  md 3  dev 4  flags -- rc_mlx5/mlx5_0:1\n#            md 0  :  component 0  self\n";
        let r = parse_resources(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].transport, "tcp");
        assert_eq!(r[1].device, "eth0");
        assert!(r[2].is_rdma() && !r[1].is_rdma());
    }

    #[test]
    fn this_machine_has_shared_memory_and_tcp_resources() {
        let r = resources().unwrap();
        assert!(r.iter().any(|r| r.transport == "tcp"), "{r:?}");
        assert!(
            r.iter()
                .any(|r| r.transport == "posix" || r.transport == "sysv"),
            "{r:?}"
        );
    }
}
