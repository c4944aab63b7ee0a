//! `shoal jobqueue`: job scripts for SLURM, PBS, Torque, SGE, LSF and HTCondor, and the
//! worker (and scheduler) jobs of one cluster across invocations.
//!
//! Everything batch-system specific is in the `shoal-jobqueue` crate; this module turns
//! flags into its parameter layers, runs its commands, and keeps the jobs it submitted in
//! a state file next to the scheduler file (`F.jobs.json`, mode 0600, replaced
//! atomically, changed under an exclusive lock on `F.jobs.lock`), so that `status`,
//! `scale` and `cancel` work from any later shell.
//!
//! Parameters, lowest priority first: shoal's own (`shoal` = this executable,
//! `scheduler_file`), the config file's table for the system
//! (`~/.config/shoal/jobqueue.toml` or `--config`), then the command line (`--param
//! key=value` and the `--cores`-style flags), then `--jobs`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use shoal_jobqueue::shell::quote;
use shoal_jobqueue::{
    render, render_scheduler, Config, JobId, JobParams, JobScript, JobState, Layer, ProcessRunner,
    System, ValidParams,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct JobqueueArgs {
    #[command(subcommand)]
    pub command: JobqueueCommand,
}

#[derive(Debug, Subcommand)]
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
#[derive(Debug, Clone, Args)]
pub struct ParamArgs {
    /// Batch system: slurm, pbs, torque, sge, lsf, htcondor.
    #[arg(value_parser = parse_system)]
    pub system: System,
    /// A parameter as KEY=VALUE, repeatable (cores, memory, processes, name, queue,
    /// account, walltime, job_extra_directives, job_directives_skip, job_script_prologue,
    /// log_directory, local_directory, interface, python, lifetime, ...).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Cores per job (= --param cores=N).
    #[arg(long)]
    pub cores: Option<String>,
    /// Memory per job, e.g. 100GB (decimal) or 96GiB (binary) (= --param memory=M).
    #[arg(long)]
    pub memory: Option<String>,
    /// Walltime, HH:MM:SS (LSF HH:MM) (= --param walltime=T).
    #[arg(long)]
    pub walltime: Option<String>,
    /// Queue or partition (= --param queue=Q).
    #[arg(long)]
    pub queue: Option<String>,
    /// Account or project (= --param account=A).
    #[arg(long)]
    pub account: Option<String>,
    /// Config file with per-system defaults (default ~/.config/shoal/jobqueue.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ScriptArgs {
    #[command(flatten)]
    pub params: ParamArgs,
    /// The scheduler file the workers read (default ./scheduler.json).
    #[arg(long)]
    pub scheduler_file: Option<PathBuf>,
    /// Number of worker jobs, as one array.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Print the scheduler job's script instead.
    #[arg(long, conflicts_with = "jobs")]
    pub scheduler: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub params: ParamArgs,
    /// The scheduler file (on a file system the compute nodes see).
    #[arg(long)]
    pub scheduler_file: PathBuf,
    /// Number of worker jobs, submitted as one array.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Submit the scheduler itself as a batch job (`shoal scheduler --scheduler-file F`).
    #[arg(long, conflicts_with = "jobs")]
    pub scheduler: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// The scheduler file given to `submit`.
    #[arg(long)]
    pub scheduler_file: PathBuf,
    /// Worker jobs wanted (queued or running).
    pub jobs: u32,
}

#[derive(Debug, Clone, Args)]
pub struct JobsStatusArgs {
    /// The scheduler file given to `submit`.
    #[arg(long)]
    pub scheduler_file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The scheduler file given to `submit`.
    #[arg(long)]
    pub scheduler_file: PathBuf,
    /// Also cancel the scheduler job, and forget the cluster's jobs.
    #[arg(long)]
    pub all: bool,
}

/// A crate error as an `anyhow` error. The crate's messages already include their
/// causes, so the chain is not kept (it would print every cause twice).
fn jq(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Fails like the crate would if the submit command is not on PATH, before any file is
/// written.
fn check_client_tools(system: System) -> anyhow::Result<()> {
    let backend = system.backend();
    let cmd = backend.submit_command(Path::new("job.sh"));
    let Some(program) = cmd.argv.first() else {
        return Ok(());
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(program).is_file()) {
        return Ok(());
    }
    Err(jq(shoal_jobqueue::SubmitError::NotFound {
        program: program.clone(),
        tools: backend.client_tools(),
    }))
}

fn parse_system(text: &str) -> Result<System, String> {
    text.parse()
        .map_err(|e: shoal_jobqueue::UnknownSystem| e.to_string())
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE; e.g. --param cores=4 --param memory=8GiB --param walltime=00:30:00"
        )),
    }
}

