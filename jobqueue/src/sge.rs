//! Grid Engine (SGE, Son of Grid Engine, Univa): `#$` directives, `qsub` /
//! `qstat` / `qdel`.
//!
//! SGE has no portable memory or multi-core request: the site decides which
//! resource limits memory (`h_vmem`, `mem_free`, ...) and names its parallel
//! environments. shoal emits neither and warns, as the reference describes;
//! users pass `resource_spec` and `-pe` through `job_extra_directives`.

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

/// Grid Engine.
#[derive(Debug, Clone, Copy)]
pub struct Sge;

const P: &str = "#$";

/// Maps the `state` column of `qstat` (`qw`, `r`, `Eqw`, `dr`, `hqw`, ...).
pub fn state(word: &str) -> JobState {
    if word.contains('E') {
        JobState::Unknown(word.to_string())
    } else if word.contains('d') {
        JobState::Finished
    } else if word.contains(['r', 't', 'R']) {
        JobState::Running
    } else if word.contains(['q', 'w', 'h', 's', 'S', 'T']) {
        JobState::Pending
    } else {
        JobState::Unknown(word.to_string())
    }
}

impl BatchSystem for Sge {
    fn system(&self) -> System {
        System::Sge
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
        push_optional(&mut h, P, "-P", g.account.as_deref());
        push_optional(&mut h, P, "-l", g.resource_spec.as_deref());
        h.push(HeaderLine::optional(directive(
            P,
            format!("-l h_rt={}", p.walltime().hms()),
        )));
        if let Some(log) = &g.log_directory {
            let dir = quote(&format!("{log}/")).into_owned();
            h.push(HeaderLine::optional(directive(P, format!("-e {dir}"))));
            h.push(HeaderLine::optional(directive(P, format!("-o {dir}"))));
        }
        h.push(HeaderLine::optional(directive(P, "-cwd")));
        h.push(HeaderLine::optional(directive(P, "-j y")));
        if p.is_array() {
            h.push(HeaderLine::required(
                directive(P, format!("-t 1-{}", p.array())),
                ARRAY_REQUIRED,
            ));
        }
        h
    }

    fn job_id_var(&self, _array: bool) -> &'static str {
        "${JOB_ID}"
    }

    fn array_index_var(&self) -> &'static str {
        "${SGE_TASK_ID}"
    }

    fn submit_command(&self, script: &Path) -> Invocation {
        Invocation::new(["qsub".to_string(), script.display().to_string()])
    }

    fn cancel_command(&self, ids: &[JobId]) -> Invocation {
        Invocation::new(std::iter::once("qdel".to_string()).chain(ids.iter().map(|i| i.id.clone())))
    }

    /// Plain `qstat` lists the calling user's jobs; `qstat -j` would fail
    /// for a finished job and prints no state column.
    fn status_command(&self, _ids: &[JobId]) -> Invocation {
        Invocation::new(["qstat".to_string()])
    }

    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState> {
        // job-ID prior name user state submit/start-at queue slots ja-task-ID
        rows(stdout)
            .filter(|r| r.len() >= 5 && leading_number(r[0]) == Some(id.number))
            .map(|r| state(r[4]))
            .collect()
    }

    fn unknown_job_markers(&self) -> &'static [&'static str] {
        &["do not exist"]
    }

    fn submit_phrases(&self) -> &'static [&'static str] {
        &["Your job {id} ", "Your job-array {id}"]
    }

    /// `qdel 9.2` deletes task 2 of job 9.
    fn array_element(&self, id: &JobId, index: u32) -> JobId {
        JobId {
            id: format!("{}.{index}", id.number),
            ..id.clone()
        }
    }

    fn client_tools(&self) -> &'static str {
        "the Grid Engine client tools (qsub, qstat, qdel) must be on PATH; source the cell's settings.sh or load them, e.g. `module load sge`"
    }

    fn warnings(&self, p: &ValidParams) -> Vec<String> {
        let mut w = Vec::new();
        if p.params().resource_spec.is_none() {
            w.push(format!(
                "SGE: no memory request is generated; set resource_spec to your site's memory resource, e.g. resource_spec=h_vmem={}",
                p.memory().slurm()
            ));
        }
        if p.cores() > 1 {
            w.push(format!(
                "SGE: no parallel environment is requested for {} cores; add one with job_extra_directives, e.g. \"-pe smp {}\" (names are site-specific)",
                p.cores(),
                p.cores()
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qstat_table_with_array_tasks() {
        let out = "\
job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID
-----------------------------------------------------------------------------------------------------------------
   4243 0.55500 shoal-work alice        r     01/01/2024 10:00:00 all.q@node1                        1 1
   4243 0.00000 shoal-work alice        qw    01/01/2024 10:00:00                                    1 2,3
   4244 0.00000 shoal-work alice        Eqw   01/01/2024 10:00:00                                    1
";
        let id = |n| JobId {
            id: format!("{n}"),
            number: n,
            cluster: None,
        };
        assert_eq!(
            Sge.parse_status(out, &id(4243)),
            [JobState::Running, JobState::Pending]
        );
        assert_eq!(
            Sge.parse_status(out, &id(4244)),
            [JobState::Unknown("Eqw".into())]
        );
        assert!(Sge.parse_status(out, &id(9)).is_empty());
        assert_eq!(state("dr"), JobState::Finished);
        assert_eq!(state("hqw"), JobState::Pending);
    }
}
