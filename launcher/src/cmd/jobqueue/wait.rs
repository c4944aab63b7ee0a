//! `shoal jobqueue scale --wait`: watch the scheduler's workers and the batch system's
//! jobs until the scaled number of workers is connected, with a bar on a terminal
//! (workers connected, jobs pending and running), and fail at `--timeout` naming the jobs
//! that have not delivered their workers and why (still queued, started but not connected,
//! or ended).

use crate::progress;
use shoal_jobqueue::{JobId, JobState, ProcessRunner, System};
use shoal_runtime::client::Client;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the scheduler is asked for its workers.
const POLL: Duration = Duration::from_millis(250);
/// How often the batch system is asked for the jobs' states (a command per call).
const JOB_POLL: Duration = Duration::from_secs(2);

/// What `--wait` waits for.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheduler_file: PathBuf,
    pub system: System,
    /// The worker jobs kept after scaling.
    pub jobs: Vec<JobId>,
    /// Workers wanted: jobs x processes per job.
    pub workers: u64,
    /// Scaling down: wait until at most `workers` are connected.
    pub fewer: bool,
    pub timeout: Duration,
    /// Where the jobs write their logs, for the error message.
    pub log_directory: Option<String>,
}

impl Target {
    fn reached(&self, connected: u64) -> bool {
        if self.fewer {
            connected <= self.workers
        } else {
            connected >= self.workers
        }
    }
}

/// The jobs by state, as last asked.
#[derive(Debug, Default)]
struct Jobs {
    pending: Vec<JobId>,
    running: Vec<JobId>,
    ended: Vec<JobId>,
    other: Vec<(JobId, String)>,
    /// The batch system could not be asked.
    error: Option<String>,
}

impl Jobs {
    fn of(ids: &[JobId], states: Vec<JobState>) -> Self {
        let mut jobs = Jobs::default();
        for (id, state) in ids.iter().cloned().zip(states) {
            match state {
                JobState::Pending => jobs.pending.push(id),
                JobState::Running => jobs.running.push(id),
                JobState::Finished => jobs.ended.push(id),
                JobState::Unknown(s) => jobs.other.push((id, s)),
            }
        }
        jobs
    }

    /// For the bar: `jobs: 2 pending, 1 running`.
    fn summary(&self) -> String {
        let mut parts = vec![
            format!("{} pending", self.pending.len()),
            format!("{} running", self.running.len()),
        ];
        if !self.ended.is_empty() {
            parts.push(format!("{} ended", self.ended.len()));
        }
        if !self.other.is_empty() {
            parts.push(format!("{} other", self.other.len()));
        }
        format!("(jobs: {})", parts.join(", "))
    }
}

