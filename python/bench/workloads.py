"""Dask-collection workloads of the Python bench, each 0.2-2 s under `scheduler="sync"` here.

A workload is a `build(data_dir)` function returning a tuple of Dask collections; the bench
times `dask.compute(*collections, scheduler=...)` and compares the values with the ones
`scheduler="sync"` produced (`assert_same`: numbers within a relative 1e-6, frames and
series after sorting, so that row order inside a shuffle does not matter).

Timed region: only the `dask.compute` call, which is what a user waits for; it includes
dask's optimisation and graph materialisation (the expression is built lazily, so that
part is the same work for every scheduler) and the transfer of the results to the client.
Building the collection objects (`da.random...`, `dd.from_pandas(...)`) is not timed: it
is done anew before every run, so nothing cached by a previous compute is reused. Data
files (the bag word count) are written once, before any timing.

Inputs are seeded, so every process builds the same graph and the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tasks


@dataclass(frozen=True)
class Workload:
    name: str
    build: Callable[[str], tuple]

    @property
    def doc(self) -> str:
        return (self.build.__doc__ or "").strip().splitlines()[0]


WORKLOADS: list[Workload] = []


def workload(fn: Callable[[str], tuple]) -> Callable[[str], tuple]:
    WORKLOADS.append(Workload(fn.__name__, fn))
    return fn


def prepare(data_dir: str) -> None:
    """Write the input files the workloads read (once per bench run, not timed)."""
    tasks.write_text_files(data_dir, files=16, lines=12_000)


# --- dask.array ----------------------------------------------------------------------------


@workload
def array_normal_mean(data_dir: str) -> tuple:
    """Mean of a 4500x4500 random-normal array in 500x500 chunks (81 chunks)."""
    import dask.array as da

    x = da.random.RandomState(0).normal(10.0, 1.0, size=(4500, 4500), chunks=(500, 500))
    return (x.mean(),)


@workload
def array_x_plus_xT(data_dir: str) -> tuple:
    """Column sums of x + x.T for a 5000x5000 array in 500x500 chunks (blocks meet their mirror)."""
    import dask.array as da

    x = da.random.RandomState(1).random((5000, 5000), chunks=(500, 500))
    return ((x + x.T).sum(axis=0),)


@workload
def array_matmul(data_dir: str) -> tuple:
    """Blocked matmul x @ y of two 1500x1500 arrays in 250x250 chunks, then column sums."""
    import dask.array as da

    rs = da.random.RandomState(2)
    x = rs.random((1500, 1500), chunks=(250, 250))
    y = rs.random((1500, 1500), chunks=(250, 250))
    return ((x @ y).sum(axis=0),)


@workload
def array_svd(data_dir: str) -> tuple:
    """Tall-skinny SVD (da.linalg.svd, TSQR) of 100,000x100 in 10 row blocks: s, v, |u| column sums."""
    import dask.array as da

    x = da.random.RandomState(3).random((100_000, 100), chunks=(10_000, 100))
    u, s, v = da.linalg.svd(x)
    return s, v, abs(u).sum(axis=0)


@workload
def array_rechunk(data_dir: str) -> tuple:
    """Rechunk a 4000x4000 array from 4000x50 column strips to 50x4000 row strips, then row sums."""
    import dask.array as da

    x = da.random.RandomState(4).random((4000, 4000), chunks=(4000, 50))
    return (x.rechunk((50, 4000)).sum(axis=1),)


# --- dask.bag ------------------------------------------------------------------------------


@workload
def bag_wordcount(data_dir: str) -> tuple:
    """Word frequencies over 16 text files (192,000 lines of 12 words), read_text + split + frequencies."""
    import os

    import dask.bag as db

    b = db.read_text(os.path.join(data_dir, "part-*.txt"))
    return (b.str.split().flatten().frequencies(),)


@workload
def bag_foldby(data_dir: str) -> tuple:
    """foldby over 600,000 (key, value) records in 30 partitions: per-key sums of 97 keys."""
    import dask.bag as db

    b = db.range(600_000, npartitions=30).map(tasks.record)
    return (b.foldby(tasks.record_key, tasks.add_record, 0.0, tasks.add, 0.0),)


# --- dask.dataframe ------------------------------------------------------------------------


def _timeseries(days: int, seed: int):
    import dask

    return dask.datasets.timeseries(start="2000-01-01", end=f"2000-01-{1 + days:02d}", freq="1s",
                                    partition_freq="1D", seed=seed)


@workload
def dataframe_groupby_agg(data_dir: str) -> tuple:
    """groupby("name").agg(sum, mean, max, count) over dask.datasets.timeseries: 10 days, 864,000 rows."""
    df = _timeseries(10, seed=5)
    return (df.groupby("name").agg({"x": ["sum", "mean"], "y": "max", "id": "count"}),)


def _frame(rows: int, keys: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"k": rng.integers(0, keys, rows), "x": rng.random(rows), "y": rng.standard_normal(rows)})


@workload
def dataframe_set_index(data_dir: str) -> tuple:
    """set_index on a random int column (a full shuffle) of an 800,000-row frame in 20 partitions."""
    import dask.dataframe as dd

    df = dd.from_pandas(_frame(800_000, 1_000_000, seed=6), npartitions=20)
    return (df.set_index("k"),)


@workload
def dataframe_merge(data_dir: str) -> tuple:
    """Inner merge on "k" of an 800,000-row and a 300,000-row frame (20 and 10 partitions): sums and length."""
    import dask.dataframe as dd

    left = dd.from_pandas(_frame(800_000, 100_000, seed=7), npartitions=20)
    right = dd.from_pandas(_frame(300_000, 100_000, seed=8).rename(columns={"x": "u", "y": "v"}), npartitions=10)
    m = left.merge(right, on="k", how="inner")
    return m.x.sum(), (m.y * m.v).sum(), m.shape[0]


@workload
def dataframe_rolling_cumsum(data_dir: str) -> tuple:
    """Rolling 60 s mean and a cumulative sum over timeseries: 30 days, 2,592,000 rows."""
    df = _timeseries(30, seed=9)
    return df.x.rolling("60s").mean(), df.y.cumsum()


# --- dask.delayed --------------------------------------------------------------------------


@workload
def delayed_tree(data_dir: str) -> tuple:
    """A binary tree reduction of 1,024 delayed numpy leaves (2,047 tasks)."""
    import dask

    level = [dask.delayed(tasks.leaf)(i, 20_000) for i in range(1024)]
    while len(level) > 1:
        level = [dask.delayed(tasks.add)(a, b) for a, b in zip(level[::2], level[1::2])]
    return (level[0],)


# --- checking ------------------------------------------------------------------------------


class Mismatch(AssertionError):
    """A runtime's value differs from `scheduler="sync"`'s."""


def assert_same(expected, got, where: str = "result", rtol: float = 1e-6) -> None:
    """Raise Mismatch naming the first place where `got` differs from `expected`."""
    import pandas as pd

    if isinstance(expected, (pd.DataFrame, pd.Series)):
        if type(got) is not type(expected):
            raise Mismatch(f"{where}: a {type(got).__name__}, expected a {type(expected).__name__}")
        if isinstance(expected, pd.Series):
            expected, got = expected.to_frame(expected.name or "value"), got.to_frame(got.name or "value")
        # The same rows in the same order is the usual case; otherwise compare sorted rows.
        problem = _frame_difference(expected, got, rtol)
        if problem and "index" in problem:
            problem = _frame_difference(_sorted_frame(expected), _sorted_frame(got), rtol)
        if problem:
            raise Mismatch(f"{where}: {problem}")
    elif isinstance(expected, np.ndarray):
        got = np.asarray(got)
        if got.shape != expected.shape:
            raise Mismatch(f"{where}: shape {got.shape}, expected {expected.shape}")
        if not np.allclose(got, expected, rtol=rtol, atol=1e-12, equal_nan=True):
            bad = np.argmax(~np.isclose(got, expected, rtol=rtol, atol=1e-12, equal_nan=True))
            index = tuple(int(i) for i in np.unravel_index(bad, got.shape))
            raise Mismatch(f"{where}: element {index} is "
                           f"{got.flat[bad]!r}, expected {expected.flat[bad]!r}")
    elif isinstance(expected, dict):
        if set(got) != set(expected):
            raise Mismatch(f"{where}: keys differ ({len(set(got) ^ set(expected))} not in both)")
        for k in expected:
            assert_same(expected[k], got[k], f"{where}[{k!r}]", rtol)
    elif isinstance(expected, (list, tuple)):
        if isinstance(expected, list) and expected and isinstance(expected[0], tuple):
            expected, got = sorted(expected), sorted(got)  # bag results: order is not part of the answer
        if len(got) != len(expected):
            raise Mismatch(f"{where}: length {len(got)}, expected {len(expected)}")
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_same(e, g, f"{where}[{i}]", rtol)
    elif isinstance(expected, (float, np.floating)):
        if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=1e-12):
            raise Mismatch(f"{where}: {got!r}, expected {expected!r}")
    elif got != expected:
        raise Mismatch(f"{where}: {got!r}, expected {expected!r}")


def _frame_difference(expected, got, rtol: float) -> str | None:
    """What differs between two frames (None: nothing), column by column with numpy:
    pandas' assert_frame_equal takes tens of seconds on a few million timestamps."""
    import pandas as pd

    if list(got.columns) != list(expected.columns):
        return f"columns {list(got.columns)}, expected {list(expected.columns)}"
    if len(got) != len(expected):
        return f"{len(got)} rows, expected {len(expected)}"
    if not got.index.equals(expected.index):
        return "index differs"
    for col in expected.columns:
        e, g = expected[col].to_numpy(), got[col].to_numpy()
        if e.dtype.kind in "fc" and g.dtype.kind in "fc":
            bad = ~np.isclose(g, e, rtol=rtol, atol=1e-12, equal_nan=True)
        else:
            bad = ~((e == g) | (pd.isna(e) & pd.isna(g)))
        if bad.any():
            i = int(np.argmax(bad))
            return f"column {col!r} row {i}: {g[i]!r}, expected {e[i]!r}"
    return None


def _sorted_frame(df):
    df = df.reset_index()
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)

