//! PBS Pro / OpenPBS and Torque: `#PBS` directives, `qsub` / `qstat` / `qdel`.
//!
//! The two differ in the resource request (`select=` against `nodes=:ppn=`),
//! the array option (`-J` against `-t`), its index variable
//! (`PBS_ARRAY_INDEX` against `PBS_ARRAYID`) and `qstat -x` (history in
//! PBS Pro, XML in Torque). Job ids keep the server suffix.

use std::path::Path;

use crate::jobid::{IdForm, JobId};
use crate::shell::quote_directive as quote;
use crate::status::JobState;
use crate::submit::Invocation;
use crate::system::{
    directive, leading_number, push_optional, rows, BatchSystem, HeaderLine, System,
    ARRAY_REQUIRED, NAME_REQUIRED,
};
use crate::validate::ValidParams;

/// PBS Pro (`torque == false`) or Torque.
#[derive(Debug, Clone, Copy)]
pub struct Pbs {
    torque: bool,
}

/// PBS Pro / OpenPBS.
pub const PBS_PRO: Pbs = Pbs { torque: false };
/// Torque.
pub const TORQUE: Pbs = Pbs { torque: true };

const P: &str = "#PBS";

/// Maps the `S` column of `qstat`.
pub fn state(word: &str) -> JobState {
    match word {
        "Q" | "H" | "W" | "T" | "S" | "U" => JobState::Pending,
        "R" | "E" | "B" => JobState::Running,
        "F" | "X" | "C" => JobState::Finished,
        other => JobState::Unknown(other.to_string()),
    }
}

impl BatchSystem for Pbs {
    fn system(&self) -> System {
        if self.torque {
            System::Torque
        } else {
            System::Pbs
        }
    }

    fn directive_prefix(&self) -> Option<&'static str> {
        Some(P)
    }

    fn header(&self, p: &ValidParams) -> Vec<HeaderLine> {
        let g = p.params();
        let mut h = vec![HeaderLine::required(
            directive(P, format!("-N {}", g.name)),
            NAME_REQUIRED,
        )];
        push_optional(&mut h, P, "-q", g.queue.as_deref());
        push_optional(&mut h, P, "-A", g.account.as_deref());
        let resources = match (&g.resource_spec, self.torque) {
            (Some(spec), _) => spec.clone(),
            (None, false) => format!("select=1:ncpus={}:mem={}", p.cores(), p.memory().pbs()),
            (None, true) => format!("nodes=1:ppn={},mem={}", p.cores(), p.memory().pbs()),
        };
        h.push(HeaderLine::optional(directive(
            P,
            format!("-l {}", quote(&resources)),
        )));
        h.push(HeaderLine::optional(directive(
            P,
            format!("-l walltime={}", p.walltime().hms()),
        )));
        if let Some(log) = &g.log_directory {
            let dir = quote(&format!("{log}/")).into_owned();
            h.push(HeaderLine::optional(directive(P, format!("-e {dir}"))));
            h.push(HeaderLine::optional(directive(P, format!("-o {dir}"))));
        }
        if p.is_array() {
            let flag = if self.torque { "-t" } else { "-J" };
            h.push(HeaderLine::required(
                directive(P, format!("{flag} 1-{}", p.array())),
                ARRAY_REQUIRED,
            ));
        }
        h
    }

    fn job_id_var(&self, _array: bool) -> &'static str {
        // `1234.server` or `1234[2].server` -> `1234`.
        "${PBS_JOBID%%[.[]*}"
    }

    fn array_index_var(&self) -> &'static str {
        if self.torque {
            "${PBS_ARRAYID}"
        } else {
            "${PBS_ARRAY_INDEX}"
        }
    }

    fn submit_command(&self, script: &Path) -> Invocation {
        Invocation::new(["qsub".to_string(), script.display().to_string()])
    }

    fn cancel_command(&self, ids: &[JobId]) -> Invocation {
        Invocation::new(std::iter::once("qdel".to_string()).chain(ids.iter().map(|i| i.id.clone())))
    }

    fn status_command(&self, ids: &[JobId]) -> Invocation {
        let mut argv = vec!["qstat".to_string()];
        if !self.torque {
            argv.push("-x".to_string());
        }
        argv.extend(ids.iter().map(|i| i.id.clone()));
        Invocation::new(argv)
    }

    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState> {
        // Job id, Name, User, Time Use, S, Queue.
        rows(stdout)
            .filter(|r| r.len() >= 6 && leading_number(r[0]) == Some(id.number))
            .map(|r| state(r[4]))
            .collect()
    }

    fn unknown_job_markers(&self) -> &'static [&'static str] {
        &["Unknown Job Id", "Job has finished"]
    }

    fn submit_phrases(&self) -> &'static [&'static str] {
        &["Request {id} was submitted"]
    }

    fn id_form(&self) -> IdForm {
        IdForm::WholeToken
    }

    /// `1234[].admin01` becomes `1234[2].admin01`.
    fn array_element(&self, id: &JobId, index: u32) -> JobId {
        let element = match id.id.find("[]") {
            Some(at) => format!("{}[{index}]{}", &id.id[..at], &id.id[at + 2..]),
            None => {
                let digits =
                    id.id.len() - id.id.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                format!("{}[{index}]{}", &id.id[..digits], &id.id[digits..])
            }
        };
        JobId {
            id: element,
            ..id.clone()
        }
    }

    fn client_tools(&self) -> &'static str {
        if self.torque {
            "the Torque client tools (qsub, qstat, qdel) must be on PATH; load them first, e.g. `module load torque`"
        } else {
            "the PBS client tools (qsub, qstat, qdel) must be on PATH; load them first, e.g. `module load pbs`"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        JobId {
            id: s.into(),
            number: leading_number(s).unwrap_or(0),
            cluster: None,
        }
    }

    /// `qstat -x` as documented for PBS Pro, an array and a plain job.
    #[test]
    fn qstat_table() {
        let out = "\
Job id            Name             User              Time Use S Queue
----------------  ---------------- ----------------  -------- - -----
654321[].admin01  shoal-worker     alice                    0 B workq
654322.admin01    shoal-worker     alice             00:00:05 R workq
654323.admin01    shoal-worker     alice             00:01:00 F workq
";
        assert_eq!(
            PBS_PRO.parse_status(out, &id("654321[].admin01")),
            [JobState::Running]
        );
        assert_eq!(
            PBS_PRO.parse_status(out, &id("654322.admin01")),
            [JobState::Running]
        );
        assert_eq!(
            PBS_PRO.parse_status(out, &id("654323.admin01")),
            [JobState::Finished]
        );
        assert!(PBS_PRO.parse_status(out, &id("1.admin01")).is_empty());
        assert_eq!(state("Q"), JobState::Pending);
        assert_eq!(state("M"), JobState::Unknown("M".into()));
    }

    #[test]
    fn torque_and_pbs_commands() {
        let ids = [id("654321.admin01")];
        assert_eq!(
            PBS_PRO.status_command(&ids).argv,
            ["qstat", "-x", "654321.admin01"]
        );
        assert_eq!(
            TORQUE.status_command(&ids).argv,
            ["qstat", "654321.admin01"]
        );
        assert_eq!(TORQUE.cancel_command(&ids).argv, ["qdel", "654321.admin01"]);
        assert_eq!(TORQUE.array_index_var(), "${PBS_ARRAYID}");
        assert_eq!(PBS_PRO.array_index_var(), "${PBS_ARRAY_INDEX}");
    }
}
