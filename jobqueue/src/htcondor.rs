//! HTCondor: a submit description (`key = value`) plus the job script it
//! runs, `condor_submit` / `condor_q` / `condor_rm`.
//!
//! The submit description runs the script as its `executable` (the path is
//! filled in by [`crate::script::JobScript::submit_description`]) and hands
//! the cluster and process numbers (`$(Cluster)`, `$(Process)`, the array
//! index) to it through `environment` as `SHOAL_CONDOR_CLUSTER` and
//! `SHOAL_CONDOR_PROCESS`, so worker names work as on other systems.
//! HTCondor has no walltime of its own: a `periodic_remove` expression
//! removes a job that has run longer than the walltime. `queue` and
//! `account` do not apply.

use std::path::Path;

use crate::jobid::JobId;
use crate::status::JobState;
use crate::submit::Invocation;
use crate::system::{
    leading_number, rows, BatchSystem, HeaderLine, System, ARRAY_REQUIRED, NAME_REQUIRED,
};
use crate::validate::ValidParams;

/// HTCondor.
#[derive(Debug, Clone, Copy)]
pub struct HtCondor;

/// Maps the numeric `JobStatus` attribute.
pub fn state(code: &str) -> JobState {
    match code {
        "1" | "7" => JobState::Pending,
        "2" | "6" => JobState::Running,
        "3" | "4" => JobState::Finished,
        "5" => JobState::Unknown("held".to_string()),
        other => JobState::Unknown(format!("JobStatus {other}")),
    }
}

impl BatchSystem for HtCondor {
    fn system(&self) -> System {
        System::HtCondor
    }

    fn directive_prefix(&self) -> Option<&'static str> {
        None
    }

    fn header(&self, p: &ValidParams) -> Vec<HeaderLine> {
        let g = p.params();
        let mut h = vec![
            HeaderLine::optional("universe = vanilla"),
            HeaderLine::required(format!("batch_name = {}", g.name), NAME_REQUIRED),
            HeaderLine::required(
                "environment = \"SHOAL_CONDOR_CLUSTER=$(Cluster) SHOAL_CONDOR_PROCESS=$(Process)\"",
                "worker names are built from these variables",
            ),
            HeaderLine::optional(format!("request_cpus = {}", p.cores())),
            HeaderLine::optional(format!("request_memory = {}", p.memory().mib_ceil())),
        ];
        if let Some(disk) = g.disk {
            h.push(HeaderLine::optional(format!(
                "request_disk = {}",
                disk.kib_ceil()
            )));
        }
        h.push(HeaderLine::optional(format!(
            "periodic_remove = (JobStatus == 2) && ((time() - EnteredCurrentStatus) > {})",
            p.walltime().seconds()
        )));
        if let Some(log) = &g.log_directory {
            let stem = format!("{log}/{}-$(Cluster)", g.name);
            h.push(HeaderLine::optional(format!(
                "output = {stem}-$(Process).out"
            )));
            h.push(HeaderLine::optional(format!(
                "error = {stem}-$(Process).err"
            )));
            h.push(HeaderLine::optional(format!("log = {stem}.log")));
        }
        h
    }

    fn trailer(&self, p: &ValidParams) -> Vec<HeaderLine> {
        if p.is_array() {
            vec![HeaderLine::required(
                format!("queue {}", p.array()),
                ARRAY_REQUIRED,
            )]
        } else {
            vec![HeaderLine::required(
                "queue",
                "without it HTCondor submits nothing",
            )]
        }
    }

    fn job_id_var(&self, _array: bool) -> &'static str {
        "${SHOAL_CONDOR_CLUSTER}"
    }

    fn array_index_var(&self) -> &'static str {
        "${SHOAL_CONDOR_PROCESS}"
    }

    fn submit_command(&self, submit_file: &Path) -> Invocation {
        Invocation::new([
            "condor_submit".to_string(),
            submit_file.display().to_string(),
        ])
    }

    fn cancel_command(&self, ids: &[JobId]) -> Invocation {
        Invocation::new(
            std::iter::once("condor_rm".to_string()).chain(ids.iter().map(|i| i.id.clone())),
        )
    }

    fn status_command(&self, ids: &[JobId]) -> Invocation {
        let mut argv = vec!["condor_q".to_string()];
        argv.extend(ids.iter().map(|i| i.id.clone()));
        argv.extend(["-af:j".to_string(), "JobStatus".to_string()]);
        Invocation::new(argv)
    }

    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState> {
        // `ClusterId.ProcId JobStatus` per line.
        rows(stdout)
            .filter(|r| r.len() >= 2 && leading_number(r[0]) == Some(id.number))
            .map(|r| state(r[1]))
            .collect()
    }

    fn unknown_job_markers(&self) -> &'static [&'static str] {
        &[]
    }

    fn submit_phrases(&self) -> &'static [&'static str] {
        &["submitted to cluster {id}"]
    }

    /// `Queue N` numbers the processes of a cluster from 0.
    fn array_element(&self, id: &JobId, index: u32) -> JobId {
        JobId {
            id: format!("{}.{}", id.number, index.saturating_sub(1)),
            ..id.clone()
        }
    }

    fn client_tools(&self) -> &'static str {
        "the HTCondor client tools (condor_submit, condor_q, condor_rm) must be on PATH; run on a submit node or load them, e.g. `module load htcondor`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condor_q_autoformat() {
        let out = "123.0 2\n123.1 1\n123.2 5\n124.0 4\n";
        let id = |n| JobId {
            id: format!("{n}"),
            number: n,
            cluster: None,
        };
        assert_eq!(
            HtCondor.parse_status(out, &id(123)),
            [
                JobState::Running,
                JobState::Pending,
                JobState::Unknown("held".into())
            ]
        );
        assert_eq!(HtCondor.parse_status(out, &id(124)), [JobState::Finished]);
        assert_eq!(
            HtCondor.status_command(&[id(123)]).argv,
            ["condor_q", "123", "-af:j", "JobStatus"]
        );
    }
}
