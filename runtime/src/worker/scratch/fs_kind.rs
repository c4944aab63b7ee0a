//! What kind of file system a path lives on, from the `f_type` magic of `statfs(2)`.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The kind of file system a path is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// A file system on storage of this node (disk or memory); fine for spilling.
    Local(&'static str),
    /// A network or parallel file system shared with other nodes; spilling there is slow
    /// and loads the shared servers for every user of the cluster.
    Network(&'static str),
    /// A file system whose magic number is not in our tables.
    Unknown(i64),
}

/// Network and parallel file systems: magic numbers from `statfs(2)` and `linux/magic.h`,
/// and for out-of-tree ones (Lustre, GPFS, BeeGFS, PanFS) from their client sources.
const NETWORK: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x1983_0326, "BeeGFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    // The in-kernel AFS client (kAFS) has its own magic.
    (0x6B41_4653, "AFS"),
    (0x0102_1997, "9p"),
    (0xAAD7_AAEA, "PanFS"),
    (0x6573_5546, "FUSE (possibly remote, e.g. sshfs)"),
];

/// File systems on node-local disks or memory.
const LOCAL: &[(i64, &str)] = &[
    (0xEF53, "ext2/3/4"),
    (0x5846_5342, "XFS"),
    (0x9123_683E, "Btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x2FC1_2FC1, "ZFS"),
    (0xF2F5_2010, "F2FS"),
    (0x8584_58F6, "ramfs"),
];

impl FsKind {
    /// The kind for a `statfs` `f_type` magic number. Magics are 32-bit values; a
    /// sign-extended one (from a 32-bit `f_type`) is recognised too.
    pub fn from_magic(magic: i64) -> FsKind {
        let magic = magic & 0xFFFF_FFFF;
        let lookup = |table: &[(i64, &'static str)]| {
            table
                .iter()
                .find(|(known, _)| *known == magic)
                .map(|(_, name)| *name)
        };
        if let Some(name) = lookup(NETWORK) {
            FsKind::Network(name)
        } else if let Some(name) = lookup(LOCAL) {
            FsKind::Local(name)
        } else {
            FsKind::Unknown(magic)
        }
    }

    /// The kind of file system `path` is on.
    pub fn of(path: &Path) -> io::Result<FsKind> {
        statfs_magic(path).map(FsKind::from_magic)
    }

    /// Whether this is a network or parallel file system.
    pub fn is_network(&self) -> bool {
        matches!(self, FsKind::Network(_))
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsKind::Local(name) | FsKind::Network(name) => f.write_str(name),
            FsKind::Unknown(magic) => write!(f, "unknown file system (magic {magic:#x})"),
        }
    }
}

/// The `f_type` of `statfs(path)`.
fn statfs_magic(path: &Path) -> io::Result<i64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string and `stat` points to writable memory the
    // size of a `statfs`, both valid for the duration of the call.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it filled in `stat`.
    let stat = unsafe { stat.assume_init() };
    // `f_type` is `i64` on 64-bit Linux but a narrower or unsigned type on some targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(stat.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_magic_maps_to_its_kind() {
        let network = [
            (0x6969, "NFS"),
            (0x0BD00BD0, "Lustre"),
            (0x47504653, "GPFS"),
            (0x19830326, "BeeGFS"),
            (0xFF534D42, "CIFS"),
            (0xFE534D42, "SMB2"),
            (0x517B, "SMB"),
            (0x00C36400, "Ceph"),
            (0x5346414F, "AFS"),
            (0x6B414653, "AFS"),
            (0x01021997, "9p"),
            (0xAAD7AAEA, "PanFS"),
            (0x65735546, "FUSE (possibly remote, e.g. sshfs)"),
        ];
        for (magic, name) in network {
            let kind = FsKind::from_magic(magic);
            assert_eq!(kind, FsKind::Network(name), "{magic:#x}");
            assert!(kind.is_network());
            assert_eq!(kind.to_string(), name);
        }
        let local = [
            (0xEF53, "ext2/3/4"),
            (0x58465342, "XFS"),
            (0x9123683E, "Btrfs"),
            (0x01021994, "tmpfs"),
            (0x794C7630, "overlayfs"),
            (0x2FC12FC1, "ZFS"),
            (0xF2F52010, "F2FS"),
            (0x858458F6, "ramfs"),
        ];
        for (magic, name) in local {
            let kind = FsKind::from_magic(magic);
            assert_eq!(kind, FsKind::Local(name), "{magic:#x}");
            assert!(!kind.is_network());
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn sign_extended_and_unknown_magics() {
        // CIFS as a 32-bit signed `f_type` would report it.
        let sign_extended = i64::from(0xFF53_4D42_u32 as i32);
        assert_eq!(FsKind::from_magic(sign_extended), FsKind::Network("CIFS"));
        let unknown = FsKind::from_magic(0x1234_5678);
        assert_eq!(unknown, FsKind::Unknown(0x1234_5678));
        assert!(!unknown.is_network());
        assert_eq!(
            unknown.to_string(),
            "unknown file system (magic 0x12345678)"
        );
    }

    #[test]
    fn this_machine_is_local() {
        for path in ["/tmp", "/", "/dev/shm"] {
            let path = Path::new(path);
            if !path.exists() {
                continue;
            }
            let kind = FsKind::of(path).unwrap();
            println!("{}: {kind}", path.display());
            assert!(
                matches!(kind, FsKind::Local(_)),
                "{}: {kind:?}",
                path.display()
            );
        }
    }

    #[test]
    fn proc_is_not_network() {
        let kind = FsKind::of(Path::new("/proc")).unwrap();
        println!("/proc: {kind}");
        assert!(matches!(kind, FsKind::Unknown(_) | FsKind::Local(_)));
    }

    #[test]
    fn missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = FsKind::of(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
