"""``shoal.Client``: futures on a shoal cluster, and a scheduler for Dask collections."""

from __future__ import annotations

import asyncio
import atexit
import functools
import contextlib
import gc
import contextvars
import warnings
import hashlib
import os
import pickle
import struct
import threading
import time
import uuid
import weakref
from typing import Any

import cloudpickle

from . import _native
from ._futures import CANCELLED, FINISHED, LOST, PENDING, CancelledError, Future, KilledWorker, wait
from ._native import KeyState
from ._serialize import by_value_needed, dump_with
from ._serialize import loads as _loads_value
from ._futures import _in_event_loop, futures_of
from ._worker import CALL, DATA, FUTURE_REFS, MAPPED, PLAIN as _PLAIN, Dep

_U32 = struct.Struct("<I")
#: Marks "no default given" (``get_dataset``).
_NO_DEFAULT = object()

__all__ = ["Client", "TaskError", "default_client"]

_default: "Client | None" = None
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Update threads must leave native code before the interpreter finalises.
    for client in list(_open_clients):
        client.close()


#: The client of ``with client.as_current():`` blocks (innermost first).
_current: contextvars.ContextVar = contextvars.ContextVar("shoal_current_client", default=None)


def default_client(c: "Client | None" = None) -> "Client":
    """The client in use: ``c`` if given, else the one of an enclosing
    ``client.as_current()`` block, else the most recently created client that is open."""
    if c is not None:
        return c
    current = _current.get()
    if current is not None and not current._closed:
        return current
    if _default is None or _default._closed:
        raise ValueError("no shoal Client is open: create one with shoal.Client(...)")
    return _default


