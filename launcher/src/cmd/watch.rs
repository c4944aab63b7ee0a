//! `shoal status --watch`: the cluster refreshed every few seconds until Ctrl-C (as
//! HyperQueue's terminal dashboard): tasks by state, throughput since the previous frame
//! and the workers. On a terminal each frame replaces the last and the workers table is cut
//! to the window's height; to a file or a pipe the frames follow one another, without
//! escape codes.

use super::status::render;
use anyhow::Context;
use shoal_comm::message::ClusterStatus;
use shoal_runtime::client::Client;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Move to the top left and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Print a frame every `every` until SIGINT or SIGTERM.
///
/// # Errors
/// The scheduler stopped answering, or standard output was closed.
pub async fn watch(client: &Client, every: Duration) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let stop = crate::signals::terminated();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(Instant, u64)> = None;
    loop {
        let status = tokio::select! {
            () = &mut stop => return Ok(()),
            status = async {
                tick.tick().await;
                client.status().await
            } => status.with_context(|| format!("scheduler {} stopped answering", client.scheduler_id()))?,
        };
        let now = Instant::now();
        let rate = previous.map(|(then, finished)| {
            status.tasks_finished.saturating_sub(finished) as f64
                / now.duration_since(then).as_secs_f64().max(1e-9)
        });
        previous = Some((now, status.tasks_finished));
        let height = if terminal { terminal_rows() } else { None };
        let text = frame(&status, rate, every, SystemTime::now(), height);
        let mut out = std::io::stdout().lock();
        if terminal {
            write!(out, "{CLEAR}{text}")?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
    }
}

/// One frame: a heading with the time, the throughput, then `shoal status`'s table with
/// as many worker rows as fit in `height` lines (all without a height).
fn frame(
    status: &ClusterStatus,
    rate: Option<f64>,
    every: Duration,
    at: SystemTime,
    height: Option<usize>,
) -> String {
    let mut head = String::new();
    let _ = writeln!(
        head,
        "shoal status --watch: every {} s, Ctrl-C to stop; {}",
        every.as_secs_f64(),
        clock(at)
    );
    let _ = match rate {
        Some(r) => writeln!(head, "throughput {r:.0} tasks/s"),
        None => writeln!(head, "throughput - (from the next frame)"),
    };
    let rows = height.map(|h| {
        let fixed = head.lines().count() + render(status, Some(0)).lines().count();
        // One line for "... and N more", one left free for the cursor.
        h.saturating_sub(fixed + 2)
    });
    head + &render(status, rows)
}

/// `HH:MM:SS UTC` of `at`.
fn clock(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Lines of the terminal on standard output.
fn terminal_rows() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed; it is ours and live.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_row > 0).then_some(usize::from(size.ws_row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_comm::ids::WorkerId;
    use shoal_comm::message::WorkerInfo;

    fn cluster(workers: usize) -> ClusterStatus {
        ClusterStatus {
            scheduler_id: "s1".into(),
            address: "tcp://127.0.0.1:1".into(),
            workers: (0..workers)
                .map(|i| WorkerInfo {
                    id: WorkerId(i as u32),
                    name: format!("w{i}"),
                    address: format!("tcp://127.0.0.1:{}", 2000 + i),
                    nthreads: 2,
                    memory_limit: 0,
                    resources: Vec::new(),
                    metrics: Default::default(),
                    assigned: 0,
                    finished: 0,
                    host: "node1".into(),
                    pid: 1,
                })
                .collect(),
            tasks: vec![("queued".into(), 90), ("running".into(), 3)],
            clients: 1,
            tasks_finished: 57,
            ..ClusterStatus::default()
        }
    }

    #[test]
    fn a_frame_has_the_time_throughput_states_and_workers_cut_to_the_terminal() {
        let at = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 13 + 60 * 4 + 5);
        let status = cluster(50);
        let text = frame(&status, Some(1234.4), Duration::from_secs(2), at, Some(20));
        assert!(
            text.starts_with("shoal status --watch: every 2 s, Ctrl-C to stop; 13:04:05 UTC\n"),
            "{text}"
        );
        assert!(text.contains("throughput 1234 tasks/s\n"), "{text}");
        assert!(text.contains("workers 50  threads 100"), "{text}");
        assert!(text.contains("tasks: queued 90, running 3"), "{text}");
        let lines = text.lines().count();
        assert!(lines <= 19, "{lines} lines do not fit 20:\n{text}");
        let is_row =
            |l: &&str| l.starts_with('w') && l[1..].starts_with(|c: char| c.is_ascii_digit());
        let rows = text.lines().filter(is_row).count();
        assert!(rows > 0 && text.contains(&format!("... and {} more workers", 50 - rows)));
        // Without a terminal, every worker.
        let all = frame(&status, None, Duration::from_millis(500), at, None);
        assert_eq!(all.lines().filter(is_row).count(), 50);
        assert!(
            all.contains("every 0.5 s") && all.contains("throughput - "),
            "{all}"
        );
        assert!(!all.contains("more workers") && !all.contains('\x1b'));
    }
}
