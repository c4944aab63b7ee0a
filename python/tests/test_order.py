"""The depth-first order shoal gives dask graphs (``shoal._native.depth_first_order``,
used instead of ``dask.order`` for speed) measured against ``dask.order`` itself on the
graphs of real dask collections: running the tasks one at a time in shoal's order must
hold about as few results at once as dask's order does, and every task must come after
its inputs."""

from __future__ import annotations

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask._task_spec import convert_legacy_graph
from dask.base import collections_to_expr
from dask.order import order

from shoal import _native


def _tree(n):
    from operator import add

    dsk = {("leaf", i): (float, i) for i in range(n)}
    level, width = 0, n
    while width > 1:
        for i in range((width + 1) // 2):
            pair = [("leaf" if level == 0 else f"t{level}", j) for j in range(2 * i, min(2 * i + 2, width))]
            dsk[(f"t{level + 1}", i)] = (add, *pair) if len(pair) == 2 else (float, pair[0])
        level, width = level + 1, (width + 1) // 2
    return dsk, [(f"t{level}", 0)]


def _frame(n=2000, parts=8):
    pdf = pd.DataFrame({"k": np.arange(n) % 17, "v": np.arange(n, dtype=float)})
    return dd.from_pandas(pdf, npartitions=parts)


def _collection(c):
    expr = collections_to_expr([c]).optimize()
    keys = list(dask.core.flatten(expr.__dask_keys__()))
    return dict(expr.__dask_graph__()), keys


def _graphs():
    x = da.random.default_rng(0).random((400, 400), chunks=(50, 50))
    frame = _frame()
    other = dd.from_pandas(pd.DataFrame({"k": np.arange(17), "w": np.arange(17.0)}), npartitions=3)
    words = db.from_sequence([f"w{i % 13} w{i % 7}" for i in range(400)], npartitions=16)
    yield "array sum", _collection(x.sum())
    yield "x + x.T", _collection(x + x.T)
    yield "tall-skinny svd", _collection(da.linalg.svd(da.ones((2000, 20), chunks=(100, 20)))[1])
    yield "rechunk", _collection(x.rechunk((400, 10)))
    yield "groupby mean", _collection(frame.groupby("k").v.mean())
    yield "shuffle", _collection(frame.shuffle("k"))
    yield "merge", _collection(frame.merge(other, on="k"))
    yield "bag word count", _collection(words.map(str.split).flatten().frequencies())
    yield "tree of 512", _tree(512)


def _deps(graph):
    graph = convert_legacy_graph(graph)
    keys = list(graph)
    index = {k: i for i, k in enumerate(keys)}
    deps = [[index[d] for d in graph[k].dependencies if d in index] for k in keys]
    return graph, keys, index, deps


def _peak_held(deps, outputs, position):
    """Most results held at once running tasks one by one in ``position`` order, each
    result freed after its last dependent ran (outputs are kept)."""
    waiting = [0] * len(deps)
    for inputs in deps:
        for d in set(inputs):
            waiting[d] += 1
    keep = set(outputs)
    held = peak = 0
    for t in sorted(range(len(deps)), key=position.__getitem__):
        held += 1
        peak = max(peak, held)
        for d in set(deps[t]):
            waiting[d] -= 1
            if waiting[d] == 0 and d not in keep:
                held -= 1
    return peak


@pytest.mark.parametrize("name, graph_keys", list(_graphs()), ids=[n for n, _ in _graphs()])
def test_depth_first_order_holds_no_more_than_dask_order(name, graph_keys):
    raw, wanted = graph_keys
    graph, keys, index, deps = _deps(raw)
    outputs = [index[k] for k in wanted]
    ours = _native.depth_first_order(deps, outputs)
    assert sorted(ours) == list(range(len(keys)))
    for t, inputs in enumerate(deps):
        assert all(ours[d] < ours[t] for d in inputs), f"{name}: a task before its input"
    theirs = order(graph)
    dask_position = [theirs[k] for k in keys]
    peak_ours = _peak_held(deps, outputs, ours)
    peak_dask = _peak_held(deps, outputs, dask_position)
    print(f"{name}: {len(keys)} tasks, peak held: shoal {peak_ours}, dask.order {peak_dask}")
    assert peak_ours <= max(peak_dask * 5 // 4, peak_dask + 2), (name, peak_ours, peak_dask)
