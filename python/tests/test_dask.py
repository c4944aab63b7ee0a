"""Dask collections computed on shoal equal dask's synchronous scheduler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def array():
    return da.random.default_rng(42).random((4000, 4000), chunks=500)


def test_array_sum_and_mean(client, array):
    ours = dask.compute(array.sum(), array.mean(), scheduler=client)
    theirs = dask.compute(array.sum(), array.mean(), scheduler="sync")
    np.testing.assert_allclose(ours, theirs)


def test_matmul_with_transpose(client, array):
    x = array[:2000, :2000]
    expr = (x @ x.T)[::100, ::100]
    np.testing.assert_allclose(expr.compute(scheduler=client), expr.compute(scheduler="sync"))


def _frames():
    rng = np.random.default_rng(1)
    left = pd.DataFrame({"k": rng.integers(0, 50, 5000), "v": rng.random(5000)})
    right = pd.DataFrame({"k": rng.permutation(50), "w": rng.random(50)})
    return dd.from_pandas(left, npartitions=6), dd.from_pandas(right, npartitions=3)


def test_dataframe_groupby_aggregate(client):
    left, _ = _frames()
    expr = left.groupby("k").agg({"v": ["sum", "mean", "count"]})
    with dask.config.set(scheduler=client):
        ours = expr.compute()
    pd.testing.assert_frame_equal(ours.sort_index(), expr.compute(scheduler="sync").sort_index())


def test_dataframe_merge_on_unsorted_columns(client):
    left, right = _frames()
    expr = left.merge(right, on="k", shuffle_method="tasks")
    ours = expr.compute(scheduler=client).sort_values(["k", "v"]).reset_index(drop=True)
    theirs = expr.compute(scheduler="sync").sort_values(["k", "v"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, theirs)
    # A shuffle planned while shoal is the default scheduler uses tasks, not p2p.
    assert dask.config.get("dataframe.shuffle.method") == "tasks"


def test_bag_word_count(client):
    text = ["the quick brown fox", "jumps over the lazy dog", "the end"] * 50
    bag = db.from_sequence(text, npartitions=7)
    expr = bag.str.split().flatten().frequencies()
    assert sorted(expr.compute(scheduler=client)) == sorted(expr.compute(scheduler="sync"))


def test_delayed_diamond(client):
    @dask.delayed
    def inc(x):
        return x + 1

    @dask.delayed
    def add(x, y):
        return x + y

    a = inc(1)
    total = add(inc(a), inc(a))
    assert total.compute(scheduler=client) == 6
    assert dask.compute({"t": total, "l": [a]}, scheduler=client) == ({"t": 6, "l": [2]},)


def test_compute_and_persist_return_cluster_data(client, array):
    future = client.compute(array.sum())
    np.testing.assert_allclose(future.result(timeout=60), array.sum().compute(scheduler="sync"))
    persisted = client.persist(array[:1000, :1000])
    assert persisted.npartitions == 4
    np.testing.assert_allclose(persisted.sum().compute(scheduler=client), array[:1000, :1000].sum().compute(scheduler="sync"))
    (again,) = dask.persist(array[:500, :500], scheduler=client)
    np.testing.assert_allclose(again.compute(scheduler=client), array[:500, :500].compute(scheduler="sync"))


def _fresh_interpreter(cluster, body: str) -> None:
    """Run ``body`` in a new interpreter (dask not imported yet) with ``connect()`` making a
    client of the test cluster; it fails the test if the body raises."""
    import subprocess
    import sys
    import textwrap

    code = f"import shoal, sys\ndef connect():\n    return shoal.Client(scheduler_file={str(cluster)!r}, timeout=10)\n"
    done = subprocess.run([sys.executable, "-c", code + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_client_leaves_dask_unimported_and_sets_it_up_on_import(cluster):
    # Importing dask is a tenth of a second of a client's start; the task-based
    # shuffles are set the moment the user imports it, and undone on close.
    _fresh_interpreter(cluster, """
        client = connect()
        assert "dask" not in sys.modules, "Client() imported dask"
        import dask
        assert dask.config.get("dataframe.shuffle.method") == "tasks"
        assert dask.config.get("array.rechunk.method") == "tasks"
        client.close()
        assert dask.config.get("dataframe.shuffle.method") is None
        assert dask.config.get("array.rechunk.method") is None
    """)


def test_a_client_closed_before_dask_is_imported_changes_nothing(cluster):
    _fresh_interpreter(cluster, """
        connect().close()
        import dask
        assert dask.config.get("dataframe.shuffle.method") is None
        assert not any(getattr(f, "__name__", "") == "_WhenDaskLoads" for f in sys.meta_path)
        with connect():  # dask loaded: set at once, as before
            assert dask.config.get("dataframe.shuffle.method") == "tasks"
        assert dask.config.get("dataframe.shuffle.method") is None
    """)
