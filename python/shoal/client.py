"""``shoal.Client``: futures on a shoal cluster, and a scheduler for Dask collections."""

from __future__ import annotations

import atexit
import hashlib
import io
import json
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
from ._futures import CANCELLED, FINISHED, LOST, PENDING, CancelledError, Future, KeyState, wait
from ._serialize import loads as _loads_value
from ._worker import CALL, DATA, FUTURE_REFS, MAPPED, Dep

#: Argument types that never hold a Future: such calls skip the dependency scan and use
#: the compact payload (``MAPPED``: the function once per worker, the arguments alone).
_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})
_U32 = struct.Struct("<I")
#: Releases are sent in batches of at most this many keys (or when the update thread runs).
_RELEASE_BATCH = 4096

__all__ = ["Client", "TaskError", "default_client"]

_default: "Client | None" = None
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Update threads must leave native code before the interpreter finalises.
    for client in list(_open_clients):
        client.close()


def default_client() -> "Client":
    """The most recently created client that is still open."""
    if _default is None or _default._closed:
        raise ValueError("no shoal Client is open: create one with shoal.Client(...)")
    return _default


class TaskError(RuntimeError):
    """A task failed and its exception could not be rebuilt on the client."""


class _RemoteTraceback(Exception):
    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return "\n\nRemote traceback:\n" + self.tb


