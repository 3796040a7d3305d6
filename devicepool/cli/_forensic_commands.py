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
from ._commands import _load_corpus, _model_overrides, _native_rates, tsv_field
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


def _to_tensors(obj):
    """The payload with its numpy arrays as tensors (``torch.load(weights_only=True)``)."""
    import numpy as np
    import torch

    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_tensors(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    return obj


def _calibration_set(corpus, mode):
    """Recordings, devices and speakers of ``corpus`` in ``mode`` (``"all"``: every one)."""
    import numpy as np

    data = np.empty(len(corpus.data), dtype=object)
    data[:] = list(corpus.data)
    devices, speakers = np.asarray(corpus.target), np.asarray(corpus.groups)
    if mode != "all":
        keep = np.asarray(getattr(corpus, "mode", ["neutral"] * len(data))) == mode
        if not keep.any():
            raise UsageError(f"the corpus has no {mode} speech")
        data, devices, speakers = data[keep], devices[keep], speakers[keep]
    return data, devices, speakers


def _forensic_part(payload, path):
    """The DeviceLR payload and calibration summary of a model file, or a UsageError."""
    if not isinstance(payload, dict) or "forensic" not in payload:
        raise UsageError(f"model file {os.fspath(path)!r} has no forensic calibration; run "
                         f"'devicepool calibrate --model {os.fspath(path)} --corpus ... -o "
                         "CALIBRATED.pt' first and compare with that file")
    return payload["forensic"], dict(payload.get("forensic_data") or {})


def _load_calibrated(args):
    """``(DeviceLR with the model file's pipeline as embedder, calibration summary)``."""
    from devicepool._validation import where
    from devicepool.forensic import DeviceLR

    pipe, payload = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    part, summary = _forensic_part(payload, args.model)
    try:
        lr = DeviceLR.from_payload(part, embedder=pipe)
    except ValueError as exc:
        raise UsageError(f"cannot load the forensic calibration of {where(path=args.model)}: "
                         f"{exc}") from None
    return lr, summary


# --------------------------------------------------------------------------- calibrate


def _base_payload(args):
    """The model file's payload, rebuilt for a pickled (``--allow-pickle``) pipeline."""
    pipe, payload = _modelfile.read_model_file(args.model, allow_pickle=args.allow_pickle)
    if payload is None:
        if not _modelfile.weights_only_savable(pipe):
            raise UsageError(f"model {os.fspath(args.model)!r} is not a devicepool feature step + "
                             "classifier; the calibrated model file (weights only) cannot hold it")
        payload = _modelfile.pipeline_payload(pipe, _modelfile.model_name_of(pipe))
    return pipe, payload


def _summary(args, corpus, devices, speakers, lr):
    import numpy as np

    from devicepool.forensic import cllr, cllr_min

    llr = lr.calibrator_.transform(lr.calibration_scores_)
    y = lr.calibration_labels_
    return {"corpus": args.corpus, "root": None if args.root is None else os.path.abspath(args.root),
            "pattern": args.pattern, "mode": args.mode,
            "sample_rate": int(getattr(corpus, "sample_rate", 16000)),
            "n_recordings": int(len(devices)), "n_speakers": int(len(np.unique(speakers))),
            "devices": [str(d) for d in np.unique(devices)],
            "cllr": float(cllr(llr, y)), "cllr_min": float(cllr_min(llr, y))}


def cmd_calibrate(args):
    from devicepool.forensic import DeviceLR

    pipe, payload = _base_payload(args)
    if not hasattr(pipe, "transform"):
        name = _modelfile.model_name_of(pipe) or type(pipe).__name__
        raise UsageError(f"model {name!r} in {args.model} gives no device embeddings (no "
                         "'transform'); calibrate needs a network's model file (da_cnn, sa_cnn "
                         "or dft_cnn)")
    leftover = _modelfile.check_output(args.output)
    if leftover:
        say(args, f"devicepool calibrate: removed {args.output + '.tmp'!r}, left by an interrupted run")
    corpus = _load_corpus(args)
    data, devices, speakers = _calibration_set(corpus, args.mode)
    say(args, f"devicepool calibrate: embedding {len(data)} recordings of "
              f"{len(set(map(str, devices)))} devices ({args.scoring} scoring, "
              f"{args.calibration} calibration)")
    t0 = time.perf_counter()
    lr = DeviceLR(embedder=pipe, scoring=args.scoring, calibration=args.calibration,
                  lda_dim=args.lda_dim, n_references=args.n_references,
                  random_state=args.seed).fit(data, devices, speakers)
    summary = _summary(args, corpus, devices, speakers, lr)
    if "forensic" in payload:
        say(args, f"devicepool calibrate: replacing the calibration already in {args.model}")
    from devicepool import __version__

    out = dict(payload, devicepool_version=__version__, forensic=_to_tensors(lr.to_payload()),
               forensic_data=summary)
    _modelfile.save_payload(out, args.output)
    print(f"calibration corpus: {summary['n_recordings']} recordings, {len(summary['devices'])} "
          f"devices, {summary['n_speakers']} speakers ({args.mode} speech)")
    print(f"calibration pairs: {lr.n_same_pairs_} same-device, {lr.n_diff_pairs_} different-device "
          f"(up to {args.n_references} references each, by other speakers)")
    print(f"Cllr {summary['cllr']:.3f} (Cllr_min {summary['cllr_min']:.3f}) {CALIBRATION_CLLR_NOTE}")
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


def _print_text(rows, references, summary):
    n_dev = len(summary.get("devices", []))
    print(f"# H1: {H1} ({len(references)} reference recordings)")
    print(f"# H2: {H2}" + (f"; the calibration data hold {n_dev} devices" if n_dev else ""))
    print(f"# {CAUTION}")
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
    llrs = lr.predict_llr(questioned, references)
    rows = [_result_row(f, float(v)) for f, v in zip(questioned, llrs)]
    if args.json:
        doc = {"model": os.fspath(args.model), "hypotheses": {"H1": H1, "H2": H2},
               "caution": CAUTION, "verbal_scale": SCALE, "references": references,
               "questioned": rows, "calibration": _calibration_doc(lr, summary)}
        print(json.dumps(doc, indent=1))
    else:
        _print_text(rows, references, summary)
    return 0


# --------------------------------------------------------------------------- evaluate --forensic

_NOT_FORENSIC = (("conditions", "--conditions"), ("scheduler", "--scheduler"),
                 ("mode_augmentation", "--mode-augmentation"))


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