def _async_capable(method):
    """In an asynchronous client, called from its event loop: run the (blocking) method
    in a thread and return an awaitable; otherwise call it."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.asynchronous and _in_event_loop():
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(None, functools.partial(method, self, *args, **kwargs))
        return method(self, *args, **kwargs)

    return wrapper


class TaskError(RuntimeError):
    """A task failed and its exception could not be rebuilt on the client."""


class _RemoteTraceback(Exception):
    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return "\n\nRemote traceback:\n" + self.tb


def _pickle(obj, embedded: bytes = b"") -> bytes:
    """``obj`` pickled for a worker (see :func:`shoal._serialize.by_value_needed`).
    ``embedded``: bytes inside ``obj`` that are already a by-value pickle (a function),
    whose own mentions of ``__main__`` do not count."""
    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - lambdas, local classes: cloudpickle handles them
        return cloudpickle.dumps(obj, protocol=5)
    return cloudpickle.dumps(obj, protocol=5) if by_value_needed(data, embedded) else data


class _RefsMixin:
    """Pickles futures found anywhere in an object as references to task inputs."""

    def _init_refs(self, first_index: int) -> None:
        self.first_index = first_index
        self.keys: dict[str, int] = {}

    def persistent_id(self, obj):
        if type(obj) is Future:
            return self.keys.setdefault(obj.key, self.first_index + len(self.keys))
        return None


class _FuturePickler(_RefsMixin, pickle.Pickler):
    def __init__(self, file, first_index):
        pickle.Pickler.__init__(self, file, protocol=5)
        self._init_refs(first_index)


class _FutureCloudPickler(_RefsMixin, cloudpickle.Pickler):
    def __init__(self, file, first_index):
        cloudpickle.Pickler.__init__(self, file, protocol=5)
        self._init_refs(first_index)


def pickle_with_futures(obj, first_index: int) -> tuple[bytes, list[str]]:
    """``obj`` pickled with every Future replaced by a reference to an input of the task
    (numbered from ``first_index``), and the keys of those inputs. A payload with
    references starts with ``FUTURE_REFS``."""
    data, keys = dump_with(obj, lambda f: _FuturePickler(f, first_index),
                           lambda f: _FutureCloudPickler(f, first_index))
    return (FUTURE_REFS + data if keys else data), keys


def _pure_digest(payload: bytes, dep_keys: list[str]) -> str:
    """The hash part of a pure call's key. The payload names its inputs only by position
    (``Dep(i)``), so the inputs' keys must enter the hash too: ``f(x)`` and ``f(y)`` are
    different tasks even when ``x`` and ``y`` are futures."""
    h = hashlib.blake2b(payload, digest_size=16)
    for key in dep_keys:
        h.update(b"\0")
        h.update(key.encode())
    return h.hexdigest()


def _funcname(fn) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return name.replace("<", "").replace(">", "") or "task"


class _Deps:
    """Collects futures found in arguments and replaces them by ``Dep`` markers."""

    __slots__ = ("keys", "index", "futures")

    def __init__(self):
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.futures: list[Future] = []

    def replace(self, obj):
        t = type(obj)
        if t is Future:
            i = self.index.get(obj.key)
            if i is None:
                i = self.index[obj.key] = len(self.keys)
                self.keys.append(obj.key)
                self.futures.append(obj)
            return Dep(i)
        if t is list or t is tuple or t is set or t is frozenset:
            if not obj:
                return obj
            return t(self.replace(x) for x in obj)
        if t is dict:
            return {k: self.replace(v) for k, v in obj.items()} if obj else obj
        return obj


class Client:
    """A connection to a shoal scheduler.

    ``Client(scheduler_file=path)``, ``Client("tcp://host:port")`` (secret from
    ``SHOAL_SECRET``), ``Client(cluster)`` for anything with a ``scheduler_file``, or
    ``Client()`` with ``SHOAL_SCHEDULER_FILE`` set. Connection problems raise within
    ``timeout`` seconds.
    """

    def __init__(self, address=None, scheduler_file=None, timeout: float = 10.0, set_as_default: bool = True,
                 asynchronous: bool = False, name=None, direct_to_workers=None, _from_worker: bool = False,
                 **kwargs):
        if kwargs:
            raise TypeError(f"Client() got unknown arguments {sorted(kwargs)}; shoal's Client takes address, "
                            "scheduler_file, timeout, set_as_default, asynchronous, name")
        self.asynchronous = bool(asynchronous)
        self.name = name
        if address is not None and not isinstance(address, str):
            scheduler_file = getattr(address, "scheduler_file", None)
            if scheduler_file is None:
                raise TypeError(f"Client() takes an address, a scheduler file or a cluster, not {type(address).__name__}")
            address = None
        if address is None and scheduler_file is None:
            # shoal.mpi.initialize() sets the address (and SHOAL_SECRET) on the client rank.
            address = os.environ.get("SHOAL_SCHEDULER_ADDRESS")
        if address is None and scheduler_file is None:
            scheduler_file = os.environ.get("SHOAL_SCHEDULER_FILE")
        if isinstance(timeout, str):
            from .worker_context import parse_seconds

            timeout = parse_seconds(timeout)
        self._closed = True
        self._native = _native.Client(address, None if scheduler_file is None else os.fspath(scheduler_file),
                                      float(timeout), from_worker=_from_worker)
        # What Future.__del__ calls: the native method itself, one Python frame less
        # per released future.
        self._drop = self._native.drop_key
        self._closed = False
        # Key states live in the native client (fed by the scheduler's updates without
        # the interpreter); Python keeps only the done-callbacks, run by this thread.
        self._cond = threading.RLock()
        self._callbacks: dict[str, tuple[KeyState, list]] = {}
        self._fn_cache: dict[int, tuple[Any, bytes]] = {}
        self._heads: dict[bytes, tuple[bytes, bytes]] = {}
        self._dask_settings = None
        self._thread = threading.Thread(target=self._callback_loop, name="shoal-client-callbacks", daemon=True)
        self._thread.start()
        _open_clients.add(self)
        if set_as_default:
            global _default
            _default = self
        from . import _dask

        self._dask_settings = _dask.plan_task_based_shuffles()

    # ----- bookkeeping -----

    def _callback_loop(self) -> None:
        native = self._native
        while not self._closed:
            try:
                due = native.next_callbacks(0.2)
            except Exception:  # noqa: BLE001
                due = None
            if due is None:
                due = list(self._callbacks)  # closed: every state is final now
                self._fire(due)
                return
            if due:
                self._fire(due)

    def _fire(self, keys) -> None:
        """Run the callbacks of these keys (each once: they are taken out first)."""
        fire = []
        with self._cond:
            for key in keys:
                entry = self._callbacks.pop(key, None)
                if entry is not None:
                    state, fns = entry
                    fire.extend((fn, key, state) for fn in fns)
        for fn, key, state in fire:
            try:
                # A Future made here holds a reference of its own (its __del__ drops one).
                fn(Future(key, self) if state.refs else _DetachedFuture(key, self, state))
            except Exception:  # noqa: BLE001 - a user callback must not stop the others
                import traceback

                traceback.print_exc()

    def _retain(self, key: str) -> KeyState:
        return self._native.retain([key])[0]

    def _flush_releases(self) -> None:
        """Send the keys dropped since the last flush (the native client also does so
        before each message of its own, and every 50 ms)."""
        self._native.flush_releases()

    def _add_callback(self, future: Future, fn) -> None:
        state = future._state
        with self._cond:
            entry = self._callbacks.get(future.key)
            if entry is None or entry[0] is not state:
                entry = self._callbacks[future.key] = (state, [])
            entry[1].append(fn)
        if state.watch():
            self._fire([future.key])

    def _forget_on_completion(self, futures) -> None:
        for f in futures:
            self._retain(f.key)
            f.add_done_callback(lambda fut, key=f.key: self._drop(key))

    def _wait_until(self, predicate, timeout, what: str = "futures", raise_timeout: bool = True) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        native = self._native
        generation = native.generation()
        while not predicate():
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                if raise_timeout:
                    raise TimeoutError(f"{what} not done within {timeout} s")
                return False
            generation = native.wait_change(generation, min(left, 1.0))
        return True

    def _wait_done(self, states, timeout, what) -> None:
        if not self._native.wait_all(states, timeout):
            raise TimeoutError(f"{what!r} not done within {timeout} s")

    def _exception(self, key: str, state: KeyState) -> BaseException:
        if state.status == CANCELLED:
            return CancelledError(key)
        failed_key, kind, message, tb, exc = state.error or (key, "Unknown", "unknown error", None, b"")
        if state.status == LOST:
            return ConnectionError(f"{key!r}: {message}")
        if kind == "KilledWorker":
            return KilledWorker(f"{key!r}: {message}")
        err = None
        if exc:
            try:
                err = pickle.loads(exc)
            except Exception:  # noqa: BLE001
                err = None
        if not isinstance(err, BaseException):
            where = "" if failed_key in ("", key) else f" (dependency {failed_key!r} failed)"
            err = TaskError(f"task {key!r} failed{where}: {kind}: {message}")
        if tb:
            if hasattr(err, "add_note"):
                err.add_note("Remote traceback" + ("" if failed_key in ("", key) else f" (of {failed_key!r})") + ":\n" + tb.rstrip())
            else:
                err.__cause__ = _RemoteTraceback(tb)
        return err

    def _raise_if_failed(self, key: str, state: KeyState) -> None:
        if state.status != FINISHED:
            raise self._exception(key, state)

    def _fetch(self, keys: list[str]) -> list:
        values, undecoded = self._native.fetch(keys)  # plain small values decoded natively
        for i in undecoded:
            try:
                values[i] = _loads_value(values[i])
            except TypeError as e:
                raise type(e)(f"the result of {keys[i]!r} cannot be transferred: {e}") from None
        return values

    # ----- building tasks -----

    def _function_bytes(self, fn) -> bytes:
        cached = self._fn_cache.get(id(fn))
        if cached is not None and cached[0] is fn:
            return cached[1]
        try:
            data = cloudpickle.dumps(fn, protocol=5)
        except Exception as e:
            raise TypeError(f"cannot pickle the function {fn!r} of type {type(fn).__qualname__}: {e}") from e
        if len(self._fn_cache) > 256:
            self._fn_cache.clear()
        self._fn_cache[id(fn)] = (fn, data)
        return data

    def _call_task(self, fn_bytes, fn, args, kwargs, key, pure, priority, retries, workers, resources):
        deps = _Deps()
        if args:
            args = deps.replace(args)
        if kwargs:
            kwargs = deps.replace(kwargs)
        try:
            payload = _pickle((CALL, fn_bytes, args, kwargs, bool(deps.keys)), fn_bytes)
        except Exception as e:
            raise TypeError(f"cannot pickle the arguments of {key or _funcname(fn)!r}: {e}") from e
        if key is None:
            if pure:
                key = f"{_funcname(fn)}-{_pure_digest(payload, deps.keys)}"
            else:
                key = f"{_funcname(fn)}-{uuid.uuid4().hex}"
        return (key, deps.keys, payload, int(priority), int(retries), _workers(workers), _resources(resources)), deps.futures

    def _futures(self, keys: list[str]) -> list[Future]:
        """New futures for ``keys``, retained in one call."""
        client = self
        return [Future(k, client, st) for k, st in zip(keys, self._native.retain(keys))]

    def _submit(self, tasks: list, keys: list[str], order: bool = False) -> list[Future]:
        """Submit ``tasks`` and return futures for ``keys``; ``order``: priorities from
        the graph's depth-first order (see :func:`shoal._dask.submit_graph`)."""
        self._check_open()
        futures = self._futures(keys)
        self._native.submit(tasks, keys, order)  # after the releases queued before it
        return futures

    def _function_head(self, fn) -> tuple[bytes, bytes]:
        """(payload head, digest) of ``fn`` for ``MAPPED`` payloads."""
        data = self._function_bytes(fn)
        cached = self._heads.get(data)
        if cached is None:
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if len(self._heads) > 256:
                self._heads.clear()
            cached = self._heads[data] = (MAPPED + digest + _U32.pack(len(data)) + data, digest)
        return cached

    def _submit_calls(self, fn, calls, keys, pure, priority, retries, workers, resources) -> list[Future]:
        """Submit calls of ``fn`` whose arguments are all plain values, in compact form
        (the function once per worker, the arguments alone), and return their futures.
        Keys: ``keys``, else a hash of the function and the arguments (``pure``), else
        random."""
        self._check_open()
        head, digest = self._function_head(fn)
        name = _funcname(fn)
        if keys is None and not pure:
            keys = [f"{name}-{uuid.uuid4().hex}" for _ in calls]
        keys, states = self._native.submit_calls(
            head, digest, name, calls, keys, int(priority), int(retries), _workers(workers), _resources(resources))
        client = self
        return [Future(k, client, st) for k, st in zip(keys, states)]

    def _adopt(self, keys: list[str]) -> list[Future]:
        """Futures for keys the scheduler just made this client hold (a value taken out
        of a Variable, Queue or dataset refers to them)."""
        return [Future(k, self, st) for k, st in zip(keys, self._native.retain(keys, True))]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this shoal Client is closed")

    # ----- the futures API -----

    def submit(self, fn, *args, key=None, pure=True, retries=0, resources=None, workers=None, priority=0,
               actor=False, actors=False, allow_other_workers=False, fifo_timeout=None, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker. Futures among the arguments are
        dependencies: their values are passed in their place. ``actor=True``: create the
        class ``fn`` on a worker and return a future of an :class:`shoal.Actor`."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        if actor or actors:
            from .actor import submit_actor

            return submit_actor(self, fn, args, kwargs, workers=None if workers is None else _workers(workers))
        if allow_other_workers:
            raise NotImplementedError(
                "submit(allow_other_workers=True): shoal treats workers= as a strict restriction; "
                "leave workers= out to let the scheduler choose (it prefers workers holding the inputs)")
        if not kwargs and all(type(a) in _PLAIN for a in args):
            return self._submit_calls(fn, [args], None if key is None else [key], pure, priority, retries, workers, resources)[0]
        task, _ = self._call_task(self._function_bytes(fn), fn, args, kwargs, key, pure, priority, retries, workers, resources)
        return self._submit([task], [task[0]])[0]

    def map(self, fn, *iterables, key=None, pure=True, retries=0, resources=None, workers=None, priority=0, **kwargs) -> list[Future]:
        """``fn`` over the zipped iterables, one task per element, all in one message."""
        with gc_paused():
            return self._map(fn, iterables, key, pure, retries, resources, workers, priority, kwargs)

    def _map(self, fn, iterables, key, pure, retries, resources, workers, priority, kwargs) -> list[Future]:
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {type(fn).__name__}")
        keys = key if isinstance(key, (list, tuple)) else None
        prefix = key if isinstance(key, str) else None
        calls = list(zip(*iterables))
        if keys is None and prefix is not None:
            keys = [f"{prefix}-{i}" for i in range(len(calls))]
        if keys is not None and len(keys) < len(calls):
            raise ValueError(f"map() got {len(keys)} keys for {len(calls)} calls")
        if not kwargs and all(type(a) in _PLAIN for args in calls for a in args):
            # The common case: one compact payload per call, built and sent in bulk.
            return self._submit_calls(fn, calls, keys[: len(calls)] if keys else None, pure, priority, retries,
                                      workers, resources)
        fn_bytes = self._function_bytes(fn)
        tasks, all_keys, seen = [], [], set()
        for i, args in enumerate(calls):
            k = keys[i] if keys else None
            task, _ = self._call_task(fn_bytes, fn, args, kwargs, k, pure, priority, retries, workers, resources)
            all_keys.append(task[0])
            if task[0] not in seen:  # the same pure call twice: one task, two futures
                seen.add(task[0])
                tasks.append(task)
        return self._submit(tasks, all_keys)

    @_async_capable
    def gather(self, futures, errors: str = "raise", timeout: float | None = None):
        """Results of (nested lists / dicts of) futures, fetched in one request per worker."""
        flat: list[Future] = []
        _collect(futures, flat)
        self._wait_done([f._state for f in flat], timeout, f"{len(flat)} futures")
        with gc_paused():
            return self._gathered(futures, flat, errors)

    def _gathered(self, futures, flat, errors):
        ok = []
        for f in flat:
            if f._state.status != FINISHED:
                if errors == "raise":
                    raise self._exception(f.key, f._state)
            else:
                ok.append(f.key)
        unique = list(dict.fromkeys(ok))
        values = dict(zip(unique, self._fetch(unique))) if unique else {}
        return _rebuild(futures, values, errors == "skip")

    @_async_capable
    def scatter(self, data, broadcast: bool = False, workers=None, hash: bool = True, timeout: float | None = 60):
        """Put local data into the cluster; returns futures of the same shape (list, dict
        or a single value). The data travels to one worker with the task that holds it;
        with ``broadcast=True`` every worker then gets a copy (fetched from that worker),
        so tasks anywhere read it without a transfer."""
        futures = self._scatter(data, workers, hash)
        if broadcast:
            flat = list(futures.values()) if isinstance(futures, dict) else (
                list(futures) if isinstance(futures, (list, tuple, set, frozenset)) else [futures])
            wait(flat, timeout=timeout)
            self._native.replicate([f.key for f in flat])
        return futures

    @_async_capable
    def who_has(self, futures=None) -> dict:
        """``{key: [worker addresses holding it]}`` for these futures."""
        if isinstance(futures, Future):
            futures = [futures]
        keys = [f.key for f in futures or []]
        return dict(zip(keys, self._native.who_has(keys))) if keys else {}

    def _scatter(self, data, workers, hash):
        if isinstance(data, dict):
            keys = list(data)
            futures = self._scatter_values(list(data.values()), hash, workers)
            return dict(zip(keys, futures))
        if isinstance(data, (list, tuple, set, frozenset)):
            futures = self._scatter_values(list(data), hash, workers)
            return futures if isinstance(data, list) else type(data)(futures)
        return self._scatter_values([data], hash, workers)[0]

    def _scatter_values(self, values, hash_, workers):
        tasks = []
        for v in values:
            payload = _pickle((DATA, v))
            digest = hashlib.blake2b(payload, digest_size=16).hexdigest() if hash_ else uuid.uuid4().hex
            key = f"{type(v).__name__}-{digest}"
            tasks.append((key, [], payload, 0, 0, _workers(workers), []))
        uniq = list({t[0]: t for t in tasks}.values())
        return self._submit(uniq, [t[0] for t in tasks])

    # ----- cluster control -----

    def _workers_matching(self, workers) -> dict:
        """``{address: info}`` of the workers named (by address or name); unknown names
        are a ``ValueError`` naming them and the workers there are."""
        wanted = _workers(workers)
        info = self.scheduler_info()["workers"]
        found = {a: w for a, w in info.items() if a in wanted or str(w.get("name")) in wanted}
        known = set(found) | {str(w.get("name")) for w in found.values()}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"no worker named {unknown}: the workers are {sorted(info)} "
                             f"(names {sorted(str(w.get('name')) for w in info.values())})")
        return found

    def _wait_replaced(self, old: dict, count: int, timeout) -> None:
        """Wait until none of ``old`` (``{address: info}``) is registered any more and at
        least ``count`` workers are."""
        old_ids = {w["worker_id"] for w in old.values()}

        def replaced():
            now = self.scheduler_info()["workers"]
            return len(now) >= count and not old_ids & {w["worker_id"] for w in now.values()}

        deadline = None if timeout is None else time.monotonic() + timeout
        while not replaced():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"workers did not come back within {timeout} s after the restart")
            time.sleep(0.05)

    @_async_capable
    def restart(self, timeout: float | None = 120, wait_for_workers: bool = True) -> None:
        """Restart every worker, as distributed does: every result is dropped and every
        future of every client is cancelled. Workers restart in their process (results
        and peers cleared, a fresh session with the scheduler), then this waits until as
        many are back (``wait_for_workers``)."""
        before = self.scheduler_info()["workers"]
        self._native.restart([], True)
        if wait_for_workers:
            self._wait_replaced(before, len(before), timeout)

    @_async_capable
    def restart_workers(self, workers, timeout: float | None = 120, raise_for_error: bool = True) -> dict:
        """Restart these workers only; results they held are recomputed where needed.
        Returns ``{address: "OK"}``."""
        targets = self._workers_matching(workers)
        count = len(self.scheduler_info()["workers"])
        self._native.restart(list(targets), False)
        try:
            self._wait_replaced(targets, count, timeout)
        except TimeoutError:
            if raise_for_error:
                raise
            return {a: "timed out" for a in targets}
        return {a: "OK" for a in targets}

    @_async_capable
    def retire_workers(self, workers=None, close_workers: bool = True, remove: bool = True,
                       timeout: float | None = 120) -> dict:
        """Retire workers without losing data: nothing new goes to them, their queued
        tasks move, results only they hold are copied to other workers, then they shut
        down. Returns ``{address: info}`` of the retired workers."""
        if workers is None:
            raise ValueError("retire_workers(workers=[...]): name the workers to retire (addresses or names)")
        if not close_workers:
            raise NotImplementedError("retire_workers(close_workers=False): a retired shoal worker always shuts down")
        targets = self._workers_matching(workers)
        if not targets:
            return {}
        self._native.retire(list(targets))
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = {w["worker_id"] for w in targets.values()}
        while ids & {w["worker_id"] for w in self.scheduler_info()["workers"].values()}:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"workers {sorted(targets)} not retired within {timeout} s "
                                   "(results only they hold need another worker to move to)")
            time.sleep(0.05)
        return targets

    @_async_capable
    def get_task_stream(self, start=None, stop=None, count=None, plot=False, filename="task-stream.html",
                        bokeh_resources=None) -> list:
        """Recent task runs, in distributed's shape (``key``, ``worker``, ``status``,
        ``startstops``): since ``start`` (Unix time, or a duration ago: ``"10s"``), up to
        ``stop``, at most the ``count`` most recent."""
        from .diagnostics import records

        if plot:
            raise NotImplementedError("get_task_stream(plot=True): use shoal.performance_report(filename=...)")
        if isinstance(start, str):
            from .worker_context import parse_seconds

            start = time.time() - parse_seconds(start)
        out = records(self, start or 0.0, count or 100_000)
        if stop is not None:
            out = [r for r in out if r["startstops"][0]["start"] <= stop]
        return out

    def upload_file(self, filename, load: bool = True) -> dict:
        """Send a ``.py``, ``.zip`` or ``.egg`` file to every worker, now and joining
        later, and make it importable there (``load``: import a ``.py`` at once).
        Returns ``{worker address: None}``."""
        from .plugins import UploadFile

        plugin = UploadFile(filename, load=load)
        return self.register_plugin(plugin, name=f"upload-file-{os.path.basename(os.fspath(filename))}")

    def register_plugin(self, plugin, name: str | None = None, idempotent: bool = False) -> dict:
        """Run a worker plugin's ``setup()`` on every worker, now and on workers that join
        later; ``teardown()`` runs when the plugin is replaced or unregistered.
        ``transition`` hooks are not called (tasks run in Rust's bookkeeping, not
        through Python transitions). Returns ``{worker address: setup()'s result}``."""
        from .plugins import register

        return register(self, plugin, name, idempotent)

    def unregister_worker_plugin(self, name: str) -> dict:
        from .plugins import unregister

        return unregister(self, name)

    register_worker_plugin = register_plugin

    # ----- datasets -----

    @_async_capable
    def publish_dataset(self, *args, name: str | None = None, override: bool = False, **kwargs) -> None:
        """Publish values under names, for any client of the cluster to ``get_dataset``:
        ``publish_dataset(x, name="x")`` or ``publish_dataset(x=x, y=y)``. Futures and
        persisted collections keep their results in the cluster while published."""
        from .coordination import _call, dump_value

        if args:
            if name is None or len(args) != 1:
                raise TypeError("publish_dataset(value, name=...) takes one value with a name, or keyword arguments")
            kwargs[name] = args[0]
        for n, value in kwargs.items():
            data, keys = dump_value(value)
            try:
                _call(self, "dataset_publish", name=str(n), data=data, keys=keys, replace=override)
            except RuntimeError as e:
                raise KeyError(str(e)) from None

    @_async_capable
    def get_dataset(self, name: str, default=_NO_DEFAULT, **kwargs):
        """The dataset published under ``name`` (``KeyError`` if none, unless ``default``)."""
        from .coordination import _call, load_value

        self._flush_releases()
        tag, payload = _call(self, "dataset_get", name=str(name))
        if tag == "value":
            return load_value(self, *payload)
        if default is not _NO_DEFAULT:
            return default
        raise KeyError(f"no dataset named {name!r} is published (list_datasets() shows those that are)")

    @_async_capable
    def list_datasets(self, **kwargs) -> list:
        from .coordination import _call

        from .plugins import PREFIX

        return [n for n in _call(self, "dataset_list")[1] if not n.startswith(PREFIX)]

    @_async_capable
    def unpublish_dataset(self, name: str, **kwargs) -> None:
        from .coordination import _call

        tag, _ = _call(self, "dataset_delete", name=str(name))
        if tag == "not_found":
            raise KeyError(f"no dataset named {name!r} is published")

    @property
    def datasets(self) -> "_Datasets":
        """The published datasets as a mapping (``client.datasets["x"] = value``)."""
        return _Datasets(self)

    @_async_capable
    def cancel(self, futures) -> None:
        """Stop computing these keys; their futures end cancelled."""
        if isinstance(futures, Future):
            futures = [futures]
        keys = [f.key for f in futures]
        self._native.cancel(keys)

    def compute(self, collections, sync: bool = False, optimize_graph: bool = True, **kwargs):
        """Futures of Dask collections (the value itself with ``sync=True``)."""
        from . import _dask

        single = not isinstance(collections, (list, tuple))
        futures = _dask.compute_futures(self, [collections] if single else list(collections), optimize_graph, **kwargs)
        if sync:
            futures = self.gather(futures)
        return futures[0] if single else futures

    def persist(self, collections, optimize_graph: bool = True, **kwargs):
        """Dask collections backed by data held in the cluster."""
        from . import _dask

        single = not isinstance(collections, (list, tuple))
        out = _dask.persist(self, [collections] if single else list(collections), optimize_graph, **kwargs)
        return out[0] if single else out

    def get(self, dsk, keys, **kwargs):
        """Compute a Dask graph (or expression) and return the values for ``keys``, nested
        as ``keys`` is. This is what ``dask.compute(..., scheduler=client)`` calls."""
        from . import _dask

        return _dask.get(self, dsk, keys, **kwargs)

    @_async_capable
    def run(self, fn, *args, workers=None, timeout: float | None = 60, **kwargs) -> dict:
        """``fn(*args, **kwargs)`` once on every worker (or on ``workers``):
        ``{worker address: result}``."""
        addresses = list(self.scheduler_info()["workers"]) if workers is None else _workers(workers)
        token = uuid.uuid4().hex
        fn_bytes = self._function_bytes(fn)
        tasks = []
        for i, address in enumerate(addresses):
            task, _ = self._call_task(fn_bytes, fn, args, kwargs, f"run-{token}-{i}", False, 1 << 30, 0, [address], None)
            tasks.append(task)
        futures = self._submit(tasks, [t[0] for t in tasks])
        values = self.gather(futures, timeout=timeout)
        return dict(zip(addresses, values))

    def scheduler_info(self) -> dict:
        """The scheduler and its workers in distributed's shape: ``id``, ``address``,
        ``type``, ``workers`` as ``{address: {"name", "nthreads", "memory_limit", "host",
        "resources", "metrics", ...}}``; plus shoal's ``tasks`` (counts by state),
        ``clients`` and ``tasks_finished``."""
        status = self._native.status()
        status["id"] = status.get("scheduler_id")
        status["type"] = "Scheduler"
        workers = {}
        for w in status.get("workers", []):
            w = dict(w, type="Worker", worker_id=w.get("id"), id=w.get("name"))
            w["resources"] = dict(w.get("resources") or [])
            workers[w["address"]] = w
        status["workers"] = workers
        return status

    @_async_capable
    def wait_for_workers(self, n_workers: int = 1, timeout: float | None = 60) -> None:
        """Block until ``n_workers`` workers are connected."""
        self._native.wait_for_workers(int(n_workers), 1e9 if timeout is None else float(timeout))

    def nthreads(self, workers=None) -> dict:
        """``{worker address: threads}``."""
        info = self.scheduler_info()["workers"]
        wanted = None if workers is None else set(_workers(workers))
        return {a: w["nthreads"] for a, w in info.items() if wanted is None or a in wanted}

    ncores = nthreads

    @_async_capable
    def has_what(self, workers=None) -> dict:
        """``{worker address: [keys held there]}``, for the keys this client holds
        futures of (the scheduler does not tell one client about another's data)."""
        keys = self._native.finished_keys()
        out = {a: [] for a in self.scheduler_info()["workers"]}
        for key, holders in zip(keys, self._native.who_has(keys) if keys else []):
            for a in holders:
                out.setdefault(a, []).append(key)
        if workers is not None:
            wanted = set(_workers(workers))
            out = {a: v for a, v in out.items() if a in wanted}
        return out

    @_async_capable
    def replicate(self, futures, n=None, workers=None, branching_factor=2) -> None:
        """Copy these results to every worker (as ``scatter(broadcast=True)`` does)."""
        if n is not None or workers is not None:
            raise NotImplementedError(
                "replicate(n=..., workers=...): shoal copies to every worker; call replicate(futures) "
                "or pin tasks with submit(..., workers=...)")
        futures = futures_of(futures)
        wait(futures)
        if futures:
            self._native.replicate([f.key for f in futures])

    def rebalance(self, futures=None, workers=None, **kwargs) -> None:
        """A no-op with a warning: shoal does not move results between workers to even
        out memory; it places tasks by data locality, steals queued work for idle workers,
        and spills to disk under memory pressure."""
        warnings.warn("Client.rebalance() does nothing on shoal: results stay where they are "
                      "(placement follows data, workers spill under memory pressure)", stacklevel=2)

    def run_on_scheduler(self, function, *args, **kwargs):
        """Not possible: shoal's scheduler is Rust and runs no Python."""
        raise NotImplementedError(
            "Client.run_on_scheduler: the shoal scheduler is written in Rust and runs no Python code. "
            "Use client.scheduler_info() for the scheduler's state, client.run(fn) to run a "
            "function on every worker, or a task (client.submit) for anything else")

    @property
    def dashboard_link(self):
        """The dashboard's link, carrying the token that opens it (``None`` when the
        scheduler runs with ``--no-dashboard``)."""
        self._check_open()
        return self._native.dashboard_link()

    @_async_capable
    def retry(self, futures) -> None:
        """Compute failed futures again (their tasks and the failed inputs they need)."""
        futures = futures_of(futures)
        self._check_open()
        self._native.retry([f.key for f in futures])
        for f in futures:
            if f._state.status != FINISHED:
                f._state.set(PENDING)

    def futures_of(self, obj) -> list:
        return futures_of(obj)

    @classmethod
    def current(cls, allow_global: bool = True) -> "Client":
        """The client of the enclosing ``as_current()`` block, else (with
        ``allow_global``) the default client; ``ValueError`` if there is none."""
        current = _current.get()
        if current is not None and not current._closed:
            return current
        if allow_global:
            return default_client()
        raise ValueError("no shoal Client is current: use `with client.as_current():`")

    @contextlib.contextmanager
    def as_current(self):
        """Within this block, ``Client.current()``, ``default_client()`` and Dask's
        ``compute()`` without a scheduler use this client."""
        token = _current.set(self)
        try:
            import dask

            ctx = dask.config.set(scheduler=self)
        except ImportError:
            ctx = contextlib.nullcontext()
        try:
            with ctx:
                yield self
        finally:
            _current.reset(token)

    def get_executor(self, **kwargs):
        """A ``concurrent.futures.Executor`` running calls on this cluster (``kwargs``
        are passed to every ``submit``: ``pure``, ``resources``, ``workers``, ...)."""
        from ._executor import ClientExecutor

        return ClientExecutor(self, **kwargs)

    @_async_capable
    def shutdown(self) -> None:
        """Stop the whole cluster (workers and scheduler), then close."""
        if not self._closed:
            try:
                self._native.shutdown()
            finally:
                self.close()

    def close(self, timeout: float | None = None) -> None:
        """Close the connection; data only this client wanted is freed by the scheduler."""
        if self._closed:
            return
        self._closed = True
        from . import _dask

        _dask.restore(self._dask_settings)
        self._thread.join(timeout=2)
        self._native = _ClosedNative()
        global _default
        if _default is self:
            _default = None

    def __enter__(self):
        return self

    def __await__(self):
        async def connected():
            return self

        return connected().__await__()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self):
        if self._closed:
            return "<shoal.Client: closed>"
        return f"<shoal.Client: scheduler {self._native.scheduler_id} at {self._native.address}>"


