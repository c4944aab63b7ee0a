//! The `shoal jobqueue` subcommands. Each writes what it reports into an [`Output`]:
//! the CLI prints it, the Python API returns it.

mod scale;

#[cfg(feature = "cli")]
use super::args::JobqueueArgs;
use super::args::{
    explicit_layer, CancelArgs, JobqueueCommand, JobsStatusArgs, ParamArgs, ScaleArgs, ScriptArgs,
    SubmitArgs,
};
use super::state::{
    load_state, lock_state, now, remove_state, save_state, scripts_dir, state_path, JobRecord,
    Recipe, State,
};
use super::wait;
use crate::worker_process::WorkerCommand;
use crate::LaunchError;
use anyhow::{bail, Context};
use scale::scale;
use shoal_jobqueue::shell::quote;
use shoal_jobqueue::{
    render, render_scheduler, Config, JobId, JobParams, JobScript, JobState, Layer, ProcessRunner,
    System, ValidParams,
};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a command reports: its standard output, and warnings (deprecated parameter
/// names, the system's remarks) for the host to show its own way.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// What the CLI prints on stdout (besides `json`).
    pub text: String,
    /// The report of `--json` (`script`, `status`), which the CLI prints after `text` and a
    /// host takes as data.
    pub json: Option<serde_json::Value>,
    /// One line each; the CLI logs them as warnings.
    pub warnings: Vec<String>,
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

/// Runs a `shoal jobqueue` command, printing its output (and `scale --wait`'s wait); the
/// exit status.
///
/// # Errors
/// Bad parameters, an unusable config or state file, or a failing batch command (its
/// command line, exit status, stdout and stderr); `--wait` timing out.
#[cfg(feature = "cli")]
pub async fn run(args: JobqueueArgs, hooks: &crate::Hooks) -> anyhow::Result<u8> {
    let mut out = Output::default();
    let result = execute(args.command, hooks, &mut out);
    for w in &out.warnings {
        tracing::warn!("{w}");
    }
    print!("{}", out.text);
    if let Some(json) = &out.json {
        println!("{}", serde_json::to_string_pretty(json)?);
    }
    if let Some(target) = result? {
        println!("{}", wait::wait(&target).await?);
    }
    Ok(0)
}

/// Runs one `shoal jobqueue` subcommand and returns what it would print (`scale --wait`
/// waits on a runtime of its own).
///
/// # Errors
/// Bad parameters, an unusable config or state file, or a failing batch command, as one
/// message; warnings given before the failure are appended to it.
pub fn capture(command: JobqueueCommand, hooks: &crate::Hooks) -> Result<Output, LaunchError> {
    let mut out = Output::default();
    let waited = execute(command, hooks, &mut out).and_then(|target| match target {
        Some(target) => {
            let line = wait_blocking(&target)?;
            writeln!(out.text, "{line}")?;
            Ok(())
        }
        None => Ok(()),
    });
    match waited {
        Ok(()) => Ok(out),
        Err(error) => Err(LaunchError::Failed {
            error,
            warnings: out.warnings,
        }),
    }
}

/// [`wait::wait`] for a caller without an async runtime (the Python API).
fn wait_blocking(target: &wait::Target) -> anyhow::Result<String> {
    if tokio::runtime::Handle::try_current().is_ok() {
        bail!("`jobqueue scale --wait` cannot block inside an async runtime; await the workers there instead");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime to wait for the workers")?;
    runtime.block_on(wait::wait(target))
}

/// Runs a command; for `scale --wait`, what to wait for afterwards.
fn execute(
    command: JobqueueCommand,
    hooks: &crate::Hooks,
    out: &mut Output,
) -> anyhow::Result<Option<wait::Target>> {
    match command {
        JobqueueCommand::Script(a) => script(&a, hooks, out).map(|()| None),
        JobqueueCommand::Submit(a) => submit(&a, hooks, out).map(|()| None),
        JobqueueCommand::Scale(a) => scale(&a, out),
        JobqueueCommand::Status(a) => status(&a, out).map(|()| None),
        JobqueueCommand::Cancel(a) => cancel(&a, out).map(|()| None),
    }
}

/// The command jobs start shoal with: the host's worker command or this executable.
fn shoal_command(hooks: &crate::Hooks) -> anyhow::Result<String> {
    Ok(WorkerCommand::resolve(hooks)?
        .words()
        .map(|w| quote(&w.to_string_lossy()).into_owned())
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

/// Validates a recipe for `system` with `jobs` array elements, collecting deprecations
/// and the system's remarks as warnings.
fn validate(
    system: System,
    recipe: &Recipe,
    scheduler_file: &Path,
    jobs: u32,
    scheduler_job: bool,
    out: &mut Output,
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
    out.warnings
        .extend(deprecations.iter().map(ToString::to_string));
    let valid = params.validate(system).map_err(jq)?;
    let per_worker = valid.worker_memory().bytes();
    let minimum = crate::settings::worker::MIN_MEMORY_LIMIT;
    if !scheduler_job && per_worker < minimum {
        bail!(
            "memory {} for {} worker process(es) gives each {per_worker} bytes, below the {} MiB a worker needs to start; give more memory per job or fewer processes",
            valid.memory(),
            valid.processes(),
            minimum >> 20
        );
    }
    out.warnings.extend(valid.warnings().iter().cloned());
    Ok(valid)
}

fn recipe(p: &ParamArgs, hooks: &crate::Hooks) -> anyhow::Result<Recipe> {
    Ok(Recipe {
        params: explicit_layer(p).pairs,
        config: p.config.clone(),
        shoal: shoal_command(hooks)?,
    })
}

fn script(a: &ScriptArgs, hooks: &crate::Hooks, out: &mut Output) -> anyhow::Result<()> {
    let file = absolute(
        a.scheduler_file
            .as_deref()
            .unwrap_or(Path::new("scheduler.json")),
    )?;
    let recipe = recipe(&a.params, hooks)?;
    let valid = validate(a.params.system, &recipe, &file, a.jobs, a.scheduler, out)?;
    let job = if a.scheduler {
        render_scheduler(&valid)
    } else {
        render(&valid)
    };
    if a.json {
        let lifetime = valid.lifetime();
        let figures = serde_json::json!({
            "system": valid.system(),
            "script": job.script(),
            "submit_description": job.submit_description("job.sh"),
            "name": valid.params().name,
            "cores": valid.cores(),
            "processes": valid.processes(),
            "nthreads": valid.nthreads(),
            "memory": valid.memory().bytes(),
            "worker_memory": valid.worker_memory().bytes(),
            "walltime_s": valid.walltime().seconds(),
            "lifetime_s": lifetime.map(|l| l.lifetime_s),
            "lifetime_stagger_s": lifetime.map(|l| l.stagger_s),
            "jobs": valid.array(),
            "warnings": out.warnings,
        });
        out.json = Some(figures);
        return Ok(());
    }
    match job.submit_description("job.sh") {
        Some(description) => write!(
            out.text,
            "# ---- submit description (job.sub) ----\n{description}\n# ---- script (job.sh) ----\n{}",
            job.script()
        )?,
        None => write!(out.text, "{}", job.script())?,
    }
    Ok(())
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
    let dir = scripts_dir(scheduler_file);
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

fn submit(a: &SubmitArgs, hooks: &crate::Hooks, out: &mut Output) -> anyhow::Result<()> {
    let file = absolute(&a.scheduler_file)?;
    let recipe = recipe(&a.params, hooks)?;
    let system = a.params.system;
    // Validate before touching anything: nothing is submitted when this fails.
    let valid = validate(system, &recipe, &file, a.jobs, a.scheduler, out)?;
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
        None => State::new(system),
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
        writeln!(out.text, "submitted the scheduler job {}", records[0].job)?;
        state.scheduler_job = records.into_iter().next();
    } else {
        let records = submit_job(&valid, &render(&valid), &file, "workers")?;
        let ids: Vec<String> = records.iter().map(|r| r.job.to_string()).collect();
        writeln!(
            out.text,
            "submitted {} worker job(s) as {}: {}",
            records.len(),
            records[0].array,
            ids.join(" ")
        )?;
        state.workers.extend(records);
        state.workers_recipe = Some(recipe);
    }
    save_state(&path, &state)?;
    Ok(())
}

fn states(state: &State, records: &[&JobRecord]) -> anyhow::Result<Vec<JobState>> {
    let ids: Vec<JobId> = records.iter().map(|r| r.job.clone()).collect();
    job_states(&ProcessRunner, state.system, &ids)
}

/// The state of each of `ids`, in order; a job the batch system no longer lists has
/// finished.
///
/// # Errors
/// The status command failed.
pub(super) fn job_states(
    runner: &dyn shoal_jobqueue::CommandRunner,
    system: System,
    ids: &[JobId],
) -> anyhow::Result<Vec<JobState>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = shoal_jobqueue::status(runner, system, ids).map_err(jq)?;
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

fn status(a: &JobsStatusArgs, out: &mut Output) -> anyhow::Result<()> {
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
        out.json =
            Some(serde_json::json!({"system": state.system, "worker_jobs": live, "jobs": jobs}));
        return Ok(());
    }
    writeln!(out.text, "{} jobs for {}", state.system, file.display())?;
    writeln!(
        out.text,
        "{:<10} {:<20} {:<12} {:>8}",
        "ROLE", "JOB", "STATE", "AGE (s)"
    )?;
    let t = now();
    for ((role, r), s) in records.iter().zip(&found) {
        writeln!(
            out.text,
            "{:<10} {:<20} {:<12} {:>8}",
            role,
            r.job.to_string(),
            s.to_string(),
            t.saturating_sub(r.submitted)
        )?;
    }
    Ok(())
}

fn cancel(a: &CancelArgs, out: &mut Output) -> anyhow::Result<()> {
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
    writeln!(
        out.text,
        "cancelled {} job(s): {}",
        ids.len(),
        names.join(" ")
    )?;
    if a.all {
        remove_state(&file)?;
    } else {
        state.workers.clear();
        save_state(&path, &state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::state::record;
    use super::scale::choose_cancellations;
    use super::*;

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

    /// `shoal jobqueue ARGS` parsed as the CLI parses it.
    #[cfg(feature = "cli")]
    fn parse(args: &[&str]) -> Result<JobqueueCommand, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: JobqueueCommand,
        }
        Cli::try_parse_from(std::iter::once("shoal jobqueue").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[cfg(feature = "cli")]
    #[test]
    fn capture_returns_the_script_and_figures_as_json() {
        let hooks = crate::Hooks {
            worker_command: Some(vec![
                "/opt/py/bin/python".into(),
                "-m".into(),
                "shoal".into(),
            ]),
            ..crate::Hooks::default()
        };
        let args = [
            "script",
            "slurm",
            "--cores",
            "4",
            "--memory",
            "8GiB",
            "--walltime",
            "01:00:00",
            "--param",
            "processes=2",
            "--scheduler-file",
            "/shared/s.json",
            "--json",
        ];
        let command = parse(&args).unwrap_or_else(|e| panic!("{e}"));
        let out = capture(command, &hooks).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.text, "");
        let v = out.json.unwrap_or_else(|| panic!("no JSON"));
        assert_eq!(v["processes"], 2);
        assert_eq!(v["nthreads"], 2);
        assert_eq!(v["walltime_s"], 3600);
        assert_eq!(v["memory"], 8u64 << 30);
        assert!(v["lifetime_s"].as_u64().is_some(), "{v}");
        let script = v["script"].as_str().unwrap_or_default();
        assert!(
            script.contains("/opt/py/bin/python -m shoal worker --scheduler-file /shared/s.json"),
            "{script}"
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    fn capture_reports_bad_values_and_bad_flags() {
        let hooks = crate::Hooks::default();
        let command = parse(&["script", "slurm", "--cores", "1", "--memory", "10 GB"])
            .unwrap_or_else(|e| panic!("{e}"));
        let err = capture(command, &hooks).expect_err("bad memory");
        assert!(matches!(err, LaunchError::Failed { .. }), "{err:?}");
        assert!(err.to_string().contains("\"10 GB\""), "{err}");
        let err = parse(&["script", "nosuch"]).expect_err("system");
        assert!(err.to_string().contains("nosuch"), "{err}");
    }
}
