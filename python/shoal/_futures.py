"""Futures, and the helpers that wait on many of them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import NamedTuple

__all__ = ["Future", "as_completed", "wait", "fire_and_forget", "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"


class KeyState:
    """What the client knows about one key (shared by every Future of the key)."""

    __slots__ = ("status", "size", "error", "callbacks", "refs")

    def __init__(self):
        self.status = PENDING
        self.size = 0
        self.error = None
        self.callbacks = []
        self.refs = 0

    @property
    def done(self) -> bool:
        return self.status != PENDING


class CancelledError(Exception):
    """The key was cancelled."""


class Future:
    """A remote result. The cluster keeps the data while any Future for its key lives."""

    __slots__ = ("key", "client", "_state", "__weakref__")

    def __init__(self, key: str, client, state: KeyState | None = None):
        self.key = key
        self.client = client
        self._state = client._retain(key) if state is None else state

    def __del__(self):
        try:
            self.client._drop(self.key)
        except Exception:  # noqa: BLE001 - interpreter shutdown, closed client
            pass

    def __repr__(self):
        return f"<shoal.Future: {self.status}, key: {self.key}>"

    def __reduce__(self):
        raise TypeError("a shoal Future cannot be pickled; pass it as an argument to submit() instead")

    @property
    def status(self) -> str:
        return self._state.status

    def done(self) -> bool:
        """Whether the key finished, failed or was cancelled."""
        return self._state.done

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    def result(self, timeout: float | None = None):
        """The value (fetched from the worker holding it); re-raises a task's exception."""
        self.client._wait_done([self._state], timeout, self.key)
        self.client._raise_if_failed(self.key, self._state)
        return self.client._fetch([self.key])[0]

    def exception(self, timeout: float | None = None):
        """The exception of a failed task, else None."""
        self.client._wait_done([self._state], timeout, self.key)
        if self._state.status == ERROR:
            return self.client._exception(self.key, self._state)
        if self._state.status in (CANCELLED, LOST):
            return self.client._exception(self.key, self._state)
        return None

    def traceback(self, timeout: float | None = None):
        self.client._wait_done([self._state], timeout, self.key)
        err = self._state.error
        return err[3] if err else None

    def cancel(self) -> None:
        """Stop computing this key; waiters get ``CancelledError``."""
        self.client.cancel([self])

    def release(self) -> None:
        """Drop this future's hold on the data now (also happens when it is collected)."""
        self.client._drop(self.key)
        self._state = KeyState()
        self._state.status = CANCELLED

    def add_done_callback(self, fn) -> None:
        """Call ``fn(future)`` once the key is done (at once if it already is); callbacks
        run in the client's update thread."""
        self.client._add_callback(self, fn)


def as_completed(futures, with_results: bool = False, timeout: float | None = None):
    """Yield futures as they finish (optionally ``(future, result)``)."""
    futures = list(futures)
    if not futures:
        return
    client = futures[0].client
    done_q: list = []
    cond = threading.Condition()

    def on_done(f):
        with cond:
            done_q.append(f)
            cond.notify()

    for f in futures:
        f.add_done_callback(on_done)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(len(futures)):
        with cond:
            while not done_q:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"as_completed: not every future finished within {timeout} s")
                cond.wait(left)
            f = done_q.pop(0)
        yield (f, f.result()) if with_results else f
    del client


class DoneAndNotDone(NamedTuple):
    done: set
    not_done: set


def wait(futures, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDone:
    """Wait for futures like ``concurrent.futures.wait``."""
    futures = list(futures)
    if not futures:
        return DoneAndNotDone(set(), set())
    client = futures[0].client

    def ready():
        done = [f for f in futures if f.done()]
        if return_when == FIRST_COMPLETED:
            return bool(done)
        if return_when == FIRST_EXCEPTION:
            return len(done) == len(futures) or any(f._state.status == ERROR for f in done)
        return len(done) == len(futures)

    client._wait_until(ready, timeout, raise_timeout=False)
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, set(futures) - done)


def fire_and_forget(futures) -> None:
    """Run these futures' tasks even after every Future object is gone."""
    if isinstance(futures, Future):
        futures = [futures]
    futures = list(futures)
    if futures:
        futures[0].client._forget_on_completion(futures)
