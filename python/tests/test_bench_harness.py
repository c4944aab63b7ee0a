"""The Python bench's own parts that decide a verdict (python/bench): the value checker
that turns a runtime's wrong answer into WRONG, the fan-in graph and the py-spy summary."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))

import bench_map
import profile_top
from workloads import WORKLOADS, Mismatch, assert_same


def test_checker_accepts_equal_values_in_any_row_order():
    df = pd.DataFrame({"k": [3, 1, 2], "x": [0.5, 1.5, 2.5]}).set_index("k")
    assert_same(df, df.sort_index())
    s = pd.Series([1.0, 2.0, 3.0], index=[10, 20, 30], name="y")
    assert_same(s, s.iloc[::-1])
    assert_same([("a", 2), ("b", 1)], [("b", 1), ("a", 2)])
    assert_same((np.arange(4.0), 1.0, 7), (np.arange(4.0) * (1 + 1e-9), 1.0 + 1e-9, 7))


@pytest.mark.parametrize("expected, got, where", [
    (np.arange(4.0), np.array([0.0, 1.0, 2.5, 3.0]), "element (2,)"),
    (np.zeros((2, 2)), np.zeros(4), "shape"),
    (1.0, 1.001, "expected 1.0"),
    ((1, 2), (1, 3), "[1]"),
    ([("a", 2), ("b", 1)], [("a", 2), ("b", 2)], "[1]"),
    ({"a": 1.0}, {"b": 1.0}, "keys differ"),
    (pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [1.0, 2.1]}), "x"),
    (pd.Series([1.0, 2.0]), pd.DataFrame({"x": [1.0, 2.0]}), "a DataFrame, expected a Series"),
])
def test_checker_names_the_difference(expected, got, where):
    with pytest.raises(Mismatch, match=re.escape(where)):
        assert_same(expected, got, "result")


def test_fan_in_graph_sums_all_leaves():
    graph = bench_map.fan_in_graph(50)
    assert len(graph) == 51 and len(graph["total"][1]) == 50
    assert bench_map.fan_in_sync(50) > 0


def test_workloads_are_unique_and_documented():
    names = [w.name for w in WORKLOADS]
    assert len(names) == len(set(names)) >= 10
    assert all(w.doc for w in WORKLOADS)


def test_profile_summary_merges_lines_of_one_function(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "<module> (bench.py:10);run (/x/site-packages/shoal/client.py:5);pickle (/x/site-packages/shoal/_s.py:7) 6\n"
        "<module> (bench.py:10);run (/x/site-packages/shoal/client.py:9) 4\n"
        'process 1:"python bench_python.py --child shoal";process 7:"python -m shoal worker --scheduler-file f";'
        "execute (/x/site-packages/shoal/_worker.py:3) 5\n"
    )
    roles = profile_top.read(str(raw))
    own, total, samples, _ = roles["client"]
    assert samples == 10
    assert own["pickle (shoal/_s.py)"] == 6 and own["run (shoal/client.py)"] == 4
    assert total["run (shoal/client.py)"] == 10 and total["<module> (bench.py)"] == 10
    own, _, samples, pids = roles["workers"]
    assert samples == 5 and pids == {"7"} and own["execute (shoal/_worker.py)"] == 5
