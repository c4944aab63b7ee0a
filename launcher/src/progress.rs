//! Progress bars on standard error (indicatif), for commands that wait: `shoal run`,
//! `shoal jobqueue scale`/`submit`, `shoal local` and `shoal mpi` start-up. Hidden when
//! standard error is not a terminal (job logs, pipes) or with `-q`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q` was given: no bars.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// `-q` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn shown() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// A bar to `total` with `template` (indicatif's template language), or a hidden one.
pub fn bar(total: u64, template: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Tasks done of a graph: count, rate and time left.
pub fn tasks(total: u64) -> ProgressBar {
    bar(
        total,
        "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} tasks ({per_sec}, {eta} left)",
    )
}

/// Workers connected of those expected.
pub fn workers(total: u64, what: &str) -> ProgressBar {
    let b = bar(
        total,
        "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} workers connected {msg}",
    );
    b.set_message(what.to_string());
    b
}

/// Show the workers connecting to this process's scheduler until `expected` did (or the
/// scheduler stopped); nothing when bars are hidden.
pub fn watch_start_up(
    scheduler: &mut shoal_runtime::scheduler::server::Scheduler,
    expected: u64,
    what: &str,
) {
    let bar = workers(expected, what);
    if bar.is_hidden() || expected == 0 {
        return;
    }
    let mut snapshots = scheduler.snapshots();
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let connected = snapshots.borrow_and_update().workers.len() as u64;
            bar.set_position(connected.min(expected));
            if connected >= expected {
                break;
            }
        }
        bar.finish_and_clear();
    });
}
