//! Job parameters, with dask-jobqueue's names, built from key/value layers.
//!
//! A [`Layer`] is the key/value pairs of one source (the config file's table
//! for a system, then the command line). Layers apply in order, so a later
//! layer overrides an earlier one key by key. Inside one layer a scalar key
//! may appear once; a list key (`job_extra_directives`, `job_directives_skip`,
//! `job_script_prologue`, `job_script_epilogue`, `worker_extra_args`) may be
//! repeated, each occurrence adding one element, and a layer that names a
//! list replaces the earlier layers' list. An empty value clears an optional
//! value or (alone) a list. Each `worker_extra_args` element is one argument.
//!
//! Old names (`job_extra`, `env_extra`, `header_skip`, `extra`) are accepted
//! and reported as [`Deprecation`]s for the caller to print; `project` is
//! SGE's and LSF's word for `account` and is accepted silently.

use std::fmt;

use thiserror::Error;

use crate::jobid::{IdPattern, JobIdError};
use crate::keys::{self, KEYS, LIST_KEYS};
use crate::lifetime::LifetimeError;
use crate::memory::{LsfUnit, Memory, MemoryError};
use crate::system::System;
use crate::walltime::{parse_duration, WalltimeError};

/// Key/value pairs from one source, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// Where the pairs come from, for messages (`command line`,
    /// `/home/u/.config/shoal/jobqueue.toml [slurm]`).
    pub origin: String,
    /// The pairs, keys as written.
    pub pairs: Vec<(String, String)>,
}

impl Layer {
    /// An empty layer from `origin`.
    pub fn new(origin: impl Into<String>) -> Layer {
        Layer {
            origin: origin.into(),
            pairs: Vec::new(),
        }
    }

    /// Adds one pair.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.push((key.into(), value.into()));
    }

    /// Adds one pair, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Layer {
        self.push(key, value);
        self
    }
}

/// An old parameter name that was accepted, to be printed as a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The old name as given.
    pub old: String,
    /// The name to use instead.
    pub new: &'static str,
    /// Where it was given.
    pub origin: String,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parameter `{}` ({}) is deprecated; use `{}` instead",
            self.old, self.origin, self.new
        )
    }
}

