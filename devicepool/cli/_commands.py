"""The commands demo, evaluate, train, predict (``args`` from :func:`build_parser`); calibrate,
compare and ``evaluate --forensic`` are in :mod:`._forensic_commands`."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import time
from collections import Counter

from . import _modelfile
from ._common import UsageError, say

__all__ = ["CORPORA", "DEMO_SETTINGS", "COMMANDS", "INTERRUPTED", "tsv_field"]

CORPORA = ("mobiphone", "wspire", "folder", "demo")

#: Sizes and training budgets of ``devicepool demo``. Ex-2 is the default embedded corpus
#: (``make_device_corpus()``: 6 devices x 9 speakers x 8 utterances x {neutral, whisper});
#: Ex-1 a neutral-only one standing in for MOBIPHONE (more devices, as MOBIPHONE has more
#: phones than wSPIRE). Both give 144 test utterances per fold and mode. The three models
#: keep their library defaults except a smaller step budget for SA-CNN and DA-CNN (150
#: instead of 400), so that the 27 fits end within 5 minutes on 2 cores (crop training
#: makes a fit's cost follow its steps).
DEMO_SETTINGS = {
    "full": {
        "ex1": {"n_devices": 8, "n_speakers": 9, "n_utterances": 6, "modes": ("neutral",)},
        "ex2": {"n_devices": 6, "n_speakers": 9, "n_utterances": 8, "modes": ("neutral", "whisper")},
        "model_params": {  # the baseline at its library default (800 steps): its fits are the
            "dft_cnn": {},    # cheapest, and a shorter budget under-trains it (issue 21)
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

#: What the interruption message of each command says (Ctrl-C, SIGTERM).
INTERRUPTED = {
    "demo": "finished results are kept; rerun the same command to resume",
    "evaluate": "finished results are kept; rerun the same command to resume",
    "train": "no model file was written",
    "predict": "",
    "calibrate": "no model file was written",
    "compare": "",
}

# --------------------------------------------------------------------------- helpers


def _load_corpus(args):
    from devicepool import datasets

    if args.corpus != "demo" and not args.root:
        raise UsageError(f"--root is required for --corpus {args.corpus}")
    if args.root and not os.path.exists(args.root):
        raise UsageError(f"corpus root {args.root!r} does not exist")
    if args.root and not os.path.isdir(args.root):
        raise UsageError(f"corpus root {args.root!r} is not a folder")
    rate = {"sample_rate": args.sample_rate} if getattr(args, "sample_rate", None) else {}
    if args.corpus == "mobiphone":
        return datasets.load_mobiphone(args.root, **rate)
    if args.corpus == "wspire":
        return datasets.load_wspire(args.root, **rate)
    if args.corpus == "folder":
        if not args.pattern:
            raise UsageError("--pattern is required for --corpus folder, e.g. "
                             "'{device}/{mode}/{speaker}_{utterance}.wav'")
        _check_pattern_fields(args.pattern)
        skip = getattr(args, "skip_unmatched", False)
        try:
            return datasets.load_audio_folder(args.root, pattern=args.pattern, strict=not skip, **rate)
        except ValueError as exc:  # the library names its parameter; here the flag is the way
            raise UsageError(str(exc).replace("pass strict=False", "pass --skip-unmatched")) from None
    kwargs = {"random_state": getattr(args, "seed", 0), **rate}
    if args.root:
        kwargs["source"] = args.root
    return datasets.make_device_corpus(**kwargs)


_PATTERN_FIELDS = ("device", "speaker", "mode", "utterance")


def _check_pattern_fields(pattern):
    """A ``--pattern`` field that looks like a misspelt known one (``{speakr}``) is an
    error before any file is read; fields of the user's own (``{session}``) stay allowed."""
    import difflib

    from devicepool.datasets.folder import compile_pattern

    try:
        fields = compile_pattern(pattern)[1]
    except ValueError as exc:
        raise UsageError(f"--pattern: {exc}") from None
    for field in fields:
        if field in _PATTERN_FIELDS:
            continue
        near = difflib.get_close_matches(field, _PATTERN_FIELDS, n=1, cutoff=0.7)
        if near and near[0] not in fields:
            known = ", ".join(f"{{{f}}}" for f in _PATTERN_FIELDS)
            raise UsageError(f"--pattern {pattern!r}: field {{{field}}} is not a known field; did you "
                             f"mean {{{near[0]}}}? (known: {known}; other names are kept as extra fields)")


