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
    yield "a fan-in list", {**{("l", i): (add, i, 0) for i in range(500)},
                            "t": (listsum, [("l", i) for i in range(500)])}, "t"
    yield "two lists of keys", {"a": 1, "b": 2, "c": 3, "d": 4,
                                "s": (pair, ["a", "b"], ["c", "d"])}, "s"
    yield "a list of keys after one of them", {"a": 1, "b": 2, "s": (pair, "b", ["a", "b"])}, "s"
    yield "a key after a list of it", {"a": 1, "b": 2, "s": (pair, ["a", "b"], "a")}, "s"
    yield "keys with quotes and escapes", {("it's", 0): 1, ('a"b', 1): (add, ("it's", 0), 1),
                                           ("a\\b", -2): (add, ('a"b', 1), 1),
                                           ("é", 3): (listsum, [("a\\b", -2), ("it's", 0)])}, ("é", 3)
    yield "keys with floats and bools", {("x", 1.5): 2, ("x", True): (add, ("x", 1.5), 1)}, ("x", True)


@pytest.mark.parametrize("name, dsk, key", list(_graphs()), ids=[g[0] for g in _graphs()])
def test_get_gives_dasks_answer(client, name, dsk, key):
    assert client.get(dsk, key) == get_sync(dsk, key), name


def test_get_with_nested_output_keys_nests_lists_as_distributed_does(client):
    dsk = {"a": 1, "b": (add, "a", 1), "c": (add, "b", 1)}
    # dask's synchronous scheduler nests tuples; distributed's Client.get nests lists.
    assert get_sync(dsk, [["a", "b"], "c"]) == ((1, 2), 3)
    assert client.get(dsk, [["a", "b"], "c"]) == [[1, 2], 3]


def test_wire_keys_are_the_repr_python_writes():
    from shoal import _native

    keys = ["plain", ("x", 0), ("x",), (), ("x", -12, 3), ("it's", 1), ('a"b', 1), ("a\\b", 1),
            ("tab\there", 1), ("é", 1), ("x", 1.5), ("x", True), ("x", (1, 2)), ("x", 2**70), 7, 2.5, b"k"]
    for key in keys:
        assert _native.wire_key(key) == (key if type(key) is str else repr(key)), key


def test_native_pickles_of_plain_values_load_as_the_same_values():
    import math
    import pickle
    import random

    from shoal import _native

    rng = random.Random(13)
    edges = [0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, 2**31, -2**31, -2**31 - 1,
             2**63 - 1, -2**63, 0.0, -0.0, math.inf, -math.inf, 1e-310, "", "x" * 255, "y" * 256,
             "é✓", b"", b"z" * 300, None, True, False]

    def value():
        kind = rng.randrange(5)
        if kind == 0:
            return rng.randint(-2**63, 2**63 - 1) >> rng.randrange(64)
        if kind == 1:
            return rng.uniform(-1e300, 1e300)
        if kind == 2:
            return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(300)))
        if kind == 3:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(300)))
        return rng.choice(edges)

    cases = edges + [value() for _ in range(2000)] + [tuple(value() for _ in range(rng.randrange(7)))
                                                       for _ in range(500)]
    for v in cases:
        data = _native.pickle_plain(v)
        assert data is not None, v
        back = pickle.loads(data)
        assert type(back) is type(v) and (back == v or back != back and v != v), v
        if type(v) is tuple:
            assert all(type(a) is type(b) for a, b in zip(back, v)), v
    # Not plain: left to pickle.dumps.
    for v in [2**64, 1 + 2j, "\ud800", [1], (1, [2]), {"a": 1}]:
        assert _native.pickle_plain(v) is None, v
