//! The job script: shebang, header, prologue, worker command, epilogue.
//!
//! The worker command is
//! `{python} {shoal} worker --scheduler-file F --scheduler-file-timeout T
//! --nthreads N --memory-limit BYTES --name NAME --death-timeout D
//! [--nworkers P] [--local-directory D] [--interface I]
//! [--lifetime S --lifetime-stagger S] {worker_extra_args}`, durations in
//! whole seconds and the memory limit in bytes. `python` and `shoal` are
//! shell text written as given (a prefix such as `srun -n 1 -c 4`); the
//! scheduler file and local directory are quoted so that `$VAR`s still
//! expand; everything else is quoted literally.
//!
//! The worker name is `{name}-{job id}` or, in an array,
//! `{name}-{array job id}-{index}`, read from the batch system's variables
//! when the job runs, so every element of every job gets its own.

use crate::shell::{quote, quote_expanding};
use crate::system::System;
use crate::validate::ValidParams;

/// A rendered job: the script, and for HTCondor the submit description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobScript {
    system: System,
    script: String,
    /// HTCondor only: the description without its `executable` line.
    description: Option<Vec<String>>,
}

impl JobScript {
    /// The system this job is for.
    pub fn system(&self) -> System {
        self.system
    }

    /// The shell script.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// HTCondor's submit description running the script stored at
    /// `script_path`; `None` for the other systems.
    pub fn submit_description(&self, script_path: &str) -> Option<String> {
        let lines = self.description.as_ref()?;
        let mut out = format!("executable = {script_path}\n");
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        Some(out)
    }
}

/// The worker name as a shell word, e.g.
/// `"shoal-worker-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}"`.
pub fn worker_name(p: &ValidParams) -> String {
    let b = p.system().backend();
    let name = &p.params().name;
    if p.is_array() {
        format!("\"{name}-{}-{}\"", b.job_id_var(true), b.array_index_var())
    } else {
        format!("\"{name}-{}\"", b.job_id_var(false))
    }
}

/// The command that starts this job's workers (module doc).
pub fn worker_command(p: &ValidParams) -> String {
    let g = p.params();
    let mut words: Vec<String> = Vec::new();
    if let Some(prefix) = &g.python {
        words.push(prefix.clone());
    }
    words.push(g.shoal.clone());
    words.push("worker".to_string());
    let mut arg = |flag: &str, value: String| {
        words.push(flag.to_string());
        words.push(value);
    };
    arg(
        "--scheduler-file",
        quote_expanding(p.scheduler_file()).into_owned(),
    );
    arg(
        "--scheduler-file-timeout",
        g.scheduler_file_timeout.to_string(),
    );
    arg("--nthreads", p.nthreads().to_string());
    arg("--memory-limit", p.worker_memory().bytes().to_string());
    arg("--name", worker_name(p));
    arg("--death-timeout", g.death_timeout.to_string());
    if p.processes() > 1 {
        arg("--nworkers", p.processes().to_string());
    }
    if let Some(dir) = &g.local_directory {
        arg("--local-directory", quote_expanding(dir).into_owned());
    }
    if let Some(iface) = &g.interface {
        arg("--interface", quote(iface).into_owned());
    }
    if let Some(l) = p.lifetime() {
        arg("--lifetime", l.lifetime_s.to_string());
        arg("--lifetime-stagger", l.stagger_s.to_string());
    }
    words.extend(g.worker_extra_args.iter().map(|a| quote(a).into_owned()));
    words.join(" ")
}

/// The command of a scheduler job (the Dask docs' "one scheduler job, many
/// worker jobs" pattern): `{python} {shoal} scheduler --scheduler-file F
/// [--interface I]`, quoted as in [`worker_command`].
pub fn scheduler_command(p: &ValidParams) -> String {
    let g = p.params();
    let mut words: Vec<String> = Vec::new();
    if let Some(prefix) = &g.python {
        words.push(prefix.clone());
    }
    words.push(g.shoal.clone());
    words.push("scheduler".to_string());
    words.push("--scheduler-file".to_string());
    words.push(quote_expanding(p.scheduler_file()).into_owned());
    if let Some(iface) = &g.interface {
        words.push("--interface".to_string());
        words.push(quote(iface).into_owned());
    }
    words.join(" ")
}

