"""client.map(inc, range(N)) + gather on shoal and on dask.distributed, same workers.

    python python/bench/bench_map.py [--n 100000] [--dask-n 20000] [--workers 2] [--threads 1]

Both runtimes get `--workers` worker processes with `--threads` threads each, on this
machine; one warm-up task runs first. Prints a table (markdown).
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


def run_shoal(n: int, workers: int, threads: int) -> float:
    import shoal

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
                client.submit(inc, -1).result(timeout=30)
                start = time.perf_counter()
                futures = client.map(inc, range(n))
                results = client.gather(futures, timeout=600)
                elapsed = time.perf_counter() - start
                assert results[-1] == n
                del futures, results
                client.shutdown()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    return elapsed


def run_dask(n: int, workers: int, threads: int) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.submit(inc, -1).result()
            start = time.perf_counter()
            futures = client.map(inc, range(n))
            results = client.gather(futures)
            elapsed = time.perf_counter() - start
            assert results[-1] == n
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="tasks for shoal")
    p.add_argument("--dask-n", type=int, default=20_000, help="tasks for dask.distributed (0 = skip)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    rows = [("shoal", args.n, run_shoal(args.n, args.workers, args.threads))]
    if args.dask_n:
        try:
            rows.append(("dask.distributed LocalCluster", args.dask_n, run_dask(args.dask_n, args.workers, args.threads)))
        except ImportError:
            print("dask.distributed is not installed: skipped", file=sys.stderr)
    print(f"\nmap(inc) + gather, {args.workers} worker processes x {args.threads} thread(s)\n")
    print("| runtime | tasks | time (s) | tasks/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, n, t in rows:
        print(f"| {name} | {n:,} | {t:.2f} | {n / t:,.0f} |")


if __name__ == "__main__":
    main()