def _model_overrides(args, models):
    """``--max-epochs`` and ``--device`` for each model that takes them (the networks, and
    a fusion for its network members); the classical systems have neither."""
    from devicepool.protocol import get_model

    params = {}
    if getattr(args, "max_epochs", None):
        params["max_epochs"] = args.max_epochs
    if getattr(args, "device", None):
        params["device"] = args.device
    if not params:
        return None
    out = {m: {k: v for k, v in params.items() if get_model(m).accepts(k)} for m in models}
    return {m: p for m, p in out.items() if p} or None


def _parse_conditions(text):
    from devicepool.protocol import CONDITIONS

    if text is None:
        return None
    conds = [c.strip() for c in text.split(",") if c.strip()]
    for c in conds:
        if c not in CONDITIONS:
            raise UsageError(f"unknown condition {c!r} (choose from {', '.join(CONDITIONS)})")
    return conds


def _wait_kwargs(args, run_protocol):
    """``{"wait": ...}`` for ``run_protocol`` (when this devicepool's takes it)."""
    if "wait" in inspect.signature(run_protocol).parameters:
        return {"wait": bool(getattr(args, "wait", False))}
    if getattr(args, "wait", False):
        raise UsageError("--wait is not supported by this devicepool's run_protocol")
    return {}


# --------------------------------------------------------------------------- demo, evaluate


def _demo_jobs(args, settings):
    """Parallel fits of the demo: ``--n-jobs``; else one at a time when ``--threads`` limits
    the compute (``--threads 1``: one core), else the settings' (2)."""
    if args.n_jobs is not None:
        return args.n_jobs
    return 1 if getattr(args, "threads", None) else settings.get("n_jobs")


def cmd_demo(args):
    from devicepool.datasets import make_device_corpus
    from devicepool.protocol import combine_results, run_protocol, write_report

    settings = DEMO_SETTINGS["quick" if args.quick else "full"]
    t0 = time.perf_counter()
    parts = []
    for key, label in (("ex1", "Ex-1 (neutral-only corpus, MOBIPHONE's role)"),
                       ("ex2", "Ex-2 (parallel neutral + whisper corpus, wSPIRE's role)")):
        spec = dict(settings[key])
        say(args, f"devicepool demo: {label}: building the corpus ({spec['n_devices']} devices, "
                  f"{spec['n_speakers']} speakers, {spec['n_utterances']} utterances each)")
        corpus = make_device_corpus(random_state=args.seed + (0 if key == "ex2" else 1), **spec)
        parts.append(run_protocol(
            corpus, models=list(settings["model_params"]), n_splits=3, out_dir=os.path.join(args.out, key),
            random_state=args.seed, model_params=settings["model_params"], progress=not args.quiet,
            n_jobs=_demo_jobs(args, settings), report=False,
            **_wait_kwargs(args, run_protocol)))
    result = combine_results(*parts)
    elapsed = time.perf_counter() - t0
    extra = (f"Run: `devicepool demo{' --quick' if args.quick else ''} --seed {args.seed}`, "
             f"{elapsed:.0f} s wall time. Corpora: `make_device_corpus` with {settings['ex1']} (Ex-1) "
             f"and {settings['ex2']} (Ex-2); model overrides {settings['model_params']}. Per-fold results "
             "in `ex1/results/` and `ex2/results/`.")
    write_report(result, args.out, title="devicepool demo: the paper's protocol on the embedded corpus",
                 extra=extra)
    say(args, "")
    print(result.to_markdown(paper=True))
    say(args, f"report: {os.path.join(args.out, 'report.md')} ({elapsed:.0f} s)")
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
        say(args, f"devicepool evaluate: fits on the dask cluster at {args.scheduler} "
                  f"({len(client.nthreads())} workers, {n_threads} threads)")
        yield args.n_jobs if args.n_jobs is not None else -1


