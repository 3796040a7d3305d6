"""The forensic commands: calibrate, compare, and ``evaluate --forensic``.

``devicepool calibrate`` fits a :class:`~devicepool.forensic.DeviceLR` (the model file's
pipeline as embedder) on a calibration corpus and writes the model file again with its
payload under ``"forensic"`` (:mod:`devicepool.cli._modelfile`); ``devicepool compare``
reads it back and states the log10 LR of each questioned recording against the
reference recordings of one device, with its verbal equivalent
(:func:`devicepool.forensic.verbal_equivalent`) and the hypotheses in words.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time

from . import _modelfile
from ._commands import _labelled_set, _load_corpus, _model_overrides, _native_rates, tsv_field
from ._common import UsageError, say

__all__ = ["H1", "H2", "CAUTION", "cmd_calibrate", "cmd_compare", "cmd_evaluate_forensic"]

H1 = "the questioned recording was made with the device of the reference recordings"
H2 = ("it was made with another device of the relevant population (the devices represented "
      "in the calibration data)")
CAUTION = ("The LR is the strength of the evidence, not the probability that H1 is true "
           "(that also depends on the prior odds, the other information in the case).")
SCALE = "ENFSI Guideline for Evaluative Reporting in Forensic Science (2015), verbal scale"
CALIBRATION_CLLR_NOTE = ("on the calibration pairs themselves: optimistic, not a validation "
                         "(validate with devicepool evaluate --forensic)")


# --------------------------------------------------------------------------- helpers


def _forensic_part(payload, path):
    """The DeviceLR payload and calibration summary of a model file, or a UsageError."""
    if not isinstance(payload, dict) or "forensic" not in payload:
        raise UsageError(f"model file {os.fspath(path)!r} has no forensic calibration; run "
                         f"'devicepool calibrate --model {os.fspath(path)} --corpus ... -o "
                         "CALIBRATED.pt' first and compare with that file")
    return payload["forensic"], dict(payload.get("forensic_data") or {})


def _pretrained_summary(lr):
    """The calibration summary of an embedding bundle's back end (its recorded validation)."""
    meta = lr.embedder.metadata_
    if "calibration_data" in meta:  # a bundle that 'devicepool calibrate' recalibrated
        return dict(meta["calibration_data"], model="pretrained device embedding, recalibrated")
    recipe, val = meta.get("recipe", {}), meta.get("validation", {})
    chosen = val.get("chosen")
    held = val.get(chosen, {}) if chosen else {}
    return {"model": "pretrained device embedding", "backbone": recipe.get("backbone"),
            "calibration_devices": recipe.get("n_calibration_devices"),
            "calibration_population": "simulated devices disjoint from the embedding's training devices",
            "validation_cllr": held.get("cllr"), "validation_eer": held.get("eer")}


def _load_calibrated(args):
    """``(DeviceLR with the model file's pipeline as embedder, calibration summary)``."""
    from devicepool._validation import where
    from devicepool.forensic import DeviceLR

    if args.model is None or _is_bundle(args.model):
        try:
            lr = DeviceLR.pretrained(weights=args.model)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        return lr, _pretrained_summary(lr)

    pipe, payload = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    part, summary = _forensic_part(payload, args.model)
    try:
        lr = DeviceLR.from_payload(part, embedder=pipe)
    except ValueError as exc:
        raise UsageError(f"cannot load the forensic calibration of {where(path=args.model)}: "
                         f"{exc}") from None
    return lr, summary


def _is_bundle(path):
    """Whether ``path`` is an embedding bundle (of ``devicepool pretrain``), not a model file."""
    from devicepool.estimators.embedding import read_bundle

    try:
        read_bundle(path)
    except FileNotFoundError:
        return False
    except ValueError as exc:
        if "bundle format version" in str(exc):
            raise UsageError(str(exc)) from None
        return False
    return True


# --------------------------------------------------------------------------- calibrate


def _base_payload(args):
    """The model file's pipeline and provenance (of a pickled, ``--allow-pickle``, pipeline:
    its registry name)."""
    pipe, provenance = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    if provenance is None:
        if not _modelfile.weights_only_savable(pipe):
            raise UsageError(f"model {os.fspath(args.model)!r} is not a devicepool feature step + "
                             "classifier; the calibrated model file (weights only) cannot hold it")
        provenance = {"model": _modelfile.model_name_of(pipe)}
    return pipe, provenance


