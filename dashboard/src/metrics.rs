//! `/metrics`: the latest snapshot in the Prometheus text format (OpenMetrics flavour,
//! written by `prometheus-client`), with the usual `_total`, `_bytes` and `_seconds` names.
//!
//! Every scrape builds a fresh registry from one snapshot, so the figures of one scrape
//! are consistent with each other and cost the scheduler nothing.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use shoal_runtime::scheduler::snapshot::Snapshot;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type IntGauges = Family<Labels, Gauge>;
type FloatGauge = Gauge<f64, AtomicU64>;
type IntCounters = Family<Labels, Counter>;
type FloatCounters = Family<Labels, Counter<f64, AtomicU64>>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The registry of one snapshot.
pub fn registry(s: &Snapshot) -> Registry {
    let mut r = Registry::with_prefix("shoal");

    let tasks = IntGauges::default();
    let finished = IntCounters::default();
    let failed = IntCounters::default();
    for p in &s.prefixes {
        let live: u64 = p.states.iter().sum();
        if live > 0 {
            for (state, n) in s.states.iter().zip(p.states) {
                tasks
                    .get_or_create(&labels(&[("prefix", &p.name), ("state", state)]))
                    .set(int(n));
            }
        }
        if p.finished > 0 || live > 0 {
            finished
                .get_or_create(&labels(&[("prefix", &p.name)]))
                .inc_by(p.finished);
        }
        if p.failed > 0 {
            failed
                .get_or_create(&labels(&[("prefix", &p.name)]))
                .inc_by(p.failed);
        }
    }
    r.register(
        "tasks",
        "Tasks the scheduler holds, by task prefix and state",
        tasks,
    );
    r.register(
        "tasks_finished",
        "Task runs that ended with a result in memory, by task prefix",
        finished,
    );
    r.register("tasks_failed", "Tasks that failed, by task prefix", failed);

    let sched = &s.scheduler;
    let seconds = Some(Unit::Seconds);
    let bytes = Some(Unit::Bytes);
    let lag_help = "How late the scheduler's loop came to its last timer tick";
    let lag_max_help = "The largest event-loop lag since the scheduler started";
    float_gauge(
        &mut r,
        "scheduler_event_loop_lag",
        lag_help,
        seconds.clone(),
        sched.loop_lag_seconds,
    );
    float_gauge(
        &mut r,
        "scheduler_event_loop_lag_max",
        lag_max_help,
        seconds.clone(),
        sched.loop_lag_max_seconds,
    );
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(sched.cpu_seconds);
    r.register_with_unit(
        "scheduler_cpu",
        "CPU time (user and system) of the scheduler's process",
        Unit::Seconds,
        cpu,
    );
    let rss_help = "Resident memory of the scheduler's process";
    int_gauge(
        &mut r,
        "scheduler_memory_rss",
        rss_help,
        bytes,
        sched.rss_bytes,
    );
    int_gauge(
        &mut r,
        "clients",
        "Connected clients",
        None,
        u64::from(s.clients),
    );
    int_gauge(
        &mut r,
        "workers",
        "Connected workers",
        None,
        s.workers.len() as u64,
    );
    let joined_help = "Workers that registered since the scheduler started";
    let lost_help = "Workers whose connection closed since the scheduler started";
    int_counter(
        &mut r,
        "workers_joined",
        joined_help,
        s.workers_joined_total,
    );
    int_counter(&mut r, "workers_lost", lost_help, s.workers_lost_total);

    register_workers(&mut r, s);
    r
}

fn float_gauge(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, g),
        None => r.register(name, help, g),
    }
}

fn int_gauge(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(int(value));
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, g),
        None => r.register(name, help, g),
    }
}

fn int_counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    r.register(name, help, c);
}

