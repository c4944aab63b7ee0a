//! Checks of paths and names given on the command line, without creating anything.

use anyhow::{bail, Context};
use shoal_runtime::scheduler_file;
use std::path::{Path, PathBuf};

/// A scheduler file this command will write (`shoal scheduler`, `local`, `mpi`): not a
/// directory, in an existing directory where a file can be created.
///
/// # Errors
/// The path names a directory or something else that is not a file, or its directory
/// is missing or not writable.
pub fn scheduler_file_to_write(path: &Path) -> anyhow::Result<()> {
    let path = scheduler_file::expand_tilde(path);
    if let Ok(meta) = std::fs::metadata(&path) {
        if !meta.is_file() {
            bail!(
                "--scheduler-file {}: it is a directory or another non-file; give the path of a file to create (e.g. {}/scheduler.json)",
                path.display(),
                path.display()
            );
        }
    }
    let dir = parent_dir(&path);
    let meta = std::fs::metadata(&dir).with_context(|| {
        format!(
            "--scheduler-file {}: its directory {} cannot be used; create it first or choose a file in an existing directory",
            path.display(),
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "--scheduler-file {}: {} is not a directory; choose a file in an existing directory",
            path.display(),
            dir.display()
        );
    }
    tempfile::Builder::new()
        .prefix(".shoal-probe-")
        .tempfile_in(&dir)
        .map(drop)
        .with_context(|| {
            format!(
                "--scheduler-file {}: cannot create files in {}; choose a writable directory",
                path.display(),
                dir.display()
            )
        })
}

/// A scheduler file this command will read (`shoal worker`, `status`, `shutdown`, `run`,
/// `mpi --no-scheduler`): it may not exist yet (the reader waits), but when it does it
/// must be a scheduler file. Files are written atomically, so one that exists and does
/// not parse never will.
///
/// # Errors
/// The path is a directory, unreadable, or not a shoal scheduler file.
pub fn scheduler_file_to_read(path: &Path) -> anyhow::Result<()> {
    let path = scheduler_file::expand_tilde(path);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("--scheduler-file {}: cannot be read", path.display())
            })
        }
        Ok(meta) if !meta.is_file() => bail!(
            "--scheduler-file {}: it is a directory or another non-file; give the JSON file the scheduler wrote (shoal scheduler --scheduler-file F)",
            path.display()
        ),
        Ok(_) => {}
    }
    scheduler_file::read(&path, std::time::Duration::ZERO)
        .map(drop)
        .with_context(|| format!("--scheduler-file {}", path.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `--interface NAME` exists here and has an address.
///
/// # Errors
/// The interface does not exist; the message lists those that do.
pub fn interface(name: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = name {
        crate::iface::interface_address(name).context("--interface")?;
    }
    Ok(())
}

/// `--host NAME`: it resolves to an address to listen on.
///
/// # Errors
/// The name does not resolve.
pub fn host(host: Option<&str>) -> anyhow::Result<()> {
    let Some(host) = host else { return Ok(()) };
    let resolves =
        std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).is_ok_and(|mut a| a.next().is_some());
    if !resolves {
        bail!(
            "--host {host:?} does not resolve to an address of this machine; give a host name or IP address of it (e.g. 127.0.0.1, or `hostname`), or --interface NAME"
        );
    }
    Ok(())
}

/// A scheduler address as `shoal worker ADDRESS` takes it: `tcp://host:port`.
///
/// # Errors
/// Another form; the message shows the accepted one.
pub fn address(text: &str) -> anyhow::Result<()> {
    let bad = || {
        anyhow::anyhow!(
            "scheduler address {text:?} is not of the form tcp://HOST:PORT (e.g. tcp://node12:8786)"
        )
    };
    let rest = text.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_files_to_write_need_a_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scheduler_file_to_write(&dir.path().join("s.json")).is_ok());
        let e = format!("{:#}", scheduler_file_to_write(dir.path()).unwrap_err());
        assert!(e.contains("is a directory"), "{e}");
        let e = format!(
            "{:#}",
            scheduler_file_to_write(&dir.path().join("no/s.json")).unwrap_err()
        );
        assert!(e.contains("create it first"), "{e}");
        let e = format!(
            "{:#}",
            scheduler_file_to_write(Path::new("/proc/s.json")).unwrap_err()
        );
        assert!(e.contains("writable"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn scheduler_files_to_read_are_scheduler_files_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scheduler_file_to_read(&dir.path().join("later.json")).is_ok());
        let e = format!("{:#}", scheduler_file_to_read(dir.path()).unwrap_err());
        assert!(e.contains("is a directory"), "{e}");
        let f = dir.path().join("s.json");
        std::fs::write(&f, "not json").unwrap();
        let e = format!("{:#}", scheduler_file_to_read(&f).unwrap_err());
        assert!(e.contains("not valid JSON"), "{e}");
        std::fs::write(&f, "{\"type\": \"Scheduler\"}").unwrap();
        let e = format!("{:#}", scheduler_file_to_read(&f).unwrap_err());
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn addresses_are_tcp_host_port() {
        assert!(address("tcp://node12:8786").is_ok());
        for bad in [
            "node12:8786",
            "tcp://node12",
            "tcp://:1",
            "tcp://h:0",
            "tcp://h:70000",
        ] {
            let e = address(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("tcp://HOST:PORT"), "{e}");
        }
    }
}
