"""One way to start each runtime's cluster for the Python benchmarks.

`cluster(runtime, workers=2, threads=1)` is a context manager yielding a connected client
with `workers` worker processes of `threads` threads each, all on this machine:

- ``shoal``: `python -m shoal local --workers W --nthreads T` in its own process group
  (killed by its pid at the end), then `shoal.Client(scheduler_file=...)`; more flags
  for `shoal local` from `$SHOAL_BENCH_LOCAL_FLAGS` (experiments);
- ``frisky``: `frisky.LocalCluster(processes=True)`, the client from `get_client()`;
- ``dask``: `distributed.LocalCluster(processes=True)` and a `distributed.Client`.

`memory_limit` (bytes; 0 = shoal's none, distributed's "auto") and `local_directory` are passed to the runtimes that take
them. A runtime that is not installed raises ImportError.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

RUNTIMES = ("shoal", "frisky", "dask")


@contextlib.contextmanager
def cluster(runtime: str, workers: int = 2, threads: int = 1, memory_limit: int = 0,
            local_directory: str | None = None) -> Iterator[object]:
    if runtime == "shoal":
        with _shoal(workers, threads, memory_limit, local_directory) as client:
            yield client
    elif runtime == "frisky":
        with _frisky(workers, threads) as client:
            yield client
    elif runtime == "dask":
        with _dask(workers, threads, memory_limit, local_directory) as client:
            yield client
    else:
        raise ValueError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")


@contextlib.contextmanager
def _shoal(workers: int, threads: int, memory_limit: int, local_directory: str | None) -> Iterator[object]:
    import shoal

    with tempfile.TemporaryDirectory() as tmp:
        sf = os.path.join(tmp, "scheduler.json")
        cmd = [sys.executable, "-m", "shoal", "-q", "local", "--workers", str(workers), "--nthreads", str(threads),
               "--memory-limit", str(memory_limit), "--scheduler-file", sf]
        if local_directory:
            cmd += ["--local-directory", local_directory]
        cmd += os.environ.get("SHOAL_BENCH_LOCAL_FLAGS", "").split()
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            with shoal.Client(scheduler_file=sf, timeout=30) as client:
                client.wait_for_workers(workers, timeout=30)
                yield client
                client.shutdown()
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def _frisky(workers: int, threads: int) -> Iterator[object]:
    import frisky

    with frisky.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                             silence_summary=True) as lc, lc.get_client() as client:
        yield client


@contextlib.contextmanager
def _dask(workers: int, threads: int, memory_limit: int, local_directory: str | None) -> Iterator[object]:
    import dask
    from distributed import Client, LocalCluster

    options = {"temporary-directory": local_directory} if local_directory else {}
    with dask.config.set(options), LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None,
        memory_limit=memory_limit or "auto", local_directory=local_directory,
    ) as lc, Client(lc) as client:
        yield client
