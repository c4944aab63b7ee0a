"""A computation whose data is three times the workers' memory, on shoal and on
dask.distributed with the same memory limits.

    python python/bench/bench_spill.py [--workers 2] [--memory-limit 400MiB] [--factor 3]

Both runtimes get `--workers` worker processes with one thread and the same memory limit
(spill at the default thresholds), started by `clusters.py`. The workload persists a dask.array of
`factor x workers x limit` bytes (held all at once, so most of it must go to disk), then
reduces it twice (reading every chunk back), and checks the result against the
seed. Prints a markdown table: wall time, and whether each finished.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import clusters

MIB = 1 << 20


def _workload(client, nbytes: int, chunk_mib: int) -> float:
    import dask.array as da

    side_chunk = int(math.sqrt(chunk_mib * MIB / 8))
    chunks_per_side = max(1, round(math.sqrt(nbytes / (chunk_mib * MIB))))
    side = side_chunk * chunks_per_side
    x = da.random.RandomState(42).random((side, side), chunks=(side_chunk, side_chunk))
    start = time.perf_counter()
    x = client.persist(x)
    total = client.compute((x + 1).sum()).result()
    mean = client.compute(x.mean()).result()
    elapsed = time.perf_counter() - start
    assert abs(total / (side * side) - 1.5) < 0.01, total
    assert abs(mean - 0.5) < 0.01, mean
    del x
    return elapsed


def run(runtime: str, workers: int, limit: str, nbytes: int, chunk_mib: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp, clusters.cluster(
        runtime, workers, 1, memory_limit=_parse_bytes(limit), local_directory=tmp
    ) as client:
        elapsed = _workload(client, nbytes, chunk_mib)
        if runtime != "shoal":
            return elapsed, "finished"
        info = client.scheduler_info()
        spilled = sum(w["metrics"]["memory"]["spill_bytes"] for w in info["workers"].values())
        return elapsed, f"{spilled / MIB:,.0f} MiB spilled"


def _parse_bytes(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="400MiB")
    p.add_argument("--factor", type=float, default=3.0)
    p.add_argument("--chunk-mib", type=int, default=16)
    a = p.parse_args()
    nbytes = int(a.factor * a.workers * _parse_bytes(a.memory_limit))
    rows = []
    for name, runtime in (("shoal", "shoal"), ("dask.distributed", "dask")):
        try:
            elapsed, note = run(runtime, a.workers, a.memory_limit, nbytes, a.chunk_mib)
            rows.append((name, f"{elapsed:.2f} s", note))
        except ImportError as e:
            rows.append((name, "not run", f"not installed: {e}"))
        except Exception as e:  # noqa: BLE001 - a failed run is a result too
            rows.append((name, "failed", f"{type(e).__name__}: {e}"[:120]))
    print(f"\n== {a.factor:g}x memory: persist {nbytes / MIB:,.0f} MiB of dask.array on {a.workers} workers x "
          f"{a.memory_limit} (1 thread each), then two reductions")
    print("| runtime          | wall time | note |")
    print("|------------------|-----------|------|")
    for name, t, note in rows:
        print(f"| {name:<16} | {t:>9} | {note} |")


if __name__ == "__main__":
    main()
