//! Submit, cancel and status through a fake `CommandRunner` replaying the
//! documented outputs of batch systems that cannot be installed here.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::path::Path;

use shoal_jobqueue::{
    cancel, render, status, submit, CommandOutput, CommandRunner, Invocation, JobId, JobParams,
    JobState, Layer, SubmitError, System, ValidParams,
};

/// Replays one result per call and records every invocation.
#[derive(Default)]
struct Fake {
    replies: RefCell<VecDeque<io::Result<CommandOutput>>>,
    calls: RefCell<Vec<Invocation>>,
}

impl Fake {
    fn reply(self, code: Option<i32>, stdout: &str, stderr: &str) -> Fake {
        self.replies.borrow_mut().push_back(Ok(CommandOutput {
            code,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
        }));
        self
    }

    fn missing(self) -> Fake {
        self.replies.borrow_mut().push_back(Err(io::Error::new(
            io::ErrorKind::NotFound,
            "No such file or directory",
        )));
        self
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.borrow().iter().map(|c| c.argv.clone()).collect()
    }
}

impl CommandRunner for Fake {
    fn run(&self, cmd: &Invocation) -> io::Result<CommandOutput> {
        self.calls.borrow_mut().push(cmd.clone());
        self.replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(io::Error::other("unexpected call")))
    }
}

fn valid(system: System, extra: &[(&str, &str)]) -> ValidParams {
    let mut layer = Layer::new("test")
        .with("cores", "4")
        .with("memory", "16GB")
        .with("scheduler_file", "/shared/s.json")
        .with("disk", "1GB")
        .with("array", "2");
    for (k, v) in extra {
        layer.push(*k, *v);
    }
    JobParams::from_layers(&[layer])
        .and_then(|(p, _)| p.validate(system))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn id(s: &str, n: u64) -> JobId {
    JobId {
        id: s.to_string(),
        number: n,
        cluster: None,
    }
}

#[test]
fn slurm_submit_behind_a_site_wrapper() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("job.sh");
    let fake = Fake::default().reply(
        Some(0),
        "Project quota 2024: 50% used\nSubmitted batch job 77\n",
        "",
    );
    let v = valid(System::Slurm, &[]);
    let job = submit(&fake, &v, &render(&v), &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job, id("77", 77));
    assert_eq!(
        fake.calls(),
        [vec!["sbatch".to_string(), path.display().to_string()]]
    );
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(written.contains("#SBATCH --array=1-2"), "{written}");
}

#[test]
fn user_pattern_is_used_for_the_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fake = Fake::default().reply(Some(0), "accepted 2024\nticket 31337 queued\n", "");
    let v = valid(System::Slurm, &[("job_id_pattern", "ticket {id} queued")]);
    let job =
        submit(&fake, &v, &render(&v), &dir.path().join("j.sh")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job.number, 31337);
}

#[test]
fn failing_submit_shows_command_status_stdout_stderr() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("my job.sh");
    let fake = Fake::default().reply(
        Some(1),
        "wrapper: checking quota\n",
        "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n",
    );
    let v = valid(System::Slurm, &[]);
    let err = submit(&fake, &v, &render(&v), &path).expect_err("fails");
    let msg = err.to_string();
    let expected = format!(
        "`sbatch '{}'` failed with exit status 1\n--- stdout ---\nwrapper: checking quota\n--- stderr ---\nsbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
        path.display()
    );
    assert_eq!(msg, expected);

    let fake = Fake::default().reply(None, "", "");
    let err = submit(&fake, &v, &render(&v), &path)
        .expect_err("killed")
        .to_string();
    assert!(err.contains("no exit status (killed by a signal)"), "{err}");
}

#[test]
fn missing_client_tools_say_what_to_load() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (system, program, hint) in [
        (System::Slurm, "sbatch", "module load slurm"),
        (System::Pbs, "qsub", "module load pbs"),
        (System::Lsf, "bsub", "module load lsf"),
        (System::HtCondor, "condor_submit", "HTCondor client tools"),
    ] {
        let fake = Fake::default().missing();
        let v = valid(system, &[]);
        let err = submit(&fake, &v, &render(&v), &dir.path().join("j.sh")).expect_err("missing");
        assert!(matches!(err, SubmitError::NotFound { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("`{program}` was not found on PATH")) && msg.contains(hint),
            "{msg}"
        );
    }
}

#[test]
fn lsf_reads_the_script_on_stdin() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("j.sh");
    let fake = Fake::default().reply(
        Some(0),
        "Job <654321> is submitted to default queue <normal>.\n",
        "",
    );
    let v = valid(System::Lsf, &[]);
    let job = submit(&fake, &v, &render(&v), &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job, id("654321", 654_321));
    let call = fake.calls.borrow()[0].clone();
    assert_eq!(call.argv, ["bsub"]);
    assert_eq!(call.stdin_file.as_deref(), Some(path.as_path()));
    assert_eq!(call.display(), format!("bsub < {}", path.display()));
}

