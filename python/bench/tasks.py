"""Module-level task functions of the Python benchmarks.

They live in an importable module (not `__main__`) so that every runtime's workers load
them by reference, as a user's library functions would be; the bench puts this directory
on PYTHONPATH before any cluster starts.
"""

from __future__ import annotations

import numpy as np


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def total(values):
    """The fan-in task: the sum of all its inputs (a list of results)."""
    return sum(values)


def leaf(seed: int, size: int) -> float:
    """A small numpy task: the sum of `size` normal randoms drawn from `seed`."""
    return float(np.random.default_rng(seed).standard_normal(size).sum())


def record(i: int) -> tuple[int, float]:
    """A (key, value) record for the bag foldby: 97 keys, values from a fixed formula."""
    return (i * 7919) % 97, (i % 1013) * 0.5


def record_key(r: tuple[int, float]) -> int:
    return r[0]


def add_record(acc: float, r: tuple[int, float]) -> float:
    return acc + r[1]


def write_text_files(directory: str, files: int, lines: int, seed: int = 1) -> list[str]:
    """`files` text files of `lines` lines of 12 words each, from a 2,000-word vocabulary;
    the same contents for the same arguments."""
    import os

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i:04d}" for i in range(2000)])
    paths = []
    for f in range(files):
        words = vocabulary[rng.zipf(1.3, size=(lines, 12)) % len(vocabulary)]
        path = os.path.join(directory, f"part-{f:03d}.txt")
        with open(path, "w") as out:
            out.write("\n".join(" ".join(row) for row in words))
            out.write("\n")
        paths.append(path)
    return paths