_FORENSIC_ONLY = (("mode", "--mode"), ("scoring", "--scoring"), ("calibration", "--calibration"),
                  ("far", "--far"))


def cmd_evaluate(args):
    from devicepool.protocol import registered_models, run_protocol

    for attr, flag in _FORENSIC_ONLY:
        if getattr(args, attr, None) is not None:
            raise UsageError(f"{flag} applies to evaluate --forensic only")
    models = args.models or list(registered_models())
    out = args.out or "devicepool-results"
    corpus = _load_corpus(args)
    conditions = _parse_conditions(args.conditions)
    paper = args.corpus in ("mobiphone", "wspire", "demo")  # the paper's corpora, or their stand-in
    backend = _dask_cluster(args) if args.scheduler else contextlib.nullcontext(args.n_jobs)
    with backend as n_jobs:
        result = run_protocol(
            corpus, models=models, conditions=conditions,
            n_splits=args.n_splits, out_dir=out, random_state=args.seed,
            model_params=_model_overrides(args, models), progress=not args.quiet,
            n_jobs=n_jobs, resume=not args.fresh, mode_augmentation=args.mode_augmentation,
            allow_unknown_speakers=args.allow_unknown_speakers, paper=paper,
            title=f"devicepool evaluate: {args.corpus} corpus", **_wait_kwargs(args, run_protocol))
    print(result.to_markdown(own_corpus=not paper))
    for note in result.notes:
        say(args, f"note: {note}")
    say(args, f"report: {os.path.join(out, 'report.md')}")
    return 0


# --------------------------------------------------------------------------- train


def _labelled_set(corpus, mode):
    """``(data, devices, speakers)`` of a :class:`~devicepool.datasets.Corpus` in ``mode``
    (``"all"``: every recording); ``speakers`` is None when the corpus does not know them."""
    import numpy as np

    data = np.empty(len(corpus.data), dtype=object)
    data[:] = list(corpus.data)
    target, groups = corpus.target, corpus.groups if corpus.speakers_known else None
    if mode != "all":
        keep = corpus.mode == mode
        if not keep.any():
            raise UsageError(f"the corpus has no {mode} speech")
        data, target = data[keep], target[keep]
        groups = None if groups is None else groups[keep]
    return data, target, groups


def cmd_train(args):
    from devicepool.protocol import get_model

    spec = get_model(args.model)
    params = {"random_state": args.seed}
    params.update((_model_overrides(args, [args.model]) or {}).get(args.model, {}))
    # everything about the output is checked before the corpus is read
    leftover = _modelfile.check_output(args.output)
    if leftover:
        say(args, f"devicepool train: removed {', '.join(map(repr, leftover))}, left by an interrupted run")
    weights_only = _modelfile.weights_only_savable(spec.make_pipeline(16000, **params))
    if not args.allow_pickle and not weights_only:
        raise UsageError(f"model {args.model!r} is not a devicepool feature step + classifier, so the "
                         "weights-only model file cannot hold it; pass --allow-pickle to save it as a "
                         f"pickle ({_modelfile.PICKLE_RISK})")
    corpus = _load_corpus(args)
    data, target, groups = _labelled_set(corpus, args.mode)  # groups: speaker-disjoint splits in fit
    rate = int(corpus.sample_rate)
    counts = Counter(map(str, target))
    n_speakers = "unknown" if groups is None else len(set(map(str, groups)))
    say(args, f"devicepool train: {args.model} on {len(data)} utterances of {len(counts)} devices "
              f"({n_speakers} speakers) at {rate} Hz: "
              + ", ".join(f"{d} {n}" for d, n in sorted(counts.items())))
    from devicepool.estimators import fit_with_groups

    from . import _quality

    # the task check and the open-set gate see what predict will: the audio at the model's rate
    E = (_quality.embed_recordings(data, rate)
         if weights_only or not args.skip_task_check else None)  # a pickle keeps no gate
    if not args.skip_task_check:
        judged = _quality.check_task(E, target, groups)
        if judged is None:
            say(args, "task check: skipped (it needs {speaker} in the pattern, two devices and two "
                      "speakers, and two recordings of each)")
    if not weights_only:
        say(args, "note: a pickled model file keeps neither the validation figures nor the open-set "
                  "references: predict will name one of the devices for every recording")

    def make():
        pipe = spec.make_pipeline(rate, **params)
        clf = pipe.steps[-1][1]
        if hasattr(clf, "get_params") and "progress" in clf.get_params():
            clf.set_params(progress=not args.quiet)  # the networks' epoch bar
        return pipe

    t0 = time.perf_counter()
    if args.no_validation:
        validation = {"skipped": "--no-validation"}
    else:
        say(args, "validating: a first fit without some speakers, scored on theirs "
                  "(--no-validation skips it)")
        validation = _quality.validate(make, fit_with_groups, data, target, groups, args.seed)
    say(args, _quality.describe_validation(validation))
    pipe = make()
    fit_with_groups(pipe, data, target, groups)
    provenance = {"training": {"devices": dict(sorted(counts.items())), "n_utterances": len(data),
                               "n_speakers": None if groups is None else n_speakers,
                               "mode": args.mode, "sample_rate": rate, "seed": args.seed},
                  "validation": validation,
                  "open_set": _quality.open_set_gate(E, target, groups) if weights_only else None}
    kind = _modelfile.save_model(pipe, args.model, args.output, allow_pickle=args.allow_pickle,
                                 provenance=provenance)
    say(args, f"saved {args.output} ({kind}, {time.perf_counter() - t0:.1f} s)")
    return 0


