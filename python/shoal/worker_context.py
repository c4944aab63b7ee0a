"""Tasks that talk to the cluster: ``get_worker()``, ``get_client()``,
``worker_client()``, ``secede()`` and ``rejoin()``, with distributed's names.

A task that submits tasks and waits for them must not hold one of its worker's threads
while it waits, or a worker whose threads all wait would never run what they wait for:
``worker_client()`` secedes (the thread stops counting, another takes its place) and
rejoins when the block ends; ``secede()``/``rejoin()`` do it by hand.
"""

from __future__ import annotations

import contextlib
import re
import threading

from . import _native

__all__ = ["get_worker", "get_client", "worker_client", "secede", "rejoin", "WorkerInfo"]

_lock = threading.Lock()
_worker_client = None


class WorkerInfo:
    """The worker running this task: ``address`` (its data server), ``name``,
    ``nthreads``, ``scheduler_address``. (distributed's ``Worker.data`` has no
    equivalent: results live in the Rust store, not in a Python mapping.)"""

    __slots__ = ("name", "address", "scheduler_address", "nthreads")

    def __init__(self, name, address, scheduler_address, nthreads):
        self.name, self.address, self.scheduler_address, self.nthreads = name, address, scheduler_address, nthreads

    @property
    def data(self):
        raise NotImplementedError(
            "get_worker().data: a shoal worker keeps results in its Rust store, not in a Python dict; "
            "pass the values a task needs as its arguments instead")

    def __repr__(self):
        return f"<shoal.WorkerInfo: {self.name} at {self.address}>"


def _identity():
    identity = _native.worker_identity()
    if identity is None:
        raise ValueError("no worker found: get_worker() works only inside a task running on a shoal worker")
    return identity


def get_worker() -> WorkerInfo:
    """The worker running the current task (``ValueError`` outside a task)."""
    name, data_address, scheduler_address, nthreads = _identity()
    return WorkerInfo(name, data_address.split()[0], scheduler_address, nthreads)


def get_client(timeout=None, resolve_address=True, **kwargs):
    """A client of the cluster: inside a task, one connection per worker process to its
    scheduler (with the worker's own secret); elsewhere the default client."""
    global _worker_client
    if _native.worker_identity() is None:
        from .client import default_client

        return default_client()
    with _lock:
        if _worker_client is None or _worker_client._closed:
            from .client import Client

            _worker_client = Client(_from_worker=True, timeout=10.0 if timeout is None else float(timeout),
                                    set_as_default=False)
        return _worker_client


def _client_in_context():
    """The client primitives created without one use: the worker's inside a task, the
    default client elsewhere."""
    return get_client()


def secede() -> None:
    """Leave the worker's thread count for the rest of this task (no-op outside one)."""
    _native.secede()


def rejoin() -> None:
    """Count against the worker's threads again after ``secede()``."""
    _native.rejoin()


@contextlib.contextmanager
def worker_client(timeout=None, separate_thread=True):
    """``with worker_client() as client:`` inside a task: submit and wait for tasks
    without holding a thread of the worker meanwhile."""
    client = get_client(timeout=timeout)
    seceded = _native.secede() if separate_thread else False
    try:
        yield client
    finally:
        if seceded:
            _native.rejoin()


_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_seconds(text: str) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"``, ``"1.5"`` as seconds (Dask's timeout strings)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a duration: use seconds (10, 1.5) or a unit: 500ms, 10s, 2m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]