def _summary(args, corpus, devices, speakers, lr):
    import numpy as np

    from devicepool.forensic import cllr, cllr_min

    llr = lr.calibrator_.transform(lr.calibration_scores_)
    y = lr.calibration_labels_
    return {"corpus": args.corpus, "root": None if args.root is None else os.path.abspath(args.root),
            "pattern": args.pattern, "mode": args.mode,
            "sample_rate": int(corpus.sample_rate), "n_recordings": int(len(devices)),
            "n_speakers": None if speakers is None else int(len(np.unique(speakers))),
            "devices": [str(d) for d in np.unique(devices)],
            "cllr": float(cllr(llr, y)), "cllr_min": float(cllr_min(llr, y))}


def _cv_summary(lr_settings, E, devices, speakers):
    """Speaker-disjoint cross-validated measures of the calibration recipe, or None."""
    import numpy as np

    from devicepool.forensic import cllr, cllr_min, cross_validated_llrs, eer

    if speakers is None:
        return {"error": "the corpus's speakers are unknown (a --pattern without {speaker}), so the "
                         "folds cannot be speaker-disjoint"}
    try:
        llr, y = cross_validated_llrs(lr_settings, E, devices, speakers, n_splits=3)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"cv_cllr": float(cllr(llr, y)), "cv_cllr_min": float(cllr_min(llr, y)),
            "cv_eer": float(eer(llr, y)),
            "cv_same_lr_below_1": float(np.mean(llr[y == 1] < 0)),
            "cv_diff_lr_above_1": float(np.mean(llr[y == 0] > 0))}


def _coverage(corpus, data, mode):
    """What the calibration set covers: durations, modes and native rates of its recordings."""
    import soundfile as sf

    from devicepool.audio import soundfile_name
    from devicepool.forensic import coverage_of

    rate = int(corpus.sample_rate)
    durations, rates = [], []
    for item in data:
        if isinstance(item, (str, os.PathLike)):
            info = sf.info(soundfile_name(item))
            durations.append(info.frames / info.samplerate)
            rates.append(int(info.samplerate))
        else:
            durations.append(len(item) / rate)
    modes = corpus.mode if mode == "all" else [mode]
    return coverage_of(durations, modes, rates)


def _calibrate_embedder(args):
    """``(embedder, payload or bundle, kind)`` for calibrate: a model file's pipeline, or
    the pretrained embedding (no --model, or an embedding bundle)."""
    if args.model is None or _is_bundle(args.model):
        from devicepool.estimators.embedding import DeviceEmbedding, read_bundle

        return DeviceEmbedding(weights=args.model).fit(), read_bundle(args.model), "bundle"

    pipe, payload = _base_payload(args)
    if not hasattr(pipe, "transform"):
        name = _modelfile.model_name_of(pipe) or type(pipe).__name__
        raise UsageError(f"model {name!r} in {args.model} gives no device embeddings (no "
                         "'transform'); calibrate needs a network's model file (da_cnn, sa_cnn "
                         "or dft_cnn), an embedding bundle, or no --model (the pretrained embedding)")
    return pipe, payload, "model"