/// Why parameters were rejected, while building or validating them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    /// A key that is neither a parameter nor an old alias.
    #[error("unknown parameter `{key}` ({origin}){}", match suggestion { Some(s) => format!("; did you mean `{s}`?"), None => format!("; valid parameters: {}", KEYS.join(", ")) })]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Where it was given.
        origin: String,
        /// The closest valid name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A scalar parameter given twice in one source.
    #[error(
        "parameter `{key}` given twice ({origin}): as `{first}` and as `{second}`; give it once"
    )]
    DuplicateKey {
        /// The canonical name.
        key: &'static str,
        /// The first spelling.
        first: String,
        /// The second spelling.
        second: String,
        /// Where.
        origin: String,
    },
    /// A value of the wrong shape.
    #[error("invalid value {value:?} for `{key}` ({origin}); expected {expected}")]
    InvalidValue {
        /// The canonical name.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Where it was given (`validation` for values checked later).
        origin: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A memory size that does not parse.
    #[error("`{key}` ({origin}): {source}")]
    Memory {
        /// The canonical name.
        key: &'static str,
        /// Where it was given.
        origin: String,
        /// The parse error, naming value and forms.
        source: MemoryError,
    },
    /// A walltime or duration that does not parse.
    #[error("`{key}` ({origin}): {source}")]
    Time {
        /// The canonical name.
        key: &'static str,
        /// Where it was given.
        origin: String,
        /// The parse error, naming value and forms.
        source: WalltimeError,
    },
    /// A required parameter is missing.
    #[error("`{key}` is required for {system}: {hint}")]
    Missing {
        /// The canonical name.
        key: &'static str,
        /// The target system.
        system: System,
        /// What to give, with an example.
        hint: &'static str,
    },
    /// More worker processes than cores.
    #[error("processes = {processes} is greater than cores = {cores}: each worker process needs at least one core; use processes <= {cores}")]
    ProcessesExceedCores {
        /// Worker processes per job.
        processes: u32,
        /// Cores per job.
        cores: u32,
    },
    /// Cores cannot be shared evenly among the worker processes.
    #[error("processes = {processes} does not divide cores = {cores} evenly, so some cores would sit idle; use one of: {divisors}")]
    ProcessesDoNotDivideCores {
        /// Worker processes per job.
        processes: u32,
        /// Cores per job.
        cores: u32,
        /// The process counts that work.
        divisors: String,
    },
    /// `job_directives_skip` would drop a line shoal relies on.
    #[error("job_directives_skip entry {skip:?} would remove the required line `{line}` ({reason}); make the entry more specific")]
    RequiredLineSkipped {
        /// The skip entry.
        skip: String,
        /// The line it matches.
        line: String,
        /// Why the line is required.
        reason: &'static str,
    },
    /// A line break in a value that becomes part of one line.
    #[error("`{key}` must be a single line, got {value:?}")]
    Newline {
        /// The canonical name.
        key: &'static str,
        /// The value as given.
        value: String,
    },
    /// An explicit lifetime that does not fit the walltime.
    #[error(transparent)]
    Lifetime(#[from] LifetimeError),
    /// A malformed `job_id_pattern`.
    #[error(transparent)]
    JobIdPattern(#[from] JobIdError),
}

/// Job parameters as given, before validation. Field names are
/// dask-jobqueue's; see [`crate::validate`] for the checks and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobParams {
    /// Cores per job (required).
    pub cores: Option<u32>,
    /// Memory per job (required).
    pub memory: Option<Memory>,
    /// Worker processes per job; default about sqrt(cores).
    pub processes: Option<u32>,
    /// Job name, also the stem of worker names (`shoal-worker`).
    pub name: String,
    /// Queue / partition.
    pub queue: Option<String>,
    /// Account (SLURM, PBS) or project (SGE, LSF).
    pub account: Option<String>,
    /// Walltime as written; parsed per system (default 00:30:00).
    pub walltime: Option<String>,
    /// Extra header lines, appended after skipping.
    pub job_extra_directives: Vec<String>,
    /// Substrings: generated header lines containing one are dropped.
    pub job_directives_skip: Vec<String>,
    /// Shell lines before the worker command.
    pub job_script_prologue: Vec<String>,
    /// Shell lines after the worker command.
    pub job_script_epilogue: Vec<String>,
    /// Directory for the batch system's stdout/stderr files.
    pub log_directory: Option<String>,
    /// Worker scratch directory (`$VAR`s expand).
    pub local_directory: Option<String>,
    /// Network interface workers listen on.
    pub interface: Option<String>,
    /// Seconds a worker waits for a lost scheduler (60).
    pub death_timeout: u64,
    /// Extra worker arguments, one element per argument.
    pub worker_extra_args: Vec<String>,
    /// Command prefix before the worker command, shell text as written
    /// (e.g. `srun -n 1 -c 4`).
    pub python: Option<String>,
    /// First script line (`#!/usr/bin/env bash`).
    pub shebang: String,
    /// Raw resource request (PBS `-l`, SGE `-l`).
    pub resource_spec: Option<String>,
    /// SLURM: overrides `--cpus-per-task`.
    pub job_cpu: Option<u32>,
    /// SLURM: overrides `--mem`.
    pub job_mem: Option<Memory>,
    /// LSF: the unit of `-M` (KB).
    pub lsf_units: LsfUnit,
    /// HTCondor: scratch disk per job (required there).
    pub disk: Option<Memory>,
    /// Jobs started by one submission, as an array (1 = no array).
    pub array: u32,
    /// The scheduler file workers read (required; `$VAR`s expand).
    pub scheduler_file: Option<String>,
    /// Seconds a worker waits for the scheduler file to appear (300).
    pub scheduler_file_timeout: u64,
    /// The command that starts a worker, shell text as written (`shoal`).
    pub shoal: String,
    /// Worker lifetime in seconds: `None` derives it from the walltime,
    /// `Some(0)` disables it.
    pub lifetime: Option<u64>,
    /// Stagger for an explicit lifetime, in seconds (0).
    pub lifetime_stagger: Option<u64>,
    /// Text around the job id in the submit output, with `{id}`.
    pub job_id_pattern: Option<String>,
}

impl Default for JobParams {
    fn default() -> JobParams {
        JobParams {
            cores: None,
            memory: None,
            processes: None,
            name: "shoal-worker".to_string(),
            queue: None,
            account: None,
            walltime: None,
            job_extra_directives: Vec::new(),
            job_directives_skip: Vec::new(),
            job_script_prologue: Vec::new(),
            job_script_epilogue: Vec::new(),
            log_directory: None,
            local_directory: None,
            interface: None,
            death_timeout: 60,
            worker_extra_args: Vec::new(),
            python: None,
            shebang: "#!/usr/bin/env bash".to_string(),
            resource_spec: None,
            job_cpu: None,
            job_mem: None,
            lsf_units: LsfUnit::KB,
            disk: None,
            array: 1,
            scheduler_file: None,
            scheduler_file_timeout: 300,
            shoal: "shoal".to_string(),
            lifetime: None,
            lifetime_stagger: None,
            job_id_pattern: None,
        }
    }
}

fn opt(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

impl JobParams {
    /// Defaults overridden by `layers`, in order.
    ///
    /// # Errors
    /// The first [`ParamError`] met: unknown key (with a suggestion),
    /// duplicate key, or a value of the wrong shape.
    pub fn from_layers(layers: &[Layer]) -> Result<(JobParams, Vec<Deprecation>), ParamError> {
        let mut params = JobParams::default();
        let mut warnings = Vec::new();
        for layer in layers {
            warnings.extend(params.apply(layer)?);
        }
        Ok((params, warnings))
    }

    /// Applies one layer over the current values; returns the deprecated
    /// names it used.
    ///
    /// # Errors
    /// As [`JobParams::from_layers`].
    pub fn apply(&mut self, layer: &Layer) -> Result<Vec<Deprecation>, ParamError> {
        let origin = &layer.origin;
        let mut warnings = Vec::new();
        let mut scalars: Vec<(&'static str, &str)> = Vec::new();
        let mut lists: Vec<&'static str> = Vec::new();
        for (key, value) in &layer.pairs {
            let Some((canon, deprecated)) = keys::canonical(key) else {
                return Err(ParamError::UnknownKey {
                    key: key.clone(),
                    origin: origin.clone(),
                    suggestion: keys::closest(key, KEYS),
                });
            };
            if deprecated {
                warnings.push(Deprecation {
                    old: key.clone(),
                    new: canon,
                    origin: origin.clone(),
                });
            }
            if LIST_KEYS.contains(&canon) {
                let first = !lists.contains(&canon);
                if first {
                    lists.push(canon);
                }
                if let Some(list) = self.list_mut(canon) {
                    if first {
                        list.clear();
                    }
                    if !value.is_empty() {
                        list.push(value.clone());
                    }
                }
                continue;
            }
            if let Some((_, first)) = scalars.iter().find(|(k, _)| *k == canon) {
                return Err(ParamError::DuplicateKey {
                    key: canon,
                    first: first.to_string(),
                    second: key.clone(),
                    origin: origin.clone(),
                });
            }
            scalars.push((canon, key));
            self.set_scalar(canon, value, origin)?;
        }
        Ok(warnings)
    }

    fn list_mut(&mut self, key: &str) -> Option<&mut Vec<String>> {
        Some(match key {
            "job_extra_directives" => &mut self.job_extra_directives,
            "job_directives_skip" => &mut self.job_directives_skip,
            "job_script_prologue" => &mut self.job_script_prologue,
            "job_script_epilogue" => &mut self.job_script_epilogue,
            "worker_extra_args" => &mut self.worker_extra_args,
            _ => return None,
        })
    }

    fn set_scalar(
        &mut self,
        key: &'static str,
        value: &str,
        origin: &str,
    ) -> Result<(), ParamError> {
        let invalid = |expected| ParamError::InvalidValue {
            key,
            value: value.to_string(),
            origin: origin.to_string(),
            expected,
        };
        let positive = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("a whole number of at least 1"))
        };
        let memory = || {
            Memory::parse(value).map_err(|source| ParamError::Memory {
                key,
                origin: origin.to_string(),
                source,
            })
        };
        let duration = || {
            parse_duration(value).map_err(|source| ParamError::Time {
                key,
                origin: origin.to_string(),
                source,
            })
        };
        match key {
            "cores" => self.cores = Some(positive()?),
            "memory" => self.memory = Some(memory()?),
            "processes" => self.processes = Some(positive()?),
            "name" => self.name = value.to_string(),
            "queue" => self.queue = opt(value),
            "account" => self.account = opt(value),
            "walltime" => self.walltime = opt(value),
            "log_directory" => self.log_directory = opt(value),
            "local_directory" => self.local_directory = opt(value),
            "interface" => self.interface = opt(value),
            "death_timeout" => self.death_timeout = duration()?,
            "python" => self.python = opt(value),
            "shebang" => self.shebang = value.to_string(),
            "resource_spec" => self.resource_spec = opt(value),
            "job_cpu" => self.job_cpu = Some(positive()?),
            "job_mem" => self.job_mem = Some(memory()?),
            "lsf_units" => {
                self.lsf_units = value.parse().map_err(|()| invalid(LsfUnit::ACCEPTED))?;
            }
            "disk" => self.disk = Some(memory()?),
            "array" => self.array = positive()?,
            "scheduler_file" => self.scheduler_file = opt(value),
            "scheduler_file_timeout" => self.scheduler_file_timeout = duration()?,
            "shoal" => self.shoal = value.to_string(),
            "lifetime" => {
                self.lifetime = match value {
                    "auto" | "" => None,
                    _ => Some(duration()?),
                }
            }
            "lifetime_stagger" => self.lifetime_stagger = Some(duration()?),
            "job_id_pattern" => {
                if !value.is_empty() {
                    IdPattern::parse(value)?;
                }
                self.job_id_pattern = opt(value);
            }
            _ => {
                return Err(ParamError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                    suggestion: None,
                })
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Layer {
        Layer::new("command line")
    }

    #[test]
    fn typed_values_and_defaults() {
        let layer = cli()
            .with("cores", "8")
            .with("memory", "16GB")
            .with("walltime", "01:00:00")
            .with("array", "3")
            .with("lsf_units", "mb")
            .with("death_timeout", "2m")
            .with("lifetime", "0");
        let (p, warnings) = JobParams::from_layers(&[layer]).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty());
        assert_eq!(p.cores, Some(8));
        assert_eq!(p.memory.map(Memory::bytes), Some(16_000_000_000));
        assert_eq!(p.array, 3);
        assert_eq!(p.lsf_units, LsfUnit::MB);
        assert_eq!(p.death_timeout, 120);
        assert_eq!(p.lifetime, Some(0));
        assert_eq!(p.name, "shoal-worker");
        assert_eq!(p.shebang, "#!/usr/bin/env bash");
        assert_eq!(JobParams::default().death_timeout, 60);
    }

    #[test]
    fn old_aliases_work_and_warn() {
        let layer = cli()
            .with("job_extra", "--exclusive")
            .with("env_extra", "module load python")
            .with("header_skip", "--mem")
            .with("extra", "--resources")
            .with("extra", "GPU=1")
            .with("project", "proj1");
        let (p, warnings) = JobParams::from_layers(&[layer]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.job_extra_directives, ["--exclusive"]);
        assert_eq!(p.job_script_prologue, ["module load python"]);
        assert_eq!(p.job_directives_skip, ["--mem"]);
        assert_eq!(p.worker_extra_args, ["--resources", "GPU=1"]);
        assert_eq!(p.account.as_deref(), Some("proj1"));
        let olds: Vec<_> = warnings.iter().map(|w| (w.old.as_str(), w.new)).collect();
        assert_eq!(
            olds,
            [
                ("job_extra", "job_extra_directives"),
                ("env_extra", "job_script_prologue"),
                ("header_skip", "job_directives_skip"),
                ("extra", "worker_extra_args"),
                ("extra", "worker_extra_args"),
            ]
        );
        let text = warnings[0].to_string();
        assert!(
            text.contains("`job_extra` (command line) is deprecated")
                && text.contains("`job_extra_directives`"),
            "{text}"
        );
    }

    #[test]
    fn later_layers_override_and_replace_lists() {
        let config = Layer::new("config")
            .with("queue", "normal")
            .with("cores", "4")
            .with("job_script_prologue", "a")
            .with("job_script_prologue", "b")
            .with("job_extra_directives", "--x");
        let cmd = cli()
            .with("queue", "debug")
            .with("job_script_prologue", "c")
            .with("job_extra_directives", "");
        let (p, _) = JobParams::from_layers(&[config, cmd]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.queue.as_deref(), Some("debug"));
        assert_eq!(p.cores, Some(4));
        assert_eq!(p.job_script_prologue, ["c"]);
        assert!(p.job_extra_directives.is_empty());
    }

    #[test]
    fn unknown_keys_suggest_the_closest_name() {
        let err = JobParams::from_layers(&[cli().with("corse", "4")]).expect_err("typo");
        assert_eq!(
            err,
            ParamError::UnknownKey {
                key: "corse".into(),
                origin: "command line".into(),
                suggestion: Some("cores")
            }
        );
        assert!(err.to_string().contains("did you mean `cores`?"));
        let err = JobParams::from_layers(&[cli().with("xyzzy", "4")])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("valid parameters: cores, memory"), "{err}");
    }

    #[test]
    fn duplicates_and_bad_values_are_errors() {
        let err = JobParams::from_layers(&[cli().with("account", "a").with("project", "b")])
            .expect_err("dup");
        assert!(
            matches!(err, ParamError::DuplicateKey { key: "account", .. }),
            "{err}"
        );
        for (k, v, needle) in [
            ("cores", "0", "at least 1"),
            ("cores", "four", "at least 1"),
            ("memory", "10 GB", "\"10 GB\""),
            ("lsf_units", "MiB", "LSF_UNIT_FOR_LIMITS"),
            ("death_timeout", "soon", "\"soon\""),
            ("job_id_pattern", "no placeholder", "{id}"),
        ] {
            let err = JobParams::from_layers(&[cli().with(k, v)])
                .expect_err(k)
                .to_string();
            assert!(err.contains(needle) && err.contains(k), "{err}");
        }
    }
}
