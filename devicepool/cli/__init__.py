"""The ``devicepool`` command: demo, evaluate, train, predict.

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

Model names come from :mod:`devicepool.protocol`'s registry: a model registered with
:func:`devicepool.protocol.register_model` before :func:`main` runs can be evaluated and
trained like the built-in three.

Errors in what the user gave (a missing root, an unknown model, an unreadable file, an
unreachable scheduler, an output that cannot be written, an output folder locked by
another run) are reported on one line without a traceback, exit status 2 (1 for other
failures). Ctrl-C exits 130 and SIGTERM 143 (joblib's worker processes are stopped with
the command); a closed output pipe (``| head -1``) exits 141 without a message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from ._commands import COMMANDS, CORPORA, DEMO_SETTINGS, INTERRUPTED
from ._common import UsageError
from ._modelfile import PICKLE_RISK

__all__ = ["main", "DEMO_SETTINGS", "build_parser"]

_TSV_HELP = """\
Output: one line per file, tab-separated: file, device, probability, (runner-up device
probability), (the file's own sample rate, and 'resampled to N Hz' when it differs from
the model's). In the file and device columns a backslash, tab, newline and carriage
return are written \\\\, \\t, \\n and \\r (bytes that are not UTF-8 as \\xNN), so one line
is one file. --json gives one JSON document (model, classes, sample_rate, predictions
with file, device, probability, runner_up, runner_up_probability, native_rate,
resampled). When the reader stops early (| head -1) the command ends quietly with
exit status 141, as a program killed by SIGPIPE does.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _models_arg(text):
    from devicepool.protocol import registered_models

    names = [n.strip() for n in text.replace(",", " ").split() if n.strip()]
    for n in names:
        if n not in registered_models():
            raise argparse.ArgumentTypeError(
                f"unknown model {n!r} (choose from {', '.join(registered_models())})")
    if not names:
        raise argparse.ArgumentTypeError("no model named")
    return names


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# --------------------------------------------------------------------------- the parser


def _common_args(sp, seed=True):
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="torch intra-op threads in this process (default: torch's choice; "
                         "1 is much faster when the cores are shared with other work)")
    if seed:
        sp.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")


def _wait_arg(sp):
    sp.add_argument("--wait", action="store_true",
                    help="when another run is writing into the output folder (it holds its lock), "
                         "wait for it to end instead of failing at once")


def _corpus_args(sp):
    sp.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
    sp.add_argument("--root", help="corpus folder (for demo: optional folder of real speech "
                    "used as the source, e.g. fsdd/recordings)")
    sp.add_argument("--pattern", help="path pattern for --corpus folder, e.g. "
                    "'{device}/{mode}/{speaker}_{utterance}.wav'")
    sp.add_argument("--sample-rate", metavar="HZ", type=_positive_int, default=None,
                    help="read the corpus at this rate, resampling files at other rates (needed for "
                         "a folder of mixed rates; default: the files' own rate, 16000 for mobiphone)")
    sp.add_argument("--max-epochs", type=_positive_int, default=None,
                    help="override the models' max_epochs")
    sp.add_argument("--device", default=None,
                    help="torch device, e.g. cuda (default: the models' default)")


def _add_demo(sub):
    d = sub.add_parser("demo", help="the whole protocol on the embedded corpus (< 5 min)")
    d.add_argument("--out", default="devicepool-demo", help="output folder (default ./devicepool-demo)")
    d.add_argument("--quick", action="store_true", help="tiny corpus and 2 epochs (a smoke test)")
    d.add_argument("--n-jobs", type=_positive_int, default=None, help="parallel fits")
    _wait_arg(d)
    _common_args(d)


def _add_evaluate(sub, models):
    e = sub.add_parser("evaluate", help="the protocol on a corpus (resumable)")
    _corpus_args(e)
    e.add_argument("--models", type=_models_arg, default=list(models),
                   help=f"comma-separated models (default: all registered, {','.join(models)})")
    e.add_argument("--conditions", default=None,
                   help="comma-separated among MOBI,N,W,N/W,W/N (default: all the corpus serves)")
    e.add_argument("--n-splits", type=_positive_int, default=3, help="speaker folds (default 3)")
    e.add_argument("--out", default="devicepool-results", help="output folder (default ./devicepool-results)")
    e.add_argument("--n-jobs", type=_positive_int, default=None,
                   help="parallel fits (with --scheduler: default all the cluster's worker threads)")
    e.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the fits on the dask.distributed cluster of this scheduler, e.g. "
                        "tcp://10.0.0.5:8786 (needs devicepool[distributed]; see docs/cluster.md)")
    e.add_argument("--fresh", action="store_true", help="ignore finished results in --out")
    e.add_argument("--mode-augmentation", action="store_true",
                   help="also train neutral fits on whisperised copies of their recordings "
                        "(devicepool's extension beyond the paper; see docs/protocol.md)")
    _wait_arg(e)
    _common_args(e)


def _add_train(sub, models):
    t = sub.add_parser("train", help="fit features + classifier on a whole corpus and save it")
    _corpus_args(t)
    t.add_argument("--model", default="da_cnn", choices=models, help="model (default da_cnn)")
    t.add_argument("--mode", choices=("all", "neutral", "whisper"), default="all",
                   help="train on this speaking mode only (default all)")
    t.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the model file to write, e.g. model.pt: weights only, never code; checked "
                        "before training (missing folders are created), written atomically "
                        "(FILE.tmp, then renamed; a FILE.tmp left by an interrupted run is replaced)")
    t.add_argument("--allow-pickle", action="store_true",
                   help="save a model that the weights-only file cannot hold (a registered model "
                        f"whose classifier is not a devicepool network) as a pickle; {PICKLE_RISK}")
    _common_args(t)


def _add_predict(sub):
    r = sub.add_parser("predict", help="which device recorded each file", epilog=_TSV_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("model", help="a model file written by 'devicepool train' (e.g. model.pt)")
    r.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    r.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    r.add_argument("--allow-pickle", action="store_true",
                   help=f"also load a pickle (a joblib model file of an older devicepool): {PICKLE_RISK}")
    _common_args(r, seed=False)


def build_parser():
    """The argparse parser of the ``devicepool`` command."""
    from devicepool import __version__
    from devicepool.protocol import registered_models

    models = registered_models()
    p = _Parser(prog="devicepool", description="Recording-device classification from speech "
                "(SA-CNN, DA-CNN, DFT-CNN): the paper's protocol, training and prediction.")
    p.add_argument("--version", action="version", version=f"devicepool {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_demo(sub)
    _add_evaluate(sub, models)
    _add_train(sub, models)
    _add_predict(sub)
    return p


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


def _failure(exc):
    """Exit status of an unexpected exception (one line, no traceback)."""
    protocol = sys.modules.get("devicepool.protocol")
    locked = getattr(protocol, "OutputLockedError", None)
    if isinstance(locked, type) and isinstance(exc, locked):  # another run holds --out
        print(f"devicepool: error: {exc}", file=sys.stderr)
        return 2
    print(f"devicepool: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


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
        cannot be written, an output folder locked by another run), 1 for other failures,
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
        with _terminate_interrupts():
            args = build_parser().parse_args(argv)
            if getattr(args, "threads", None):
                import torch

                torch.set_num_threads(args.threads)
            status = COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return status
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # `devicepool predict ... | head -1`: the reader has had enough
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        return _interrupted(args)
    except (UsageError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
        print(f"devicepool: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # last resort: still one line, no traceback
        return _failure(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
