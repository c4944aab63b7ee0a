"""The many-tiny-tasks measures of the Python bench (run by `bench_python.py`).

- `map_gather(client, n)`: `client.map(inc, range(n))` then `client.gather`, timed from the
  first call to the last result; the results are checked (`inc(i) == i + 1` for all).
- `fan_in(client, n)`: `client.get(graph, "total")` on a plain Dask graph dict of `n` leaf
  tasks `("leaf", i): (inc, i)` and one task `"total": (total, [every leaf key])`, all
  module-level functions of `tasks`; timed around `client.get` (building the dict, as a
  user's code would, is not timed); the sum is checked. Rate = (n + 1) / seconds.

`inc` and `total` come from `tasks`, an importable module, so workers load them by
reference. Each measure submits one warm-up task first.
"""

from __future__ import annotations

import time

from tasks import inc, total
from workloads import Mismatch


def map_gather(client, n: int) -> float:
    client.submit(inc, -1).result()
    start = time.perf_counter()
    futures = client.map(inc, range(n))
    results = client.gather(futures)
    elapsed = time.perf_counter() - start
    if results != list(range(1, n + 1)):
        raise Mismatch(f"map(inc, range({n})) gathered wrong values (first {results[:3]})")
    del futures, results
    return elapsed


def fan_in_graph(n: int) -> dict:
    graph: dict = {("leaf", i): (inc, i) for i in range(n)}
    graph["total"] = (total, [("leaf", i) for i in range(n)])
    return graph


def fan_in(client, n: int) -> float:
    client.submit(inc, -1).result()
    graph = fan_in_graph(n)
    start = time.perf_counter()
    result = client.get(graph, "total")
    elapsed = time.perf_counter() - start
    want = n * (n + 1) // 2
    if result != want:
        raise Mismatch(f"fan-in of {n} leaves: {result!r}, expected {want}")
    return elapsed


def fan_in_sync(n: int) -> float:
    """The same graph through dask's in-process `get` (the floor of graph handling)."""
    from dask.local import get_sync

    graph = fan_in_graph(n)
    start = time.perf_counter()
    result = get_sync(graph, "total")
    elapsed = time.perf_counter() - start
    if result != n * (n + 1) // 2:
        raise Mismatch(f"sync fan-in of {n} leaves: {result!r}")
    return elapsed
