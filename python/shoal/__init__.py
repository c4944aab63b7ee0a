"""shoal: a fast distributed task runtime for HPC clusters.

- :class:`Client`: futures on a shoal cluster (``submit``, ``map``, ``gather``, ...), and a
  scheduler for Dask collections (``dask.compute(x, scheduler=client)``).
- Workers started by this package's ``shoal`` command (``shoal worker``, ``shoal local``)
  run Python tasks.
- distributed's names: a program written for ``distributed`` switches by its import
  (``from shoal import Client, Lock, wait, ...``); see the package README for what differs.
"""

from builtins import TimeoutError

from ._futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    KilledWorker,
    as_completed,
    fire_and_forget,
    futures_of,
    wait,
)
from ._progress import progress
from ._serialize import SerializationError
from .actor import Actor, ActorFuture, ActorLostError
from .client import Client, TaskError, default_client
from .coordination import Event, Lock, MultiLock, Queue, Semaphore, Variable
from .diagnostics import get_task_stream, performance_report
from .plugins import UploadFile, WorkerPlugin
from .worker_context import get_client, get_worker, rejoin, secede, worker_client

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
