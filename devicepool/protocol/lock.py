"""One writer per output folder: an exclusive lock on ``out_dir/.lock``.

:func:`run_protocol` (and :func:`write_report` called on its own) holds
``fcntl.flock(LOCK_EX)`` on ``out_dir/.lock`` from before its first write to its end,
exceptions and ``KeyboardInterrupt`` included. The holder writes its pid, host and start
time into the file, so a second run can say who holds the folder. The kernel drops the
lock when the holder's file is closed, which includes the holder's death (SIGKILL, a
crash): a lock file left behind by a dead run never blocks. The file itself is never
deleted (deleting a lock file that another process has open lets two runs lock two
different files).

``fcntl`` locks are advisory: they keep devicepool runs apart, not other programs. On
NFS, Linux maps ``flock`` onto POSIX byte-range locks (NFSv4 leases), so runs on two hosts
sharing the folder exclude each other too. Where ``fcntl`` is missing (Windows) nothing
is locked.

A run that waits for the folder says so through the ``devicepool.protocol.lock`` logger
(a WARNING when asked to notify, else INFO; see :func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None

__all__ = ["OutputLockedError"]

#: name of the lock file in an output folder
LOCK_NAME = ".lock"

_log = logging.getLogger("devicepool.protocol.lock")


class OutputLockedError(RuntimeError):
    """Another run is writing into the output folder (it holds ``out_dir/.lock``).

    The message names the folder and the holder (pid, host, start time). Wait for that
    run to end, or pass ``wait=True`` (``devicepool evaluate --wait``) to queue behind it.
    """


def _holder_text(fd):
    """What the lock's holder wrote ("pid 123 on host h, started 2024-..."), or a guess."""
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(raw)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown: it has just started or ended"


def _write_holder(fd):
    info = {
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # read-only (another user's file): no holder text
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)


def _open_locked(path, wait, notify):
    """An open fd of ``path`` holding ``LOCK_EX``, or raise :class:`OutputLockedError`."""
    folder = os.path.dirname(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # mode: 0o666 less the umask
        except PermissionError:  # another user's lock file: lockable, not writable
            fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder_text(fd)
                if not wait:
                    raise OutputLockedError(
                        f"output folder {folder!r} is in use by another run ({holder}); "
                        "wait for it to end, or pass wait=True (devicepool evaluate --wait) "
                        "to start when it has") from None
                _log.log(logging.WARNING if notify else logging.INFO,
                         "waiting for %r, in use by another run (%s)", folder, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file was replaced or deleted while we waited: lock the new one


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def output_lock(out_dir, wait=False, notify=False):
    """Hold the exclusive lock of ``out_dir`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    out_dir : str or path-like
    wait : bool, default=False
        Wait for another holder to release it; ``False`` raises
        :class:`OutputLockedError` at once.
    notify : bool, default=False
        Say that the run waits, and for whom, as a WARNING of the
        ``devicepool.protocol.lock`` logger (else at INFO). Without logging configured,
        Python prints WARNING messages on stderr; the command line shows them as
        ``devicepool: waiting for ...``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with output_lock(folder):
    ...     try:
    ...         with output_lock(folder):
    ...             pass
    ...     except OutputLockedError as exc:
    ...         print("is in use by another run" in str(exc))
    True
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fd = _open_locked(os.path.join(out_dir, LOCK_NAME), wait, notify)
    try:
        _write_holder(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder text once released
        os.close(fd)  # releases the lock
