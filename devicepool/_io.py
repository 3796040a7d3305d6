"""Generic disk helpers shared by every layer that writes files: atomic writes, plain JSON
values, ragged-array packing.

Every file is written to a temporary file ``.<name>.XXXXXXXX.tmp`` in its folder, flushed
to disk, given the mode ``0o666`` less the umask (as :func:`open` would), renamed over its
final name (:func:`os.replace`) and the rename made durable, so a file is absent or
complete, and an interruption (Ctrl-C included) leaves no temporary file behind. This is
the one atomic writer of the package: the protocol's results, caches and reports, the
pretraining's checkpoints and :mod:`devicepool.persistence` all use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import tempfile
import threading

import numpy as np

__all__ = ["TEMP_NAME", "current_umask", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json", "atomic_write_npz", "to_jsonable",
           "pack_ragged", "unpack_ragged", "remove_stale_temps"]

#: the name of a temporary file of :func:`atomic_write` (``tempfile.mkstemp``'s 8 characters)
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")

_UMASK_LOCK = threading.Lock()


def current_umask():
    """The process's umask: from ``/proc/self/status`` where Linux gives it, else by
    setting it and back under a lock (to ``0o077`` meanwhile: a file another thread
    creates in that instant gets fewer permissions, never more).

    Examples
    --------
    >>> old = os.umask(0o027)
    >>> current_umask() == 0o027
    True
    >>> _ = os.umask(old)
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def atomic_write(path, write):
    """Call ``write(fh)`` on a binary file that becomes ``path`` only once complete.

    Parameters
    ----------
    path : str or os.PathLike
        Final name; its folder is created when missing.
    write : callable
        ``write(fh)`` writes the content to the open binary file ``fh``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)  # default mode: 0o777 less the umask
    # ".<name>.XXXX.tmp": a half-written file never matches a reader's "*.json" glob
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0o600; a written file honours the umask
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave a half-written file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path, text):
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path, **arrays):
    """Write ``arrays`` as an (uncompressed, pickle-free) npz to ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def to_jsonable(value):
    """Plain JSON values (lists, numbers, str) of nested dicts, lists, dataclasses and numpy values.

    Examples
    --------
    >>> to_jsonable({"a": np.arange(2), 1: (np.float32(0.5), None)})
    {'a': [0, 1], '1': [0.5, None]}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def atomic_write_json(path, obj):
    """Write ``obj`` (made plain by :func:`to_jsonable`) as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=1, sort_keys=True) + "\n")


def pack_ragged(arrays, dtype=np.float32):
    """Ragged arrays as one ``values`` array (concatenated along axis 0) and ``lengths``.

    Examples
    --------
    >>> values, lengths = pack_ragged([np.ones((2, 3)), np.zeros((1, 3))])
    >>> values.shape, values.dtype, lengths.tolist()
    ((3, 3), dtype('float32'), [2, 1])
    """
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    lengths = np.asarray([a.shape[0] for a in arrays], dtype=np.int64)
    values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    return values, lengths


def unpack_ragged(values, lengths):
    """Inverse of :func:`pack_ragged`: an object array of views of ``values``.

    Examples
    --------
    >>> [a.tolist() for a in unpack_ragged(np.arange(5), np.array([2, 3]))]
    [[0, 1], [2, 3, 4]]
    """
    out = np.empty(len(lengths), dtype=object)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    for i, (a, b) in enumerate(zip(starts, ends)):
        out[i] = values[a:b]
    return out


def remove_stale_temps(folders):
    """Delete the temporary files (:data:`TEMP_NAME`) a killed writer left in ``folders``
    (top level only); call it only while no writer can be using them."""
    for folder in folders:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if TEMP_NAME.match(name) and os.path.isfile(path):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
