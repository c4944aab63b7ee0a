//! The flags of `shoal jobqueue` and their value parsers.

#[cfg(feature = "cli")]
use clap::{Args, Subcommand};
use shoal_jobqueue::{Layer, System};
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "cli")]
#[derive(Debug, Args)]
pub struct JobqueueArgs {
    #[command(subcommand)]
    pub command: JobqueueCommand,
}

/// A `shoal jobqueue` subcommand with its settings.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(Subcommand))]
pub enum JobqueueCommand {
    /// Print the job script (HTCondor: submit description and script); submits nothing.
    Script(ScriptArgs),
    /// Submit N worker jobs as one array, or the scheduler as a job (--scheduler).
    Submit(SubmitArgs),
    /// Submit or cancel worker jobs until N are queued or running.
    Scale(ScaleArgs),
    /// The state of every job submitted for a scheduler file.
    Status(JobsStatusArgs),
    /// Cancel the worker jobs (with --all also the scheduler job).
    Cancel(CancelArgs),
}

/// Job parameters, by dask-jobqueue's names.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct ParamArgs {
    /// Batch system: slurm, pbs, torque, sge, lsf, htcondor.
    #[cfg_attr(feature = "cli", arg(value_parser = parse_system))]
    pub system: System,
    /// A parameter as KEY=VALUE, repeatable (cores, memory, processes, name, queue,
    /// account, walltime, job_extra_directives, job_directives_skip, job_script_prologue,
    /// log_directory, local_directory, interface, python, lifetime, ...).
    #[cfg_attr(feature = "cli", arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param))]
    pub params: Vec<(String, String)>,
    /// Cores per job (= --param cores=N).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cores: Option<String>,
    /// Memory per job, e.g. 100GB (decimal) or 96GiB (binary) (= --param memory=M).
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub memory: Option<String>,
    /// Walltime, HH:MM:SS (LSF HH:MM) (= --param walltime=T).
    #[cfg_attr(feature = "cli", arg(long))]
    pub walltime: Option<String>,
    /// Queue or partition (= --param queue=Q).
    #[cfg_attr(feature = "cli", arg(long))]
    pub queue: Option<String>,
    /// Account or project (= --param account=A).
    #[cfg_attr(feature = "cli", arg(long))]
    pub account: Option<String>,
    /// Config file with per-system defaults (default ~/.config/shoal/jobqueue.toml).
    #[cfg_attr(feature = "cli", arg(long))]
    pub config: Option<PathBuf>,
}

/// `script`: print a job script.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct ScriptArgs {
    /// The job parameters.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub params: ParamArgs,
    /// The scheduler file the workers read (default ./scheduler.json).
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: Option<PathBuf>,
    /// Number of worker jobs, as one array.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1, value_parser = crate::parse::count))]
    pub jobs: u32,
    /// Print the scheduler job's script instead.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "jobs"))]
    pub scheduler: bool,
    /// Print JSON: the script and the validated figures (cores, processes, memory,
    /// walltime, worker lifetime).
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

/// `submit`: submit worker jobs or the scheduler job.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct SubmitArgs {
    /// The job parameters.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub params: ParamArgs,
    /// The scheduler file (on a file system the compute nodes see).
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: PathBuf,
    /// Number of worker jobs, submitted as one array.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1, value_parser = crate::parse::count))]
    pub jobs: u32,
    /// Submit the scheduler itself as a batch job (`shoal scheduler --scheduler-file F`).
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "jobs"))]
    pub scheduler: bool,
}

/// `scale`: submit or cancel worker jobs to a count.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct ScaleArgs {
    /// The scheduler file given to `submit`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: PathBuf,
    /// Worker jobs wanted (queued or running).
    pub jobs: u32,
    /// Then wait until the scheduler has the workers of JOBS jobs (JOBS x processes per
    /// job; when scaling down, until the others left), with a progress bar on a terminal.
    #[cfg_attr(feature = "cli", arg(long))]
    pub wait: bool,
    /// Seconds `--wait` waits at most; then it fails, naming the jobs still pending.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value = "600", value_parser = crate::parse::positive_seconds, requires = "wait")
    )]
    pub timeout: Duration,
}

/// `status`: the jobs of a scheduler file.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct JobsStatusArgs {
    /// The scheduler file given to `submit`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: PathBuf,
    /// Print JSON.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

/// `cancel`: cancel the jobs of a scheduler file.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(Args))]
pub struct CancelArgs {
    /// The scheduler file given to `submit`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler_file: PathBuf,
    /// Also cancel the scheduler job, and forget the cluster's jobs (the state file, its
    /// lock and the job scripts are removed).
    #[cfg_attr(feature = "cli", arg(long))]
    pub all: bool,
}

pub fn parse_system(text: &str) -> Result<System, String> {
    text.parse()
        .map_err(|e: shoal_jobqueue::UnknownSystem| e.to_string())
}

pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE; e.g. --param cores=4 --param memory=8GiB --param walltime=00:30:00"
        )),
    }
}

/// The command-line layer from flags and `--param`s.
pub fn explicit_layer(p: &ParamArgs) -> Layer {
    let mut layer = Layer::new("command line");
    for (k, v) in &p.params {
        layer.push(k.clone(), v.clone());
    }
    let flags = [
        ("cores", &p.cores),
        ("memory", &p.memory),
        ("walltime", &p.walltime),
        ("queue", &p.queue),
        ("account", &p.account),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            layer.push(key, v.clone());
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_need_key_and_value() {
        assert_eq!(
            parse_param("memory=8GiB"),
            Ok(("memory".into(), "8GiB".into()))
        );
        assert_eq!(
            parse_param("job_extra_directives=--mem-per-cpu=4G"),
            Ok(("job_extra_directives".into(), "--mem-per-cpu=4G".into()))
        );
        let err = parse_param("cores").expect_err("no =");
        assert!(
            err.contains("\"cores\"") && err.contains("--param cores=4"),
            "{err}"
        );
    }
}