/// Runs a `shoal jobqueue` command; the exit status.
///
/// # Errors
/// Bad parameters, an unusable config or state file, or a failing batch command (its
/// command line, exit status, stdout and stderr).
pub fn run(args: JobqueueArgs, hooks: &crate::Hooks) -> anyhow::Result<u8> {
    match args.command {
        JobqueueCommand::Script(a) => script(&a, hooks),
        JobqueueCommand::Submit(a) => submit(&a, hooks),
        JobqueueCommand::Scale(a) => scale(&a, hooks),
        JobqueueCommand::Status(a) => status(&a),
        JobqueueCommand::Cancel(a) => cancel(&a),
    }
    .map(|()| 0)
}

/// The command jobs start shoal with: the host's worker command or this executable.
fn shoal_command(hooks: &crate::Hooks) -> anyhow::Result<String> {
    let words: Vec<String> = match hooks.worker_command.as_deref() {
        Some(cmd) if !cmd.is_empty() => cmd
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect(),
        _ => vec![std::env::current_exe()
            .context("cannot find the shoal executable")?
            .display()
            .to_string()],
    };
    Ok(words
        .iter()
        .map(|w| quote(w).into_owned())
        .collect::<Vec<_>>()
        .join(" "))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

/// The command-line layer from flags and `--param`s.
fn explicit_layer(p: &ParamArgs) -> Layer {
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

/// What a submission is made of, kept in the state file so `scale` can submit more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Recipe {
    /// The command-line pairs.
    params: Vec<(String, String)>,
    /// `--config`, if given.
    config: Option<PathBuf>,
    /// The command jobs start shoal with.
    shoal: String,
}

/// Validates a recipe for `system` with `jobs` array elements, printing deprecations
/// and the system's remarks as warnings.
fn validate(
    system: System,
    recipe: &Recipe,
    scheduler_file: &Path,
    jobs: u32,
    scheduler_job: bool,
) -> anyhow::Result<ValidParams> {
    let config_path = recipe
        .config
        .clone()
        .or_else(shoal_jobqueue::user_config_path);
    let config = match &config_path {
        Some(path) => Config::load(path).map_err(jq)?,
        None => Config::default(),
    };
    if let Some(path) = &recipe.config {
        if !path.exists() {
            bail!("config file {} does not exist", path.display());
        }
    }
    let mut base = Layer::new("shoal")
        .with("shoal", recipe.shoal.clone())
        .with("scheduler_file", scheduler_file.display().to_string());
    if scheduler_job {
        base.push("name", "shoal-scheduler");
        // A scheduler job has no worker lifetime to keep.
        base.push("lifetime", "0");
    }
    let explicit = Layer {
        origin: "command line".into(),
        pairs: recipe.params.clone(),
    };
    let count = Layer::new("--jobs").with("array", jobs.to_string());
    let (params, deprecations) =
        JobParams::from_layers(&[base, config.layer(system), explicit, count]).map_err(jq)?;
    for d in &deprecations {
        tracing::warn!("{d}");
    }
    let valid = params.validate(system).map_err(jq)?;
    for w in valid.warnings() {
        tracing::warn!("{w}");
    }
    Ok(valid)
}

fn recipe(p: &ParamArgs, hooks: &crate::Hooks) -> anyhow::Result<Recipe> {
    Ok(Recipe {
        params: explicit_layer(p).pairs,
        config: p.config.clone(),
        shoal: shoal_command(hooks)?,
    })
}

fn script(a: &ScriptArgs, hooks: &crate::Hooks) -> anyhow::Result<()> {
    let file = absolute(
        a.scheduler_file
            .as_deref()
            .unwrap_or(Path::new("scheduler.json")),
    )?;
    let recipe = recipe(&a.params, hooks)?;
    let valid = validate(a.params.system, &recipe, &file, a.jobs, a.scheduler)?;
    let job = if a.scheduler {
        render_scheduler(&valid)
    } else {
        render(&valid)
    };
    let mut out = std::io::stdout().lock();
    match job.submit_description("job.sh") {
        Some(description) => write!(
            out,
            "# ---- submit description (job.sub) ----\n{description}\n# ---- script (job.sh) ----\n{}",
            job.script()
        )?,
        None => write!(out, "{}", job.script())?,
    }
    Ok(())
}

/// One submitted job, or one element of an array.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct JobRecord {
    /// The id cancel and status commands take (an element id for arrays).
    job: JobId,
    /// The id the submission returned (the array's).
    array: String,
    /// Seconds since the epoch.
    submitted: u64,
}

