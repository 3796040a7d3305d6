"""What the command's modules share: the usage error and the progress messages."""

from __future__ import annotations

import sys

__all__ = ["UsageError", "say"]


class UsageError(Exception):
    """A problem with what the user asked for (one-line message, exit status 2)."""


def say(args, *parts):
    """Print a progress message on stderr unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(*parts, file=sys.stderr, flush=True)