class _Datasets:
    """``client.datasets``: the published datasets as a mutable mapping."""

    def __init__(self, client):
        self._client = client

    def __getitem__(self, name):
        return self._client.get_dataset(name)

    def __setitem__(self, name, value):
        self._client.publish_dataset(value, name=name)

    def __delitem__(self, name):
        self._client.unpublish_dataset(name)

    def __contains__(self, name):
        return name in self._client.list_datasets()

    def __iter__(self):
        return iter(self._client.list_datasets())

    def __len__(self):
        return len(self._client.list_datasets())

    def keys(self):
        return self._client.list_datasets()


class _ClosedNative:
    def __getattr__(self, name):
        def closed(*args, **kwargs):
            raise RuntimeError("this shoal Client is closed")

        return closed


class _DetachedFuture(Future):
    """A future handed to a callback after every user future of the key was dropped."""

    __slots__ = ()

    def __init__(self, key, client, state):
        self.key, self.client, self._state = key, client, state

    def __del__(self):
        pass


def _workers(workers) -> list[str]:
    if workers is None:
        return []
    if isinstance(workers, str):
        return [workers]
    return [str(w) for w in workers]


def _resources(resources) -> list:
    if not resources:
        return []
    return [(str(k), float(v)) for k, v in dict(resources).items()]


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector paused for a bulk step (building or unpacking
    100k futures, tasks or results): such steps allocate so many objects that the
    collector would run over the whole heap again and again, while none of them form
    cycles. Nested use is fine; a collector disabled by the user stays so."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _collect(obj, out: list) -> None:
    if isinstance(obj, Future):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            _collect(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _collect(x, out)


_SKIP = object()


def _rebuild(obj, values: dict, skip: bool):
    if isinstance(obj, Future):
        if obj.key in values:
            return values[obj.key]
        return _SKIP if skip else obj.exception(timeout=0)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_rebuild(x, values, skip) for x in obj]
        return type(obj)(x for x in items if x is not _SKIP)
    if isinstance(obj, dict):
        return {k: v for k, v in ((k, _rebuild(v, values, skip)) for k, v in obj.items()) if v is not _SKIP}
    return obj

