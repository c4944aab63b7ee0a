"""map(inc) + gather and a dask.array sum on shoal, dask.distributed and frisky.

    python python/bench/bench_map.py [--n 100000] [--dask-n 20000] [--frisky-n 100000]
                                     [--array 20000] [--chunk 1000] [--workers 2] [--threads 1]

Every runtime gets `--workers` worker processes with `--threads` threads each, on this
machine; one warm-up task runs first. Workloads:

- `client.map(inc, range(N))` then `gather` (end to end, from the first call to the last
  result);
- `da.random.random((A, A), chunks=(C, C)).sum().compute(scheduler=client)`.

Prints a markdown table with the targets (>= 50,000 tasks/s and >= 5x frisky for map).
A runtime that is not installed is reported as such. `--dask-n 0`, `--frisky-n 0` or
`--array 0` skip a part.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time


def inc(x):
    return x + 1


def _array_sum(client, size: int, chunk: int) -> tuple[float, float]:
    import dask.array as da

    x = da.random.random((size, size), chunks=(chunk, chunk))
    start = time.perf_counter()
    total = x.sum().compute(scheduler=client)
    elapsed = time.perf_counter() - start
    # about size^2 / 2 for uniform randoms
    assert abs(total / (size * size) - 0.5) < 0.01, total
    return elapsed, total


def _map(client, n: int) -> float:
    client.submit(inc, -1).result()
    start = time.perf_counter()
    futures = client.map(inc, range(n))
    results = client.gather(futures)
    elapsed = time.perf_counter() - start
    assert results[0] == 1 and results[-1] == n
    del futures, results
    return elapsed


def run_shoal(n: int, size: int, chunk: int, workers: int, threads: int) -> dict:
    import shoal

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        sf = os.path.join(tmp, "scheduler.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "-q", "local", "--workers", str(workers), "--nthreads", str(threads),
             "--memory-limit", "0", "--scheduler-file", sf],
            start_new_session=True,
        )
        try:
            with shoal.Client(scheduler_file=sf, timeout=30) as client:
                client.wait_for_workers(workers, timeout=30)
                if n:
                    out["map"] = (n, _map(client, n))
                if size:
                    out["array"] = _array_sum(client, size, chunk)
                client.shutdown()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    return out


def run_dask(n: int, size: int, chunk: int, workers: int, threads: int) -> dict:
    from distributed import Client, LocalCluster

    out = {}
    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            if n:
                out["map"] = (n, _map(client, n))
            if size:
                out["array"] = _array_sum(client, size, chunk)
    return out


def run_frisky(n: int, size: int, chunk: int, workers: int, threads: int) -> dict:
    import frisky

    out = {}
    with frisky.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, silence_summary=True) as cluster:
        with cluster.get_client() as client:
            if n:
                out["map"] = (n, _map(client, n))
            if size:
                out["array"] = _array_sum(client, size, chunk)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="map tasks for shoal")
    p.add_argument("--dask-n", type=int, default=20_000, help="map tasks for dask.distributed (0 = skip map)")
    p.add_argument("--frisky-n", type=int, default=100_000, help="map tasks for frisky (0 = skip map)")
    p.add_argument("--array", type=int, default=20_000, help="array side (0 = skip the array sum)")
    p.add_argument("--chunk", type=int, default=1_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", action="append", default=[], help="runtime to skip (dask, frisky)")
    args = p.parse_args()

    rows: list[tuple[str, dict | str]] = []
    runs = [("shoal", run_shoal, args.n), ("dask.distributed LocalCluster", run_dask, args.dask_n),
            ("frisky LocalCluster", run_frisky, args.frisky_n)]
    for name, fn, n in runs:
        if name.split()[0].split(".")[0] in args.skip:
            rows.append((name, "skipped (--skip)"))
            continue
        print(f"[bench] {name}: map {n:,} tasks, array {args.array}^2 in {args.chunk}^2 chunks", file=sys.stderr, flush=True)
        try:
            rows.append((name, fn(n, args.array, args.chunk, args.workers, args.threads)))
        except ImportError as e:
            rows.append((name, f"not installed ({e.name or e})"))
        except Exception as e:  # noqa: BLE001 - a baseline failing must not hide the others
            rows.append((name, f"failed: {type(e).__name__}: {e}"))

    shoal_rate = None
    frisky_rate = None
    for name, r in rows:
        if isinstance(r, dict) and "map" in r:
            rate = r["map"][0] / r["map"][1]
            if name == "shoal":
                shoal_rate = rate
            elif name.startswith("frisky"):
                frisky_rate = rate

    chunks = (args.array // args.chunk) ** 2 if args.chunk else 0
    print(f"\n== Python workloads, {args.workers} worker processes x {args.threads} thread(s), {os.cpu_count()} cores shared\n")
    print(f"| runtime | map(inc)+gather tasks | time (s) | tasks/s | array sum {args.array}x{args.array} / {args.chunk}^2 ({chunks:,} chunks) (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        if isinstance(r, str):
            print(f"| {name} | - | - | {r} | - |")
            continue
        n, t = r.get("map", (0, 0.0))
        mp = f"| {n:,} | {t:.2f} | {n / t:,.0f} " if n else "| - | - | - "
        arr = f"{r['array'][0]:.2f}" if "array" in r else "-"
        print(f"| {name} {mp}| {arr} |")
    target = "met" if shoal_rate and shoal_rate >= 50_000 else "NOT met"
    print(f"\ntarget >= 50,000 tasks/s end to end: {target} ({shoal_rate or 0:,.0f} tasks/s)")
    if frisky_rate:
        ratio = shoal_rate / frisky_rate if shoal_rate else 0
        print(f"target >= 5x frisky in the same run: {'met' if ratio >= 5 else 'NOT met'} ({ratio:.1f}x)")
    else:
        print("target >= 5x frisky: frisky did not run (see the table)")
    if args.dask_n and args.dask_n != args.n:
        print(f"note: dask.distributed ran map with {args.dask_n:,} tasks (100k takes minutes at its rate)")


if __name__ == "__main__":
    main()
