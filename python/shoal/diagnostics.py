"""What ran where and when: ``get_task_stream`` and ``performance_report``, with
distributed's names.

The scheduler keeps the most recent 100,000 task runs (worker, start, stop), timed by
the scheduler as workers report them (within a few milliseconds of the worker's own
times). ``performance_report`` writes one self-contained HTML file (no scripts, no
network: it opens on a compute node) with the task stream, time per task prefix and the
workers' memory, and, from the dashboard's snapshots at the start and the end of the block
(the data its pages show), progress by task prefix, memory against each worker's limit
and thresholds, bytes fetched between workers and the scheduler's own CPU and loop lag.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections import defaultdict

__all__ = ["get_task_stream", "performance_report", "TaskStream", "task_prefix"]


def task_prefix(key: str) -> str:
    """The name part of a key (``"inc-4f2a..."`` → ``"inc"``, ``"('sum-ab12', 0)"`` →
    ``"sum"``), as Dask groups tasks."""
    k = key
    if k.startswith("("):  # a tuple key in its wire form
        m = re.match(r"\(\s*['\"]([^'\"]+)['\"]", k)
        k = m.group(1) if m else k
    parts = k.split("-")
    while len(parts) > 1 and re.fullmatch(r"[0-9a-f]{8,}|[0-9]+", parts[-1]):
        parts.pop()
    return "-".join(parts) or key


def records(client, since: float = 0.0, limit: int = 100_000) -> list[dict]:
    """Task runs that ended at or after ``since`` (Unix time), in distributed's shape."""
    out = []
    for key, worker, start, stop, ok in client._native.task_stream(float(since), int(limit)):
        out.append({
            "key": key,
            "worker": worker,
            "status": "OK" if ok else "error",
            "startstops": ({"action": "compute", "start": start, "stop": stop},),
        })
    return out


#: How often the scheduler publishes the dashboard's snapshot, in seconds.
SNAPSHOT_INTERVAL = 0.5


