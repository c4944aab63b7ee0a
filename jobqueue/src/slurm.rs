//! SLURM: `#SBATCH` directives, `sbatch` / `squeue` / `scancel`.

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

/// SLURM.
#[derive(Debug, Clone, Copy)]
pub struct Slurm;

const P: &str = "#SBATCH";

/// `-M cluster` when the ids carry one (they share it: see `submit`).
fn cluster_args(ids: &[JobId]) -> Vec<String> {
    match ids.first().and_then(|i| i.cluster.clone()) {
        Some(c) => vec!["-M".to_string(), c],
        None => Vec::new(),
    }
}

/// Maps a `squeue %T` state.
pub fn state(word: &str) -> JobState {
    match word {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" => JobState::Pending,
        "RUNNING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" | "RESIZING" => JobState::Running,
        "COMPLETED" | "CANCELLED" | "FAILED" | "TIMEOUT" | "NODE_FAIL" | "PREEMPTED"
        | "BOOT_FAIL" | "DEADLINE" | "OUT_OF_MEMORY" | "SPECIAL_EXIT" | "REVOKED" => {
            JobState::Finished
        }
        other => JobState::Unknown(other.to_string()),
    }
}

impl BatchSystem for Slurm {
    fn system(&self) -> System {
        System::Slurm
    }

    fn directive_prefix(&self) -> Option<&'static str> {
        Some(P)
    }

    fn header(&self, p: &ValidParams) -> Vec<HeaderLine> {
        let g = p.params();
        let mut h = vec![HeaderLine::required(
            directive(P, format!("-J {}", g.name)),
            NAME_REQUIRED,
        )];
        if let Some(log) = &g.log_directory {
            let stem = if p.is_array() { "%A_%a" } else { "%j" };
            h.push(HeaderLine::optional(directive(
                P,
                format!("-e {}", quote(&format!("{log}/{}-{stem}.err", g.name))),
            )));
            h.push(HeaderLine::optional(directive(
                P,
                format!("-o {}", quote(&format!("{log}/{}-{stem}.out", g.name))),
            )));
        }
        push_optional(&mut h, P, "-p", g.queue.as_deref());
        push_optional(&mut h, P, "-A", g.account.as_deref());
        h.push(HeaderLine::optional(directive(P, "-n 1")));
        h.push(HeaderLine::optional(directive(P, "-N 1")));
        let cpus = g.job_cpu.unwrap_or(p.cores());
        h.push(HeaderLine::optional(directive(
            P,
            format!("--cpus-per-task={cpus}"),
        )));
        let mem = g.job_mem.unwrap_or(p.memory());
        h.push(HeaderLine::optional(directive(
            P,
            format!("--mem={}", mem.slurm()),
        )));
        h.push(HeaderLine::optional(directive(
            P,
            format!("-t {}", p.walltime().hms()),
        )));
        if p.is_array() {
            h.push(HeaderLine::required(
                directive(P, format!("--array=1-{}", p.array())),
                ARRAY_REQUIRED,
            ));
        }
        h
    }

    fn job_id_var(&self, array: bool) -> &'static str {
        if array {
            "${SLURM_ARRAY_JOB_ID}"
        } else {
            "${SLURM_JOB_ID}"
        }
    }

    fn array_index_var(&self) -> &'static str {
        "${SLURM_ARRAY_TASK_ID}"
    }

    fn submit_command(&self, script: &Path) -> Invocation {
        Invocation::new(["sbatch".to_string(), script.display().to_string()])
    }

    fn cancel_command(&self, ids: &[JobId]) -> Invocation {
        let mut argv = vec!["scancel".to_string()];
        argv.extend(cluster_args(ids));
        argv.extend(ids.iter().map(|i| i.id.clone()));
        Invocation::new(argv)
    }

    fn status_command(&self, ids: &[JobId]) -> Invocation {
        let mut argv = vec![
            "squeue".to_string(),
            "--noheader".to_string(),
            "--array".to_string(),
            "--format=%i %T".to_string(),
        ];
        argv.extend(cluster_args(ids));
        let list: Vec<&str> = ids.iter().map(|i| i.id.as_str()).collect();
        argv.push(format!("--jobs={}", list.join(",")));
        Invocation::new(argv)
    }

    /// Rows of the whole array for an array id, the one row of an element
    /// for an element id (`654321_2`).
    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState> {
        let element = id.id.contains('_');
        rows(stdout)
            .filter(|r| {
                r.len() >= 2
                    && if element {
                        r[0] == id.id
                    } else {
                        leading_number(r[0]) == Some(id.number)
                    }
            })
            .map(|r| state(r[1]))
            .collect()
    }

    fn unknown_job_markers(&self) -> &'static [&'static str] {
        &["Invalid job id specified"]
    }

    fn submit_phrases(&self) -> &'static [&'static str] {
        &["Submitted batch job {id}"]
    }

    fn array_element(&self, id: &JobId, index: u32) -> JobId {
        JobId {
            id: format!("{}_{index}", id.number),
            ..id.clone()
        }
    }

    fn client_tools(&self) -> &'static str {
        "the SLURM client tools (sbatch, squeue, scancel) must be on PATH; load them first, e.g. `module load slurm`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> JobId {
        JobId {
            id: n.to_string(),
            number: n,
            cluster: None,
        }
    }

    #[test]
    fn squeue_output_per_array_element() {
        let out = "654321_1 RUNNING\n654321_2 PENDING\n654321_3 PENDING\n777 RUNNING\n";
        assert_eq!(
            Slurm.parse_status(out, &id(654_321)),
            [JobState::Running, JobState::Pending, JobState::Pending]
        );
        assert_eq!(Slurm.parse_status(out, &id(777)), [JobState::Running]);
        assert!(Slurm.parse_status(out, &id(1)).is_empty());
        let element = Slurm.array_element(&id(654_321), 2);
        assert_eq!(Slurm.parse_status(out, &element), [JobState::Pending]);
        assert_eq!(state("TIMEOUT"), JobState::Finished);
        assert_eq!(state("SUSPENDED"), JobState::Unknown("SUSPENDED".into()));
    }

    #[test]
    fn commands_are_argv_with_cluster() {
        let mut j = id(5);
        j.cluster = Some("c2".into());
        assert_eq!(
            Slurm.cancel_command(&[j.clone()]).argv,
            ["scancel", "-M", "c2", "5"]
        );
        assert_eq!(
            Slurm.status_command(&[id(5), id(6)]).argv,
            [
                "squeue",
                "--noheader",
                "--array",
                "--format=%i %T",
                "--jobs=5,6"
            ]
        );
        assert_eq!(
            Slurm.submit_command(Path::new("/tmp/a b.sh")).argv,
            ["sbatch", "/tmp/a b.sh"]
        );
    }
}
