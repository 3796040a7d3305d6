"""What the command's modules share: the usage error, the progress messages, the
``--verbose``/``--debug`` logging on stderr and the ``--device`` check."""

from __future__ import annotations

import contextlib
import logging
import sys

__all__ = ["UsageError", "say", "log_to_stderr", "check_device", "LOGGER"]

#: the library's loggers are ``devicepool.<module>``, children of this one
LOGGER = "devicepool"


class UsageError(Exception):
    """A problem with what the user asked for (one-line message, exit status 2).

    ``usage``: the usage text of the (sub)command whose arguments were wrong, printed
    before the message (set by the parser), or None.
    """

    usage = None


def say(args, *parts):
    """Print a progress message on stderr unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(*parts, file=sys.stderr, flush=True)


def log_level(args):
    """``--debug``: DEBUG, ``--verbose``: INFO, else WARNING."""
    if getattr(args, "debug", False):
        return logging.DEBUG
    return logging.INFO if getattr(args, "verbose", False) else logging.WARNING


@contextlib.contextmanager
def log_to_stderr(args):
    """The ``devicepool`` logger's records at :func:`log_level` and above on stderr as
    ``devicepool: MESSAGE`` (with ``--debug``: the level and the logger's name too), for
    the ``with`` block; the logger is left as it was afterwards."""
    level = log_level(args)
    fmt = ("devicepool: %(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG
           else "devicepool: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    logger = logging.getLogger(LOGGER)
    old_level = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def check_device(text):
    """Check ``--device`` before any work: a device string torch knows, and a GPU that
    this torch can use (:class:`UsageError` otherwise)."""
    from devicepool.estimators import check_torch_device

    try:
        return check_torch_device(text, f"--device {text}", "--device cpu")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