fn register_workers(r: &mut Registry, s: &Snapshot) {
    let threads = IntGauges::default();
    let memory = IntGauges::default();
    let limit = IntGauges::default();
    let tasks = IntGauges::default();
    let paused = IntGauges::default();
    let spill_count = IntCounters::default();
    let spill_bytes = IntCounters::default();
    let spill_seconds = FloatCounters::default();
    let transfer_count = IntCounters::default();
    let transfer_bytes = IntCounters::default();
    for w in &s.workers {
        let worker = [("worker", w.name.as_str())];
        let one = labels(&worker);
        threads.get_or_create(&one).set(i64::from(w.nthreads));
        limit.get_or_create(&one).set(int(w.memory_limit));
        paused.get_or_create(&one).set(i64::from(w.paused));
        let m = &w.memory;
        for (kind, bytes) in [
            ("managed", m.managed),
            ("unmanaged", w.rss.saturating_sub(m.managed)),
            ("spilled", m.spilled),
        ] {
            memory
                .get_or_create(&labels(&[worker[0], ("type", kind)]))
                .set(int(bytes));
        }
        for (state, n) in [
            ("executing", u64::from(w.executing)),
            ("queued", u64::from(w.queued)),
            ("assigned", w.assigned),
        ] {
            tasks
                .get_or_create(&labels(&[worker[0], ("state", state)]))
                .set(int(n));
        }
        for (direction, count, bytes, seconds) in [
            ("spill", m.spill_count, m.spill_bytes, m.spill_seconds),
            (
                "unspill",
                m.unspill_count,
                m.unspill_bytes,
                m.unspill_seconds,
            ),
        ] {
            let l = labels(&[worker[0], ("direction", direction)]);
            spill_count.get_or_create(&l).inc_by(count);
            spill_bytes.get_or_create(&l).inc_by(bytes);
            spill_seconds.get_or_create(&l).inc_by(seconds);
        }
        let t = &w.transfers;
        for (transport, count, bytes) in [
            ("tcp", t.tcp_count, t.tcp_bytes),
            ("mpi", t.mpi_count, t.mpi_bytes),
        ] {
            let l = labels(&[worker[0], ("transport", transport)]);
            transfer_count.get_or_create(&l).inc_by(count);
            transfer_bytes.get_or_create(&l).inc_by(bytes);
        }
    }
    r.register("worker_threads", "Threads of each worker", threads);
    r.register_with_unit(
        "worker_memory",
        "Worker memory: managed (results held), unmanaged (the rest of the process) and spilled (on disk)",
        Unit::Bytes,
        memory,
    );
    r.register_with_unit(
        "worker_memory_limit",
        "Each worker's memory limit (0: none)",
        Unit::Bytes,
        limit,
    );
    r.register(
        "worker_tasks",
        "Tasks on each worker: executing, queued there, and assigned by the scheduler",
        tasks,
    );
    r.register(
        "worker_paused",
        "1 while the worker is paused (memory above its pause threshold)",
        paused,
    );
    r.register(
        "worker_spill_count",
        "Results written to (spill) and read back from (unspill) disk",
        spill_count,
    );
    r.register_with_unit(
        "worker_spill",
        "Bytes written to (spill) and read back from (unspill) disk",
        Unit::Bytes,
        spill_bytes,
    );
    r.register_with_unit(
        "worker_spill",
        "Time spent writing to (spill) and reading from (unspill) disk",
        Unit::Seconds,
        spill_seconds,
    );
    r.register(
        "worker_transfers",
        "Results each worker fetched from peers, by transport",
        transfer_count,
    );
    r.register_with_unit(
        "worker_transfer",
        "Bytes each worker fetched from peers, by transport",
        Unit::Bytes,
        transfer_bytes,
    );
}

/// The text of one snapshot.
pub fn render(s: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode(&mut out, &registry(s))?;
    Ok(out)
}

/// `GET /metrics`.
pub(crate) async fn endpoint(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    match render(&snapshot) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_runtime::scheduler::snapshot::{PrefixView, WorkerView};
    use shoal_runtime::scheduler::tally::STATES;

    #[test]
    fn metrics_carry_prefixes_workers_and_the_scheduler() {
        let mut s = Snapshot {
            states: STATES,
            ..Snapshot::default()
        };
        s.prefixes.push(PrefixView {
            name: "inc".into(),
            states: [1, 0, 0, 2, 3, 0, 0],
            finished: 5,
            failed: 1,
        });
        s.prefixes.push(PrefixView {
            name: "gone".into(),
            ..PrefixView::default()
        });
        s.scheduler.loop_lag_seconds = 0.25;
        s.scheduler.rss_bytes = 1234;
        s.workers_lost_total = 2;
        let mut w = WorkerView {
            name: "w-1".into(),
            rss: 100,
            ..WorkerView::default()
        };
        w.memory.managed = 40;
        w.memory.spill_bytes = 77;
        w.transfers.mpi_bytes = 9;
        s.workers.push(w);
        let text = render(&s).unwrap();
        for line in [
            "shoal_tasks{prefix=\"inc\",state=\"running\"} 2",
            "shoal_tasks_finished_total{prefix=\"inc\"} 5",
            "shoal_tasks_failed_total{prefix=\"inc\"} 1",
            "shoal_scheduler_event_loop_lag_seconds 0.25",
            "shoal_scheduler_memory_rss_bytes 1234",
            "shoal_workers_lost_total 2",
            "shoal_worker_memory_bytes{worker=\"w-1\",type=\"unmanaged\"} 60",
            "shoal_worker_spill_bytes_total{worker=\"w-1\",direction=\"spill\"} 77",
            "shoal_worker_transfer_bytes_total{worker=\"w-1\",transport=\"mpi\"} 9",
            "# TYPE shoal_tasks_finished counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("prefix=\"gone\""), "{text}");
    }
}
