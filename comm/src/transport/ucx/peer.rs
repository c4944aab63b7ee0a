//! A fabric's address and the liveness of peers on this host.
//!
//! The bytes of a `ucx://` alternative are this host's id, the process id and the
//! process's start time, then the UCX worker address. UCX 1.13's shared-memory transports
//! have no peer failure handling, so the progress thread watches peers on this host itself:
//! a peer whose process is gone (or whose pid now belongs to a newer process) has failed.

/// Bytes before the worker address.
const PREFIX: usize = 8 + 4 + 8;

/// The parts of a fabric address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub host: u64,
    pub pid: u32,
    pub start: u64,
}

impl Identity {
    /// This process.
    pub(crate) fn own() -> Identity {
        let pid = std::process::id();
        Identity {
            host: host_id(),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// `self` followed by `worker`.
    pub(crate) fn address(&self, worker: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREFIX + worker.len());
        out.extend_from_slice(&self.host.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.start.to_le_bytes());
        out.extend_from_slice(worker);
        out
    }

    /// The identity and worker address in `address`, if it is long enough to hold both.
    pub(crate) fn split(address: &[u8]) -> Option<(Identity, &[u8])> {
        let (host, rest) = address.split_first_chunk::<8>()?;
        let (pid, rest) = rest.split_first_chunk::<4>()?;
        let (start, worker) = rest.split_first_chunk::<8>()?;
        (!worker.is_empty()).then(|| {
            (
                Identity {
                    host: u64::from_le_bytes(*host),
                    pid: u32::from_le_bytes(*pid),
                    start: u64::from_le_bytes(*start),
                },
                worker,
            )
        })
    }

    /// False once the process is gone (checked on this host only).
    pub(crate) fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// This machine's identity: a hash of the kernel's boot id (else the host name) and of the
/// pid namespace, equal for every process that sees the same process ids.
fn host_id() -> u64 {
    use sha2::Digest;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let pid_namespace = std::fs::read_link("/proc/self/ns/pid").unwrap_or_default();
    let mut hasher = sha2::Sha256::new();
    hasher.update(boot.trim().as_bytes());
    hasher.update(pid_namespace.as_os_str().as_encoded_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(id)
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, in clock ticks since
/// boot), or `None` if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_identity_and_worker_address() {
        let me = Identity::own();
        assert!(me.start > 0);
        assert!(me.alive());
        let address = me.address(&[1, 2, 3]);
        assert_eq!(Identity::split(&address), Some((me, &[1u8, 2, 3][..])));
        assert_eq!(Identity::split(&address[..PREFIX]), None);
        let gone = Identity {
            start: me.start + 1,
            ..me
        };
        assert!(
            !gone.alive(),
            "a newer process under the same pid is not the peer"
        );
    }

    #[test]
    fn a_process_that_exited_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let identity = Identity {
            host: host_id(),
            pid,
            start: start_time(pid).unwrap_or(0),
        };
        child.wait().unwrap();
        assert!(!identity.alive());
    }
}
