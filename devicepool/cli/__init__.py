"""The ``devicepool`` command: demo, evaluate, train, predict, calibrate, compare.

``devicepool demo``
    The paper's whole protocol (Ex-1 and Ex-2, all three models, Table 3 and Fig. 2) on
    the embedded corpus, written to ``./devicepool-demo/``.
``devicepool evaluate --corpus {mobiphone,wspire,folder,demo} --root PATH``
    The protocol on a real corpus; rerunning the same command resumes.
    ``--scheduler ADDRESS`` runs the fits on a dask.distributed cluster.
``devicepool train --corpus ... --root ... --model da_cnn -o model.pt``
    Fits a features + classifier pipeline on a whole corpus and saves it as a weights-only
    model file (:mod:`devicepool.cli._modelfile`: reading it never runs code from it).
``devicepool predict model.pt FILE...``
    Device, its probability, the runner-up and the file's own sample rate per file
    (``--json`` for machines). Pickles (the joblib model files of older versions) load only
    with ``--allow-pickle``: loading a pickle runs any code it contains.
``devicepool calibrate --model model.pt --corpus ... --root ... -o calibrated.pt``
    Fits a same-device likelihood-ratio system (:class:`devicepool.forensic.DeviceLR`, the
    model's embeddings) on a calibration corpus, the relevant population, and writes the
    model file again with it (still weights only).
``devicepool compare --model calibrated.pt --reference FILE... --questioned FILE...``
    log10 LR that each questioned recording was made with the device of the reference
    recordings, its verbal equivalent and the hypotheses in words (``--json``).
``devicepool evaluate --forensic``
    The forensic validation protocol (:func:`devicepool.protocol.run_forensic_protocol`).

The parser is in :mod:`._parser`, the commands in :mod:`._commands` and
:mod:`._forensic_commands`, the model file in :mod:`._modelfile`.

Model names come from :mod:`devicepool.protocol`'s registry: a model registered with
:func:`devicepool.protocol.register_model` before :func:`main` runs can be evaluated and
trained like the built-in three.

Errors in what the user gave (a missing root, an unknown model, an unreadable file, an
unreachable scheduler, an output that cannot be written, an output folder locked by
another run, a ``--device`` this torch cannot use) are reported on one line without a
traceback, exit status 2 (1 for other failures); a wrong flag or value also prints the
usage of the (sub)command it was given to. ``-v/--verbose`` and ``--debug``, before or
after the subcommand, show the library's log (the ``devicepool`` logger) at INFO or
DEBUG on stderr (WARNING otherwise), and ``--debug`` prints the full traceback of an
error instead of its one line. Ctrl-C exits 130 and SIGTERM 143 (joblib's worker
processes are stopped with the command); a closed output pipe (``| head -1``) exits 141
without a message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings

from ._commands import COMMANDS as _BASE_COMMANDS
from ._commands import DEMO_SETTINGS, INTERRUPTED
from ._common import UsageError, check_device, log_to_stderr
from ._parser import build_parser

__all__ = ["main", "DEMO_SETTINGS", "build_parser"]


def _evaluate(args):
    """``evaluate``, or ``evaluate --forensic`` (its own module)."""
    if getattr(args, "forensic", False):
        from ._forensic_commands import cmd_evaluate_forensic

        return cmd_evaluate_forensic(args)
    return _BASE_COMMANDS["evaluate"](args)


def _lazy(module, name):
    """A command of a module imported when the command runs (they import torch and more)."""
    def run(args):
        from importlib import import_module

        return getattr(import_module(module, __name__), name)(args)
    return run


COMMANDS = {**_BASE_COMMANDS, "evaluate": _evaluate,
            "calibrate": _lazy("._forensic_commands", "cmd_calibrate"),
            "compare": _lazy("._forensic_commands", "cmd_compare"),
            "pretrain": _lazy("._pretrain_command", "cmd_pretrain")}


# --------------------------------------------------------------------------- main

_SIGNALLED = []  # the signal (other than SIGINT) that interrupted this run


def _on_terminate(signum, frame):
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt  # unwinds like Ctrl-C: joblib stops its workers, temp files go


@contextlib.contextmanager
def _terminate_interrupts():
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread, as Ctrl-C does
    (left alone where they are ignored, e.g. under nohup, or off the main thread)."""
    _SIGNALLED.clear()
    old = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _on_terminate)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop_workers():
    """Kill the worker processes of joblib's reusable loky executor, if it has any."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)
    if executor is not None:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False, kill_workers=True)


def _silence_stdout():
    """After a closed pipe: point stdout at /dev/null so the exit flush cannot fail."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _interrupted(args):
    _stop_workers()
    signum = _SIGNALLED[0] if _SIGNALLED else signal.SIGINT
    note = INTERRUPTED.get(getattr(args, "command", None), "")
    name = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"devicepool: {name}" + (f" ({note})" if note else ""), file=sys.stderr)
    return 128 + int(signum)


def _error(exc, args, status, named=False):
    """Say what went wrong: one line (``named``: with the exception's type), or the full
    traceback with ``--debug``; return ``status``."""
    if getattr(args, "debug", False):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    else:
        if getattr(exc, "usage", None):  # a wrong flag or value: the (sub)command's usage
            print(exc.usage.rstrip(), file=sys.stderr)
        print(f"devicepool: error: {type(exc).__name__ + ': ' if named else ''}{exc}", file=sys.stderr)
    return status


def _failure(exc, args):
    """Exit status of an unexpected exception."""
    protocol = sys.modules.get("devicepool.protocol")
    locked = getattr(protocol, "OutputLockedError", None)
    if isinstance(locked, type) and isinstance(exc, locked):  # another run holds --out
        return _error(exc, args, 2)
    return _error(exc, args, 1, named=True)


def _run(args):
    """The chosen command, with the library's log on stderr."""
    with log_to_stderr(args):
        if getattr(args, "device", None):
            check_device(args.device)  # before the corpus is read
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one ``devicepool: warning:`` line (no source line, no file position);
    the category is named unless it is a plain ``UserWarning``."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"devicepool: warning: {text}{kind}", file=sys.stderr, flush=True)


def main(argv=None):
    """Run the ``devicepool`` command; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 for bad input (usage, missing or unreadable files, an output that
        cannot be written, an output folder locked by another run, a ``--device`` this
        torch cannot use), 1 for other failures,
        130 when interrupted (Ctrl-C), 143 on SIGTERM (129 on SIGHUP), 141 when the
        reader of the output closed the pipe.

    Examples
    --------
    >>> main(["predict", "no-such-model.pt", "a.wav"])  # doctest: +SKIP
    devicepool: error: model file 'no-such-model.pt' does not exist
    2
    """
    args = None
    try:
        with _terminate_interrupts(), warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # restored on leaving
            # loky replaces a worker that outgrew its memory or idled out; nothing is lost
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given "
                                    "to the executor", category=UserWarning)
            args = build_parser().parse_args(argv)
            return _run(args)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # `devicepool predict ... | head -1`: the reader has had enough
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        return _interrupted(args)
    except (UsageError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
        return _error(exc, args, 2)
    except Exception as exc:  # last resort: still one line, no traceback (but --debug)
        return _failure(exc, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
