"""Values on the wire: pickle protocol 5 with out-of-band buffers in one frame.

Frame layout (little-endian)::

    b"SHL1" | u32 nbuf | u64 pickle_len | nbuf * u64 buffer_len | pickle | pad | buffer | pad | ...

Every buffer starts at a multiple of 64 bytes from the frame start, so numpy arrays
rebuilt over the frame are aligned. A value that cannot be pickled becomes an error frame
(``b"SHLE"`` + message) that raises when loaded, so the reader learns what went wrong.

Reading is zero-copy: ``loads`` builds memoryviews over the received bytes (owned by Rust)
and numpy arrays and other buffer objects are rebuilt on them.
"""

from __future__ import annotations

import ctypes
import pickle
import struct
import sys
from typing import IO, Any, Callable, Iterable, Protocol

import cloudpickle

from . import _native

#: A value frame's and an error frame's first bytes (Rust reads and writes them too).
MAGIC: bytes = _native.MAGIC
ERROR_MAGIC: bytes = _native.ERROR_MAGIC
ALIGN = 64
_HEAD = struct.Struct("<4sIQ")


class SerializationError(TypeError):
    """A value could not be pickled or unpickled."""


def _pad(n: int) -> int:
    return -n % ALIGN


def by_value_needed(data: bytes, embedded: bytes = b"") -> bool:
    """Whether a plain pickle refers to ``__main__``: functions and classes of the user's
    script pickle by reference, and a worker (whose ``__main__`` is shoal's) cannot find
    them, so such objects must go by value (cloudpickle). A false positive (the string
    ``"__main__"`` in the data) only costs the slower pickler."""
    return data.count(b"__main__") > (embedded.count(b"__main__") if embedded else 0)


class RefPickler(Protocol):
    """A pickler that replaces references (futures) by persistent ids and keeps their keys."""

    keys: Iterable[str]

    def dump(self, obj: object, /) -> None: ...


def dump_with(obj: object, plain: Callable[[IO[bytes]], RefPickler],
              cloud: Callable[[IO[bytes]], RefPickler]) -> tuple[bytes, list[str]]:
    """``obj`` pickled, and the keys of the references in it: by a pickler ``plain(file)``
    makes, or by ``cloud(file)``'s when the plain one cannot (lambdas, local classes) or
    must not (:func:`by_value_needed`).

    The C pickler alone runs first, without a Python call per object pickled: futures
    refuse to pickle plainly, so when it succeeds there is no reference to keep."""
    import io

    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - a reference, a lambda, a local class: the picklers
        pass
    else:
        if not by_value_needed(data):
            return data, []
    for make in (plain, cloud):
        buf = io.BytesIO()
        pickler = make(buf)
        try:
            pickler.dump(obj)
        except Exception:  # noqa: BLE001 - the plain pickler cannot: cloudpickle
            if make is cloud:
                raise
            continue
        data = buf.getvalue()
        if make is plain and by_value_needed(data):
            continue
        return data, list(pickler.keys)
    raise AssertionError("unreachable")


def _cloudpickle(obj: object, buffer_callback: Callable[[pickle.PickleBuffer], None] | None) -> bytes:
    data: bytes = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffer_callback)
    return data


def _pickle(obj: object, buffer_callback: Callable[[pickle.PickleBuffer], None] | None) -> bytes:
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=None if buffer_callback is None else buffers.append)
    except Exception:  # noqa: BLE001 - lambdas, local classes: cloudpickle handles them
        return _cloudpickle(obj, buffer_callback)
    if by_value_needed(data):
        return _cloudpickle(obj, buffer_callback)
    if buffer_callback is not None:
        for b in buffers:
            buffer_callback(b)
    return data


def dumps(obj: object) -> bytes:
    """One frame for ``obj``; buffers are copied once, into the frame."""
    try:
        buffers: list[pickle.PickleBuffer] = []
        data = _pickle(obj, buffers.append)
        try:
            views = [b.raw() for b in buffers]
        except BufferError:  # a non-contiguous buffer: pickle it in band
            views = []
            data = _pickle(obj, None)
    except Exception as e:  # noqa: BLE001 - reported to whoever reads the value
        message = f"cannot pickle a value of type {type(obj).__module__}.{type(obj).__qualname__}: {type(e).__name__}: {e}"
        return ERROR_MAGIC + message.encode()
    if not views:
        return _HEAD.pack(MAGIC, 0, len(data)) + data
    head = _HEAD.pack(MAGIC, len(views), len(data)) + struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    parts: list[bytes | memoryview] = [head, data]
    offset = len(head) + len(data)
    for v in views:
        pad = _pad(offset)
        if pad:
            parts.append(b"\0" * pad)
        parts.append(v)
        offset += pad + v.nbytes
    return b"".join(parts)


def _view(frame: Any) -> memoryview:
    """A memoryview over a native frame that keeps the frame alive."""
    if not isinstance(frame, _native.Frame):
        return memoryview(frame)
    address, length, writable = frame.buffer_info()
    if length == 0:
        return memoryview(b"")
    array = (ctypes.c_char * length).from_address(address)
    setattr(array, "_shoal_owner", frame)  # the memory lives as long as the frame
    view = memoryview(array).cast("B")
    return view if writable else view.toreadonly()


def loads(frame: Any) -> Any:
    """The value in a frame (``bytes``, or a native frame: then without copying)."""
    if type(frame) is bytes and frame[:4] == MAGIC:
        _, nbuf, plen = _HEAD.unpack_from(frame)
        if not nbuf:  # the common small value: no out-of-band buffers
            return pickle.loads(memoryview(frame)[_HEAD.size : _HEAD.size + plen])
        # Arrays rebuilt over immutable bytes would be read-only; distributed's are not.
        # Only small frames arrive as bytes: one copy of at most 16 KiB.
        frame = bytearray(frame)
    view = _view(frame)
    magic = bytes(view[:4])
    if magic == ERROR_MAGIC:
        raise SerializationError(bytes(view[4:]).decode(errors="replace"))
    if magic != MAGIC:
        raise SerializationError(f"not a shoal value frame (starts with {magic!r})")
    _, nbuf, plen = _HEAD.unpack_from(view)
    lens = struct.unpack_from(f"<{nbuf}Q", view, _HEAD.size)
    offset = _HEAD.size + 8 * nbuf
    data = view[offset : offset + plen]
    offset += plen
    buffers = []
    for n in lens:
        offset += _pad(offset)
        buffers.append(view[offset : offset + n])
        offset += n
    return pickle.loads(data, buffers=buffers)


_sizeof: Callable[[Any], Any] | None = None


def sizeof(obj: object) -> int:
    """Memory held by ``obj``: ``dask.sizeof`` when dask is importable."""
    global _sizeof
    measure = _sizeof
    if measure is None:
        try:
            from dask.sizeof import sizeof as dask_sizeof

            measure = dask_sizeof
        except ImportError:
            measure = _fallback_sizeof
        _sizeof = measure
    try:
        return int(measure(obj))
    except Exception:  # noqa: BLE001 - a size is an estimate
        return _fallback_sizeof(obj)


def _fallback_sizeof(obj: object) -> int:
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sys.getsizeof(obj) + sum(_fallback_sizeof(x) for x in list(obj)[:100]) * max(1, len(obj) // 100)
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(_fallback_sizeof(k) + _fallback_sizeof(v) for k, v in obj.items())
    return sys.getsizeof(obj)
