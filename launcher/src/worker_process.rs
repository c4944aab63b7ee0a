//! Starting worker processes, one way for every caller: `shoal local`, the nanny, batch
//! workers and job scripts resolve the worker command here, and every child dies with the
//! process that started it and is stopped the same way.

use anyhow::Context;
use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The program and leading arguments that run `shoal` for a worker: the host's command
/// (`python -m shoal` in the Python package) or this executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    program: OsString,
    leading: Vec<OsString>,
}

impl WorkerCommand {
    /// The host's worker command if it set one, else this executable.
    ///
    /// # Errors
    /// This executable's path cannot be found.
    pub fn resolve(hooks: &crate::Hooks) -> anyhow::Result<Self> {
        match hooks.worker_command.as_deref() {
            Some([program, rest @ ..]) => Ok(WorkerCommand {
                program: program.clone(),
                leading: rest.to_vec(),
            }),
            _ => Ok(WorkerCommand {
                program: std::env::current_exe()
                    .context("cannot find the shoal executable")?
                    .into(),
                leading: Vec::new(),
            }),
        }
    }

    /// Every word: the program, then the leading arguments.
    pub fn words(&self) -> impl Iterator<Item = &OsString> {
        std::iter::once(&self.program).chain(&self.leading)
    }

    /// A command running `shoal ARGS` (the leading arguments first) as a worker process:
    /// killed with its parent (even a SIGKILLed one), killed when its handle is dropped,
    /// standard input closed.
    pub fn command(&self, args: impl IntoIterator<Item = OsString>) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.leading).args(args);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }
}

/// Stop a worker process: SIGTERM (it leaves the cluster cleanly), then SIGKILL once
/// `grace` has passed. Returns its exit status if it left on its own.
pub async fn stop(child: &mut Child, name: &str, grace: Duration) -> Option<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            tracing::warn!(worker = %name, pid = child.id(), "worker process did not leave in {grace:?}; killing it");
            let _ = child.kill().await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(command: Option<&[&str]>) -> crate::Hooks {
        crate::Hooks {
            worker_command: command.map(|c| c.iter().map(OsString::from).collect()),
            ..crate::Hooks::default()
        }
    }

    #[test]
    fn the_hosts_command_comes_first_else_this_executable() {
        let python = WorkerCommand::resolve(&hooks(Some(&["/py/bin/python", "-m", "shoal"])))
            .expect("resolves");
        let words: Vec<_> = python.words().cloned().collect();
        assert_eq!(words, ["/py/bin/python", "-m", "shoal"]);
        let own = WorkerCommand::resolve(&hooks(None)).expect("resolves");
        assert_eq!(
            own.words().collect::<Vec<_>>(),
            [&OsString::from(std::env::current_exe().expect("exe"))]
        );
        assert_eq!(
            WorkerCommand::resolve(&hooks(Some(&[]))).expect("resolves"),
            own
        );
    }

    #[tokio::test]
    async fn children_are_stopped_by_sigterm() {
        use tokio::io::AsyncBufReadExt;
        let command = WorkerCommand::resolve(&hooks(Some(&["/bin/sh", "-c"]))).expect("resolves");
        let mut child = command
            .command(["trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done".into()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawns");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // The trap is in place once it says so; SIGKILL after 10 s bounds the test.
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
            "{ready:?}"
        );
        let status = stop(&mut child, "t", Duration::from_secs(10)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(7), "left on SIGTERM");
    }
}
