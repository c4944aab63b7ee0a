//! The pages' live data: one task turns each snapshot into an update (serialised once,
//! however many pages are open) and keeps the history the charts draw from and the most
//! recent task runs; pages receive updates as server-sent events.

use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use shoal_comm::message::TaskRecord;
use shoal_runtime::scheduler::snapshot::Snapshot;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// History points kept: 20 minutes at two snapshots a second.
pub const HISTORY: usize = 2_400;
/// Task runs a newly opened page starts with.
pub const RECENT_RUNS: usize = 5_000;

/// One point of the cluster's history.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Point {
    /// When the snapshot was taken (Unix seconds).
    pub at: f64,
    /// Bytes of results in workers' memory, summed over workers.
    pub managed: u64,
    /// Workers' resident memory beyond their results, summed.
    pub unmanaged: u64,
    /// Bytes of results spilled to disk, summed over workers.
    pub spilled: u64,
    /// The workers' memory limits, summed.
    pub memory_limit: u64,
    /// Tasks finished since the scheduler started.
    pub finished_total: u64,
    /// Tasks failed since the scheduler started.
    pub failed_total: u64,
    /// Bytes workers fetched from peers over TCP, summed.
    pub tcp_bytes: u64,
    /// Bytes workers fetched from peers over MPI, summed.
    pub mpi_bytes: u64,
    /// CPU seconds the scheduler process used.
    pub cpu_seconds: f64,
    /// The scheduler's resident memory.
    pub rss_bytes: u64,
    /// How late the scheduler's loop answered the snapshot tick.
    pub loop_lag_seconds: f64,
    /// Workers connected.
    pub workers: u32,
}

impl Point {
    /// The totals of a snapshot.
    pub fn of(s: &Snapshot) -> Self {
        let mut p = Point {
            at: s.at,
            finished_total: s.finished_total,
            failed_total: s.failed_total,
            cpu_seconds: s.scheduler.cpu_seconds,
            rss_bytes: s.scheduler.rss_bytes,
            loop_lag_seconds: s.scheduler.loop_lag_seconds,
            workers: s.workers.len() as u32,
            ..Point::default()
        };
        for w in &s.workers {
            p.managed += w.memory.managed;
            p.unmanaged += w.rss.saturating_sub(w.memory.managed);
            p.spilled += w.memory.spilled;
            p.memory_limit += w.memory_limit;
            p.tcp_bytes += w.transfers.tcp_bytes;
            p.mpi_bytes += w.transfers.mpi_bytes;
        }
        p
    }
}

/// What a page gets when it opens: the history and the recent runs, then updates.
#[derive(Serialize)]
struct Init<'a> {
    snapshot: &'a Snapshot,
    history: &'a VecDeque<Point>,
    runs: &'a VecDeque<TaskRecord>,
}

/// What every page gets with each snapshot (its runs are the new ones).
#[derive(Serialize)]
struct Update<'a> {
    snapshot: &'a Snapshot,
    point: Point,
}

#[derive(Default)]
struct Kept {
    history: VecDeque<Point>,
    runs: VecDeque<TaskRecord>,
}

/// The updates and the history, fed by the scheduler's snapshots.
pub struct Feed {
    updates: watch::Receiver<Arc<str>>,
    kept: Arc<Mutex<Kept>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Start following the snapshots.
    pub fn start(mut snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        let (tx, updates) = watch::channel(Arc::<str>::from(""));
        let kept = Arc::new(Mutex::new(Kept::default()));
        let shared = kept.clone();
        let task = tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                let snapshot = snapshots.borrow_and_update().clone();
                let point = Point::of(&snapshot);
                {
                    let mut k = shared.lock().unwrap_or_else(|e| e.into_inner());
                    push_bounded(&mut k.history, [point], HISTORY);
                    push_bounded(&mut k.runs, snapshot.runs.iter().cloned(), RECENT_RUNS);
                }
                let update = Update {
                    snapshot: &snapshot,
                    point,
                };
                match serde_json::to_string(&update) {
                    Ok(json) => {
                        tx.send_replace(json.into());
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot encode a dashboard update"),
                }
            }
        });
        Feed {
            updates,
            kept,
            task,
        }
    }

    fn init_json(&self, snapshot: &Snapshot) -> String {
        let k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let init = Init {
            snapshot,
            history: &k.history,
            runs: &k.runs,
        };
        serde_json::to_string(&init).unwrap_or_default()
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, items: impl IntoIterator<Item = T>, bound: usize) {
    q.extend(items);
    let excess = q.len().saturating_sub(bound);
    q.drain(..excess);
}

/// `/events`: an `init` event, then an `update` per snapshot.
pub(crate) async fn events(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let snapshot = state.snapshots.borrow().clone();
    let init = Event::default()
        .event("init")
        .data(state.feed.init_json(&snapshot));
    let mut updates = state.feed.updates.clone();
    updates.mark_unchanged();
    let rest = stream::unfold(updates, |mut rx| async move {
        rx.changed().await.ok()?;
        let json = rx.borrow_and_update().clone();
        Some((Event::default().event("update").data(&*json), rx))
    });
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::once(async { init }).chain(rest).map(Ok));
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// `/api/snapshot`: the latest snapshot as JSON.
pub(crate) async fn snapshot_json(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let snapshot = state.snapshots.borrow().clone();
    Json(Snapshot::clone(&snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_runtime::scheduler::snapshot::WorkerView;

    #[test]
    fn points_sum_workers_and_history_is_bounded() {
        let mut s = Snapshot {
            at: 5.0,
            finished_total: 7,
            ..Snapshot::default()
        };
        for (rss, managed, tcp) in [(100, 30, 1), (50, 60, 2)] {
            let mut w = WorkerView {
                rss,
                memory_limit: 1000,
                ..WorkerView::default()
            };
            w.memory.managed = managed;
            w.memory.spilled = 5;
            w.transfers.tcp_bytes = tcp;
            s.workers.push(w);
        }
        let p = Point::of(&s);
        // Unmanaged is RSS beyond managed, never negative.
        assert_eq!((p.managed, p.unmanaged, p.spilled), (90, 70, 10));
        assert_eq!((p.memory_limit, p.tcp_bytes, p.workers), (2000, 3, 2));
        let mut q: VecDeque<u32> = VecDeque::new();
        push_bounded(&mut q, 0..10, 4);
        assert_eq!(q, [6, 7, 8, 9]);
    }
}
