//! `scale`: submit or cancel worker jobs until the wanted number are queued or running,
//! waiting jobs cancelled first, then the newest.

use super::*;

pub(super) fn scale(a: &ScaleArgs, out: &mut Output) -> anyhow::Result<Option<wait::Target>> {
    let file = absolute(&a.scheduler_file)?;
    let _lock = lock_state(&file)?;
    let (path, mut state) = require_state(&file)?;
    let Some(recipe) = state.workers_recipe.clone() else {
        bail!(
            "no worker jobs were submitted for {} yet, so their parameters are unknown; start with `shoal jobqueue submit {} --scheduler-file {} --jobs {} ...`",
            file.display(),
            state.system,
            file.display(),
            a.jobs
        );
    };
    let records: Vec<&JobRecord> = state.workers.iter().collect();
    let current = states(&state, &records)?;
    // Forget jobs that are gone.
    let live: Vec<(JobRecord, JobState)> = state
        .workers
        .iter()
        .cloned()
        .zip(current)
        .filter(|(_, s)| *s != JobState::Finished)
        .collect();
    state.workers = live.iter().map(|(r, _)| r.clone()).collect();
    let have = u32::try_from(live.len()).unwrap_or(u32::MAX);
    // For --wait: workers per job and where their logs go (the recipe was valid when
    // submitted; its warnings were shown then).
    let one_job = if a.wait {
        Some(validate(
            state.system,
            &recipe,
            &file,
            1,
            false,
            &mut Output::default(),
        )?)
    } else {
        None
    };
    if a.jobs > have {
        let valid = validate(state.system, &recipe, &file, a.jobs - have, false, out)?;
        let records = submit_job(&valid, &render(&valid), &file, "workers")?;
        writeln!(
            out.text,
            "{have} worker job(s) queued or running; submitted {} more as {}",
            records.len(),
            records[0].array
        )?;
        state.workers.extend(records);
    } else if a.jobs < have {
        let victims = choose_cancellations(&live, (have - a.jobs) as usize);
        shoal_jobqueue::cancel(&ProcessRunner, state.system, &victims).map_err(jq)?;
        let names: Vec<String> = victims.iter().map(ToString::to_string).collect();
        writeln!(
            out.text,
            "{have} worker job(s) queued or running; cancelled {}",
            names.join(" ")
        )?;
        state.workers.retain(|r| !victims.contains(&r.job));
    } else {
        writeln!(out.text, "{have} worker job(s) queued or running already")?;
    }
    save_state(&path, &state)?;
    Ok(one_job.map(|job| wait::Target {
        system: state.system,
        jobs: state.workers.iter().map(|r| r.job.clone()).collect(),
        workers: u64::from(a.jobs) * u64::from(job.processes()),
        fewer: a.jobs < have,
        timeout: a.timeout,
        log_directory: job.params().log_directory.clone(),
        scheduler_file: file,
    }))
}

/// Which `n` jobs to cancel: those still waiting first, then the newest.
pub(super) fn choose_cancellations(live: &[(JobRecord, JobState)], n: usize) -> Vec<JobId> {
    let mut order: Vec<&(JobRecord, JobState)> = live.iter().collect();
    // Stable: newest (later in the list, later submitted) first within each group.
    order.reverse();
    order.sort_by_key(|(r, s)| (*s != JobState::Pending, std::cmp::Reverse(r.submitted)));
    order
        .into_iter()
        .take(n)
        .map(|(r, _)| r.job.clone())
        .collect()
}
