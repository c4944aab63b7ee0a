"""Legacy dask graphs (dicts of tuple tasks) through ``client.get``, each compared with
dask's own synchronous scheduler on the same graph. shoal sends the plain ones as calls
and leaves the rest to dask's conversion; either way the answer must be dask's."""

from __future__ import annotations

from operator import add, getitem, mul

import pytest
from dask.local import get_sync


def total(*xs):
    return sum(xs)


def listsum(xs):
    return sum(xs)


def pair(a, b):
    return (a, b)


def keyed(d):
    return sorted(d.items())


def _graphs():
    yield "a chain", {"a": 1, "b": (add, "a", 1), "c": (mul, "b", "b")}, "c"
    yield "int and float keys", {1: 10, 2.5: (add, 1, 1), "r": (add, 1, 2.5)}, "r"
    yield "tuple keys", {("x", 0): 1, ("x", 1): (add, ("x", 0), 5)}, ("x", 1)
    yield "a list of keys", {"a": 1, "b": 2, "s": (listsum, ["a", "b", "a"])}, "s"
    yield "a list mixing keys and values", {"a": 1, "s": (listsum, ["a", 10, 100])}, "s"
    yield "nested tasks", {"a": 2, "b": (add, (mul, "a", 10), (add, "a", 1))}, "b"
    yield "a nested list of keys", {"a": 1, "s": (listsum, [(add, "a", 1), "a"])}, "s"
    yield "a tuple value that is no key", {"a": 1, "p": (pair, "a", (1, 2))}, "p"
    yield "a tuple holding keys is a task", {"a": 3, "g": (getitem, (pair, "a", "a"), 1)}, "g"
    yield "a dict argument", {"a": 1, "d": (keyed, {"k": "a", "z": 2})}, "d"
    yield "a string that is no key", {"a": "a-value", "c": (add, "a", "-not-a-key")}, "c"
    yield "an alias", {"a": 5, "b": "a", "c": (add, "b", 1)}, "c"
    yield "a literal list value", {"a": [1, 2, 3], "s": (listsum, "a")}, "s"
    yield "the same key twice", {"a": 4, "b": (add, "a", "a")}, "b"
    yield "a wide fan-in", {**{("l", i): (add, i, 0) for i in range(500)},
                            "t": (total, *[("l", i) for i in range(500)])}, "t"


@pytest.mark.parametrize("name, dsk, key", list(_graphs()), ids=[g[0] for g in _graphs()])
def test_get_gives_dasks_answer(client, name, dsk, key):
    assert client.get(dsk, key) == get_sync(dsk, key), name


def test_get_with_nested_output_keys_nests_lists_as_distributed_does(client):
    dsk = {"a": 1, "b": (add, "a", 1), "c": (add, "b", 1)}
    # dask's synchronous scheduler nests tuples; distributed's Client.get nests lists.
    assert get_sync(dsk, [["a", "b"], "c"]) == ((1, 2), 3)
    assert client.get(dsk, [["a", "b"], "c"]) == [[1, 2], 3]
