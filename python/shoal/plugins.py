"""Worker plugins and ``upload_file``: code run on every worker, now and on workers that
join later.

A plugin is kept by the scheduler (as an opaque pickle in its coordination state) and
set up on the current workers at once. A worker that joins later is told by the
scheduler that plugins exist, and sets them up before its first task runs.
``setup(worker)`` gets the worker's :class:`shoal.worker_context.WorkerInfo`;
``teardown(worker)`` runs when the plugin is replaced or unregistered. Hooks on task
transitions are not called: a task's life is tracked by the Rust runtime.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import threading
import uuid

import cloudpickle

__all__ = ["WorkerPlugin", "UploadFile", "register", "unregister", "ensure_installed", "PREFIX"]

from . import _native

#: Names under which plugins are kept among the scheduler's datasets (hidden from users);
#: the scheduler tells joining workers when one exists.
PREFIX = _native.PLUGIN_DATASET_PREFIX

#: Plugins set up in this worker process: name -> (pickled plugin, plugin, setup result).
_installed: dict = {}
_lock = threading.RLock()
_checked = False


class WorkerPlugin:
    """Base class of worker plugins (distributed's names): override ``setup`` and
    ``teardown``."""

    name: str | None = None

    def setup(self, worker):
        pass

    def teardown(self, worker):
        pass


class UploadFile(WorkerPlugin):
    """A ``.py``, ``.zip`` or ``.egg`` file made importable on every worker."""

    def __init__(self, filename, load: bool = True):
        filename = os.fspath(filename)
        if not filename.endswith((".py", ".zip", ".egg")):
            raise ValueError(f"upload_file({filename!r}): only .py, .zip and .egg files can be uploaded")
        with open(filename, "rb") as f:
            self.data = f.read()
        self.filename = os.path.basename(filename)
        self.load = load

    def setup(self, worker):
        directory = tempfile.mkdtemp(prefix="shoal-upload-")
        path = os.path.join(directory, self.filename)
        with open(path, "wb") as f:
            f.write(self.data)
        sys.path.insert(0, path if self.filename.endswith((".zip", ".egg")) else directory)
        importlib.invalidate_caches()
        if self.load and self.filename.endswith(".py"):
            module = self.filename[:-3]
            if module in sys.modules:
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
        return None


def _setup(name: str, data: bytes):
    """Task: set the plugin up in this worker process (once per version of it)."""
    from .worker_context import get_worker

    with _lock:
        current = _installed.get(name)
        if current is not None and current[0] == data:
            return current[2]
        plugin = cloudpickle.loads(data)
        worker = get_worker()
        if current is not None and hasattr(current[1], "teardown"):
            current[1].teardown(worker)
        result = plugin.setup(worker) if hasattr(plugin, "setup") else None
        _installed[name] = (data, plugin, result)
        return result


def _teardown(name: str):
    from .worker_context import get_worker

    with _lock:
        current = _installed.pop(name, None)
        if current is not None and hasattr(current[1], "teardown"):
            current[1].teardown(get_worker())


def register(client, plugin, name=None, idempotent=False) -> dict:
    from .coordination import _call

    name = name or getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4().hex}"
    names = _call(client, "dataset_list")[1]
    if idempotent and PREFIX + name in names:
        return {}
    data = cloudpickle.dumps(plugin)
    client.publish_dataset(data, name=PREFIX + name, override=True)
    return client.run(_setup, name, data)


def unregister(client, name: str) -> dict:
    from .coordination import _call

    tag, _ = _call(client, "dataset_delete", name=PREFIX + name)
    if tag == "not_found":
        raise ValueError(f"no worker plugin named {name!r} is registered")
    return client.run(_teardown, name)


def ensure_installed() -> None:
    """Before each task of this worker (``shoal._worker``): the first time, set up the
    plugins the scheduler keeps, if it said there are any (workers that joined after a
    plugin was registered); threads starting tasks meanwhile wait for that setup."""
    global _checked
    if _checked:
        return
    with _lock:
        if _checked:
            return
        try:
            if not _native.worker_has_plugins():
                return
            from .coordination import _call
            from .worker_context import get_client

            client = get_client()
            for full in _call(client, "dataset_list")[1]:
                if full.startswith(PREFIX):
                    data = client.get_dataset(full)
                    _setup(full[len(PREFIX):], data)
        finally:
            # Set once the setup is over (even a failed one: it is not retried before
            # every task), so that other threads wait for it above rather than pass.
            _checked = True
