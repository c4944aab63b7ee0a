"""The Python bench of issue #13: shoal next to frisky, dask.distributed and dask's
in-process `scheduler="sync"`, in one run, with every target checked.

    python python/bench/bench_python.py [--runtimes shoal,frisky,dask] [--sections map,fanin,workloads]
        [--workloads NAME,...] [--map-n 100000] [--dask-map-n 5000] [--fanin-n 100000]
        [--fanin-baseline-n 20000] [--dask-fanin-n 5000] [--repeat 3] [--workers 2] [--threads 1]
        [--startup-shoal S] [--startup-dask-mpi S] [--startup-file S] [--json FILE]
    python python/bench/bench_python.py profile WORKLOAD... [--repeat 10] [--rate 250]

Every runtime gets `--workers` worker processes of `--threads` threads on this machine
(`clusters.py`); BLAS and OpenMP are held to one thread in every process (sync included),
so that "1 thread" means one core. Each runtime runs in a child process of its own, whose
cluster stays up for the whole run; the items are interleaved (the first item on every
runtime, then the second, ...) so that the shared machine's changing load falls on all
runtimes alike. A crash or hang costs only the item it happened in: after `--item-timeout`
s without progress the child's process group is killed, the item reported as CRASH, and
the next item starts a fresh cluster.

Sections:
- `map`: `client.map(inc, range(N))` + `gather`, best of `--repeat` (dask.distributed with
  `--dask-map-n` tasks, the rate compared; see `bench_map.py`);
- `fanin`: a graph dict of N leaves and one task summing them through `client.get`
  (frisky with `--fanin-baseline-n` leaves, dask.distributed with `--dask-fanin-n`: their
  rates at 100k would take minutes; sync runs the full N, through `dask.local.get_sync`);
- `workloads`: the Dask-collection suite of `workloads.py`, each run once as warm-up and
  `--repeat` times on the same cluster, best time kept, every value checked against what
  `scheduler="sync"` computed (a mismatch is reported as WRONG, and counts as a failure).

The start-up row (mpirun -np 4 to a Python client's first result, shoal vs dask-mpi) is
measured by `scripts/bench` (`scripts/bench.d/mpi_first_result.py`) and passed in with
`--startup-*`; without them the row says "not measured".

`profile` runs the named workloads on shoal under `py-spy record --subprocesses` (attached
to the client process after the warm-up run, for the `--repeat` timed runs; the workers and
the `shoal local` process are its descendants) and prints the ten hottest functions of the
client, the workers and the scheduler process by own and by total time (`profile_top.py`). py-spy is a benchmark-only tool: it is
installed into .venv by `scripts/bench` when profiling is asked for, never a dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "@@bench "
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SAME_GRAPHS = {"dataframe.shuffle.method": "tasks", "array.rechunk.method": "tasks"}
NAMES = {"sync": "sync", "shoal": "shoal", "frisky": "frisky", "dask": "dask.distributed"}


# --- child: one runtime, a list of items, events on stdout -------------------------------


def _emit(**event) -> None:
    print(MARK + json.dumps(event), flush=True)


def _child(runtime: str, items, data_dir: str, ref_dir: str, repeat: int, workers: int, threads: int) -> None:
    """Run `items` (an iterable of [kind, arg]) on one runtime's cluster, started once."""
    import clusters

    if runtime == "sync":
        import dask

        # The graphs shoal and frisky run (they plan shuffles and rechunks as tasks); sync
        # would otherwise plan a disk shuffle.
        dask.config.set(SAME_GRAPHS)
        ctx = contextlib.nullcontext("sync")
    else:
        ctx = clusters.cluster(runtime, workers, threads)
    start = time.perf_counter()
    with ctx as client:
        _emit(event="ready", seconds=time.perf_counter() - start)
        for item in items:
            _emit(event="start", item=item)
            try:
                _emit(event="done", item=item, **_run_item(runtime, client, item, data_dir, ref_dir, repeat))
            except Exception as e:  # noqa: BLE001 - every failure is a result, the rest must still run
                wrong = type(e).__name__ == "Mismatch"  # a value differing from the expected one
                _emit(event="error", item=item, wrong=wrong, error=f"{type(e).__name__}: {e}"[:600],
                      traceback=traceback.format_exc()[-3000:])


