"""Types of ``shoal._native``, the Rust extension (``python/src/``): what mypy checks the
typed modules' calls against. Keep each signature beside its ``#[pyfunction]``."""

from __future__ import annotations

import os
from typing import Any, Literal, Optional, Sequence, Tuple, Union, overload

_Path = Union[str, "os.PathLike[str]"]
#: ``(type name, message, traceback, pickled exception or None, pickled exception bytes)``
_ErrorOut = Tuple[str, str, str, Optional[str], bytes]

PROTOCOL_VERSION: int
PLUGIN_DATASET_PREFIX: str
#: First bytes of a value frame.
MAGIC: bytes
#: First bytes of a frame that carries an encoding failure instead of a value.
ERROR_MAGIC: bytes

# ----- lib.rs -----

def cli_main(argv: list[str], worker_command: list[str]) -> int: ...
def secede() -> bool: ...
def rejoin() -> bool: ...
def worker_identity() -> tuple[str, str, str, int] | None: ...
def worker_has_plugins() -> bool: ...
def depth_first_order(deps: Sequence[Sequence[int]], outputs: Sequence[int]) -> list[int]: ...
def pickle_plain(obj: object) -> bytes | None: ...

# ----- legacy.rs -----

def wire_key(key: object) -> str: ...

# ----- args.rs -----

def parse_memory(text: str) -> int: ...

# ----- mpi.rs -----

def mpi_initialize(
    *,
    nthreads: int | str | None = None,
    memory_limit: int | float | str | None = None,
    local_directory: _Path | None = None,
    interface: str | None = None,
    name: str | None = None,
    scheduler_file: _Path | None = None,
    death_timeout: float | str | None = None,
    scheduler_rank: int = 0,
    client_rank: int = 1,
    inclusive_workers: bool = False,
    quiet: bool = True,
) -> tuple[int, tuple[str, str] | None]: ...
def mpi_finalize() -> None: ...

# ----- jobqueue.rs -----

@overload
def jobqueue_script(
    system: str,
    params: Sequence[tuple[str, str]],
    *,
    scheduler_file: _Path,
    worker_command: Sequence[str],
    config: _Path | None = None,
    scheduler: bool = False,
    json: Literal[False] = False,
) -> str: ...
@overload
def jobqueue_script(
    system: str,
    params: Sequence[tuple[str, str]],
    *,
    scheduler_file: _Path,
    worker_command: Sequence[str],
    config: _Path | None = None,
    scheduler: bool = False,
    json: Literal[True],
) -> dict[str, Any]: ...
def jobqueue_submit(
    system: str,
    params: Sequence[tuple[str, str]],
    *,
    scheduler_file: _Path,
    jobs: int,
    worker_command: Sequence[str],
    config: _Path | None = None,
) -> str: ...
def jobqueue_scale(*, scheduler_file: _Path, jobs: int) -> str: ...
def jobqueue_status(*, scheduler_file: _Path) -> dict[str, Any]: ...
def jobqueue_cancel(*, scheduler_file: _Path, all: bool = False) -> str: ...

# ----- classes -----

class Frame:
    def buffer_info(self) -> tuple[int, int, bool]: ...
    def __len__(self) -> int: ...

class KeyState:
    def __init__(self) -> None: ...
    @property
    def status(self) -> dict[str, Any]: ...
    @property
    def done(self) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def refs(self) -> int: ...
    @property
    def error(self) -> _ErrorOut | None: ...
    def set(self, status: str, size: int = 0, error: _ErrorOut | None = None) -> None: ...
    def watch(self) -> bool: ...

class Client:
    def __init__(
        self,
        address: str | None = None,
        scheduler_file: _Path | None = None,
        timeout: float = 10.0,
        from_worker: bool = False,
    ) -> None: ...
    @property
    def address(self) -> str: ...
    @property
    def scheduler_id(self) -> str: ...
    def status(self) -> dict[str, Any]: ...
    def shutdown(self) -> None: ...
    # The rest of the client (submit, retain, fetch, coord, ...) is not typed here yet.
    def __getattr__(self, name: str) -> Any: ...
