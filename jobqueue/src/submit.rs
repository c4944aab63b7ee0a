//! Running submit, cancel and status commands through a [`CommandRunner`].
//!
//! Everything that touches the system is here, behind one small trait, so
//! tests replay documented outputs of batch systems that cannot be
//! installed. Errors show the command as a pasteable line, its exit status,
//! stdout and stderr; a missing client tool says how to load it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::jobid::{parse_job_id, JobId, JobIdError};
use crate::script::JobScript;
use crate::shell;
use crate::status::{combine, JobState};
use crate::system::System;
use crate::validate::ValidParams;

/// A command to run: argv, and a file for its stdin (LSF's `bsub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Program and arguments; never passed through a shell.
    pub argv: Vec<String>,
    /// A file to connect to stdin, if any.
    pub stdin_file: Option<PathBuf>,
}

impl Invocation {
    /// A command without stdin.
    pub fn new(argv: impl IntoIterator<Item = String>) -> Invocation {
        Invocation {
            argv: argv.into_iter().collect(),
            stdin_file: None,
        }
    }

    /// The command as a shell line, for messages (`bsub < job.sh`).
    pub fn display(&self) -> String {
        let mut s = shell::join(&self.argv);
        if let Some(f) = &self.stdin_file {
            s.push_str(" < ");
            s.push_str(&shell::quote(&f.display().to_string()));
        }
        s
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands. [`ProcessRunner`] is the real one.
pub trait CommandRunner {
    /// Runs `cmd` to completion.
    ///
    /// # Errors
    /// The I/O error from starting it (`NotFound` when not on PATH).
    fn run(&self, cmd: &Invocation) -> io::Result<CommandOutput>;
}

/// Runs commands with [`std::process::Command`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessRunner;

impl CommandRunner for ProcessRunner {
    fn run(&self, cmd: &Invocation) -> io::Result<CommandOutput> {
        let Some((program, args)) = cmd.argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let stdin = match &cmd.stdin_file {
            Some(path) => Stdio::from(fs::File::open(path)?),
            None => Stdio::null(),
        };
        let out = Command::new(program).args(args).stdin(stdin).output()?;
        Ok(CommandOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A command that ran and failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{command}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}", code.map_or("no exit status (killed by a signal)".to_string(), |c| format!("exit status {c}")), output.stdout.trim_end(), output.stderr.trim_end())]
pub struct CommandFailure {
    /// The command as a shell line.
    pub command: String,
    /// Its exit code.
    pub code: Option<i32>,
    /// What it printed.
    pub output: CommandOutput,
}

/// Why submitting, cancelling or querying failed.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The batch system's client command is not on PATH.
    #[error("`{program}` was not found on PATH: {tools}")]
    NotFound {
        /// The missing program.
        program: String,
        /// Which tools to load, and how.
        tools: &'static str,
    },
    /// The command could not be started for another reason.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command as a shell line.
        command: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The command exited with an error.
    #[error(transparent)]
    Failed(#[from] CommandFailure),
    /// The script or submit description could not be written.
    #[error("could not write the job script {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The submit command's output held no job id.
    #[error(transparent)]
    JobId(#[from] JobIdError),
}

fn run(
    runner: &dyn CommandRunner,
    system: System,
    cmd: &Invocation,
) -> Result<CommandOutput, SubmitError> {
    runner.run(cmd).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            SubmitError::NotFound {
                program: cmd.argv.first().cloned().unwrap_or_default(),
                tools: system.backend().client_tools(),
            }
        } else {
            SubmitError::Spawn {
                command: cmd.display(),
                source,
            }
        }
    })
}

fn failure(cmd: &Invocation, output: CommandOutput) -> SubmitError {
    SubmitError::Failed(CommandFailure {
        command: cmd.display(),
        code: output.code,
        output,
    })
}

fn write(path: &Path, text: &str, executable: bool) -> Result<(), SubmitError> {
    let err = |source| SubmitError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::write(path, text).map_err(err)?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

/// Writes the job to `script_path` (and, for HTCondor, its submit
/// description next to it with the extension `.sub`), submits it once (an
/// array of `array` jobs when asked) and returns the parsed id.
///
/// # Errors
/// [`SubmitError`]: the files cannot be written, the client tools are
/// missing, the command fails, or its output holds no id.
pub fn submit(
    runner: &dyn CommandRunner,
    params: &ValidParams,
    job: &JobScript,
    script_path: &Path,
) -> Result<JobId, SubmitError> {
    let system = params.system();
    let backend = system.backend();
    let condor = job.submit_description(&script_path.display().to_string());
    write(script_path, job.script(), condor.is_some())?;
    let cmd = match condor {
        Some(description) => {
            let sub = script_path.with_extension("sub");
            write(&sub, &description, false)?;
            backend.submit_command(&sub)
        }
        None => backend.submit_command(script_path),
    };
    let output = run(runner, system, &cmd)?;
    if !output.success() {
        return Err(failure(&cmd, output));
    }
    Ok(parse_job_id(
        system,
        &output.stdout,
        params.job_id_pattern(),
    )?)
}

/// Groups ids by SLURM cluster (one group for other systems).
fn by_cluster(ids: &[JobId]) -> Vec<Vec<JobId>> {
    let mut groups: Vec<Vec<JobId>> = Vec::new();
    for id in ids {
        match groups.iter_mut().find(|g| g[0].cluster == id.cluster) {
            Some(g) => g.push(id.clone()),
            None => groups.push(vec![id.clone()]),
        }
    }
    groups
}

/// Cancels `ids` (whole arrays).
///
/// # Errors
/// [`SubmitError`] from the cancel command.
pub fn cancel(
    runner: &dyn CommandRunner,
    system: System,
    ids: &[JobId],
) -> Result<(), SubmitError> {
    for group in by_cluster(ids) {
        let cmd = system.backend().cancel_command(&group);
        let output = run(runner, system, &cmd)?;
        if !output.success() {
            return Err(failure(&cmd, output));
        }
    }
    Ok(())
}

/// The state of each of `ids`, in order. A job the batch system no longer
/// lists is [`JobState::Finished`]; a status command that fails only
/// because some ids are unknown still counts.
///
/// # Errors
/// [`SubmitError`] from the status command.
pub fn status(
    runner: &dyn CommandRunner,
    system: System,
    ids: &[JobId],
) -> Result<Vec<(JobId, JobState)>, SubmitError> {
    let backend = system.backend();
    let mut out = Vec::with_capacity(ids.len());
    for group in by_cluster(ids) {
        let cmd = backend.status_command(&group);
        let output = run(runner, system, &cmd)?;
        let only_unknown_ids = backend
            .unknown_job_markers()
            .iter()
            .any(|m| output.stderr.contains(m));
        if !output.success() && !only_unknown_ids {
            return Err(failure(&cmd, output));
        }
        for id in group {
            let state = combine(&backend.parse_status(&output.stdout, &id));
            out.push((id, state));
        }
    }
    // Back into the caller's order (groups may have interleaved).
    Ok(ids
        .iter()
        .filter_map(|id| out.iter().find(|(j, _)| j == id).cloned())
        .collect())
}
