"""shoal: a fast distributed task runtime for HPC clusters.

- :class:`Client`: futures on a shoal cluster (``submit``, ``map``, ``gather``, ...), and a
  scheduler for Dask collections (``dask.compute(x, scheduler=client)``).
- Workers started by this package's ``shoal`` command (``shoal worker``, ``shoal local``)
  run Python tasks.
- distributed's names: a program written for ``distributed`` switches by its import
  (``from shoal import Client, Lock, wait, ...``); see the package README for what differs.
"""

from __future__ import annotations

from builtins import TimeoutError
from importlib import import_module

#: ``typing.TYPE_CHECKING`` without importing ``typing`` (a sixth of the command's start-up
#: on every rank); type checkers take any ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False

#: Where each public name lives. Submodules load on first use (PEP 562), so the
#: ``shoal`` command (``python -m shoal``, on every rank of an MPI job) starts without
#: importing the client, asyncio and the rest: a scheduler rank writes its scheduler
#: file a quarter of a second sooner.
_SOURCES = {
    "._futures": ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "CancelledError", "Future",
                  "KilledWorker", "as_completed", "fire_and_forget", "futures_of", "wait"),
    "._progress": ("progress",),
    "._serialize": ("SerializationError",),
    ".actor": ("Actor", "ActorFuture", "ActorLostError"),
    ".client": ("Client", "TaskError", "default_client"),
    ".coordination": ("Event", "Lock", "MultiLock", "Queue", "Semaphore", "Variable"),
    ".diagnostics": ("get_task_stream", "performance_report"),
    ".plugins": ("UploadFile", "WorkerPlugin"),
    ".worker_context": ("get_client", "get_worker", "rejoin", "secede", "worker_client"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

if TYPE_CHECKING:
    from ._futures import (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, Future,
                           KilledWorker, as_completed, fire_and_forget, futures_of, wait)
    from ._progress import progress
    from ._serialize import SerializationError
    from .actor import Actor, ActorFuture, ActorLostError
    from .client import Client, TaskError, default_client
    from .coordination import Event, Lock, MultiLock, Queue, Semaphore, Variable
    from .diagnostics import get_task_stream, performance_report
    from .plugins import UploadFile, WorkerPlugin
    from .worker_context import get_client, get_worker, rejoin, secede, worker_client


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Actor",
    "ActorFuture",
    "ActorLostError",
    "CancelledError",
    "Client",
    "Event",
    "Future",
    "KilledWorker",
    "Lock",
    "MultiLock",
    "Queue",
    "Semaphore",
    "SerializationError",
    "TaskError",
    "TimeoutError",
    "UploadFile",
    "Variable",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_stream",
    "get_worker",
    "performance_report",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "WorkerPlugin",
    "worker_client",
]