def cmd_calibrate(args):
    from sklearn.base import clone

    from devicepool.forensic import DeviceLR
    from devicepool.persistence import dump

    if args.scoring == "snorm":
        raise UsageError("--scoring snorm needs a background set of other devices for its cohort, "
                         "which calibrate has not; use plda or cosine")
    embedder, payload, kind = _calibrate_embedder(args)
    leftover = _modelfile.check_output(args.output)
    if leftover:
        say(args, f"devicepool calibrate: removed {', '.join(map(repr, leftover))}, left by an "
                  "interrupted run")
    corpus = _load_corpus(args)
    data, devices, speakers = _labelled_set(corpus, args.mode)  # speakers None when unknown
    say(args, f"devicepool calibrate: embedding {len(data)} recordings of "
              f"{len(set(map(str, devices)))} devices ({args.scoring} scoring, "
              f"{args.calibration} calibration)")
    t0 = time.perf_counter()
    if kind == "bundle":  # waveforms of the corpus are at its rate, not necessarily the network's
        embedder.set_params(sample_rate=int(corpus.sample_rate))
    E = embedder.transform(data)
    settings = DeviceLR(scoring=args.scoring, calibration=args.calibration, lda_dim=args.lda_dim,
                        n_references=args.n_references, random_state=args.seed)
    lr = clone(settings).fit(E, devices, speakers)
    summary = _summary(args, corpus, devices, speakers, lr)
    summary.update(_cv_summary(settings, E, devices, speakers))
    summary["coverage"] = _coverage(corpus, data, args.mode)
    if kind == "bundle":
        emb, provenance = payload
        provenance = {k: v for k, v in provenance.items() if k != "devicepool_version"}
        dump(emb, args.output, provenance=dict(provenance, lr=lr.to_payload(),
                                                calibration_data=json.dumps(summary, sort_keys=True)))
    else:
        if "forensic" in payload:
            say(args, f"devicepool calibrate: replacing the calibration already in {args.model}")
        provenance = {k: v for k, v in payload.items() if k not in ("model", "devicepool_version")}
        _modelfile.save_model(embedder, payload.get("model") or _modelfile.model_name_of(embedder),
                              args.output, provenance=dict(provenance, forensic=lr.to_payload(),
                                                           forensic_data=summary))
    n_speakers = "unknown" if summary["n_speakers"] is None else summary["n_speakers"]
    print(f"calibration corpus: {summary['n_recordings']} recordings, {len(summary['devices'])} "
          f"devices, {n_speakers} speakers ({args.mode} speech)")
    print(f"calibration pairs: {lr.n_same_pairs_} same-device, {lr.n_diff_pairs_} different-device "
          f"(up to {args.n_references} references each, by other "
          f"{'recordings' if speakers is None else 'speakers'})")
    if "cv_cllr" in summary:
        print(f"cross-validated (speaker-disjoint, 3 folds): Cllr {summary['cv_cllr']:.3f} "
              f"(Cllr_min {summary['cv_cllr_min']:.3f}), EER {100 * summary['cv_eer']:.1f} %, "
              f"same-device LR < 1: {100 * summary['cv_same_lr_below_1']:.1f} %")
    else:
        print(f"no cross-validated Cllr: {summary['error']}")
    print(f"(resubstitution Cllr {summary['cllr']:.3f}, {CALIBRATION_CLLR_NOTE})")
    lo, hi = lr.llr_bounds_
    print(f"LRs bounded to log10 LR in [{lo:+.2f}, {hi:+.2f}] (ELUB of the calibration pairs)")
    say(args, f"saved {args.output} (weights-only, {time.perf_counter() - t0:.1f} s)")
    return 0


# --------------------------------------------------------------------------- compare


def _check_distinct(references, questioned):
    refs = {os.path.realpath(f) for f in references}
    for f in questioned:
        if os.path.realpath(f) in refs:
            raise UsageError(f"questioned file {f!r} is also a reference recording; a recording "
                             "cannot be compared with itself")


def _result_row(file, llr):
    from devicepool.forensic import verbal_equivalent

    shown = float(f"{llr:.2f}")  # the words describe the number as reported
    lr = 10.0 ** llr if llr < 308 else math.inf
    return {"file": file, "llr": float(llr), "lr": lr if math.isfinite(lr) else None,
            "verbal": verbal_equivalent(shown)}


def _calibration_doc(lr, summary):
    doc = {"scoring": lr.scoring, "calibration": lr.calibration,
           "n_same_pairs": int(lr.n_same_pairs_), "n_diff_pairs": int(lr.n_diff_pairs_),
           "n_references": int(lr.n_references)}
    doc.update(summary)
    if "cllr" in doc:
        doc["cllr_note"] = CALIBRATION_CLLR_NOTE
    return doc


def _bounds_line(bounds, rows):
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    at = [r["file"] for r in rows if r["llr"] <= low + 1e-9 or r["llr"] >= high - 1e-9]
    line = (f"LRs are bounded to log10 LR in [{low:+.2f}, {high:+.2f}]: the calibration data support "
            "no stronger evidence (empirical lower and upper bounds, ELUB)")
    if at:
        line += f"; {len(at)} result(s) sit at a bound (the evidence may be stronger than stated)"
    return line


def _print_text(rows, references, summary, bounds_line=None, warnings=()):
    n_dev = len(summary.get("devices", [])) or summary.get("calibration_devices") or 0
    print(f"# H1: {H1} ({len(references)} reference recordings)")
    print(f"# H2: {H2}" + (f"; the calibration data hold {n_dev} devices" if n_dev else ""))
    if summary.get("model") == "pretrained device embedding":
        print("# model: the shipped pretrained device embedding, calibrated on "
              f"{summary.get('calibration_population')}")
    print(f"# {CAUTION}")
    if bounds_line:
        print(f"# {bounds_line}")
    for w in warnings:
        print(f"# warning: {w}")
    print("# file\tlog10 LR\tverbal equivalent (ENFSI 2015 scale)")
    for row in rows:
        print(f"{tsv_field(row['file'])}\t{row['llr']:+.2f}\t{row['verbal']}")


