"""What a worker hosted in Python runs: decode a task's payload, substitute its inputs,
call it, and describe its result or its exception to the Rust side.

Payloads (pickled) are tuples:

- ``(CALL, function_bytes, args, kwargs, has_deps)``: ``function_bytes`` is the function
  pickled with cloudpickle (decoded once per worker and cached); ``Dep(i)`` markers in
  ``args``/``kwargs`` stand for the task's i-th input;
- ``(DASK, node, dep_keys)``: a ``dask._task_spec`` node run with its first inputs by
  key;

- ``(DATA, value)``: a value (scatter).

A payload starting with ``FUTURE_REFS`` refers to further inputs by index (futures that
were embedded in it, pickled as persistent ids).

A payload starting with ``MAPPED`` is a call without dependencies in compact form:
``MAPPED | 16-byte digest of the function | u32 length | function (cloudpickle) | args
(pickled tuple)``; the function is decoded once per worker, keyed by its digest.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import traceback

import cloudpickle

from . import _native
from ._serialize import dumps, loads, sizeof
from .plugins import ensure_installed as ensure_plugins

__all__ = ["execute", "dumps", "Dep", "Inputs", "CALL", "DASK", "DATA"]

CALL, DASK, DATA = 0, 1, 2
#: Prefix of a payload whose pickle refers to task inputs by index (persistent ids).
FUTURE_REFS = b"R"
#: Prefix of a compact call payload (see the module docstring).
MAPPED = b"M"
#: Values whose plain pickle is the whole value (no buffers, nothing from ``__main__``):
#: calls on them take the compact payload, and ``sys.getsizeof`` gives their size exactly.
#: The native side checks the same types (``python/src/values.rs``, ``is_simple``).
PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})


class Dep:
    """Stands for a task's input ``index`` inside its arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return (Dep, (self.index,))

    def __repr__(self):
        return f"Dep({self.index})"


class Inputs:
    """Stands for a task's inputs ``start`` to ``stop`` as a list: a list of keys given as
    one argument (a fan-in), one marker instead of one ``Dep`` per input."""

    __slots__ = ("start", "stop")

    def __init__(self, start: int, stop: int):
        self.start = start
        self.stop = stop

    def __reduce__(self):
        return (Inputs, (self.start, self.stop))

    def __repr__(self):
        return f"Inputs({self.start}, {self.stop})"


_functions: dict = {}

#: Held while a task's payload, function or inputs are unpickled. Unpickling imports the
#: modules a value names; two threads importing a package with circular imports at once
#: (dask.dataframe the first time) can each see the other's module half initialized and
#: fail with ImportError. distributed decodes tasks on one thread for the same reason.
#: Reentrant: unpickling a value may decode another on the same thread. The native runner
#: holds it too while it decodes a compact call (``python/src/worker.rs``).
unpickling = threading.RLock()

#: For the native runner's compact calls (``python/src/worker.rs``): the size of a simple
#: result. (It sets plugins up with ``ensure_plugins``, imported above.)
simple_size = sys.getsizeof


def warm_up() -> None:
    """Called while the worker starts: importing this module (and with it what the first
    task needs, plugins included) is the warm-up."""


def _function(data: bytes):
    """The function pickled in ``data``, decoded once (called under ``unpickling``)."""
    fn = _functions.get(data)
    if fn is None:
        if len(_functions) > 1000:
            _functions.clear()
        fn = _functions[data] = cloudpickle.loads(data)
    return fn


def substitute(obj, inputs):
    """``obj`` with every ``Dep`` replaced by its input and every ``Inputs`` by its list
    of inputs (inside lists, tuples, dicts, sets)."""
    t = type(obj)
    if t is Dep:
        return inputs[obj.index]
    if t is Inputs:
        return inputs[obj.start : obj.stop]
    if t is list or t is tuple or t is set or t is frozenset:
        return t(substitute(x, inputs) for x in obj)
    if t is dict:
        return {k: substitute(v, inputs) for k, v in obj.items()}
    return obj


class _RefUnpickler(pickle.Unpickler):
    def __init__(self, data, inputs):
        super().__init__(io.BytesIO(data))
        self.inputs = inputs

    def persistent_load(self, pid):
        return self.inputs[pid]


def run_payload(payload, inputs):
    head = payload[:1]
    if head == MAPPED:  # the native runner decodes and runs these (python/src/worker.rs)
        raise ValueError(f"a compact call payload of {len(payload)} bytes the native runner could not parse")
    with unpickling:  # the inputs, the payload and a call's function, in one go
        if inputs:
            inputs = [loads(x) if type(x) is _native.Frame else x for x in inputs]
        if head == FUTURE_REFS:
            spec = _RefUnpickler(memoryview(payload)[1:], inputs).load()
        else:
            spec = pickle.loads(payload)
        kind = spec[0]
        fn = _function(spec[1]) if kind == CALL else None
    if kind == CALL:
        _, _, args, kwargs, has_deps = spec
        if has_deps:
            args = substitute(args, inputs)
            kwargs = substitute(kwargs, inputs)
        return fn(*args, **kwargs)
    if kind == DASK:
        _, node, dep_keys = spec
        return node(dict(zip(dep_keys, inputs)))
    if kind == DATA:
        return spec[1]
    raise ValueError(f"unknown task payload kind {kind!r}")


def error_info(e: BaseException):
    """(kind, message, traceback, pickled exception) for the Rust side."""
    frames = e.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next  # the user's frames only
    tb = "".join(traceback.format_exception(type(e), e, frames))
    try:
        exc = cloudpickle.dumps(e)
        pickle.loads(exc)  # some exceptions pickle but do not unpickle
    except Exception:  # noqa: BLE001
        exc = b""
    return ("TaskFailed", f"{type(e).__name__}: {e}", tb, exc)


def execute(payload, inputs):
    """Run one task: ``(True, result, size)`` or ``(False, error_info, 0)``."""
    try:
        ensure_plugins()
        result = run_payload(payload, inputs)
        return True, result, (sys.getsizeof(result) if type(result) in PLAIN else sizeof(result))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the client
        return False, error_info(e), 0
