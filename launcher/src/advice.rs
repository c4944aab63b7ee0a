//! What the user can do about an error: the fix, in terms of this command line, added to
//! the runtime's typed errors (which say what happened, not which command to type).

use shoal_comm::message::{TaskError, TaskErrorKind};

/// How to get workers that run Python tasks.
const PYTHON_WORKERS: &str = "start workers that can from the Python package (`python -m shoal worker ...`, `python -m shoal local`, or `python -m shoal mpi` under mpirun)";

/// The error's message, followed by what to do about it where the kind calls for advice.
pub fn task_error_message(error: &TaskError) -> String {
    match error.kind {
        TaskErrorKind::Unsupported => format!("{}; {PYTHON_WORKERS}", error.message),
        _ => error.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: TaskErrorKind) -> TaskError {
        TaskError {
            key: "k".into(),
            kind,
            message: "it went wrong".into(),
            traceback: None,
            exception: Vec::new(),
        }
    }

    #[test]
    fn unsupported_tasks_get_the_command_that_starts_capable_workers() {
        let m = task_error_message(&error(TaskErrorKind::Unsupported));
        assert!(
            m.starts_with("it went wrong; ") && m.contains("python -m shoal worker"),
            "{m}"
        );
        let m = task_error_message(&error(TaskErrorKind::TaskFailed));
        assert_eq!(m, "it went wrong");
    }
}