def cmd_compare(args):
    lr, summary = _load_calibrated(args)
    references = [os.fspath(f) for f in args.reference]
    questioned = [os.fspath(f) for f in args.questioned]
    _native_rates(references + questioned)  # every file exists and is audio (named if not)
    _check_distinct(references, questioned)
    if len(references) != lr.n_references:
        say(args, f"note: the calibration compared each recording with up to {lr.n_references} "
                  f"reference recordings; you gave {len(references)} (the LRs are best calibrated "
                  f"for that number: 'devicepool calibrate --n-references {len(references)}')")
    from devicepool.forensic.coverage import MINIMAL_COVERAGE, coverage_warnings

    if "coverage" in summary:
        coverage = summary["coverage"]
    elif args.model is None or summary.get("model") == "pretrained device embedding":
        coverage = None  # the shipped calibration's (DEFAULT_COVERAGE)
    else:
        coverage = MINIMAL_COVERAGE  # a calibration of 0.4 or earlier recorded none
    warnings, _ = coverage_warnings(questioned, references, coverage)
    llrs = lr.predict_llr(questioned, references)
    rows = [_result_row(f, float(v)) for f, v in zip(questioned, llrs)]
    bounds = tuple(float(b) for b in getattr(lr, "llr_bounds_", (-math.inf, math.inf)))
    line = _bounds_line(bounds, rows)
    if args.json:
        doc = {"model": "pretrained" if args.model is None else os.fspath(args.model),
               "hypotheses": {"H1": H1, "H2": H2},
               "caution": CAUTION, "verbal_scale": SCALE, "references": references,
               "questioned": rows, "calibration": _calibration_doc(lr, summary),
               "llr_bounds": [b if math.isfinite(b) else None for b in bounds], "bounds_note": line,
               "warnings": warnings}
        print(json.dumps(doc, indent=1))
    else:
        _print_text(rows, references, summary, line, warnings)
    return 0


# --------------------------------------------------------------------------- evaluate --forensic

_NOT_FORENSIC = (("conditions", "--conditions"), ("scheduler", "--scheduler"),
                 ("mode_augmentation", "--mode-augmentation"),
                 ("allow_unknown_speakers", "--allow-unknown-speakers"))  # its folds need speakers


def _optional_kwargs(func, **given):
    """``{name: value}`` for the parameters ``func`` takes; ``given[name] = (value, flag)``:
    a flag the user set (not None) for a parameter ``func`` lacks is a UsageError."""
    params = inspect.signature(func).parameters
    out = {}
    for name, (value, flag) in given.items():
        if name in params:
            out[name] = value
        elif flag is not None:
            raise UsageError(f"{flag} is not supported by this devicepool's {func.__name__}")
    return out


def _forensic_model(args):
    models = args.models or ["da_cnn"]
    if len(models) != 1:
        raise UsageError(f"evaluate --forensic evaluates one model; got {', '.join(models)}")
    return models[0]


def cmd_evaluate_forensic(args):
    from devicepool import protocol

    for attr, flag in _NOT_FORENSIC:
        if getattr(args, attr, None):
            raise UsageError(f"{flag} does not apply to evaluate --forensic")
    run = getattr(protocol, "run_forensic_protocol", None)
    if run is None:
        raise UsageError("this devicepool has no forensic protocol "
                         "(devicepool.protocol.run_forensic_protocol)")
    model = _forensic_model(args)
    corpus = _load_corpus(args)
    out = args.out or "devicepool-forensic"
    settings = {k: (v, f"--{k.replace('_', '-')}") for k, v in
                (("mode", args.mode), ("scoring", args.scoring), ("calibration", args.calibration),
                 ("far", args.far)) if v is not None}
    settings["wait"] = (bool(args.wait), "--wait" if args.wait else None)
    settings["resume"] = (not args.fresh, "--fresh" if args.fresh else None)
    result = run(corpus, model=model, n_splits=args.n_splits, random_state=args.seed,
                 model_params=(_model_overrides(args, [model]) or {}).get(model),
                 out_dir=out, progress=not args.quiet, n_jobs=args.n_jobs,
                 **_optional_kwargs(run, **settings))
    print(result.to_markdown())
    say(args, f"results: {out}")
    return 0