# --------------------------------------------------------------------------- predict

_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(text):
    r"""One TSV field: backslash, tab, newline and carriage return escaped (``\\``,
    ``\t``, ``\n``, ``\r``), bytes that are not UTF-8 written ``\xNN``.

    >>> print(tsv_field("a\tb\nc\\d.wav"))
    a\tb\nc\\d.wav
    """
    escaped = str(text).translate(_TSV_ESCAPES)
    try:  # a path of undecodable bytes holds them as surrogates (os.fsdecode)
        return escaped.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def _native_rates(files):
    """Each file's own sample rate (``soundfile.info``); errors name the file."""
    import soundfile as sf

    from devicepool._validation import where
    from devicepool.audio import soundfile_name

    rates = []
    for f in files:
        if not os.path.exists(f):
            raise UsageError(f"audio file {f!r} does not exist")
        try:
            rates.append(int(sf.info(soundfile_name(f)).samplerate))
        except Exception as exc:  # noqa: BLE001 - libsndfile raises its own types
            raise ValueError(f"{where(path=f)}: unreadable or corrupt audio file ({exc})") from None
    return rates


def _checked_files(args, files, model_rate):
    """``(conditions, error, waveform)`` per file: each file read once, measured
    (:func:`devicepool.forensic.recording_conditions`) and kept at the model's rate for the
    model and the open-set gate (``waveform`` None when the model's rate is unknown: they
    then read the file themselves); a file that cannot be read is an error of its own
    (``--strict``: the first one stops the command)."""
    from devicepool.forensic import recording_conditions

    checked = []
    for f in files:
        try:
            if not os.path.exists(f):
                raise FileNotFoundError(f"{f!r}: no such file")
            cond, x = recording_conditions(f, model_rate or 16000, return_waveform=True)
            checked.append((cond, None, x if model_rate else None))
        except (OSError, ValueError) as exc:
            if args.strict and isinstance(exc, FileNotFoundError):
                raise UsageError(str(exc)) from None
            if args.strict:
                raise
            checked.append((None, str(exc), None))
    return checked


def _prediction_row(file, p, classes, native_rate, model_rate, kind="probability"):
    """One file's prediction; ``kind`` names what ``p`` holds: ``"probability"``, or
    ``"score"`` for a model without probabilities (an SVM's decision values)."""
    import numpy as np

    order = np.argsort(-p, kind="stable")
    row = {"file": file, "status": "ok", "device": classes[order[0]], "probability": None}
    row[kind] = float(p[order[0]])
    if len(order) > 1:
        row["runner_up"] = classes[order[1]]
        row[f"runner_up_{kind}"] = float(p[order[1]])
    row[f"{kind}_per_device"] = {c: float(v) for c, v in zip(classes, p)}
    row["native_rate"] = native_rate
    row["resampled"] = bool(model_rate is not None and native_rate != model_rate)
    return row


