"""The ``devicepool`` command: demo, evaluate, train, predict.

``devicepool demo``
    The paper's whole protocol (Ex-1 and Ex-2, all three models, Table 3 and Fig. 2) on
    the embedded corpus, written to ``./devicepool-demo/``.
``devicepool evaluate --corpus {mobiphone,wspire,folder,demo} --root PATH``
    The protocol on a real corpus; rerunning the same command resumes.
    ``--scheduler ADDRESS`` runs the fits on a dask.distributed cluster.
``devicepool train --corpus ... --root ... --model da_cnn -o model.joblib``
    Fits a features + classifier pipeline on a whole corpus and saves it with joblib.
``devicepool predict model.joblib FILE...``
    Device, its probability and the runner-up per file (``--json`` for machines).

Model names come from :mod:`devicepool.protocol`'s registry: a model registered with
:func:`devicepool.protocol.register_model` before :func:`main` runs can be evaluated and
trained like the built-in three.

Errors in what the user gave (a missing root, an unknown model, an unreadable file, an
unreachable scheduler) are reported on one line without a traceback, exit status 2 (1 for
other failures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

__all__ = ["main", "DEMO_SETTINGS", "build_parser"]

CORPORA = ("mobiphone", "wspire", "folder", "demo")

#: Sizes and training budgets of ``devicepool demo``. Ex-2 is the default embedded corpus
#: (``make_device_corpus()``: 6 devices x 9 speakers x 8 utterances x {neutral, whisper});
#: Ex-1 a neutral-only one standing in for MOBIPHONE (more devices, as MOBIPHONE has more
#: phones than wSPIRE). Both give 144 test utterances per fold and mode. The three models
#: keep their library defaults except one smaller step budget for all (150 instead of
#: 400), so that the 27 fits end within 5 minutes on 2 cores (crop training makes a fit's
#: cost follow its steps).
DEMO_SETTINGS = {
    "full": {
        "ex1": {"n_devices": 8, "n_speakers": 9, "n_utterances": 6, "modes": ("neutral",)},
        "ex2": {"n_devices": 6, "n_speakers": 9, "n_utterances": 8, "modes": ("neutral", "whisper")},
        "model_params": {
            "dft_cnn": {"max_steps": 150},
            "sa_cnn": {"max_steps": 150},
            "da_cnn": {"max_steps": 150},
        },
        "n_jobs": 2,
    },
    "quick": {
        "ex1": {"n_devices": 3, "n_speakers": 3, "n_utterances": 4, "modes": ("neutral",)},
        "ex2": {"n_devices": 3, "n_speakers": 3, "n_utterances": 4, "modes": ("neutral", "whisper")},
        "model_params": {
            "dft_cnn": {"max_epochs": 2, "module__channels": (8, 16)},
            "sa_cnn": {"max_epochs": 2},
            "da_cnn": {"max_epochs": 2},
        },
    },
}


class UsageError(Exception):
    """A problem with what the user asked for (one-line message, exit status 2)."""


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

    def common(sp, seed=True):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
        sp.add_argument("--threads", type=_positive_int, default=None,
                        help="torch intra-op threads in this process (default: torch's choice; "
                             "1 is much faster when the cores are shared with other work)")
        if seed:
            sp.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")

    d = sub.add_parser("demo", help="the whole protocol on the embedded corpus (< 5 min)")
    d.add_argument("--out", default="devicepool-demo", help="output folder (default ./devicepool-demo)")
    d.add_argument("--quick", action="store_true", help="tiny corpus and 2 epochs (a smoke test)")
    d.add_argument("--n-jobs", type=_positive_int, default=None, help="parallel fits")
    common(d)

    def corpus_args(sp):
        sp.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
        sp.add_argument("--root", help="corpus folder (for demo: optional folder of real speech "
                        "used as the source, e.g. fsdd/recordings)")
        sp.add_argument("--pattern", help="path pattern for --corpus folder, e.g. "
                        "'{device}/{mode}/{speaker}_{utterance}.wav'")
        sp.add_argument("--max-epochs", type=_positive_int, default=None,
                        help="override the models' max_epochs")
        sp.add_argument("--device", default=None,
                        help="torch device, e.g. cuda (default: the models' default)")

    e = sub.add_parser("evaluate", help="the protocol on a corpus (resumable)")
    corpus_args(e)
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
    common(e)

    t = sub.add_parser("train", help="fit features + classifier on a whole corpus and save it")
    corpus_args(t)
    t.add_argument("--model", default="da_cnn", choices=models, help="model (default da_cnn)")
    t.add_argument("--mode", choices=("all", "neutral", "whisper"), default="all",
                   help="train on this speaking mode only (default all)")
    t.add_argument("-o", "--output", required=True, help="where to save the model (joblib)")
    common(t)

    r = sub.add_parser("predict", help="which device recorded each file")
    r.add_argument("model", help="a model saved by 'devicepool train' (joblib)")
    r.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    r.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    common(r, seed=False)
    return p


# --------------------------------------------------------------------------- helpers


def _say(args, *parts):
    if not getattr(args, "quiet", False):
        print(*parts, file=sys.stderr, flush=True)


def _load_corpus(args):
    from devicepool import datasets

    if args.corpus != "demo" and not args.root:
        raise UsageError(f"--root is required for --corpus {args.corpus}")
    if args.root and not os.path.exists(args.root):
        raise UsageError(f"corpus root {args.root!r} does not exist")
    if args.root and not os.path.isdir(args.root):
        raise UsageError(f"corpus root {args.root!r} is not a folder")
    if args.corpus == "mobiphone":
        return datasets.load_mobiphone(args.root)
    if args.corpus == "wspire":
        return datasets.load_wspire(args.root)
    if args.corpus == "folder":
        if not args.pattern:
            raise UsageError("--pattern is required for --corpus folder, e.g. "
                             "'{device}/{mode}/{speaker}_{utterance}.wav'")
        return datasets.load_audio_folder(args.root, pattern=args.pattern)
    kwargs = {"random_state": getattr(args, "seed", 0)}
    if args.root:
        kwargs["source"] = args.root
    return datasets.make_device_corpus(**kwargs)


def _model_overrides(args, models):
    params = {}
    if getattr(args, "max_epochs", None):
        params["max_epochs"] = args.max_epochs
    if getattr(args, "device", None):
        params["device"] = args.device
    return {m: dict(params) for m in models} if params else None


def _parse_conditions(text):
    from devicepool.protocol import CONDITIONS

    if text is None:
        return None
    conds = [c.strip() for c in text.split(",") if c.strip()]
    for c in conds:
        if c not in CONDITIONS:
            raise UsageError(f"unknown condition {c!r} (choose from {', '.join(CONDITIONS)})")
    return conds


# --------------------------------------------------------------------------- commands


def cmd_demo(args):
    from devicepool.datasets import make_device_corpus
    from devicepool.protocol import combine_results, run_protocol, write_report

    settings = DEMO_SETTINGS["quick" if args.quick else "full"]
    progress = not args.quiet
    t0 = time.perf_counter()
    parts = []
    for key, label in (("ex1", "Ex-1 (neutral-only corpus, MOBIPHONE's role)"),
                       ("ex2", "Ex-2 (parallel neutral + whisper corpus, wSPIRE's role)")):
        spec = dict(settings[key])
        _say(args, f"devicepool demo: {label}: building the corpus ({spec['n_devices']} devices, "
                   f"{spec['n_speakers']} speakers, {spec['n_utterances']} utterances each)")
        corpus = make_device_corpus(random_state=args.seed + (0 if key == "ex2" else 1), **spec)
        parts.append(run_protocol(
            corpus, models=list(settings["model_params"]), n_splits=3, out_dir=os.path.join(args.out, key),
            random_state=args.seed, model_params=settings["model_params"], progress=progress,
            n_jobs=args.n_jobs if args.n_jobs is not None else settings.get("n_jobs"), report=False))
    result = combine_results(*parts)
    elapsed = time.perf_counter() - t0
    extra = (f"Run: `devicepool demo{' --quick' if args.quick else ''} --seed {args.seed}`, "
             f"{elapsed:.0f} s wall time. Corpora: `make_device_corpus` with {settings['ex1']} (Ex-1) "
             f"and {settings['ex2']} (Ex-2); model overrides {settings['model_params']}. Per-fold results "
             "in `ex1/results/` and `ex2/results/`.")
    write_report(result, args.out, title="devicepool demo: the paper's protocol on the embedded corpus",
                 extra=extra)
    _say(args, "")
    print(result.to_markdown(paper=True))
    _say(args, f"report: {os.path.join(args.out, 'report.md')} ({elapsed:.0f} s)")
    return 0


@contextlib.contextmanager
def _dask_cluster(args):
    """joblib's dask backend on a client of ``args.scheduler``; yields the fits' n_jobs."""
    try:
        import joblib
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed: "
                         "pip install 'devicepool[distributed]'") from None
    try:
        client = Client(args.scheduler)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot reach the dask scheduler at {args.scheduler!r}: {exc}") from None
    with client, joblib.parallel_backend("dask"):
        n_threads = sum(client.nthreads().values())
        _say(args, f"devicepool evaluate: fits on the dask cluster at {args.scheduler} "
                   f"({len(client.nthreads())} workers, {n_threads} threads)")
        yield args.n_jobs if args.n_jobs is not None else -1


def cmd_evaluate(args):
    from devicepool.protocol import run_protocol

    corpus = _load_corpus(args)
    conditions = _parse_conditions(args.conditions)
    backend = _dask_cluster(args) if args.scheduler else contextlib.nullcontext(args.n_jobs)
    with backend as n_jobs:
        result = run_protocol(
            corpus, models=args.models, conditions=conditions,
            n_splits=args.n_splits, out_dir=args.out, random_state=args.seed,
            model_params=_model_overrides(args, args.models), progress=not args.quiet,
            n_jobs=n_jobs, resume=not args.fresh, mode_augmentation=args.mode_augmentation,
            title=f"devicepool evaluate: {args.corpus} corpus")
    print(result.to_markdown(paper=True))
    for note in result.notes:
        _say(args, f"note: {note}")
    _say(args, f"report: {os.path.join(args.out, 'report.md')}")
    return 0


def cmd_train(args):
    import joblib
    import numpy as np

    from devicepool.protocol import get_model

    corpus = _load_corpus(args)
    data = np.empty(len(corpus.data), dtype=object)
    data[:] = list(corpus.data)
    target = np.asarray(corpus.target)
    if args.mode != "all":
        keep = np.asarray(getattr(corpus, "mode", ["neutral"] * len(data))) == args.mode
        if not keep.any():
            raise UsageError(f"the corpus has no {args.mode} speech")
        data, target = data[keep], target[keep]
    params = {"random_state": args.seed}
    params.update((_model_overrides(args, [args.model]) or {}).get(args.model, {}))
    pipe = get_model(args.model).make_pipeline(int(getattr(corpus, "sample_rate", 16000)), **params)
    clf = pipe.named_steps["clf"]
    if hasattr(clf, "get_params") and "progress" in clf.get_params():
        clf.set_params(progress=not args.quiet)  # the networks' epoch bar
    _say(args, f"devicepool train: {args.model} on {len(data)} utterances, "
               f"{len(set(map(str, target)))} devices")
    t0 = time.perf_counter()
    pipe.fit(data, target)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.output + ".tmp"
    joblib.dump(pipe, tmp)
    os.replace(tmp, args.output)
    _say(args, f"saved {args.output} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_predict(args):
    import joblib
    import numpy as np

    if not os.path.exists(args.model):
        raise UsageError(f"model file {args.model!r} does not exist")
    try:
        model = joblib.load(args.model)
    except Exception as exc:  # any unpickling failure: not a model file
        raise UsageError(f"cannot load model {args.model!r}: {type(exc).__name__}: {exc}") from None
    if not hasattr(model, "predict_proba"):
        raise UsageError(f"{args.model!r} is not a devicepool classifier (no predict_proba)")
    for f in args.files:
        if not os.path.exists(f):
            raise UsageError(f"audio file {f!r} does not exist")
    proba = np.asarray(model.predict_proba(list(args.files)))
    classes = [str(c) for c in model.classes_]
    rows = []
    for f, p in zip(args.files, proba):
        order = np.argsort(-p, kind="stable")
        row = {"file": f, "device": classes[order[0]], "probability": float(p[order[0]])}
        if len(order) > 1:
            row["runner_up"] = classes[order[1]]
            row["runner_up_probability"] = float(p[order[1]])
        rows.append(row)
    if args.json:
        print(json.dumps({"model": args.model, "classes": classes, "predictions": rows}, indent=1))
    else:
        for row in rows:
            line = f"{row['file']}\t{row['device']}\t{row['probability']:.3f}"
            if "runner_up" in row:
                line += f"\t(runner-up {row['runner_up']} {row['runner_up_probability']:.3f})"
            print(line)
    return 0


COMMANDS = {"demo": cmd_demo, "evaluate": cmd_evaluate, "train": cmd_train, "predict": cmd_predict}


def main(argv=None):
    """Run the ``devicepool`` command; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 for bad input (usage, missing or unreadable files), 1 for other
        failures, 130 when interrupted.

    Examples
    --------
    >>> main(["predict", "no-such-model.joblib", "a.wav"])  # doctest: +SKIP
    devicepool: error: model file 'no-such-model.joblib' does not exist
    2
    """
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        return COMMANDS[args.command](args)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"devicepool: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, TypeError, OSError) as exc:
        print(f"devicepool: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("devicepool: interrupted (finished results are kept; rerun the same command to resume)",
              file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: still one line, no traceback
        print(f"devicepool: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