def _run_item(runtime: str, client, item: list, data_dir: str, ref_dir: str, repeat: int) -> dict:
    import bench_map

    kind, arg = item
    if kind == "map":
        return {"times": _repeat(item, repeat, lambda: bench_map.map_gather(client, arg)), "n": arg}
    if kind == "fanin":
        if runtime == "sync":
            times = _repeat(item, repeat, lambda: bench_map.fan_in_sync(arg))
        else:
            times = _repeat(item, repeat, lambda: bench_map.fan_in(client, arg))
        return {"times": times, "n": arg + 1}
    if kind == "workload":
        return _run_workload(runtime, client, arg, data_dir, ref_dir, repeat)
    raise ValueError(f"unknown item {item!r}")


def _repeat(item: list, repeat: int, run) -> list[float]:
    times = []
    for _ in range(repeat):
        times.append(run())
        _emit(event="progress", item=item)
    return times


def _run_workload(runtime: str, client, name: str, data_dir: str, ref_dir: str, repeat: int) -> dict:
    import dask
    import workloads

    wl = next(w for w in workloads.WORKLOADS if w.name == name)
    ref_path = os.path.join(ref_dir, f"{name}.pickle")
    expected = None
    if runtime != "sync":
        if not os.path.exists(ref_path):
            raise RuntimeError("no reference value: the sync run of this workload failed")
        with open(ref_path, "rb") as f:
            expected = pickle.load(f)
    out: dict = {}
    times = []
    for run in range(1 + repeat):
        collections = wl.build(data_dir)
        if run == 0 and runtime == "sync":
            out["tasks"] = _task_count(collections)
        t0 = time.perf_counter()
        values = dask.compute(*collections, scheduler=client)
        elapsed = time.perf_counter() - t0
        if expected is None:
            expected = values
            with open(ref_path, "wb") as f:
                pickle.dump(values, f)
        else:
            workloads.assert_same(expected, values, f"run {run}")
        if run:
            times.append(elapsed)
        _emit(event="warm" if run == 0 else "progress", item=["workload", name])
    out["times"] = times
    return out


def _task_count(collections) -> int | None:
    try:
        from dask.base import collections_to_expr

        return len(collections_to_expr(collections, True).optimize().__dask_graph__())
    except Exception:  # noqa: BLE001 - only a figure for the table
        return None


# --- driver --------------------------------------------------------------------------------


def _child_env() -> dict:
    env = dict(os.environ, **ONE_THREAD)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH", "")) if p)
    return env


class Runner:
    """One runtime's child process, kept across items: `run(item)` sends the item on the
    child's stdin and returns its result event. A child that crashes or makes no progress
    for `timeout` s is killed (process group) and the item reported as a crash; the next
    item starts a fresh child. A child that dies before its cluster is up makes every
    item of that runtime an error ("not installed" when an import failed)."""

    def __init__(self, runtime: str, args, data_dir: str, ref_dir: str, log_dir: str):
        self.runtime, self.args = runtime, args
        self.data_dir, self.ref_dir, self.log_dir = data_dir, ref_dir, log_dir
        self.proc: subprocess.Popen | None = None
        self.dead: dict | None = None  # set when the runtime cannot start at all
        self.attempt = 0
        self.buf = ""

    def run(self, item: list) -> dict:
        if self.dead:
            return dict(self.dead, item=item)
        if self.proc is None and not self._start():
            return dict(self.dead, item=item)
        self.proc.stdin.write(json.dumps(item) + "\n")
        self.proc.stdin.flush()
        ev, why = self._wait(lambda e: e["event"] in ("done", "error") and e["item"] == item)
        if ev is not None:
            return ev
        tail = self._stop()
        _log(f"{NAMES[self.runtime]} {_label(item)}: {why}; log tail:\n{tail}")
        return {"event": "error", "item": item, "error": f"{why}: {_reason(tail)}", "crash": True}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self._stop()

    def _start(self) -> bool:
        self.attempt += 1
        self.log_path = os.path.join(self.log_dir, f"{self.runtime}-{self.attempt}.log")
        a = self.args
        cmd = [sys.executable, os.path.abspath(__file__), "--child", self.runtime, "--data", self.data_dir,
               "--ref", self.ref_dir, "--repeat", str(a.repeat), "--workers", str(a.workers),
               "--threads", str(a.threads)]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         env=_child_env(), text=True, start_new_session=True)
        self.buf = ""
        ev, why = self._wait(lambda e: e["event"] == "ready")
        if ev is not None:
            _log(f"{NAMES[self.runtime]}: cluster up in {ev['seconds']:.1f} s")
            return True
        tail = self._stop()
        absent = "ModuleNotFoundError" in tail or "ImportError" in tail
        note = "not installed" if absent else f"did not start ({why})"
        _log(f"{NAMES[self.runtime]}: {note}; log tail:\n{tail}")
        self.dead = {"event": "error", "error": f"{note}: {_reason(tail)}", "absent": absent}
        return False

    def _wait(self, wanted) -> tuple[dict | None, str]:
        """The first event `wanted` accepts, or None and why there was none."""
        timeout = self.args.item_timeout
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            *lines, self.buf = self.buf.split("\n")
            for i, line in enumerate(lines):
                if not line.startswith(MARK):
                    continue
                ev = json.loads(line[len(MARK):])
                deadline = time.monotonic() + timeout
                if wanted(ev):
                    self.buf = "\n".join(lines[i + 1:] + [self.buf])
                    return ev, ""
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None, f"no progress in {timeout:.0f} s (killed)"
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                return None, f"child exited with status {self.proc.wait(timeout=30)}"
            self.buf += chunk

    def _stop(self) -> str:
        _kill(self.proc)
        self.proc = None
        return _tail(self.log_path)