#[test]
fn condor_writes_description_and_script() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("j.sh");
    let fake = Fake::default().reply(
        Some(0),
        "Submitting job(s)..\n2 job(s) submitted to cluster 123.\n",
        "",
    );
    let v = valid(System::HtCondor, &[]);
    let job = submit(&fake, &v, &render(&v), &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job, id("123", 123));
    let sub = dir.path().join("j.sub");
    assert_eq!(
        fake.calls(),
        [vec!["condor_submit".to_string(), sub.display().to_string()]]
    );
    let description = std::fs::read_to_string(&sub).unwrap_or_default();
    assert!(
        description.starts_with(&format!("executable = {}\n", path.display())),
        "{description}"
    );
    assert!(description.ends_with("queue 2\n"), "{description}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o111, 0o111, "the script must be executable");
    }
}

#[test]
fn pbs_keeps_the_server_suffix_for_qstat_and_qdel() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fake = Fake::default()
        .reply(Some(0), "654321[].admin01\n", "")
        .reply(
            Some(35),
            "Job id            Name             User              Time Use S Queue\n\
             ----------------  ---------------- ----------------  -------- - -----\n\
             654321[].admin01  shoal-worker     alice                    0 B workq\n",
            "qstat: Unknown Job Id 1.admin01\n",
        )
        .reply(Some(0), "", "");
    let v = valid(System::Pbs, &[]);
    let job =
        submit(&fake, &v, &render(&v), &dir.path().join("j.sh")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job, id("654321[].admin01", 654_321));
    let gone = id("1.admin01", 1);
    let states =
        status(&fake, System::Pbs, &[job.clone(), gone.clone()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        states,
        [
            (job.clone(), JobState::Running),
            (gone.clone(), JobState::Finished)
        ]
    );
    cancel(&fake, System::Pbs, std::slice::from_ref(&job)).unwrap_or_else(|e| panic!("{e}"));
    let calls = fake.calls();
    assert_eq!(calls[1], ["qstat", "-x", "654321[].admin01", "1.admin01"]);
    assert_eq!(calls[2], ["qdel", "654321[].admin01"]);
}

#[test]
fn status_failure_that_is_not_an_unknown_job_is_an_error() {
    let fake = Fake::default().reply(
        Some(1),
        "",
        "squeue: error: Unable to contact slurm controller\n",
    );
    let err = status(&fake, System::Slurm, &[id("5", 5)])
        .expect_err("down")
        .to_string();
    assert!(
        err.contains("exit status 1") && err.contains("Unable to contact slurm controller"),
        "{err}"
    );
    let fake = Fake::default().reply(
        Some(1),
        "",
        "slurm_load_jobs error: Invalid job id specified\n",
    );
    let states = status(&fake, System::Slurm, &[id("5", 5)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(states[0].1, JobState::Finished);
}

#[test]
fn status_of_each_system_from_documented_outputs() {
    let cases: [(System, &str, JobState); 4] = [
        (System::Slurm, "42_1 RUNNING\n42_2 PENDING\n", JobState::Running),
        (
            System::Sge,
            "job-ID prior name user state submit/start at queue slots ja-task-ID\n\
             -------------------------------------------------------------------\n\
             42 0.000 shoal-work alice qw 01/01/2024 10:00:00 1 1-2:1\n",
            JobState::Pending,
        ),
        (
            System::Lsf,
            "JOBID USER STAT QUEUE FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME\n42 alice EXIT normal login1 node1 w Jan 1 10:00\n",
            JobState::Finished,
        ),
        (System::HtCondor, "42.0 5\n42.1 5\n", JobState::Unknown("held".into())),
    ];
    for (system, out, want) in cases {
        let fake = Fake::default().reply(Some(0), out, "");
        let states = status(&fake, system, &[id("42", 42)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(states[0].1, want, "{system}");
    }
}

#[test]
fn slurm_cancel_groups_by_cluster() {
    let fake = Fake::default()
        .reply(Some(0), "", "")
        .reply(Some(0), "", "");
    let mut a = id("1", 1);
    a.cluster = Some("c1".into());
    let b = id("2", 2);
    let mut c = id("3", 3);
    c.cluster = Some("c1".into());
    cancel(&fake, System::Slurm, &[a, b, c]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fake.calls(),
        [vec!["scancel", "-M", "c1", "1", "3"], vec!["scancel", "2"]]
    );
}

#[test]
fn script_path_is_written_before_submitting() {
    let fake = Fake::default();
    let v = valid(System::Slurm, &[]);
    let err =
        submit(&fake, &v, &render(&v), Path::new("/nonexistent/dir/j.sh")).expect_err("unwritable");
    assert!(
        err.to_string()
            .contains("could not write the job script /nonexistent/dir/j.sh"),
        "{err}"
    );
    assert!(fake.calls().is_empty(), "nothing may be submitted");
}