def _pickle(obj) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - lambdas, local classes: cloudpickle handles them
        return cloudpickle.dumps(obj, protocol=5)


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
    for cls in (_FuturePickler, _FutureCloudPickler):
        buf = io.BytesIO()
        pickler = cls(buf, first_index)
        try:
            pickler.dump(obj)
        except Exception:  # noqa: BLE001 - the plain pickler cannot do lambdas: cloudpickle
            if cls is _FutureCloudPickler:
                raise
            continue
        keys = list(pickler.keys)
        data = buf.getvalue()
        return (FUTURE_REFS + data if keys else data), keys
    raise AssertionError("unreachable")


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

    asynchronous = False  # for dask's scheduler hook

    def __init__(self, address=None, scheduler_file=None, timeout: float = 10.0, set_as_default: bool = True):
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
        self._closed = True
        self._native = _native.Client(address, None if scheduler_file is None else os.fspath(scheduler_file), float(timeout))
        self._closed = False
        self._cond = threading.Condition(threading.RLock())
        self._states: dict[str, KeyState] = {}
        self._fn_cache: dict[int, tuple[Any, bytes]] = {}
        self._heads: dict[bytes, tuple[bytes, bytes]] = {}
        self._releases: list[str] = []
        self._dask_settings = None
        self._thread = threading.Thread(target=self._update_loop, name="shoal-client-updates", daemon=True)
        self._thread.start()
        _open_clients.add(self)
        if set_as_default:
            global _default
            _default = self
        from . import _dask

        self._dask_settings = _dask.plan_task_based_shuffles()

    # ----- bookkeeping -----

    def _update_loop(self) -> None:
        while not self._closed:
            try:
                if self._releases:
                    self._flush_releases()
                updates = self._native.next_updates(0.05 if self._releases else 0.2)
            except Exception:  # noqa: BLE001
                updates = None
            if updates is None:
                self._lose_everything("the connection to the scheduler closed")
                return
            if not updates:
                continue
            fire = []
            with self._cond:
                for key, status, size, error in updates:
                    state = self._states.get(key)
                    if state is None:
                        continue
                    state.status, state.size, state.error = status, size, error
                    if state.callbacks:
                        fire.extend((cb, key, state) for cb in state.callbacks)
                        state.callbacks = []
                self._cond.notify_all()
            self._run_callbacks(fire)

    def _lose_everything(self, reason: str) -> None:
        fire = []
        with self._cond:
            for key, state in self._states.items():
                if state.status == PENDING:
                    state.status, state.error = LOST, ("", "Lost", reason, None, b"")
                    fire.extend((cb, key, state) for cb in state.callbacks)
                    state.callbacks = []
            self._cond.notify_all()
        self._run_callbacks(fire)

    def _run_callbacks(self, fire) -> None:
        for cb, key, state in fire:
            try:
                cb(Future(key, self, state) if state.refs else _DetachedFuture(key, self, state))
            except Exception:  # noqa: BLE001 - a user callback must not stop the updates
                import traceback

                traceback.print_exc()

    def _retain(self, key: str) -> KeyState:
        with self._cond:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = KeyState()
            state.refs += 1
            return state

    def _drop(self, key: str) -> None:
        with self._cond:
            state = self._states.get(key)
            if state is None:
                return
            state.refs -= 1
            if state.refs > 0:
                return
            del self._states[key]
            self._releases.append(key)
            flush = len(self._releases) >= _RELEASE_BATCH
        if flush:
            self._flush_releases()

    def _flush_releases(self) -> None:
        """Send the keys dropped since the last flush, in one message."""
        with self._cond:
            keys, self._releases = self._releases, []
        if keys and not self._closed:
            self._native.release(keys)

    def _add_callback(self, future: Future, fn) -> None:
        with self._cond:
            if not future._state.done:
                future._state.callbacks.append(fn)
                return
        self._run_callbacks([(fn, future.key, future._state)])

    def _forget_on_completion(self, futures) -> None:
        for f in futures:
            self._retain(f.key)
            f.add_done_callback(lambda fut, key=f.key: self._drop(key))

    def _wait_until(self, predicate, timeout, what: str = "futures", raise_timeout: bool = True) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if raise_timeout:
                        raise TimeoutError(f"{what} not done within {timeout} s")
                    return False
                self._cond.wait(left if left is None or left < 1 else 1)
        return True

    def _wait_done(self, states, timeout, what) -> None:
        pending = [s for s in states if not s.done]
        if not pending:
            return

        def ready():
            while pending and pending[-1].done:
                pending.pop()
            return not pending

        self._wait_until(ready, timeout, f"{what!r}")

    def _exception(self, key: str, state: KeyState) -> BaseException:
        if state.status == CANCELLED:
            return CancelledError(key)
        failed_key, kind, message, tb, exc = state.error or (key, "Unknown", "unknown error", None, b"")
        if state.status == LOST:
            return ConnectionError(f"{key!r}: {message}")
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
        frames = self._native.fetch(keys)
        out = []
        for key, frame in zip(keys, frames):
            try:
                out.append(_loads_value(frame))
            except TypeError as e:
                raise type(e)(f"the result of {key!r} cannot be transferred: {e}") from None
        return out

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
            payload = _pickle((CALL, fn_bytes, args, kwargs, bool(deps.keys)))
        except Exception as e:
            raise TypeError(f"cannot pickle the arguments of {key or _funcname(fn)!r}: {e}") from e
        if key is None:
            if pure:
                key = f"{_funcname(fn)}-{hashlib.blake2b(payload, digest_size=16).hexdigest()}"
            else:
                key = f"{_funcname(fn)}-{uuid.uuid4().hex}"
        return (key, deps.keys, payload, int(priority), int(retries), _workers(workers), _resources(resources)), deps.futures

    def _futures(self, keys: list[str]) -> list[Future]:
        """New futures for ``keys``, retained under one lock."""
        out = []
        with self._cond:
            states = self._states
            for k in keys:
                state = states.get(k)
                if state is None:
                    state = states[k] = KeyState()
                state.refs += 1
                out.append(Future(k, self, state))
        return out

    def _submit(self, tasks: list, keys: list[str]) -> list[Future]:
        self._check_open()
        # Releases queued before this submission must reach the scheduler before it.
        self._flush_releases()
        futures = self._futures(keys)
        self._native.submit(tasks, keys)
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

    def _plain_tasks(self, fn, arg_tuples, keys, pure):
        """Keys and compact payloads of calls whose arguments are all plain values."""
        head, digest = self._function_head(fn)
        name = _funcname(fn)
        dumps, blake = pickle.dumps, hashlib.blake2b
        out_keys, payloads = [], []
        for i, args in enumerate(arg_tuples):
            a = dumps(args, 5)
            if keys is not None:
                k = keys[i]
            elif pure:
                k = f"{name}-{blake(digest + a, digest_size=16).hexdigest()}"
            else:
                k = f"{name}-{uuid.uuid4().hex}"
            out_keys.append(k)
            payloads.append(head + a)
        return out_keys, payloads

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this shoal Client is closed")

    # ----- the futures API -----

    def submit(self, fn, *args, key=None, pure=True, retries=0, resources=None, workers=None, priority=0, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker. Futures among the arguments are
        dependencies: their values are passed in their place."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        if not kwargs and all(type(a) in _PLAIN for a in args):
            keys, payloads = self._plain_tasks(fn, [args], None if key is None else [key], pure)
            task = (keys[0], [], payloads[0], int(priority), int(retries), _workers(workers), _resources(resources))
        else:
            task, _ = self._call_task(self._function_bytes(fn), fn, args, kwargs, key, pure, priority, retries, workers, resources)
        return self._submit([task], [task[0]])[0]

    def map(self, fn, *iterables, key=None, pure=True, retries=0, resources=None, workers=None, priority=0, **kwargs) -> list[Future]:
        """``fn`` over the zipped iterables, one task per element, all in one message."""
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
            all_keys, payloads = self._plain_tasks(fn, calls, keys, pure)
            return self._submit_plain(all_keys, payloads, priority, retries, workers, resources)
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

    def _submit_plain(self, keys, payloads, priority, retries, workers, resources) -> list[Future]:
        """Submit dependency-free tasks given as parallel lists of keys and payloads."""
        self._check_open()
        self._flush_releases()
        futures = self._futures(keys)
        self._native.submit_plain(keys, payloads, int(priority), int(retries), _workers(workers), _resources(resources))
        return futures

    def gather(self, futures, errors: str = "raise", timeout: float | None = None):
        """Results of (nested lists / dicts of) futures, fetched in one request per worker."""
        flat: list[Future] = []
        _collect(futures, flat)
        self._wait_done([f._state for f in flat], timeout, f"{len(flat)} futures")
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

    def run(self, fn, *args, timeout: float | None = 60, **kwargs) -> dict:
        """``fn(*args, **kwargs)`` once on every worker: ``{worker address: result}``."""
        info = self.scheduler_info()
        token = uuid.uuid4().hex
        fn_bytes = self._function_bytes(fn)
        tasks, addresses = [], []
        for w in info["workers"]:
            task, _ = self._call_task(fn_bytes, fn, args, kwargs, f"run-{token}-{w['id']}", False, 1 << 30, 0, [w["address"]], None)
            tasks.append(task)
            addresses.append(w["address"])
        futures = self._submit(tasks, [t[0] for t in tasks])
        values = self.gather(futures, timeout=timeout)
        return dict(zip(addresses, values))

    def scheduler_info(self) -> dict:
        """Scheduler id, address, workers (with their figures) and task counts."""
        status = json.loads(self._native.status())
        status["id"] = status.get("scheduler_id")
        return status

    def wait_for_workers(self, n_workers: int = 1, timeout: float | None = 60) -> None:
        """Block until ``n_workers`` workers are connected."""
        self._native.wait_for_workers(int(n_workers), 1e9 if timeout is None else float(timeout))

    def nthreads(self) -> dict:
        return {w["address"]: w["nthreads"] for w in self.scheduler_info()["workers"]}

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

