//! Errors of the library entry points a host calls ([`crate::mpi_batch`],
//! [`crate::jobqueue`]): typed, with the message the command line would print.

/// Why a library entry point failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A setting is refused before anything starts; the chain names the value and the fix.
    #[error("{0:#}")]
    Settings(anyhow::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A setting, a rank or a batch command failed; `error`'s chain names the value or the
    /// command and the fix. `warnings` were given before the failure.
    #[error("{}", failed_message(.error, .warnings))]
    Failed {
        /// What failed, with its causes.
        error: anyhow::Error,
        /// Warnings given before the failure.
        warnings: Vec<String>,
    },
}

impl LaunchError {
    /// A failure with no warnings before it.
    pub fn failed(error: anyhow::Error) -> Self {
        LaunchError::Failed {
            error,
            warnings: Vec::new(),
        }
    }
}

/// The error's chain on one line, then each warning on its own.
fn failed_message(error: &anyhow::Error, warnings: &[String]) -> String {
    let mut message = format!("{error:#}");
    for w in warnings {
        message.push_str("\nwarning: ");
        message.push_str(w);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_its_chain_then_the_warnings() {
        let error = anyhow::anyhow!("no such queue").context("cannot submit");
        let e = LaunchError::Failed {
            error,
            warnings: vec!["old sbatch".into()],
        };
        assert_eq!(
            e.to_string(),
            "cannot submit: no such queue\nwarning: old sbatch"
        );
    }
}
