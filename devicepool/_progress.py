"""When ``progress=True`` shows tqdm bars: where a bar can be read.

``progress=True`` (the protocol's default, the classifiers' ``progress``, the command
line without ``--quiet``) means "bars where it makes sense": on a terminal, and in a
Jupyter notebook (tqdm's widgets). When stderr is a file or a pipe (a log, a batch job,
``2> log.txt``, a test runner) the bars are off: redrawn bars would fill the file with
carriage returns. For a log of training, use skorch's ``verbose=1`` (one line per epoch)
or the command line's ``--verbose``.
"""

from __future__ import annotations

import sys

__all__ = ["show_bars"]


def _in_notebook():
    """Whether this process is a Jupyter kernel (where ``tqdm.auto`` draws widgets)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    try:
        return shell is not None and "IPKernelApp" in shell.config
    except (AttributeError, TypeError):
        return False


def show_bars(progress, stream=None):
    """Whether ``progress`` asks for bars and ``stream`` (default ``sys.stderr``) can show
    them: a terminal, or a notebook.

    >>> import io
    >>> show_bars(True, io.StringIO()), show_bars(False)
    (False, False)
    """
    if not progress:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        pass
    return _in_notebook()
