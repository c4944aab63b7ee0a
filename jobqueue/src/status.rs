//! Job states as shoal sees them, whatever the batch system calls them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a job, or of a whole job array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Queued, held or waiting to start.
    Pending,
    /// At least one element is running.
    Running,
    /// Done, failed, cancelled, or no longer listed by the batch system.
    Finished,
    /// A state shoal does not interpret (e.g. SGE `Eqw`, HTCondor held),
    /// as the batch system spelled it.
    Unknown(String),
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Pending => f.write_str("pending"),
            JobState::Running => f.write_str("running"),
            JobState::Finished => f.write_str("finished"),
            JobState::Unknown(s) => write!(f, "unknown ({s})"),
        }
    }
}

/// The state of a job array from its elements' states: running if any
/// element runs, else pending if any waits, else the first unknown state,
/// else finished (also when no element is listed any more).
pub fn combine(elements: &[JobState]) -> JobState {
    if elements.contains(&JobState::Running) {
        return JobState::Running;
    }
    if elements.contains(&JobState::Pending) {
        return JobState::Pending;
    }
    elements
        .iter()
        .find(|s| matches!(s, JobState::Unknown(_)))
        .cloned()
        .unwrap_or(JobState::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn array_state_from_elements() {
        assert_eq!(combine(&[Finished, Running, Pending]), Running);
        assert_eq!(combine(&[Finished, Pending]), Pending);
        assert_eq!(
            combine(&[Finished, Unknown("Eqw".into())]),
            Unknown("Eqw".into())
        );
        assert_eq!(combine(&[Finished, Finished]), Finished);
        assert_eq!(combine(&[]), Finished);
        assert_eq!(Unknown("Eqw".into()).to_string(), "unknown (Eqw)");
    }
}