/// Renders the worker job for its system.
pub fn render(p: &ValidParams) -> JobScript {
    render_with(p, &worker_command(p))
}

/// Renders a job that runs the scheduler ([`scheduler_command`]) with the
/// same header, prologue and epilogue a worker job would get.
pub fn render_scheduler(p: &ValidParams) -> JobScript {
    render_with(p, &scheduler_command(p))
}

fn render_with(p: &ValidParams, command: &str) -> JobScript {
    let g = p.params();
    let condor = p.system() == System::HtCondor;
    let mut s = String::new();
    s.push_str(&g.shebang);
    s.push_str("\n\n");
    if condor {
        s.push_str("# Resources and the array are in the HTCondor submit description.\n");
    } else {
        for line in p.header() {
            s.push_str(line);
            s.push('\n');
        }
    }
    s.push('\n');
    for line in &g.job_script_prologue {
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(command);
    s.push('\n');
    for line in &g.job_script_epilogue {
        s.push_str(line);
        s.push('\n');
    }
    let description = condor.then(|| p.header().iter().chain(p.trailer()).cloned().collect());
    JobScript {
        system: p.system(),
        script: s,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{JobParams, Layer};
    use std::process::Command;

    fn valid(system: System, pairs: &[(&str, &str)]) -> ValidParams {
        let mut layer = Layer::new("test")
            .with("cores", "4")
            .with("memory", "16GB")
            .with("scheduler_file", "$HOME/shoal sched.json")
            .with("disk", "1GB");
        for (k, v) in pairs {
            layer.push(*k, *v);
        }
        JobParams::from_layers(&[layer])
            .and_then(|(p, _)| p.validate(system))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn worker_command_flags() {
        let v = valid(
            System::Slurm,
            &[
                ("processes", "2"),
                ("interface", "ib0"),
                ("python", "srun -n 1 -c 4"),
            ],
        );
        let cmd = worker_command(&v);
        assert!(cmd.starts_with("srun -n 1 -c 4 shoal worker --scheduler-file \"$HOME/shoal sched.json\" --scheduler-file-timeout 300 --nthreads 2 --memory-limit 8000000000 --name \"shoal-worker-${SLURM_JOB_ID}\" --death-timeout 60 --nworkers 2"), "{cmd}");
        assert!(
            cmd.contains("--interface ib0 --lifetime 1665 --lifetime-stagger 45"),
            "{cmd}"
        );
        let v = valid(System::Slurm, &[("processes", "1"), ("lifetime", "0")]);
        let cmd = worker_command(&v);
        assert!(
            !cmd.contains("--nworkers") && !cmd.contains("--lifetime"),
            "{cmd}"
        );
    }

    #[test]
    fn array_workers_get_distinct_names() {
        let names: Vec<String> = System::ALL
            .into_iter()
            .map(|s| worker_name(&valid(s, &[("array", "3")])))
            .collect();
        assert_eq!(
            names[0],
            "\"shoal-worker-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}\""
        );
        assert_eq!(
            names[1],
            "\"shoal-worker-${PBS_JOBID%%[.[]*}-${PBS_ARRAY_INDEX}\""
        );
        assert_eq!(names[3], "\"shoal-worker-${JOB_ID}-${SGE_TASK_ID}\"");
        assert_eq!(names[4], "\"shoal-worker-${LSB_JOBID}-${LSB_JOBINDEX}\"");
    }

    /// Runs the rendered script with `shoal` replaced by printf, in the
    /// environment a batch system would give array element 2, and checks
    /// the argv the worker would get.
    fn run_script(system: System, env: &[(&str, &str)]) -> Option<Vec<String>> {
        let v = valid(
            system,
            &[
                ("array", "3"),
                ("shoal", "printf '%s\\n'"),
                ("worker_extra_args", "--resources"),
                ("worker_extra_args", "GPU=1 MEM='2'"),
                ("local_directory", "$SCRATCH/x y"),
            ],
        );
        let script = render(&v);
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script.script())
            .env("HOME", "/h")
            .env("SCRATCH", "/s");
        for (k, val) in env {
            cmd.env(k, val);
        }
        let out = cmd.output().ok()?; // no bash: nothing to check against
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect(),
        )
    }

    fn value_after(argv: &[String], flag: &str) -> String {
        let i = argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing: {argv:?}"));
        argv[i + 1].clone()
    }

    #[test]
    fn scripts_give_workers_the_right_arguments_in_a_shell() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: [(System, Env, &str); 6] = [
            (
                System::Slurm,
                &[("SLURM_ARRAY_JOB_ID", "77"), ("SLURM_ARRAY_TASK_ID", "2")],
                "shoal-worker-77-2",
            ),
            (
                System::Pbs,
                &[("PBS_JOBID", "1234[2].admin01"), ("PBS_ARRAY_INDEX", "2")],
                "shoal-worker-1234-2",
            ),
            (
                System::Torque,
                &[("PBS_JOBID", "1234[2].srv"), ("PBS_ARRAYID", "2")],
                "shoal-worker-1234-2",
            ),
            (
                System::Sge,
                &[("JOB_ID", "9"), ("SGE_TASK_ID", "2")],
                "shoal-worker-9-2",
            ),
            (
                System::Lsf,
                &[("LSB_JOBID", "5"), ("LSB_JOBINDEX", "2")],
                "shoal-worker-5-2",
            ),
            (
                System::HtCondor,
                &[
                    ("SHOAL_CONDOR_CLUSTER", "123"),
                    ("SHOAL_CONDOR_PROCESS", "2"),
                ],
                "shoal-worker-123-2",
            ),
        ];
        for (system, env, name) in cases {
            let Some(argv) = run_script(system, env) else {
                return;
            };
            assert_eq!(argv[0], "worker", "{system}: {argv:?}");
            assert_eq!(value_after(&argv, "--name"), name, "{system}");
            assert_eq!(
                value_after(&argv, "--scheduler-file"),
                "/h/shoal sched.json"
            );
            assert_eq!(value_after(&argv, "--local-directory"), "/s/x y");
            assert_eq!(&argv[argv.len() - 2..], ["--resources", "GPU=1 MEM='2'"]);
        }
    }

    #[test]
    fn scheduler_job_runs_the_scheduler() {
        let v = valid(
            System::Slurm,
            &[("interface", "ib0"), ("shoal", "/opt/shoal")],
        );
        let job = render_scheduler(&v);
        let last = job.script().lines().last().unwrap_or_default();
        assert_eq!(
            last,
            "/opt/shoal scheduler --scheduler-file \"$HOME/shoal sched.json\" --interface ib0"
        );
        assert!(job.script().contains("#SBATCH -J shoal-worker\n"));
        assert!(!job.script().contains(" worker "));
    }

    #[test]
    fn condor_description_runs_the_script() {
        let v = valid(System::HtCondor, &[("array", "3")]);
        let job = render(&v);
        let sub = job.submit_description("/home/u/job.sh").unwrap_or_default();
        assert!(sub.starts_with("executable = /home/u/job.sh\n"), "{sub}");
        assert!(sub.ends_with("queue 3\n"), "{sub}");
        assert!(
            sub.contains("request_memory = 15259\n") && sub.contains("request_disk = 976563\n"),
            "{sub}"
        );
        assert!(!job.script().contains("request_cpus"));
        assert_eq!(
            render(&valid(System::Slurm, &[])).submit_description("x"),
            None
        );
    }
}