def _tsv_line(row, model_rate):
    name = tsv_field(row["file"])
    if row["status"] == "error":
        return f"{name}\terror\t({tsv_field(row['error'])})"
    if row["status"] == "unknown":
        return f"{name}\tunknown\t({tsv_field('; '.join(row['reasons']))})"
    if row["probability"] is not None:
        kind, fmt = "probability", "{:.3f}"
    else:
        kind, fmt = "score", "score {:.3f}"
    line = f"{name}\t{tsv_field(row['device'])}\t{fmt.format(row[kind])}"
    if "runner_up" in row:
        line += f"\t(runner-up {tsv_field(row['runner_up'])} {fmt.format(row['runner_up_' + kind])})"
    else:
        line += "\t(no runner-up)"
    if row["resampled"]:
        return line + f"\t({row['native_rate']} Hz, resampled to {model_rate} Hz)"
    return line + f"\t({row['native_rate']} Hz)"


def _model_outputs(model, files):
    """``(values, kind)``: probabilities, or decision scores of a model without them."""
    import numpy as np

    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(files)), "probability"
    scores = np.asarray(model.decision_function(files), dtype=np.float64)
    if scores.ndim == 1:  # two classes: the score of classes_[1]
        scores = np.stack([-scores / 2, scores / 2], axis=1)
    return scores, "score"


def _open_set(args, gate, rows, judged, inputs, model_rate):
    """Turn the judged rows whose recording is unlike every device the model was trained on
    (the file's open-set gate, :mod:`devicepool.cli._quality`) into 'unknown'; ``inputs``
    are the judged recordings (waveforms at ``model_rate``, or paths)."""
    from . import _quality

    if gate is None or args.closed_set:
        return
    known, best, nearest = _quality.gate_answers(gate, _quality.embed_recordings(inputs, model_rate or 16000))
    threshold = float(gate["threshold"])
    for (i, _, _), ok, llr, dev in zip(judged, known, best, nearest):
        rows[i]["open_set"] = {"best_llr": float(llr), "nearest_device": str(dev), "threshold": threshold}
        if not ok:
            rows[i].update(status="unknown", model_device=rows[i]["device"], device=None, reasons=[
                f"unlike every device the model knows (best log10 LR {llr:+.2f}, against {dev}; "
                "--closed-set to answer anyway)"])


def _judged_rows(args, model, files, model_rate, gate=None):
    """One row per file: an error (unreadable), unknown (with its reasons: too short,
    silent, clipped, a lower rate than the model's, unlike every known device) or the
    model's answer."""
    from devicepool.forensic import reasons_to_abstain

    checked = _checked_files(args, files, model_rate)
    rows, judged, inputs = [], [], []
    for f, (cond, error, wave) in zip(files, checked):
        if error is not None:
            rows.append({"file": f, "status": "error", "error": error})
            continue
        reasons = reasons_to_abstain(cond, None if args.allow_lower_rate else model_rate,
                                     min_duration_s=args.min_seconds)
        rows.append({"file": f, "status": "unknown", "device": None, "reasons": reasons,
                     "native_rate": cond["native_rate"]} if reasons else None)
        if not reasons:
            judged.append((len(rows) - 1, f, cond["native_rate"]))
            inputs.append(f if wave is None else wave)
    if judged:
        values, kind = _model_outputs(model, inputs)
        classes = [str(c) for c in model.classes_]
        for (i, f, rate), p in zip(judged, values):
            rows[i] = _prediction_row(f, p, classes, rate, model_rate, kind)
        _open_set(args, gate, rows, judged, inputs, model_rate)
        if kind == "score":
            say(args, "note: this model gives no probabilities (an SVM); the numbers are its decision "
                      "scores, comparable only between devices of one file (gmm_ubm and fusion give "
                      "calibrated probabilities)")
    return rows