/// The state file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct State {
    version: u32,
    system: System,
    /// How the worker jobs were made (for `scale`); `None` before any were submitted.
    workers_recipe: Option<Recipe>,
    scheduler_job: Option<JobRecord>,
    workers: Vec<JobRecord>,
}

const STATE_VERSION: u32 = 1;

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `F.jobs.json` next to scheduler file `F`.
fn state_path(scheduler_file: &Path) -> PathBuf {
    with_suffix(scheduler_file, ".jobs.json")
}

fn load_state(path: &Path) -> anyhow::Result<Option<State>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: State = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a shoal job list; remove it if no jobs are running",
            path.display()
        )
    })?;
    if state.version != STATE_VERSION {
        bail!(
            "{} has version {}, this shoal reads version {STATE_VERSION}",
            path.display(),
            state.version
        );
    }
    Ok(Some(state))
}

/// Writes `state` to `path` atomically (a 0600 temporary file renamed over it).
fn save_state(path: &Path, state: &State) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = with_suffix(path, &format!(".tmp{}", std::process::id()));
    let text = serde_json::to_vec_pretty(state)?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// An exclusive lock on `F.jobs.lock`, released when dropped (the file closes).
struct StateLock(#[allow(dead_code)] fs::File);

fn lock_state(scheduler_file: &Path) -> anyhow::Result<StateLock> {
    use std::os::fd::AsRawFd;
    let path = with_suffix(scheduler_file, ".jobs.lock");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock on an open descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(StateLock(file))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the job into `F.jobs.d/` and submits it; the records of its elements.
fn submit_job(
    valid: &ValidParams,
    job: &JobScript,
    scheduler_file: &Path,
    role: &str,
) -> anyhow::Result<Vec<JobRecord>> {
    if let Some(dir) = &valid.params().log_directory {
        if !dir.contains('$') {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the log directory {dir}"))?;
        }
    }
    let dir = with_suffix(scheduler_file, ".jobs.d");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let script_path = dir.join(format!("{role}-{stamp}.sh"));
    let id = shoal_jobqueue::submit(&ProcessRunner, valid, job, &script_path).map_err(jq)?;
    let backend = valid.system().backend();
    let submitted = now();
    let records = if valid.is_array() {
        (1..=valid.array())
            .map(|i| JobRecord {
                job: backend.array_element(&id, i),
                array: id.to_string(),
                submitted,
            })
            .collect()
    } else {
        vec![JobRecord {
            job: id.clone(),
            array: id.to_string(),
            submitted,
        }]
    };
    Ok(records)
}

fn submit(a: &SubmitArgs, hooks: &crate::Hooks) -> anyhow::Result<()> {
    let file = absolute(&a.scheduler_file)?;
    let recipe = recipe(&a.params, hooks)?;
    let system = a.params.system;
    // Validate before touching anything: nothing is submitted when this fails.
    let valid = validate(system, &recipe, &file, a.jobs, a.scheduler)?;
    check_client_tools(system)?;
    let _lock = lock_state(&file)?;
    let path = state_path(&file);
    let mut state = match load_state(&path)? {
        Some(s) if s.system != system => bail!(
            "{} already holds {} jobs; use another scheduler file for {system} jobs, or `shoal jobqueue cancel --all --scheduler-file {}` first",
            path.display(),
            s.system,
            file.display()
        ),
        Some(s) => s,
        None => State {
            version: STATE_VERSION,
            system,
            workers_recipe: None,
            scheduler_job: None,
            workers: Vec::new(),
        },
    };
    if a.scheduler {
        if let Some(old) = &state.scheduler_job {
            bail!(
                "a scheduler job ({}) was already submitted for {}; cancel it first with `shoal jobqueue cancel --all --scheduler-file {}`",
                old.job,
                file.display(),
                file.display()
            );
        }
        let records = submit_job(&valid, &render_scheduler(&valid), &file, "scheduler")?;
        println!("submitted the scheduler job {}", records[0].job);
        state.scheduler_job = records.into_iter().next();
    } else {
        let records = submit_job(&valid, &render(&valid), &file, "workers")?;
        let ids: Vec<String> = records.iter().map(|r| r.job.to_string()).collect();
        println!(
            "submitted {} worker job(s) as {}: {}",
            records.len(),
            records[0].array,
            ids.join(" ")
        );
        state.workers.extend(records);
        state.workers_recipe = Some(recipe);
    }
    save_state(&path, &state)?;
    Ok(())
}

fn states(state: &State, records: &[&JobRecord]) -> anyhow::Result<Vec<JobState>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = records.iter().map(|r| r.job.clone()).collect();
    let found = shoal_jobqueue::status(&ProcessRunner, state.system, &ids).map_err(jq)?;
    Ok(ids
        .iter()
        .map(|id| {
            found
                .iter()
                .find(|(j, _)| j == id)
                .map_or(JobState::Finished, |(_, s)| s.clone())
        })
        .collect())
}

fn require_state(file: &Path) -> anyhow::Result<(PathBuf, State)> {
    let path = state_path(file);
    match load_state(&path)? {
        Some(s) => Ok((path, s)),
        None => bail!(
            "no jobs were submitted for {} ({} does not exist); submit some with `shoal jobqueue submit SYSTEM --scheduler-file {} --jobs N ...`",
            file.display(),
            path.display(),
            file.display()
        ),
    }
}

fn scale(a: &ScaleArgs, hooks: &crate::Hooks) -> anyhow::Result<()> {
    let _ = hooks;
    let file = absolute(&a.scheduler_file)?;
    let _lock = lock_state(&file)?;
    let (path, mut state) = require_state(&file)?;
    let Some(recipe) = state.workers_recipe.clone() else {
        bail!(
            "no worker jobs were submitted for {} yet, so their parameters are unknown; start with `shoal jobqueue submit {} --scheduler-file {} --jobs {} ...`",
            file.display(),
            state.system,
            file.display(),
            a.jobs
        );
    };
    let records: Vec<&JobRecord> = state.workers.iter().collect();
    let current = states(&state, &records)?;
    // Forget jobs that are gone.
    let live: Vec<(JobRecord, JobState)> = state
        .workers
        .iter()
        .cloned()
        .zip(current)
        .filter(|(_, s)| *s != JobState::Finished)
        .collect();
    state.workers = live.iter().map(|(r, _)| r.clone()).collect();
    let have = u32::try_from(live.len()).unwrap_or(u32::MAX);
    if a.jobs > have {
        let valid = validate(state.system, &recipe, &file, a.jobs - have, false)?;
        let records = submit_job(&valid, &render(&valid), &file, "workers")?;
        println!(
            "{have} worker job(s) queued or running; submitted {} more as {}",
            records.len(),
            records[0].array
        );
        state.workers.extend(records);
    } else if a.jobs < have {
        let victims = choose_cancellations(&live, (have - a.jobs) as usize);
        shoal_jobqueue::cancel(&ProcessRunner, state.system, &victims).map_err(jq)?;
        let names: Vec<String> = victims.iter().map(ToString::to_string).collect();
        println!(
            "{have} worker job(s) queued or running; cancelled {}",
            names.join(" ")
        );
        state.workers.retain(|r| !victims.contains(&r.job));
    } else {
        println!("{have} worker job(s) queued or running already");
    }
    save_state(&path, &state)
}

/// Which `n` jobs to cancel: those still waiting first, then the newest.
fn choose_cancellations(live: &[(JobRecord, JobState)], n: usize) -> Vec<JobId> {
    let mut order: Vec<&(JobRecord, JobState)> = live.iter().collect();
    // Stable: newest (later in the list, later submitted) first within each group.
    order.reverse();
    order.sort_by_key(|(r, s)| (*s != JobState::Pending, std::cmp::Reverse(r.submitted)));
    order
        .into_iter()
        .take(n)
        .map(|(r, _)| r.job.clone())
        .collect()
}

fn status(a: &JobsStatusArgs) -> anyhow::Result<()> {
    let file = absolute(&a.scheduler_file)?;
    let (_, state) = require_state(&file)?;
    let mut records: Vec<(&str, &JobRecord)> = Vec::new();
    if let Some(s) = &state.scheduler_job {
        records.push(("scheduler", s));
    }
    records.extend(state.workers.iter().map(|r| ("worker", r)));
    let refs: Vec<&JobRecord> = records.iter().map(|(_, r)| *r).collect();
    let found = states(&state, &refs)?;
    if a.json {
        let jobs: Vec<serde_json::Value> = records
            .iter()
            .zip(&found)
            .map(|((role, r), s)| {
                serde_json::json!({"role": role, "id": r.job.to_string(), "array": r.array,
                    "state": s.to_string(), "submitted": r.submitted})
            })
            .collect();
        let live = found
            .iter()
            .zip(&records)
            .filter(|(s, (role, _))| *role == "worker" && **s != JobState::Finished)
            .count();
        let out = serde_json::json!({"system": state.system, "worker_jobs": live, "jobs": jobs});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} jobs for {}", state.system, file.display());
    println!(
        "{:<10} {:<20} {:<12} {:>8}",
        "ROLE", "JOB", "STATE", "AGE (s)"
    );
    let t = now();
    for ((role, r), s) in records.iter().zip(&found) {
        println!(
            "{:<10} {:<20} {:<12} {:>8}",
            role,
            r.job.to_string(),
            s.to_string(),
            t.saturating_sub(r.submitted)
        );
    }
    Ok(())
}

fn cancel(a: &CancelArgs) -> anyhow::Result<()> {
    let file = absolute(&a.scheduler_file)?;
    let _lock = lock_state(&file)?;
    let (path, mut state) = require_state(&file)?;
    let mut ids: Vec<JobId> = state.workers.iter().map(|r| r.job.clone()).collect();
    if a.all {
        ids.extend(state.scheduler_job.iter().map(|r| r.job.clone()));
    }
    if !ids.is_empty() {
        shoal_jobqueue::cancel(&ProcessRunner, state.system, &ids).map_err(jq)?;
    }
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    println!("cancelled {} job(s): {}", ids.len(), names.join(" "));
    if a.all {
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    } else {
        state.workers.clear();
        save_state(&path, &state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, submitted: u64) -> JobRecord {
        JobRecord {
            job: JobId {
                id: id.into(),
                number: 1,
                cluster: None,
            },
            array: "1".into(),
            submitted,
        }
    }

    #[test]
    fn scale_down_cancels_waiting_jobs_first_then_the_newest() {
        let live = vec![
            (record("1_1", 10), JobState::Running),
            (record("1_2", 10), JobState::Pending),
            (record("2_1", 20), JobState::Running),
            (record("2_2", 20), JobState::Running),
        ];
        let ids: Vec<String> = choose_cancellations(&live, 3)
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, ["1_2", "2_2", "2_1"]);
    }

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

    #[test]
    fn state_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("s.json");
        let path = state_path(&file);
        assert!(path.ends_with("s.json.jobs.json"));
        let state = State {
            version: STATE_VERSION,
            system: System::Slurm,
            workers_recipe: None,
            scheduler_job: Some(record("7", 1)),
            workers: vec![record("8_1", 2)],
        };
        save_state(&path, &state).unwrap_or_else(|e| panic!("{e}"));
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let back = load_state(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(state));
    }
}
