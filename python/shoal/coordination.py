"""Coordination primitives shared by clients and tasks, held by the scheduler: ``Lock``,
``MultiLock``, ``Semaphore``, ``Event``, ``Queue`` and ``Variable``, with distributed's
names and semantics.

Each is identified by its name: two objects with the same name (in the client, in tasks
on any worker) are the same primitive. The scheduler holds the state (in Rust: values
are opaque pickles it never unpickles; futures inside them keep their results in the
cluster while held). Leases of locks and semaphores belong to the connection that took
them: if a worker dies while its task holds a lock, the lock is released.
"""

from __future__ import annotations

import pickle
import uuid

import cloudpickle

from ._futures import Future

__all__ = ["Lock", "MultiLock", "Semaphore", "Event", "Queue", "Variable"]


def _client(client):
    if client is not None:
        return client
    from .worker_context import _client_in_context

    return _client_in_context()


def _timeout(timeout) -> float | None:
    """``None`` waits for ever; numbers (and ``"1s"``-style strings) are seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, str):
        from .worker_context import parse_seconds

        return parse_seconds(timeout)
    t = float(timeout)
    if t < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return t


class _Refs(pickle.Pickler):
    """Pickles a value with its futures as references by key."""

    def __init__(self, file):
        super().__init__(file, protocol=5)
        self.keys: list[str] = []

    def persistent_id(self, obj):
        if type(obj) is Future:
            self.keys.append(obj.key)
            return ("shoal-future", obj.key)
        return None


class _CloudRefs(cloudpickle.Pickler):
    def __init__(self, file):
        super().__init__(file, protocol=5)
        self.keys: list[str] = []

    persistent_id = _Refs.persistent_id


def dump_value(value) -> tuple[bytes, list[str]]:
    """``value`` as (bytes, keys of the futures inside it) for the scheduler to hold."""
    from ._serialize import dump_with

    data, keys = dump_with(value, _Refs, _CloudRefs)
    return data, list(dict.fromkeys(keys))


class _Loader(pickle.Unpickler):
    def __init__(self, file, client):
        super().__init__(file)
        self.client = client
        self.futures: dict[str, Future] = {}

    def persistent_load(self, pid):
        tag, key = pid
        if tag != "shoal-future":
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")
        return self.futures[key]


def load_value(client, data: bytes, keys: list[str]):
    """The value the scheduler held, its futures bound to ``client`` (which the scheduler
    made hold their keys)."""
    import io

    loader = _Loader(io.BytesIO(data), client)
    loader.futures = dict(zip(keys, client._adopt(keys)))
    return loader.load()


def _call(client, op: str, timeout=None, **kwargs):
    """One request; ``(tag, payload)`` of the reply. Errors the scheduler names raise.
    Releases of dropped futures go first: a value handed back may refer to one of their
    keys, and the scheduler must see the release before it gives the key back."""
    client._flush_releases()
    tag, payload = client._native.coord(op, timeout=timeout, **kwargs)
    if tag == "error":
        raise RuntimeError(payload)
    return tag, payload


class Variable:
    """A named value shared by clients and tasks; ``get`` waits until one is set."""

    def __init__(self, name: str | None = None, client=None):
        self.name = name or f"variable-{uuid.uuid4().hex}"
        self.client = _client(client)

    def set(self, value, timeout=None) -> None:
        """Replace the value (futures inside keep their results alive)."""
        data, keys = dump_value(value)
        _call(self.client, "variable_set", name=self.name, data=data, keys=keys)

    def get(self, timeout=None):
        """The value; waits until it is set (``TimeoutError`` after ``timeout`` s)."""
        t = _timeout(timeout)
        tag, payload = _call(self.client, "variable_get", name=self.name, wait=t != 0, timeout=t)
        if tag == "value":
            return load_value(self.client, *payload)
        raise TimeoutError(f"Variable {self.name!r} was not set within {timeout} s")

    def delete(self) -> None:
        """Forget the value (this is not a wait: getters keep waiting for a new one)."""
        _call(self.client, "variable_delete", name=self.name)

    def __reduce__(self):
        return (Variable, (self.name,))

    def __repr__(self):
        return f"<shoal.Variable: {self.name}>"


class Queue:
    """A named FIFO queue shared by clients and tasks. ``maxsize`` (0: unbounded) makes
    ``put`` wait while full."""

    def __init__(self, name: str | None = None, client=None, maxsize: int = 0):
        if maxsize < 0:
            raise ValueError(f"maxsize must be 0 (unbounded) or more, not {maxsize}")
        self.name = name or f"queue-{uuid.uuid4().hex}"
        self.client = _client(client)
        self.maxsize = int(maxsize)

    def put(self, value, timeout=None) -> None:
        t = _timeout(timeout)
        data, keys = dump_value(value)
        tag, _ = _call(self.client, "queue_put", name=self.name, data=data, keys=keys, maxsize=self.maxsize,
                       wait=t != 0, timeout=t)
        if tag != "ok":
            raise TimeoutError(f"Queue {self.name!r} stayed full for {timeout} s")

    def get(self, timeout=None, batch=False):
        """One item (waiting for it); ``batch=True``: every item there is now (a list,
        maybe empty); ``batch=N``: a list of N items (waiting for them)."""
        t = _timeout(timeout)
        if batch is True:
            count = 0
        elif batch is False:
            count = 1
        else:
            count = int(batch)
            if count < 1:
                raise ValueError(f"batch must be True, False or a count of 1 or more, not {batch!r}")
        tag, payload = _call(self.client, "queue_get", name=self.name, count=count, wait=t != 0, timeout=t)
        if tag != "values":
            raise TimeoutError(f"Queue {self.name!r}: nothing to get within {timeout} s")
        items = [load_value(self.client, data, keys) for data, keys in payload]
        return items if batch is not False else items[0]

    def qsize(self) -> int:
        return _call(self.client, "queue_size", name=self.name)[1]

    def __reduce__(self):
        return (Queue, (self.name, None, self.maxsize))

    def __repr__(self):
        return f"<shoal.Queue: {self.name}>"


class Event:
    """A named flag clients and tasks can wait on."""

    def __init__(self, name: str | None = None, client=None):
        self.name = name or f"event-{uuid.uuid4().hex}"
        self.client = _client(client)

    def set(self) -> None:
        _call(self.client, "event_set", name=self.name)

    def clear(self) -> None:
        _call(self.client, "event_clear", name=self.name)

    def is_set(self) -> bool:
        return _call(self.client, "event_is_set", name=self.name)[1]

    def wait(self, timeout=None) -> bool:
        """Wait until set; ``False`` if ``timeout`` passed first."""
        t = _timeout(timeout)
        tag, payload = _call(self.client, "event_wait", name=self.name, wait=t != 0, timeout=t)
        return tag == "flag" and bool(payload)

    def __reduce__(self):
        return (Event, (self.name,))

    def __repr__(self):
        return f"<shoal.Event: {self.name}>"


class _Leases:
    """What locks and semaphores share: leases on names, owned by this object."""

    _names: list[str]
    _max_leases: int

    def __init__(self, client):
        self.client = _client(client)
        self._held: list[str] = []

    def _acquire(self, blocking: bool, timeout) -> bool:
        t = 0.0 if not blocking else _timeout(timeout)
        lease = uuid.uuid4().hex
        tag, payload = _call(self.client, "acquire", names=self._names, max_leases=self._max_leases, lease=lease,
                             wait=t != 0, timeout=t)
        if tag == "flag" and payload:
            self._held.append(lease)
            return True
        return False

    def _release(self) -> None:
        if not self._held:
            raise RuntimeError(f"{self!r} is not held by this object: release() without acquire()")
        lease = self._held.pop()
        _call(self.client, "release", names=self._names, lease=lease)

    def _leases(self, name: str) -> int:
        return _call(self.client, "leases", name=name)[1]

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Lock(_Leases):
    """A named lock: one holder at a time, across clients and tasks."""

    def __init__(self, name: str | None = None, client=None):
        super().__init__(client)
        self.name = name or f"lock-{uuid.uuid4().hex}"
        self._names = [self.name]
        self._max_leases = 1

    def acquire(self, blocking: bool = True, timeout=None) -> bool:
        """Take the lock, waiting (at most ``timeout`` s) unless ``blocking=False``."""
        return self._acquire(blocking, timeout)

    def release(self) -> None:
        self._release()

    def locked(self) -> bool:
        return self._leases(self.name) > 0

    def __reduce__(self):
        return (Lock, (self.name,))

    def __repr__(self):
        return f"<shoal.Lock: {self.name}>"


class MultiLock(_Leases):
    """Several named locks taken together, atomically (all or none), in arrival order
    (names of their own: ``MultiLock(["x"])`` and ``Lock("x")`` are different locks, as in
    distributed); ``num_locks`` below the number of names is not supported."""

    def __init__(self, names=(), client=None):
        super().__init__(client)
        self.names = list(dict.fromkeys(names))
        if not self.names:
            raise ValueError("MultiLock needs at least one lock name")
        # Multi-locks are a namespace of their own, as in distributed: a MultiLock on
        # "x" does not exclude Lock("x").
        self._names = [f"multilock:{n}" for n in self.names]
        self._max_leases = 1

    def acquire(self, blocking: bool = True, timeout=None, num_locks=None) -> bool:
        if num_locks is not None and num_locks != len(self.names):
            raise NotImplementedError(
                "MultiLock.acquire(num_locks=...) with fewer locks than names is not supported by shoal: "
                "use a MultiLock of the names you need")
        return self._acquire(blocking, timeout)

    def release(self) -> None:
        self._release()

    def __reduce__(self):
        return (MultiLock, (self.names,))

    def __repr__(self):
        return f"<shoal.MultiLock: {self.names}>"


class Semaphore(_Leases):
    """A named semaphore of ``max_leases`` leases. A lease belongs to the connection
    that took it and returns when it closes (a dead worker's task gives its lease back)."""

    def __init__(self, max_leases: int = 1, name: str | None = None, client=None, **kwargs):
        super().__init__(client)
        if int(max_leases) < 1:
            raise ValueError(f"max_leases must be 1 or more, not {max_leases}")
        self.name = name or f"semaphore-{uuid.uuid4().hex}"
        self.max_leases = int(max_leases)
        self._names = [self.name]
        self._max_leases = self.max_leases

    def acquire(self, timeout=None) -> bool:
        return self._acquire(True, timeout)

    def release(self) -> bool:
        self._release()
        return True

    def get_value(self) -> int:
        """Leases held now."""
        return self._leases(self.name)

    def __reduce__(self):
        return (Semaphore, (self.max_leases, self.name))

    def __repr__(self):
        return f"<shoal.Semaphore: {self.name} ({self.max_leases} leases)>"