fn ids(jobs: &[JobId]) -> String {
    jobs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn job_states(system: System, jobs: Vec<JobId>) -> Jobs {
    let asked = jobs.clone();
    let found = tokio::task::spawn_blocking(move || {
        super::commands::job_states(&ProcessRunner, system, &asked)
    })
    .await;
    match found {
        Ok(Ok(states)) => Jobs::of(&jobs, states),
        Ok(Err(e)) => Jobs {
            error: Some(format!("{e:#}")),
            ..Jobs::default()
        },
        Err(e) => Jobs {
            error: Some(e.to_string()),
            ..Jobs::default()
        },
    }
}

/// Wait for `target`; the line to print when it is reached.
///
/// # Errors
/// `--timeout` passed first: how many workers came, and which jobs are pending, running
/// without a connected worker, or ended.
pub async fn wait(target: &Target) -> anyhow::Result<String> {
    let bar = progress::workers(target.workers, "");
    let deadline = Instant::now() + target.timeout;
    let mut client: Option<Client> = None;
    let mut connected: Option<u64> = None;
    let mut jobs = Jobs::default();
    let mut jobs_asked: Option<Instant> = None;
    loop {
        if client.is_none() {
            client = Client::from_scheduler_file(&target.scheduler_file, Duration::from_secs(1))
                .await
                .ok();
        }
        if let Some(c) = &client {
            match c.status().await {
                Ok(status) => connected = Some(status.workers.len() as u64),
                Err(_) => {
                    client = None;
                    connected = None;
                }
            }
        }
        if jobs_asked.is_none_or(|t| t.elapsed() >= JOB_POLL) {
            jobs = job_states(target.system, target.jobs.clone()).await;
            jobs_asked = Some(Instant::now());
        }
        bar.set_position(connected.unwrap_or(0).min(target.workers));
        bar.set_message(match connected {
            Some(_) => jobs.summary(),
            None => format!("{} (the scheduler does not answer yet)", jobs.summary()),
        });
        if let Some(n) = connected.filter(|&n| target.reached(n)) {
            bar.finish_and_clear();
            return Ok(format!(
                "{n} worker(s) connected, {} wanted",
                target.workers
            ));
        }
        if Instant::now() >= deadline {
            bar.finish_and_clear();
            if jobs_asked.is_some_and(|t| t.elapsed() >= POLL) {
                jobs = job_states(target.system, target.jobs.clone()).await;
            }
            anyhow::bail!("{}", missing(target, connected, &jobs));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Why `target` was not reached: workers seen, then each group of jobs.
fn missing(target: &Target, connected: Option<u64>, jobs: &Jobs) -> String {
    let file = target.scheduler_file.display();
    let mut m = match connected {
        Some(n) if target.fewer => format!(
            "{n} workers still connected to the scheduler of {file} after {} s (--timeout), {} wanted",
            target.timeout.as_secs_f64(),
            target.workers
        ),
        Some(n) => format!(
            "only {n} of {} workers connected to the scheduler of {file} after {} s (--timeout)",
            target.workers,
            target.timeout.as_secs_f64()
        ),
        None => format!(
            "the scheduler of {file} did not answer within {} s (--timeout); is it running? \
             (`shoal jobqueue status --scheduler-file {file}` shows its job)",
            target.timeout.as_secs_f64()
        ),
    };
    let logs = target
        .log_directory
        .as_deref()
        .map_or_else(String::new, |d| format!(" in {d}"));
    let backend = target.system.backend();
    let queue = backend
        .status_command(&target.jobs)
        .argv
        .first()
        .cloned()
        .unwrap_or_default();
    if let Some(e) = &jobs.error {
        let _ = write!(m, "; the {} jobs' states are unknown: {e}", target.system);
        return m;
    }
    if !jobs.pending.is_empty() {
        let _ = write!(
            m,
            "; still pending in {}: {} (`{queue}` shows why they wait)",
            target.system,
            ids(&jobs.pending)
        );
    }
    if !jobs.running.is_empty() && !target.fewer {
        let _ = write!(
            m,
            "; running: {} (a running job's worker that has not connected says why in its log{logs})",
            ids(&jobs.running)
        );
    }
    if !jobs.ended.is_empty() {
        let _ = write!(
            m,
            "; ended: {} (their logs{logs} say why)",
            ids(&jobs.ended)
        );
    }
    for (id, state) in &jobs.other {
        let _ = write!(m, "; {id}: {} says {state}", target.system);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(workers: u64, fewer: bool) -> Target {
        Target {
            scheduler_file: "/shared/s.json".into(),
            system: System::Slurm,
            jobs: ["7_1", "7_2", "8_1"]
                .iter()
                .map(|j| JobId {
                    id: (*j).into(),
                    number: 7,
                    cluster: None,
                })
                .collect(),
            workers,
            fewer,
            timeout: Duration::from_secs(3),
            log_directory: Some("/shared/logs".into()),
        }
    }

    #[test]
    fn reached_from_below_or_above() {
        assert!(!target(4, false).reached(3));
        assert!(target(4, false).reached(4) && target(4, false).reached(5));
        assert!(!target(1, true).reached(2) && target(1, true).reached(1));
    }

    #[test]
    fn the_timeout_names_pending_running_and_ended_jobs() {
        let t = target(6, false);
        let jobs = Jobs::of(
            &t.jobs,
            vec![JobState::Pending, JobState::Running, JobState::Finished],
        );
        assert_eq!(jobs.summary(), "(jobs: 1 pending, 1 running, 1 ended)");
        let m = missing(&t, Some(2), &jobs);
        assert!(
            m.starts_with(
                "only 2 of 6 workers connected to the scheduler of /shared/s.json after 3 s"
            ),
            "{m}"
        );
        assert!(
            m.contains("still pending in slurm: 7_1 (`squeue` shows why they wait)"),
            "{m}"
        );
        assert!(
            m.contains("running: 7_2 (") && m.contains("log in /shared/logs"),
            "{m}"
        );
        assert!(
            m.contains("ended: 8_1 (their logs in /shared/logs say why)"),
            "{m}"
        );
        let m = missing(&t, None, &Jobs::of(&t.jobs, vec![JobState::Pending; 3]));
        assert!(
            m.starts_with("the scheduler of /shared/s.json did not answer"),
            "{m}"
        );
        assert!(m.contains("7_1 7_2 8_1"), "{m}");
    }
}
