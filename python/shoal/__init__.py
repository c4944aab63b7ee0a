"""shoal: a fast distributed task runtime for HPC clusters.

- :class:`Client`: futures on a shoal cluster (``submit``, ``map``, ``gather``, ...), and a
  scheduler for Dask collections (``dask.compute(x, scheduler=client)``).
- Workers started by this package's ``shoal`` command (``shoal worker``, ``shoal local``)
  run Python tasks.
"""

from ._futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    as_completed,
    fire_and_forget,
    wait,
)
from ._progress import progress
from ._serialize import SerializationError
from .client import Client, TaskError, default_client

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "Client",
    "Future",
    "SerializationError",
    "TaskError",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "progress",
    "wait",
]
