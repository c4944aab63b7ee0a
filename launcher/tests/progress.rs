//! What the commands that wait show, on a terminal and without one: `shoal status --watch`
//! refreshing until Ctrl-C, and `shoal run`'s bar. The terminal is a pseudo-terminal made
//! by util-linux's script(1) (Debian's bsdutils, always installed).
#![allow(clippy::unwrap_used)]

mod common;

use common::{sum, Cluster, SHOAL};
use std::time::Duration;

fn on_terminal(rows: u16, shell: &str) -> (std::process::ExitStatus, String) {
    common::on_terminal(rows, shell, &[])
}

/// A graph of `n` independent `sum` tasks that sleep `ms` each.
fn sleepers(n: usize, ms: u64) -> serde_json::Value {
    let tasks: Vec<_> = (0..n)
        .map(|i| sum(&format!("nap-{i}"), &[], i as u64, ms))
        .collect();
    let outputs: Vec<_> = (0..n).map(|i| format!("nap-{i}")).collect();
    serde_json::json!({"tasks": tasks, "outputs": outputs})
}

const FRAME_HEAD: &str = "shoal status --watch: every 0.3 s, Ctrl-C to stop;";

#[test]
fn status_watch_prints_frames_to_a_pipe_until_ctrl_c() {
    let c = Cluster::start(2, 1, &[], &[]);
    let f = c.file_arg();
    let mut watch = common::spawn(
        c.dir.path(),
        "watch",
        &["status", "--watch", "0.3", "--scheduler-file", &f],
    );
    let (ok, result) = c.run_graph(&sleepers(200, 10));
    assert!(ok, "{result}");
    std::thread::sleep(Duration::from_millis(1000));
    watch.signal(libc::SIGINT);
    let status = watch
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("--watch did not stop on SIGINT:\n{}", watch.log_text()));
    let text = watch.log_text();
    assert!(status.success(), "{status}: {text}");
    assert!(!text.contains('\x1b'), "escape codes in a pipe:\n{text}");
    let frames: Vec<&str> = text.split(FRAME_HEAD).skip(1).collect();
    assert!(frames.len() >= 4, "{} frames:\n{text}", frames.len());
    for frame in &frames {
        assert!(frame.contains("workers 2  threads 2"), "{frame}");
        assert!(frame.contains("w0") && frame.contains("w1"), "{frame}");
    }
    // The graph's tasks, counted as they finished, at a rate the frames saw.
    let last = frames.last().unwrap();
    assert!(last.contains("tasks finished 200"), "{last}");
    let rates: Vec<f64> = frames
        .iter()
        .filter_map(|f| {
            let rest = f.split("throughput ").nth(1)?;
            rest.split(" tasks/s").next()?.parse().ok()
        })
        .collect();
    assert!(
        rates.iter().any(|&r| r > 0.0),
        "no throughput seen:\n{text}"
    );
    assert!(
        frames[0].contains("throughput - (from the next frame)"),
        "{}",
        frames[0]
    );
}

#[test]
fn status_watch_redraws_in_place_on_a_terminal_cut_to_its_height() {
    let c = Cluster::start(2, 1, &[], &[]);
    // Ctrl-C after 1.5 s, from inside the terminal.
    let (status, text) = on_terminal(
        8,
        &format!(
            "exec timeout --preserve-status -s INT 1.5 {SHOAL} status --watch 0.3 --scheduler-file {}",
            c.file_arg()
        ),
    );
    assert!(status.success(), "{status}: {text}");
    let frames: Vec<&str> = text.split("\x1b[H\x1b[2J").skip(1).collect();
    assert!(frames.len() >= 3, "{} frames:\n{text:?}", frames.len());
    for frame in &frames {
        assert!(frame.starts_with(FRAME_HEAD), "{frame:?}");
        // 8 lines: the summary and the task line stay, the worker rows do not fit (the
        // last frame is followed by the log line of the signal).
        let lines = frame.lines().filter(|l| !l.contains("SIGINT received"));
        assert!(lines.count() < 8, "{frame:?}");
        assert!(frame.contains("... and 2 more workers"), "{frame:?}");
        assert!(frame.contains("tasks: "), "{frame:?}");
    }
}

#[test]
fn run_shows_a_bar_on_a_terminal_only() {
    let c = Cluster::start(2, 1, &[], &[]);
    let graph = c.dir.path().join("naps.json");
    std::fs::write(&graph, serde_json::to_vec(&sleepers(100, 20)).unwrap()).unwrap();
    let run = format!(
        "{SHOAL} run --scheduler-file {} {}",
        c.file_arg(),
        graph.display()
    );
    let (status, text) = on_terminal(24, &run);
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("/100 tasks ("), "no bar:\n{text:?}");
    assert!(text.contains("100 tasks in "), "{text}");
    let (status, text) = on_terminal(24, &format!("{SHOAL} -q {}", &run[SHOAL.len() + 1..]));
    assert!(status.success(), "{status}: {text}");
    assert!(
        !text.contains("/100 tasks ("),
        "a bar despite -q:\n{text:?}"
    );
    // To a file: the results and the timing, no bar.
    let f = c.file_arg();
    let out = common::run(
        &["run", "--scheduler-file", &f, graph.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("100 tasks in "),
        "{text}"
    );
    assert!(
        !text.contains("/100 tasks ("),
        "a bar in a file:
{text}"
    );
}