def dashboard_snapshot(client) -> dict | None:
    """The dashboard's latest snapshot (``/api/snapshot``), or ``None`` when the
    scheduler runs no dashboard or it cannot be reached."""
    link = client.dashboard_link
    if not link:
        return None
    base, _, query = link.partition("/status?")
    token = urllib.parse.parse_qs(query).get("token", [""])[0]
    request = urllib.request.Request(base + "/api/snapshot", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


class _Recording:
    """A block whose task runs are collected when it ends (``_finish(runs, start, stop)``)."""

    def __init__(self, client=None):
        self.client = client
        self._start = None

    def __enter__(self):
        from .client import default_client

        self.client = default_client(self.client)
        self._start = time.time()
        return self

    def __exit__(self, *exc):
        time.sleep(0.05)  # the last results' reports reach the scheduler
        self._finish(records(self.client, self._start), self._start, time.time())

    def _finish(self, runs: list, start: float, stop: float) -> None:
        raise NotImplementedError


class TaskStream(_Recording):
    """``with get_task_stream() as ts:`` — ``ts.data`` holds the runs of the block."""

    def __init__(self, client=None, plot=False, filename=None):
        if plot:
            raise NotImplementedError("get_task_stream(plot=True): shoal has no bokeh plots; "
                                      "use performance_report(filename=...) for a task-stream chart")
        super().__init__(client)
        self.data: list = []

    def _finish(self, runs, start, stop):
        self.data.extend(runs)


def get_task_stream(client=None, plot=False, filename="task-stream.html"):
    """A context manager collecting the task runs of its block (``.data``)."""
    return TaskStream(client, plot, filename)


class performance_report(_Recording):
    """``with performance_report(filename="report.html"):`` — writes a self-contained
    HTML report of the block: task stream, time per task prefix, worker memory."""

    def __init__(self, filename: str = "dask-report.html", stacklevel: int = 1, mode=None, storage_options=None,
                 client=None):
        super().__init__(client)
        self.filename = os.fspath(filename)

    def __enter__(self):
        super().__enter__()
        self._begin = dashboard_snapshot(self.client)
        return self

    def _finish(self, runs, start, stop):
        info = self.client.scheduler_info()
        end = None
        if self._begin is not None:
            time.sleep(SNAPSHOT_INTERVAL)  # a snapshot taken after the block's last results
            end = dashboard_snapshot(self.client)
        with open(self.filename, "w", encoding="utf-8") as f:
            f.write(render_report(runs, info, start, stop, self._begin, end))


_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac"]


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def _pct(f: float) -> str:
    return f"{f * 100:.0f}%" if f else "off"


def render_dashboard_sections(begin: dict | None, end: dict | None) -> str:
    """Progress by prefix, workers' memory and transfers, and the scheduler, from the
    dashboard's snapshots at the start and the end of the block ("" without them)."""
    if not begin or not end:
        return ""
    e = html.escape
    before = {p["name"]: p for p in begin.get("prefixes", [])}
    prefix_rows = []
    for p in end.get("prefixes", []):
        b = before.get(p["name"], {"finished": 0, "failed": 0})
        done, failed = p["finished"] - b["finished"], p["failed"] - b["failed"]
        unfinished = sum(p["states"][:4])
        if done or failed or unfinished:
            total = done + failed + unfinished
            width = 100 * done / total if total else 0
            prefix_rows.append(
                f'<tr><td>{e(p["name"])}</td><td>{done}</td><td>{failed}</td><td>{unfinished}</td>'
                f'<td><div class="bar"><div style="width:{width:.1f}%"></div></div></td></tr>')
    old_workers = {w["name"]: w for w in begin.get("workers", [])}
    worker_rows = []
    for w in end.get("workers", []):
        m, t = w["memory"], w["transfers"]
        b = old_workers.get(w["name"], {"transfers": {"tcp_bytes": 0, "mpi_bytes": 0}})["transfers"]
        thresholds = (" / ".join(_pct(f) for f in m.get("thresholds", [0, 0, 0, 0]))
                      if w["memory_limit"] else "no limit")
        rank = "" if w.get("mpi_rank") is None else w["mpi_rank"]
        worker_rows.append(
            f'<tr><td>{e(w["name"])}</td><td>{e(w["host"])}</td><td>{rank}</td><td>{w["nthreads"]}</td>'
            f'<td>{_bytes(m["managed"])}</td><td>{_bytes(max(w["rss"] - m["managed"], 0))}</td>'
            f'<td>{_bytes(m["spilled"])}</td><td>{_bytes(w["memory_limit"]) if w["memory_limit"] else "none"}</td>'
            f'<td>{thresholds}</td><td>{"yes" if w["paused"] else ""}</td>'
            f'<td>{_bytes(t["tcp_bytes"] - b["tcp_bytes"])}</td><td>{_bytes(t["mpi_bytes"] - b["mpi_bytes"])}</td></tr>')
    sb, se = begin["scheduler"], end["scheduler"]
    wall = max(end["at"] - begin["at"], 1e-9)
    cpu = se["cpu_seconds"] - sb["cpu_seconds"]
    return f"""<h2>Progress by task prefix (during the block)</h2>
<table id="progress"><tr><th>prefix</th><th>finished</th><th>failed</th><th>unfinished at the end</th><th></th></tr>
{"".join(prefix_rows)}</table>
<h2>Workers: memory and transfers</h2>
<table id="worker-memory"><tr><th>name</th><th>host</th><th>MPI rank</th><th>threads</th><th>managed</th>
<th>unmanaged</th><th>spilled</th><th>limit</th><th>target / spill / pause / terminate</th><th>paused</th>
<th>fetched over TCP</th><th>fetched over MPI</th></tr>{"".join(worker_rows)}</table>
<h2>Scheduler</h2>
<p id="scheduler">CPU {cpu:.2f} s over {wall:.2f} s ({100 * cpu / wall:.0f}% of a core), RSS at the end
{_bytes(se["rss_bytes"])}, event-loop lag at most {se["loop_lag_max_seconds"] * 1e3:.1f} ms since it started.</p>
"""


def render_report(runs: list[dict], info: dict, start: float, stop: float, begin: dict | None = None,
                  end: dict | None = None) -> str:
    """The report as one HTML document (inline SVG and CSS, nothing fetched)."""
    e = html.escape
    by_prefix: dict = defaultdict(lambda: [0, 0.0, 0])
    workers = sorted({r["worker"] for r in runs} | set(info.get("workers", {})))
    row = {w: i for i, w in enumerate(workers)}
    prefixes: list = []
    for r in runs:
        p = task_prefix(r["key"])
        if p not in by_prefix:
            prefixes.append(p)
        s = r["startstops"][0]
        stats = by_prefix[p]
        stats[0] += 1
        stats[1] += s["stop"] - s["start"]
        stats[2] += r["status"] != "OK"
    color = {p: _COLORS[i % len(_COLORS)] for i, p in enumerate(prefixes)}
    span = max(stop - start, 1e-6)
    width, lane = 1000, 18
    rects = []
    for r in runs[-20_000:]:  # keep the file small: the most recent runs
        s = r["startstops"][0]
        x = (s["start"] - start) / span * width
        w = max((s["stop"] - s["start"]) / span * width, 0.5)
        y = row.get(r["worker"], 0) * lane
        rects.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{lane - 2}" '
                     f'fill="{color[task_prefix(r["key"])]}"><title>{e(r["key"])} on {e(r["worker"])}: '
                     f'{(s["stop"] - s["start"]) * 1e3:.2f} ms</title></rect>')
    labels = "".join(f'<text x="4" y="{i * lane + 13}">{e(w)}</text>' for w, i in row.items())
    prefix_rows = "".join(
        f'<tr><td><span class="sw" style="background:{color[p]}"></span>{e(p)}</td><td>{by_prefix[p][0]}</td>'
        f'<td>{by_prefix[p][1]:.3f}</td><td>{by_prefix[p][1] / by_prefix[p][0] * 1e3:.2f}</td>'
        f'<td>{by_prefix[p][2]}</td></tr>' for p in prefixes)
    worker_rows = []
    for address, w in sorted(info.get("workers", {}).items()):
        m = w.get("metrics", {})
        mem = m.get("memory", {})
        worker_rows.append(
            f'<tr><td>{e(str(w.get("name")))}</td><td>{e(address)}</td><td>{w.get("nthreads")}</td>'
            f'<td>{_bytes(w.get("memory_limit", 0))}</td><td>{_bytes(m.get("rss", 0))}</td>'
            f'<td>{_bytes(mem.get("managed", 0))}</td><td>{_bytes(mem.get("spilled", 0))}</td></tr>')
    total = sum(v[1] for v in by_prefix.values())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>shoal performance report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; }}
.bar {{ width: 200px; height: 10px; background: #ddd; }} .bar div {{ height: 100%; background: #54a24b; }}
svg text {{ font-size: 11px; fill: #fff; mix-blend-mode: difference; }}
</style></head><body>
<h1>shoal performance report</h1>
<p id="summary">{len(runs)} tasks in {stop - start:.3f} s of wall time, {total:.3f} s of task time, on
{len(info.get("workers", {}))} workers (scheduler {e(str(info.get("id")))} at {e(str(info.get("address")))}).
Started {e(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)))}.</p>
<h2>Task stream</h2>
<svg id="task-stream" width="{width}" height="{max(len(workers), 1) * lane}" style="background:#f4f4f4">
{"".join(rects)}{labels}</svg>
<h2>Time per task prefix</h2>
<table id="prefixes"><tr><th>prefix</th><th>tasks</th><th>total s</th><th>mean ms</th><th>failed</th></tr>
{prefix_rows}</table>
<h2>Workers at the end</h2>
<table id="workers"><tr><th>name</th><th>address</th><th>threads</th><th>memory limit</th><th>RSS</th>
<th>managed</th><th>spilled</th></tr>{"".join(worker_rows)}</table>
{render_dashboard_sections(begin, end)}</body></html>
"""