def run_all(runtimes: list[str], items: list, args, data_dir: str, ref_dir: str, log_dir: str) -> dict:
    """Every item on every runtime that takes it, interleaved: item 1 on each runtime, then
    item 2, ..., so that the machine's load changes hit all runtimes alike. The clusters stay
    up (idle) between their turns. Returns {runtime: {json.dumps(item): result event}}."""
    runners = {r: Runner(r, args, data_dir, ref_dir, log_dir) for r in runtimes}
    results: dict = {r: {} for r in runtimes}
    try:
        for item_of in items:
            for r in runtimes:
                item = item_of(r)
                if item is None:
                    continue
                ev = runners[r].run(item)
                results[r][json.dumps(item)] = ev
                if ev["event"] == "done":
                    _log(f"{NAMES[r]} {_label(item)}: best {min(ev['times']):.3f} s")
                else:
                    _log(f"{NAMES[r]} {_label(item)}: {ev['error'][:300]}")
    finally:
        for runner in runners.values():
            runner.close()
    return results


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            with contextlib.suppress(OSError):
                pipe.close()


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def _reason(tail: str) -> str:
    """The line of a child's log tail that says what went wrong (its last exception line)."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "panicked" in line:
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _label(item: list) -> str:
    kind, arg = item
    return f"{kind} {arg:,}" if isinstance(arg, int) else arg


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _fanin_n(args, runtime: str) -> int:
    return {"frisky": args.fanin_baseline_n, "dask": args.dask_fanin_n}.get(runtime, args.fanin_n)


# --- report --------------------------------------------------------------------------------


def _best(ev: dict | None) -> float | None:
    return min(ev["times"]) if ev and ev.get("event") == "done" else None


def _cell_rate(ev: dict | None) -> str:
    if ev is None:
        return "-"
    if ev.get("event") != "done":
        return _short_error(ev)
    return f"{ev['n'] / min(ev['times']):,.0f} tasks/s ({ev['n']:,})"


def _short_error(ev: dict) -> str:
    if ev.get("absent"):
        return "not installed"
    if ev.get("wrong"):
        return "WRONG"
    return "CRASH" if ev.get("crash") else "error"


def _failed(ev: dict | None) -> bool:
    """shoal ran the item and did not produce a checked result (an error, WRONG or CRASH)."""
    return ev is not None and ev.get("event") != "done"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def report(res: dict, args, wl_names: list[str]) -> dict:
    """Print the per-workload table and the target table; return the figures as a dict."""
    def get(runtime, item):
        return res.get(runtime, {}).get(json.dumps(item))

    versions = {"shoal": _version("shoal"), "frisky": _version("frisky"), "dask": _version("distributed"),
                "sync": _version("dask")}
    summary: dict = {"versions": versions, "workloads": {}}
    print(f"\n== Python bench: {args.workers} worker processes x {args.threads} thread, {os.cpu_count()} cores "
          f"shared by client, scheduler and workers; BLAS/OpenMP 1 thread; best of {args.repeat}")
    print(f"   shoal {versions['shoal']}, frisky {versions['frisky']}, dask.distributed {versions['dask']}, "
          f"dask {versions['sync']} (sync)")

    slower: list[str] = []
    sums = {r: 0.0 for r in NAMES}
    missing = {r: [] for r in NAMES}
    ratios: dict[str, float] = {}
    if wl_names:
        print("\n| workload | tasks | sync s | shoal s | frisky s | dask.distributed s | shoal/sync (<= 1.3) "
              "| shoal vs frisky (never slower) | what it computes |")
        print("|---|---:|---:|---:|---:|---:|---|---|---|")
        for name in wl_names:
            item = ["workload", name]
            evs = {r: get(r, item) for r in NAMES}
            best = {r: _best(evs[r]) for r in NAMES}
            for r in NAMES:
                if best[r] is None:
                    if r in args.runtimes_all:
                        missing[r].append(name)
                else:
                    sums[r] += best[r]
            cells = {r: (f"{best[r]:.3f}" if best[r] is not None else (_short_error(evs[r]) if evs[r] else "-"))
                     for r in NAMES}
            if best["shoal"] is not None and best["sync"]:
                ratio = best["shoal"] / best["sync"]
                ratios[name] = ratio
                ratio_cell = f"{ratio:.2f}x {_verdict(ratio <= 1.3)}"
            else:
                ratio_cell = "- FAIL" if "shoal" in args.runtimes_all else "-"
            if best["shoal"] is None:
                vs = "FAIL (shoal did not finish)" if "shoal" in args.runtimes_all else "-"
                if "shoal" in args.runtimes_all:
                    slower.append(name)
            elif best["frisky"] is None:
                vs = "- (frisky did not finish)" if evs["frisky"] else "-"
            else:
                f = best["shoal"] / best["frisky"]
                vs = f"{f:.2f}x {'FAIL' if f > 1 else 'PASS'}"
                if f > 1:
                    slower.append(name)
            tasks = (evs["sync"] or {}).get("tasks")
            import workloads

            doc = next(w.doc for w in workloads.WORKLOADS if w.name == name)
            print(f"| {name} | {tasks if tasks is not None else '-'} | {cells['sync']} | {cells['shoal']} "
                  f"| {cells['frisky']} | {cells['dask']} | {ratio_cell} | {vs} | {doc} |")
            summary["workloads"][name] = {"best": best, "tasks": tasks,
                                          "errors": {r: e["error"] for r, e in evs.items()
                                                     if e and e.get("event") == "error"}}

        def sum_cell(r):
            if r not in args.runtimes_all:
                return "-"
            if len(missing[r]) == len(wl_names):
                return "none finished"
            return f"{sums[r]:.3f}" + (f" ({len(missing[r])} missing)" if missing[r] else "")

        sum_ratio = (sums["shoal"] / sums["sync"] if sums["sync"] and not missing["shoal"]
                     and "shoal" in args.runtimes_all else None)
        print(f"| **sum** | | {sum_cell('sync')} | {sum_cell('shoal')} | {sum_cell('frisky')} | {sum_cell('dask')} "
              f"| {'-' if sum_ratio is None else f'{sum_ratio:.2f}x'} | {len(slower)} slower | |")
        summary["sums"], summary["slower_than_frisky"] = sums, slower
        for name in wl_names:
            for r, label in NAMES.items():
                err = summary["workloads"][name]["errors"].get(r)
                if err:
                    print(f"note: {label} on {name}: {err[:300]}")

    # --- the target table ---
    print("\n== Issue #13 targets (same run)")
    print("| measure | shoal | frisky | dask.distributed | sync (in-process) | target | figure | result |")
    print("|---|---|---|---|---|---|---|---|")
    if "map" in args.sections:
        ev = {r: get(r, ["map", args.dask_map_n if r == "dask" else args.map_n]) for r in NAMES}
        rate = {r: (ev[r]["n"] / min(ev[r]["times"]) if _best(ev[r]) else None) for r in NAMES}
        x = rate["shoal"] / rate["frisky"] if rate["shoal"] and rate["frisky"] else None
        ok = False if _failed(ev["shoal"]) else (None if x is None else x >= 10)
        print(f"| client.map(inc, range({args.map_n:,})) + gather, best of {args.repeat} | {_cell_rate(ev['shoal'])} "
              f"| {_cell_rate(ev['frisky'])} | {_cell_rate(ev['dask'])} | - | >= 10x frisky "
              f"| {'-' if x is None else f'{x:.1f}x frisky'} | {_verdict(ok)} |")
        summary["map"] = rate
    if "fanin" in args.sections:
        ev = {r: get(r, ["fanin", _fanin_n(args, r)]) for r in NAMES}
        rate = {r: (ev[r]["n"] / min(ev[r]["times"]) if _best(ev[r]) else None) for r in NAMES}
        s = rate["shoal"]
        print(f"| {args.fanin_n:,}-input fan-in through client.get (module-level functions) | {_cell_rate(ev['shoal'])} "
              f"| {_cell_rate(ev['frisky'])} | {_cell_rate(ev['dask'])} | {_cell_rate(ev['sync'])} "
              f"| >= 100,000 tasks/s | {'-' if s is None else f'{s:,.0f} tasks/s'} "
              f"| {_verdict(False if _failed(ev['shoal']) else (None if s is None else s >= 100_000))} |")
        summary["fanin"] = rate
    if wl_names:
        complete = not missing["shoal"] and "shoal" in args.runtimes_all
        r = sums["shoal"] / sums["sync"] if sums["sync"] and complete else None
        ok = False if missing["shoal"] else (None if r is None else r <= 1.3)
        figure = "shoal incomplete" if missing["shoal"] else ("-" if r is None else f"{r:.2f}x sync")
        print(f"| {len(wl_names)} Dask-collection workloads, sum of compute seconds | {sum_cell('shoal')} "
              f"| {sum_cell('frisky')} | {sum_cell('dask')} | {sum_cell('sync')} | <= 1.3x sync "
              f"| {figure} | {_verdict(ok)} |")
        worst = sorted(ratios, key=ratios.get, reverse=True)[:2]
        both = "shoal" in args.runtimes_all and "frisky" in args.runtimes_all and len(missing["frisky"]) < len(wl_names)
        print(f"| of those, workloads where shoal is slower than frisky | {len(slower)} of {len(wl_names)}"
              f"{' (' + ', '.join(slower) + ')' if slower else ''} | | | | none | {len(slower)} "
              f"| {_verdict(not slower if both else None)} |")
        summary["worst_ratio"] = worst
    sh, dm, ff = args.startup_shoal, args.startup_dask_mpi, args.startup_file
    frac = sh / dm if sh and dm else None
    file_note = f" (scheduler file at {ff:.2f} s)" if ff else ""
    print(f"| mpirun -np 4 ... mpi to a Python client's first result, median | "
          f"{'not measured' if sh is None else f'{sh:.2f} s{file_note}'} | | "
          f"{'not measured' if dm is None else f'dask-mpi {dm:.2f} s'} | | <= 1/5 of dask-mpi "
          f"| {'-' if frac is None else f'{frac:.2f} of dask-mpi'} | {_verdict(None if frac is None else frac <= 0.2)} |")
    summary["startup"] = {"shoal": sh, "dask_mpi": dm, "file": ff}
    if "map" in args.sections and "dask" in args.runtimes_all and args.dask_map_n != args.map_n:
        print(f"note: dask.distributed ran map with {args.dask_map_n:,} tasks (the rate is compared)")
    if "fanin" in args.sections and len(args.runtimes_all) > 2 and (args.fanin_baseline_n, args.dask_fanin_n) != (
        args.fanin_n,
    ) * 2:
        print(f"note: frisky ran the fan-in with {args.fanin_baseline_n:,} leaves, dask.distributed with "
              f"{args.dask_fanin_n:,} (the rate is compared)")
    return summary


# --- profile -------------------------------------------------------------------------------


def profile(names: list[str], repeat: int, rate: int, args) -> None:
    import shutil

    import profile_top
    import workloads

    known = [w.name for w in workloads.WORKLOADS]
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown workload {name!r} (known: {', '.join(known)})")
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (benchmark-only)")
    with tempfile.TemporaryDirectory() as tmp:
        data, ref = os.path.join(tmp, "data"), os.path.join(tmp, "ref")
        os.makedirs(data)
        os.makedirs(ref)
        _prepare(data)
        for name in names:
            item = [["workload", name]]
            base = [sys.executable, os.path.abspath(__file__), "--items", json.dumps(item), "--data", data,
                    "--ref", ref, "--workers", str(args.workers), "--threads", str(args.threads)]
            subprocess.run(base + ["--child", "sync", "--repeat", "1"], env=_child_env(), check=True,
                           stdout=subprocess.DEVNULL)
            out = os.path.join(tmp, f"{name}.txt")
            _log(f"profile: py-spy record on the shoal client, {name}, warm-up + {repeat} runs")
            # py-spy attaches after the warm-up run: imports and start-up are not sampled.
            with open(os.path.join(tmp, f"{name}.log"), "w") as log:
                child = subprocess.Popen(base + ["--child", "shoal", "--repeat", str(repeat)], env=_child_env(),
                                         stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
            events, spy = [], None
            for line in child.stdout:
                if not line.startswith(MARK):
                    continue
                events.append(json.loads(line[len(MARK):]))
                if events[-1]["event"] in ("done", "error") and spy is not None:
                    spy.send_signal(signal.SIGINT)  # stop sampling before the cluster shuts down
                if events[-1]["event"] == "warm":
                    spy = subprocess.Popen([py_spy, "record", "--format", "raw", "--rate", str(rate),
                                            "--nonblocking", "--subprocesses", "--pid", str(child.pid), "-o", out],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _kill(child)
            if spy is not None:
                spy.wait(timeout=60)
            done = [e for e in events if e["event"] in ("done", "error")]
            if not done or done[0]["event"] != "done" or spy is None:
                print(f"\n== py-spy: shoal on {name} failed: {done[0].get('error') if done else 'no result'}")
                continue
            times = done[0]["times"]
            print(f"\n== py-spy: shoal on {name}: {repeat} runs of {min(times):.3f}-{max(times):.3f} s "
                  f"({sum(times):.2f} s) after a warm-up, {rate} samples/s of busy threads; the untimed "
                  f"work between runs (building collections, checking values) left out")
            profile_top.print_top(out, 10, rate, sum(times))


def _prepare(data_dir: str) -> None:
    sys.path.insert(0, HERE)
    import workloads

    workloads.prepare(data_dir)


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "profile":
        p = argparse.ArgumentParser(prog="bench_python.py profile")
        p.add_argument("workloads", nargs="+")
        p.add_argument("--repeat", type=int, default=10)
        p.add_argument("--rate", type=int, default=250)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--threads", type=int, default=1)
        a = p.parse_args(sys.argv[2:])
        sys.path.insert(0, HERE)
        profile(a.workloads, a.repeat, a.rate, a)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtimes", default="shoal,frisky,dask", help="comma-separated, of shoal, frisky, dask")
    p.add_argument("--sections", default="map,fanin,workloads")
    p.add_argument("--workloads", default="", help="comma-separated names (default: all)")
    p.add_argument("--map-n", type=int, default=100_000)
    p.add_argument("--dask-map-n", type=int, default=5_000)
    p.add_argument("--fanin-n", type=int, default=100_000)
    p.add_argument("--fanin-baseline-n", type=int, default=20_000, help="fan-in leaves for frisky")
    p.add_argument("--dask-fanin-n", type=int, default=5_000, help="fan-in leaves for dask.distributed")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--item-timeout", type=float, default=300.0)
    p.add_argument("--startup-shoal", type=float)
    p.add_argument("--startup-dask-mpi", type=float)
    p.add_argument("--startup-file", type=float, help="when shoal's scheduler file appeared")
    p.add_argument("--json", help="also write the figures to this file")
    # internal: one runtime's items in this process
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--items", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, HERE)
        items = json.loads(args.items) if args.items else (json.loads(line) for line in iter(sys.stdin.readline, ""))
        _child(args.child, items, args.data, args.ref, args.repeat, args.workers, args.threads)
        return

    sys.path.insert(0, HERE)
    import workloads

    args.sections = [s for s in args.sections.split(",") if s]
    args.runtimes_all = ["sync"] + [r for r in args.runtimes.split(",") if r]
    for r in args.runtimes_all:
        if r not in NAMES:
            raise SystemExit(f"unknown runtime {r!r} (known: shoal, frisky, dask)")
    known = [w.name for w in workloads.WORKLOADS]
    wl_names = [w for w in args.workloads.split(",") if w] or known
    for w in wl_names:
        if w not in known:
            raise SystemExit(f"unknown workload {w!r} (known: {', '.join(known)})")
    if "workloads" not in args.sections:
        wl_names = []

    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        data, ref = os.path.join(tmp, "data"), os.path.join(tmp, "ref")
        os.makedirs(data)
        os.makedirs(ref)
        workloads.prepare(data)
        items = []
        if "map" in args.sections:
            items.append(lambda r: None if r == "sync" else ["map", args.dask_map_n if r == "dask" else args.map_n])
        if "fanin" in args.sections:
            items.append(lambda r: ["fanin", _fanin_n(args, r)])
        items += [lambda r, w=w: ["workload", w] for w in wl_names]
        results = run_all(args.runtimes_all, items, args, data, ref, tmp)
        summary = report(results, args, wl_names)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)


if __name__ == "__main__":
    main()
