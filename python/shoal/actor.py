"""Actors: a stateful object living on one worker, used through a proxy.

``client.submit(Counter, actor=True)`` creates the object on a worker and returns a
future whose result is an :class:`Actor` proxy. ``actor.method(*args)`` returns an
:class:`ActorFuture` (``.result()``); reading an attribute returns its value. Calls run
on the actor's worker one at a time, in arrival order per caller.

An actor is pinned to its worker and lost with it, as in distributed: its state is not
recomputed elsewhere. A call on an actor whose worker has left raises
:class:`ActorLostError` (it does not wait for ever).
"""

from __future__ import annotations

import threading
import time
import uuid

__all__ = ["Actor", "ActorFuture", "ActorLostError"]

#: Actors living in this worker process: key -> (instance, lock serialising its calls).
_actors: dict = {}
_actors_lock = threading.Lock()


class ActorLostError(RuntimeError):
    """The worker holding the actor left the cluster: the actor and its state are gone."""


def _create(cls, key, args, kwargs):
    """Task: create the actor on this worker; its result is the handle to it."""
    from .worker_context import get_worker

    instance = cls(*args, **kwargs)
    with _actors_lock:
        _actors[key] = (instance, threading.Lock())
    return Actor(cls, get_worker().name, key)


def _lookup(key):
    with _actors_lock:
        found = _actors.get(key)
    if found is None:
        raise ActorLostError(
            f"actor {key!r} is not on this worker any more (its worker restarted, or it was released)")
    return found


def _call(key, method, args, kwargs):
    """Task: call a method of the actor, one call at a time."""
    instance, lock = _lookup(key)
    with lock:
        return getattr(instance, method)(*args, **kwargs)


def _getattr(key, name):
    instance, lock = _lookup(key)
    with lock:
        return getattr(instance, name)


def _release(key):
    with _actors_lock:
        _actors.pop(key, None)


class Actor:
    """A proxy to an actor on the worker named ``worker``."""

    def __init__(self, cls, worker, key, client=None):
        self._cls, self._worker, self._key = cls, worker, key
        self._client = client

    def __reduce__(self):
        return (Actor, (self._cls, self._worker, self._key))

    @property
    def client(self):
        if self._client is None:
            from .worker_context import get_client

            self._client = get_client()
        return self._client

    def __repr__(self):
        return f"<shoal.Actor: {self._cls.__name__}, key={self._key}, worker={self._worker}>"

    def __dir__(self):
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})

    def _submit(self, fn, *args):
        return self.client.submit(fn, *args, workers=[self._worker], pure=False, priority=1 << 20,
                                  key=f"actor-call-{uuid.uuid4().hex}")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._cls, name, None)
        if callable(attr):
            def call(*args, **kwargs):
                return ActorFuture(self._submit(_call, self._key, name, args, kwargs), self)

            call.__name__ = name
            return call
        # A plain attribute: its current value, read on the actor's worker.
        return ActorFuture(self._submit(_getattr, self._key, name), self).result()


class ActorFuture:
    """The result of an actor method call."""

    def __init__(self, future, actor: Actor):
        self._future, self._actor = future, actor

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout=None):
        """The method's return value; raises what it raised, or :class:`ActorLostError`
        if the actor's worker left before the call ran."""
        deadline = None if timeout is None else time.monotonic() + timeout
        client = self._actor.client
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            step = 1.0 if left is None else max(0.0, min(1.0, left))
            try:
                return self._future.result(timeout=step)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            if self._actor._worker not in names:
                client.cancel([self._future])
                raise ActorLostError(
                    f"the worker {self._actor._worker} holding actor {self._actor._key!r} left the cluster: "
                    "the actor and its state are lost")

    def __await__(self):
        return self._future.__await__()

    def __repr__(self):
        return f"<shoal.ActorFuture: {self._future.status}>"


def submit_actor(client, cls, args, kwargs, workers=None):
    """Create ``cls(*args, **kwargs)`` on a worker (pinned: it never moves); the future of
    its handle, whose result is an :class:`Actor` proxy."""
    if not isinstance(cls, type):
        raise TypeError(f"submit(..., actor=True) needs a class, got {type(cls).__name__}")
    if workers is None:
        info = client.scheduler_info()["workers"]
        if not info:
            raise RuntimeError("submit(..., actor=True): the cluster has no workers to hold the actor")
        # The least loaded worker now; the actor stays there.
        workers = [min(info, key=lambda a: (info[a].get("assigned", 0) / max(1, info[a]["nthreads"]), a))]
    key = f"actor-{cls.__name__}-{uuid.uuid4().hex}"
    return client.submit(_create, cls, key, args, kwargs, workers=workers, pure=False, key=key)
