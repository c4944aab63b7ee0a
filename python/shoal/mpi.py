"""Batch scripts under MPI: ``mpirun -np N python script.py`` where the script starts with

    import shoal.mpi
    shoal.mpi.initialize()
    client = shoal.Client()     # connects to the cluster of this job

Rank 0 runs the scheduler, rank 1 returns from :func:`initialize` and runs the rest of the
script as the client, the other ranks run workers (that run Python tasks). When the script
ends, normally or by an exception, the cluster shuts down, every rank exits, and mpirun's
exit status is the script's. :func:`execute` runs one function as the client instead.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any, Callable, TypeVar

from . import _native

_CLIENT_RANK = 1
_state: dict[str, Any] = {"address": None, "done": False}


def initialize(nthreads: int | str | None = None, memory_limit: int | float | str = "auto",
               local_directory: str | os.PathLike[str] | None = None, interface: str | None = None,
               name: str = "shoal-mpi", scheduler_file: str | os.PathLike[str] | None = None,
               death_timeout: float | str = 60, scheduler_rank: int = 0, client_rank: int = _CLIENT_RANK,
               inclusive_workers: bool = False, exit: bool = True) -> bool:
    """Turn this MPI job into a shoal cluster. Returns True on the client rank. On the
    scheduler and worker ranks it runs until the cluster ends, then exits the process (or
    returns False when ``exit=False``). A value ``shoal mpi`` would refuse raises
    ValueError naming it, before MPI starts."""
    code, contact = _native.mpi_initialize(
        nthreads=nthreads, memory_limit=memory_limit, local_directory=local_directory, interface=interface,
        name=name, scheduler_file=scheduler_file, death_timeout=death_timeout, scheduler_rank=scheduler_rank,
        client_rank=client_rank, inclusive_workers=inclusive_workers, quiet=True,
    )
    if contact is None:
        if exit:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # nothing of the user's script runs on these ranks
        return False
    address, secret = contact
    os.environ["SHOAL_SCHEDULER_ADDRESS"] = address
    os.environ["SHOAL_SECRET"] = secret
    _state["address"] = address
    atexit.register(_end_of_script)
    return True


def _end_of_script() -> None:
    """On the client rank at interpreter exit: stop the cluster, then finalise MPI (which
    waits for every rank to finish)."""
    if _state["done"]:
        return
    _state["done"] = True
    try:
        # The native client: a full Client would register atexit hooks, refused now.
        _native.Client(_state["address"], None, 10.0).shutdown()
    except Exception as e:  # noqa: BLE001 - report, and never hang in MPI_Finalize
        print(f"shoal.mpi: could not shut the cluster down ({e}); ending the job", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # without MPI_Finalize: mpirun ends the other ranks
    _native.mpi_finalize()


_T = TypeVar("_T")


def execute(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run ``fn(*args, **kwargs)`` as the client of this job's cluster and return its
    result on the client rank; the other ranks serve and then exit."""
    initialize()
    return fn(*args, **kwargs)
