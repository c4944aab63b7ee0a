//! IBM Spectrum LSF: `#BSUB` directives, `bsub < script` / `bjobs` / `bkill`.
//!
//! The script goes to `bsub` on stdin so that LSF reads its `#BSUB` lines.
//! An array is part of the job name (`-J "name[1-3]"`), so that one line is
//! required both as name and as array request. `-M` is in the site's
//! `lsf_units` (KB unless `LSF_UNIT_FOR_LIMITS` says otherwise).

use std::path::Path;

use crate::jobid::JobId;
use crate::shell::quote_directive as quote;
use crate::status::JobState;
use crate::submit::Invocation;
use crate::system::{
    directive, leading_number, push_optional, rows, BatchSystem, HeaderLine, System,
    ARRAY_REQUIRED, NAME_REQUIRED,
};
use crate::validate::ValidParams;
use crate::walltime::WalltimeStyle;

/// LSF.
#[derive(Debug, Clone, Copy)]
pub struct Lsf;

const P: &str = "#BSUB";

/// Maps the `STAT` column of `bjobs`.
pub fn state(word: &str) -> JobState {
    match word {
        "PEND" | "PSUSP" | "USUSP" | "SSUSP" | "WAIT" => JobState::Pending,
        "RUN" | "PROV" => JobState::Running,
        "DONE" | "EXIT" | "ZOMBI" => JobState::Finished,
        other => JobState::Unknown(other.to_string()),
    }
}

impl BatchSystem for Lsf {
    fn system(&self) -> System {
        System::Lsf
    }

    fn walltime_style(&self) -> WalltimeStyle {
        WalltimeStyle::HoursMinutes
    }

    fn directive_prefix(&self) -> Option<&'static str> {
        Some(P)
    }

    fn header(&self, p: &ValidParams) -> Vec<HeaderLine> {
        let g = p.params();
        let mut h = vec![if p.is_array() {
            // Always quoted, as LSF's documentation writes arrays.
            let name = format!("\"{}[1-{}]\"", g.name, p.array());
            HeaderLine::required(directive(P, format!("-J {name}")), ARRAY_REQUIRED)
        } else {
            HeaderLine::required(directive(P, format!("-J {}", g.name)), NAME_REQUIRED)
        }];
        if let Some(log) = &g.log_directory {
            let stem = if p.is_array() { "%J_%I" } else { "%J" };
            h.push(HeaderLine::optional(directive(
                P,
                format!("-e {}", quote(&format!("{log}/{}-{stem}.err", g.name))),
            )));
            h.push(HeaderLine::optional(directive(
                P,
                format!("-o {}", quote(&format!("{log}/{}-{stem}.out", g.name))),
            )));
        }
        push_optional(&mut h, P, "-q", g.queue.as_deref());
        push_optional(&mut h, P, "-P", g.account.as_deref());
        h.push(HeaderLine::optional(directive(
            P,
            format!("-n {}", p.cores()),
        )));
        if p.cores() > 1 {
            h.push(HeaderLine::optional(directive(P, "-R \"span[hosts=1]\"")));
        }
        h.push(HeaderLine::optional(directive(
            P,
            format!("-M {}", p.memory().lsf(g.lsf_units)),
        )));
        h.push(HeaderLine::optional(directive(
            P,
            format!("-W {}", p.walltime().hm_ceil()),
        )));
        h
    }

    fn job_id_var(&self, _array: bool) -> &'static str {
        "${LSB_JOBID}"
    }

    fn array_index_var(&self) -> &'static str {
        "${LSB_JOBINDEX}"
    }

    fn submit_command(&self, script: &Path) -> Invocation {
        let mut inv = Invocation::new(["bsub".to_string()]);
        inv.stdin_file = Some(script.to_path_buf());
        inv
    }

    fn cancel_command(&self, ids: &[JobId]) -> Invocation {
        Invocation::new(
            std::iter::once("bkill".to_string()).chain(ids.iter().map(|i| i.id.clone())),
        )
    }

    fn status_command(&self, ids: &[JobId]) -> Invocation {
        let head = ["bjobs".to_string(), "-a".to_string(), "-w".to_string()];
        Invocation::new(head.into_iter().chain(ids.iter().map(|i| i.id.clone())))
    }

    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState> {
        // JOBID USER STAT QUEUE FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME
        rows(stdout)
            .filter(|r| r.len() >= 3 && leading_number(r[0]) == Some(id.number))
            .map(|r| state(r[2]))
            .collect()
    }

    fn unknown_job_markers(&self) -> &'static [&'static str] {
        &["is not found"]
    }

    fn submit_phrases(&self) -> &'static [&'static str] {
        &["Job <{id}> is submitted"]
    }

    fn array_element(&self, id: &JobId, index: u32) -> JobId {
        JobId {
            id: format!("{}[{index}]", id.number),
            ..id.clone()
        }
    }

    fn client_tools(&self) -> &'static str {
        "the LSF client tools (bsub, bjobs, bkill) must be on PATH; source LSF's profile.lsf or load them, e.g. `module load lsf`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bjobs_wide_output() {
        let out = "\
JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME
654321  alice   RUN   normal     login1      node1       shoal-worker[1] Jan  1 10:00
654321  alice   PEND  normal     login1      -           shoal-worker[2] Jan  1 10:00
654322  alice   DONE  normal     login1      node2       shoal-worker Jan  1 09:00
";
        let id = |n| JobId {
            id: format!("{n}"),
            number: n,
            cluster: None,
        };
        assert_eq!(
            Lsf.parse_status(out, &id(654_321)),
            [JobState::Running, JobState::Pending]
        );
        assert_eq!(Lsf.parse_status(out, &id(654_322)), [JobState::Finished]);
        assert_eq!(state("UNKWN"), JobState::Unknown("UNKWN".into()));
    }

    #[test]
    fn script_goes_on_stdin() {
        let inv = Lsf.submit_command(Path::new("/tmp/j.sh"));
        assert_eq!(inv.argv, ["bsub"]);
        assert_eq!(inv.stdin_file.as_deref(), Some(Path::new("/tmp/j.sh")));
    }
}