def cmd_predict(args):
    model, payload = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    files = [os.fspath(f) for f in args.files]
    model_rate = getattr(model.steps[0][1], "sample_rate", None) if hasattr(model, "steps") else None
    model_rate = int(model_rate) if model_rate is not None else None
    gate = payload.get("open_set") if isinstance(payload, dict) else None
    rows = _judged_rows(args, model, files, model_rate, gate)
    if args.json:
        doc = {"model": os.fspath(args.model), "model_devicepool_version": _modelfile.written_by(payload),
               "classes": [str(c) for c in model.classes_], "sample_rate": model_rate, "predictions": rows}
        print(json.dumps(doc, indent=1))
    else:
        for row in rows:
            print(_tsv_line(row, model_rate))
    n_resampled = sum(bool(r.get("resampled")) for r in rows)
    if n_resampled:
        say(args, f"note: {n_resampled} of {len(rows)} file(s) resampled to the model's "
                  f"{model_rate} Hz (their own rate is in the last column, or 'native_rate')")
    n_unknown = sum(r["status"] == "unknown" for r in rows)
    if n_unknown:
        say(args, f"note: {n_unknown} of {len(rows)} file(s) answered 'unknown': the model cannot judge "
                  "them (the reason is in the last column, or 'reasons')")
    failed = [r for r in rows if r["status"] == "error"]
    for r in failed:
        print(f"devicepool: error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def model_info(model, provenance):
    """What a model file says about its model: a JSON-able dict (model, devicepool version,
    devices, sample rate, training, validation, open set, calibration)."""
    from . import _quality

    prov = provenance if isinstance(provenance, dict) else {}
    rate = getattr(model.steps[0][1], "sample_rate", None) if hasattr(model, "steps") else None
    gate = prov.get("open_set")
    return {"model": prov.get("model", _modelfile.model_name_of(model) if hasattr(model, "steps") else None),
            "devicepool_version": _modelfile.written_by(prov), "sample_rate": rate,
            "classes": [str(c) for c in model.classes_], "training": prov.get("training"),
            "validation": prov.get("validation"),
            "validation_text": (_quality.describe_validation(prov["validation"])
                                if "validation" in prov else None),
            "open_set": None if gate is None else {
                "references_per_device": dict(Counter(gate["devices"])), "threshold": gate["threshold"],
                "embedding": gate.get("embedding")},
            "forensic": "forensic" in prov}


def cmd_info(args):
    model, provenance = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    info = model_info(model, provenance)
    if args.json:
        print(json.dumps({"file": os.fspath(args.model), **info}, indent=1))
        return 0
    version = info["devicepool_version"] or "unknown (a pickle, or written before 0.5)"
    lines = [f"{os.fspath(args.model)}: {info['model']}, written by devicepool {version}",
             f"sample rate: {info['sample_rate']} Hz" if info["sample_rate"] else "sample rate: unknown"]
    training = info["training"] or {}
    devices = training.get("devices")
    lines.append(f"devices ({len(info['classes'])}): " + ", ".join(
        f"{c} ({devices[c]} recordings)" if devices and c in devices else c for c in info["classes"]))
    if training:
        lines.append(f"trained on {training['n_utterances']} recordings of "
                     f"{training['n_speakers'] or 'unknown'} speakers, mode {training['mode']}, "
                     f"seed {training['seed']}")
    lines.append(info["validation_text"] or "validation: not recorded (a model file of devicepool 0.5 or "
                                            "earlier, or a pickle)")
    lines.append("open set: 'unknown' for recordings unlike every device (log10 LR threshold "
                 f"{info['open_set']['threshold']:+.2f})" if info["open_set"] else
                 "open set: none recorded (predict names one of the devices for every recording)")
    lines.append("forensic calibration: yes (devicepool compare)" if info["forensic"] else
                 "forensic calibration: none (devicepool calibrate adds one)")
    print("\n".join(lines))
    return 0


#: the commands of this module; ``devicepool.cli`` adds the forensic ones and ``pretrain``
COMMANDS = {"demo": cmd_demo, "evaluate": cmd_evaluate, "train": cmd_train, "predict": cmd_predict,
            "info": cmd_info}
