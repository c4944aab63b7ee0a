//! Validation: the only way to a [`ValidParams`], the only input that
//! scripts are rendered and jobs submitted from.
//!
//! # Defaults
//! `processes`: all cores up to 4, else the smallest divisor of `cores` that
//! is at least sqrt(cores) (24 cores -> 6 processes of 4 threads), as
//! dask-jobqueue does. `walltime`: 00:30:00 (LSF 00:30). Lifetime: see
//! [`crate::lifetime`].
//!
//! # Required header lines
//! `job_directives_skip` drops any generated line containing one of its
//! entries, except the lines shoal relies on, whose removal is an error:
//! - the job name on every system (`-J`, `-N`, `batch_name`): shoal finds
//!   its jobs in queue listings by it;
//! - the array request when `array > 1` (`--array`, `-J`/`-t`, LSF's
//!   `name[1-N]`) and HTCondor's `queue`;
//! - HTCondor's `environment` line, which carries the cluster and process
//!   numbers into the worker names.
//!
//! Resource lines (`--mem`, `select=`, `-M`, walltime) may be skipped: site
//! policies often reject them, and `job_extra_directives` replaces them.

use crate::jobid::IdPattern;
use crate::lifetime::{self, Lifetime, LifetimeSetting};
use crate::memory::Memory;
use crate::params::{JobParams, ParamError};
use crate::system::{HeaderLine, System};
use crate::walltime::Walltime;

/// Parameters checked for one system. Only [`JobParams::validate`] makes
/// one, so holding one proves the checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidParams {
    system: System,
    params: JobParams,
    cores: u32,
    memory: Memory,
    processes: u32,
    walltime: Walltime,
    lifetime: Option<Lifetime>,
    scheduler_file: String,
    id_pattern: Option<IdPattern>,
    header: Vec<String>,
    trailer: Vec<String>,
    warnings: Vec<String>,
}

/// The default number of worker processes for `cores` (module doc).
pub fn default_processes(cores: u32) -> u32 {
    if cores <= 4 {
        return cores.max(1);
    }
    (1..=cores)
        .find(|p| cores % p == 0 && u64::from(*p) * u64::from(*p) >= u64::from(cores))
        .unwrap_or(cores)
}

const NAME_FORM: &str =
    "a letter followed by letters, digits, '_', '.' or '-', at most 64 characters";

fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn single_line(key: &'static str, value: Option<&str>) -> Result<(), ParamError> {
    match value {
        Some(v) if v.contains(['\n', '\r']) => Err(ParamError::Newline {
            key,
            value: v.to_string(),
        }),
        _ => Ok(()),
    }
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> ParamError {
    ParamError::InvalidValue {
        key,
        value: value.to_string(),
        origin: "after merging all sources".to_string(),
        expected,
    }
}

impl JobParams {
    /// Checks these parameters for `system` and resolves every default.
    ///
    /// # Errors
    /// A [`ParamError`] naming the bad value and the fix: missing `cores`,
    /// `memory`, `scheduler_file` (or HTCondor `disk`), `processes` above or
    /// not dividing `cores`, a bad walltime or name, a value spanning lines,
    /// a lifetime that does not fit the walltime, or a skip entry that
    /// matches a required line.
    pub fn validate(self, system: System) -> Result<ValidParams, ParamError> {
        let backend = system.backend();
        let cores = self.cores.ok_or(ParamError::Missing {
            key: "cores",
            system,
            hint: "give the cores per job, e.g. cores=24",
        })?;
        let memory = self.memory.ok_or(ParamError::Missing {
            key: "memory",
            system,
            hint: "give the memory per job, e.g. memory=100GB (decimal) or memory=96GiB (binary)",
        })?;
        let processes = match self.processes {
            None => default_processes(cores),
            Some(p) if p > cores => {
                return Err(ParamError::ProcessesExceedCores {
                    processes: p,
                    cores,
                })
            }
            Some(p) if cores % p != 0 => {
                let divisors: Vec<String> = (1..=cores)
                    .filter(|d| cores % d == 0)
                    .map(|d| d.to_string())
                    .collect();
                return Err(ParamError::ProcessesDoNotDivideCores {
                    processes: p,
                    cores,
                    divisors: divisors.join(", "),
                });
            }
            Some(p) => p,
        };
        let style = backend.walltime_style();
        let walltime_text = self.walltime.as_deref().unwrap_or(style.default_walltime());
        let walltime =
            Walltime::parse(walltime_text, style).map_err(|source| ParamError::Time {
                key: "walltime",
                origin: "after merging all sources".to_string(),
                source,
            })?;
        if !valid_name(&self.name) {
            return Err(invalid("name", &self.name, NAME_FORM));
        }
        let scheduler_file = self.scheduler_file.clone().ok_or(ParamError::Missing {
            key: "scheduler_file",
            system,
            hint: "give the path of the scheduler file on a file system the compute nodes share, e.g. scheduler_file=$HOME/.shoal/scheduler-1.json",
        })?;
        if system == System::HtCondor && self.disk.is_none() {
            return Err(ParamError::Missing {
                key: "disk",
                system,
                hint: "HTCondor needs the scratch disk per job, e.g. disk=10GB",
            });
        }
        if !self.shebang.starts_with("#!") {
            return Err(invalid(
                "shebang",
                &self.shebang,
                "a line starting with #!, e.g. #!/usr/bin/env bash",
            ));
        }
        for (key, value) in [
            ("queue", self.queue.as_deref()),
            ("account", self.account.as_deref()),
            ("log_directory", self.log_directory.as_deref()),
            ("local_directory", self.local_directory.as_deref()),
            ("interface", self.interface.as_deref()),
            ("python", self.python.as_deref()),
            ("shebang", Some(self.shebang.as_str())),
            ("resource_spec", self.resource_spec.as_deref()),
            ("scheduler_file", Some(scheduler_file.as_str())),
            ("shoal", Some(self.shoal.as_str())),
        ] {
            single_line(key, value)?;
        }
        for v in &self.job_extra_directives {
            single_line("job_extra_directives", Some(v))?;
        }
        for v in &self.job_directives_skip {
            single_line("job_directives_skip", Some(v))?;
        }
        let setting = match (self.lifetime, self.lifetime_stagger) {
            (None, None) => LifetimeSetting::Auto,
            (None, Some(s)) => {
                return Err(invalid(
                    "lifetime_stagger",
                    &s.to_string(),
                    "an explicit lifetime as well (the automatic lifetime has its own stagger)",
                ))
            }
            (Some(0), _) => LifetimeSetting::Disabled,
            (Some(l), s) => LifetimeSetting::Fixed(Lifetime {
                lifetime_s: l,
                stagger_s: s.unwrap_or(0),
            }),
        };
        let lifetime = lifetime::resolve(setting, walltime.seconds())?;
        let id_pattern = self
            .job_id_pattern
            .as_deref()
            .map(IdPattern::parse)
            .transpose()?;

        let mut valid = ValidParams {
            system,
            params: self,
            cores,
            memory,
            processes,
            walltime,
            lifetime,
            scheduler_file,
            id_pattern,
            header: Vec::new(),
            trailer: Vec::new(),
            warnings: Vec::new(),
        };
        let skips = &valid.params.job_directives_skip;
        let mut header = filter(backend.header(&valid), skips)?;
        for extra in &valid.params.job_extra_directives {
            header.push(match backend.directive_prefix() {
                Some(prefix) if !extra.starts_with(prefix) => format!("{prefix} {extra}"),
                _ => extra.clone(),
            });
        }
        let trailer = filter(backend.trailer(&valid), skips)?;
        let mut warnings = ignored_parameters(&valid);
        warnings.extend(backend.warnings(&valid));
        valid.header = header;
        valid.trailer = trailer;
        valid.warnings = warnings;
        Ok(valid)
    }
}

/// Drops optional lines matching a skip entry; a required match is an error.
fn filter(lines: Vec<HeaderLine>, skips: &[String]) -> Result<Vec<String>, ParamError> {
    let mut kept = Vec::with_capacity(lines.len());
    for line in lines {
        match skips.iter().find(|s| line.text.contains(s.as_str())) {
            None => kept.push(line.text),
            Some(skip) => {
                if let Some(reason) = line.required {
                    return Err(ParamError::RequiredLineSkipped {
                        skip: skip.clone(),
                        line: line.text,
                        reason,
                    });
                }
            }
        }
    }
    Ok(kept)
}

fn ignored_parameters(v: &ValidParams) -> Vec<String> {
    let p = &v.params;
    let s = v.system;
    let mut out = Vec::new();
    let mut ignored = |key: &str, given: bool, used_by: &[System]| {
        if given && !used_by.contains(&s) {
            out.push(format!("`{key}` is ignored for {s}"));
        }
    };
    ignored("job_cpu", p.job_cpu.is_some(), &[System::Slurm]);
    ignored("job_mem", p.job_mem.is_some(), &[System::Slurm]);
    ignored("disk", p.disk.is_some(), &[System::HtCondor]);
    ignored(
        "resource_spec",
        p.resource_spec.is_some(),
        &[System::Pbs, System::Torque, System::Sge],
    );
    let batch = [
        System::Slurm,
        System::Pbs,
        System::Torque,
        System::Sge,
        System::Lsf,
    ];
    ignored("queue", p.queue.is_some(), &batch);
    ignored("account", p.account.is_some(), &batch);
    out
}

impl ValidParams {
    /// The system these parameters were checked for.
    pub fn system(&self) -> System {
        self.system
    }
    /// The parameters as given (read-only).
    pub fn params(&self) -> &JobParams {
        &self.params
    }
    /// Cores per job.
    pub fn cores(&self) -> u32 {
        self.cores
    }
    /// Memory per job.
    pub fn memory(&self) -> Memory {
        self.memory
    }
    /// Worker processes per job.
    pub fn processes(&self) -> u32 {
        self.processes
    }
    /// Threads per worker process.
    pub fn nthreads(&self) -> u32 {
        self.cores / self.processes
    }
    /// Memory limit of one worker process (`memory / processes`).
    pub fn worker_memory(&self) -> Memory {
        self.memory.per_process(self.processes)
    }
    /// The walltime.
    pub fn walltime(&self) -> Walltime {
        self.walltime
    }
    /// The worker lifetime, if any.
    pub fn lifetime(&self) -> Option<Lifetime> {
        self.lifetime
    }
    /// Number of array elements (1 = no array).
    pub fn array(&self) -> u32 {
        self.params.array
    }
    /// Whether one submission starts an array.
    pub fn is_array(&self) -> bool {
        self.params.array > 1
    }
    /// The scheduler file workers read.
    pub fn scheduler_file(&self) -> &str {
        &self.scheduler_file
    }
    /// The user's job-id pattern, if any.
    pub fn job_id_pattern(&self) -> Option<&IdPattern> {
        self.id_pattern.as_ref()
    }
    /// Final header lines: generated, skipped, then extra directives.
    pub fn header(&self) -> &[String] {
        &self.header
    }
    /// Lines after the header (HTCondor's `queue N`).
    pub fn trailer(&self) -> &[String] {
        &self.trailer
    }
    /// Remarks to print before submitting (ignored parameters, SGE needs).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Layer;

    fn params(pairs: &[(&str, &str)]) -> JobParams {
        let mut layer = Layer::new("test")
            .with("cores", "8")
            .with("memory", "16GB")
            .with("scheduler_file", "/shared/s.json");
        for (k, v) in pairs {
            layer.push(*k, *v);
        }
        JobParams::from_layers(&[layer])
            .map(|(p, _)| p)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(system: System, pairs: &[(&str, &str)]) -> Result<ValidParams, ParamError> {
        params(pairs).validate(system)
    }

    fn err(system: System, pairs: &[(&str, &str)]) -> String {
        check(system, pairs)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn default_processes_is_about_sqrt_and_divides() {
        for (cores, want) in [
            (1, 1),
            (2, 2),
            (4, 4),
            (6, 3),
            (8, 4),
            (12, 4),
            (16, 4),
            (24, 6),
            (36, 6),
            (7, 7),
            (128, 16),
        ] {
            let p = default_processes(cores);
            assert_eq!(p, want, "cores {cores}");
            assert!(p <= cores && cores % p == 0);
        }
    }

    #[test]
    fn resolved_values() {
        let v = check(System::Slurm, &[("processes", "2")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v.processes(), v.nthreads()), (2, 4));
        assert_eq!(v.worker_memory().bytes(), 8_000_000_000);
        assert_eq!(v.walltime().seconds(), 1800);
        assert_eq!(v.lifetime().map(|l| l.lifetime_s), Some(1665));
        let v = check(System::Lsf, &[("walltime", "01:30")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.walltime().seconds(), 5400);
        let v = check(System::Slurm, &[("lifetime", "0")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.lifetime(), None);
    }

    #[test]
    fn processes_must_fit_cores() {
        let e = err(System::Slurm, &[("processes", "9")]);
        assert!(e.contains("processes = 9 is greater than cores = 8"), "{e}");
        let e = err(System::Slurm, &[("processes", "3")]);
        assert!(
            e.contains("does not divide") && e.contains("1, 2, 4, 8"),
            "{e}"
        );
    }

    #[test]
    fn required_parameters() {
        let missing = |p: JobParams, s| p.validate(s).expect_err("missing").to_string();
        let e = missing(JobParams::default(), System::Slurm);
        assert!(e.contains("`cores` is required for slurm"), "{e}");
        let mut p = params(&[]);
        p.scheduler_file = None;
        assert!(missing(p, System::Pbs).contains("`scheduler_file` is required"));
        let e = err(System::HtCondor, &[]);
        assert!(
            e.contains("`disk` is required for htcondor") && e.contains("disk=10GB"),
            "{e}"
        );
        assert!(check(System::HtCondor, &[("disk", "10GB")]).is_ok());
    }

    #[test]
    fn walltime_is_checked_per_system() {
        let e = err(System::Slurm, &[("walltime", "25:61:00")]);
        assert!(e.contains("\"25:61:00\"") && e.contains("H:MM:SS"), "{e}");
        let e = err(System::Sge, &[("walltime", "1 day")]);
        assert!(e.contains("\"1 day\""), "{e}");
        assert!(err(System::Slurm, &[("walltime", "30:00")]).contains("ambiguous"));
        assert!(check(System::Lsf, &[("walltime", "30:00")]).is_ok());
    }

    #[test]
    fn skipping_required_lines_is_an_error() {
        let e = err(System::Slurm, &[("job_directives_skip", "-J")]);
        assert!(
            e.contains("\"-J\"") && e.contains("`#SBATCH -J shoal-worker`"),
            "{e}"
        );
        let e = err(
            System::Slurm,
            &[("array", "3"), ("job_directives_skip", "array")],
        );
        assert!(
            e.contains("`#SBATCH --array=1-3`") && e.contains("instead of the array"),
            "{e}"
        );
        let e = err(
            System::Pbs,
            &[("array", "3"), ("job_directives_skip", "-J")],
        );
        assert!(e.contains("`#PBS -J 1-3`"), "{e}");
        let e = err(
            System::Lsf,
            &[("array", "2"), ("job_directives_skip", "shoal-worker[")],
        );
        assert!(e.contains("#BSUB -J \"shoal-worker[1-2]\""), "{e}");
        let e = err(
            System::HtCondor,
            &[("disk", "1GB"), ("job_directives_skip", "queue")],
        );
        assert!(e.contains("`queue`"), "{e}");
        let e = err(
            System::HtCondor,
            &[("disk", "1GB"), ("job_directives_skip", "environment")],
        );
        assert!(e.contains("worker names"), "{e}");
    }

    #[test]
    fn skip_then_extra_directives() {
        let v = check(
            System::Slurm,
            &[
                ("job_directives_skip", "--mem"),
                ("job_extra_directives", "--mem-per-cpu=2G"),
                ("job_extra_directives", "#SBATCH --exclusive"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let h = v.header();
        assert!(!h.iter().any(|l| l.contains("--mem=")), "{h:?}");
        assert_eq!(
            &h[h.len() - 2..],
            ["#SBATCH --mem-per-cpu=2G", "#SBATCH --exclusive"]
        );
    }

    #[test]
    fn names_lines_and_lifetimes() {
        let e = err(System::Slurm, &[("name", "my job")]);
        assert!(
            e.contains("\"my job\"") && e.contains("a letter followed by"),
            "{e}"
        );
        let e = err(System::Slurm, &[("queue", "a\nrm -rf ~")]);
        assert!(e.contains("`queue` must be a single line"), "{e}");
        let e = err(System::Slurm, &[("lifetime_stagger", "60")]);
        assert!(
            e.contains("lifetime_stagger") && e.contains("explicit lifetime"),
            "{e}"
        );
        let e = err(System::Slurm, &[("lifetime", "1800")]);
        assert!(e.contains("reaches the walltime"), "{e}");
        let e = err(System::Slurm, &[("shebang", "/bin/bash")]);
        assert!(e.contains("#!"), "{e}");
    }

    #[test]
    fn warnings_for_ignored_and_missing_requests() {
        let v = check(System::Pbs, &[("job_cpu", "4")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.warnings(), ["`job_cpu` is ignored for pbs"]);
        let v = check(System::Sge, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            v.warnings().iter().any(|w| w.contains("h_vmem=")),
            "{:?}",
            v.warnings()
        );
        assert!(
            v.warnings().iter().any(|w| w.contains("-pe smp 8")),
            "{:?}",
            v.warnings()
        );
        let v = check(System::Slurm, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(v.warnings().is_empty());
    }
}
