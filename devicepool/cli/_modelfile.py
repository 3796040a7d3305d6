"""The model file of ``devicepool train``, ``predict``, ``calibrate`` and ``compare``: weights only.

A model file is a file of :func:`devicepool.persistence.dump` (its format is described
there; reading it never runs code from it) holding a fitted
``Pipeline([("features", step), ("clf", classifier)])``: the step one of
:data:`FEATURES` (it reads waveforms), the classifier a network, a classical system
(``gsv_svm``, ``gmm_ubm``), a fusion, or any ``Pipeline`` of allow-listed classes
(:data:`devicepool.persistence.ALLOWED`) ending in a classifier. The CLI adds only its
provenance::

    {"model": <registry name>,
     # devicepool train (0.6; devicepool.cli._quality):
     "training": {"devices": {device: recordings}, "n_utterances", "n_speakers", "mode",
                  "sample_rate", "seed"},
     "validation": {"accuracy", "chance", "per_device", "n_utterances", "held_out_speakers",
                    "protocol"} or {"skipped": why},
     "open_set": {"references": <float32 tensor (n, 128): pretrained embeddings>,
                  "devices": [device of each reference], "threshold": <log10 LR>, "embedding"},
     # devicepool calibrate:
     "forensic": <DeviceLR.to_payload(): the DeviceLR, without its embedder, as dump writes it>,
     "forensic_data": {"corpus", "root", "pattern", "mode", "sample_rate",
                       "n_recordings", "n_speakers", "devices", "cllr", "cllr_min", ...}}

(the second describes the calibration corpus, the relevant population of the LRs).
Model files of devicepool 0.2-0.5 (``devicepool.pipeline`` formats 1 and 2, with the same
provenance keys; ``"forensic"`` a ``devicepool.forensic.DeviceLR`` payload) still load.
Pickles (joblib files of older versions, or a registered model whose classifier the
format cannot hold) are written and read only with ``allow_pickle=True``
(``--allow-pickle``): :data:`PICKLE_RISK`. Temporary files a killed run left for the
same output (``.OUTPUT.XXXXXXXX.tmp``; ``OUTPUT.tmp`` of 0.2-0.5) are removed when found.
"""

from __future__ import annotations

import os

from .._io import TEMP_NAME, atomic_write
from ._common import UsageError

__all__ = ["FEATURES", "PICKLE_RISK", "check_output", "weights_only_savable", "why_not_savable",
           "save_model", "read_model_file", "load_model", "model_name_of", "written_by"]

#: feature transformers of :mod:`devicepool.features` a model file may start with
FEATURES = ("FilterBank", "DFTMagnitude", "Waveform")
PICKLE_RISK = "loading a pickle runs any code it contains; only for files you wrote yourself"


def _not_a_model(pipe):
    """Why ``pipe`` is no ``[features, classifier]`` pipeline (a str), or None."""
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    from devicepool import features

    if type(pipe) is not Pipeline or len(pipe.steps) != 2:
        return "it is not a Pipeline of two steps (features, classifier)"
    feats, last = pipe.steps[0][1], pipe.steps[1][1]
    if not any(type(feats) is getattr(features, n) for n in FEATURES):
        return f"its feature step is a {type(feats).__name__}, not one of {', '.join(FEATURES)}"
    while type(last) is Pipeline and last.steps:
        last = last.steps[-1][1]
    if not is_classifier(last):
        return f"its classifier ends in a {type(last).__name__}, not a classifier"
    return None


def why_not_savable(pipe):
    """Why the weights-only model file cannot hold ``pipe`` (a str), or None when it can
    (see the module docstring). Fitted or not: ``devicepool train`` asks before fitting."""
    from devicepool import persistence  # torch: not when the CLI starts

    try:
        persistence.check_savable(pipe, path="model")
    except (ValueError, TypeError, AttributeError) as exc:
        return str(exc)
    return _not_a_model(pipe)


def weights_only_savable(pipe):
    """Whether ``pipe`` is ``[features, classifier]`` of allow-listed classes (see
    :func:`why_not_savable`)."""
    return why_not_savable(pipe) is None


def check_output(path):
    """Check, before any work, that ``path`` can be written; create its parent folders.

    Returns the names of the temporary files of an interrupted run that were removed
    (``.NAME.XXXXXXXX.tmp`` of the atomic writer, ``NAME.tmp`` of devicepool 0.2-0.5).
    Raises :class:`UsageError` for a folder given as the output, a parent that cannot be
    created and a folder that cannot be written.
    """
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        example = os.path.join(path or ".", "model.pt")
        raise UsageError(f"output {path!r} is a folder; give a file name, e.g. {example!r}")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {parent!r} for the model file {path!r}: "
                         f"{exc.strerror or exc}") from None
    tmp = f"{path}.tmp"
    if os.path.isdir(tmp):
        raise UsageError(f"{tmp!r} (the model file's temporary name) is a folder; remove it")
    base = os.path.basename(path)
    leftover = [tmp] if os.path.lexists(tmp) else []
    leftover += [os.path.join(parent, n) for n in os.listdir(parent)
                 if TEMP_NAME.match(n) and n[1:-13] == base and os.path.isfile(os.path.join(parent, n))]
    try:  # the probe is the old temporary name itself: what a save could write
        with open(tmp, "wb"):
            pass
        for name in leftover + [tmp]:
            if os.path.lexists(name):
                os.remove(name)
    except OSError as exc:
        raise UsageError(f"cannot write the model file {path!r} in {parent!r}: "
                         f"{exc.strerror or exc}") from None
    return leftover


def model_name_of(pipe):
    """The registry name of a devicepool pipeline's classifier (for a pickled pipeline,
    whose file does not record it): ``da_cnn``, ``sa_cnn``, ``dft_cnn``, ``gsv_svm``,
    ``gmm_ubm`` (the recipes' step names), ``fusion``, else the classifier's class name."""
    names = {"DACNNClassifier": "da_cnn", "SACNNClassifier": "sa_cnn", "DFTCNNClassifier": "dft_cnn",
             "FusionClassifier": "fusion", "GMMUBMClassifier": "gmm_ubm"}
    recipes = {("mfcc", "gsv", "svm"): "gsv_svm", ("mfcc", "gmm"): "gmm_ubm"}
    clf = pipe.steps[-1][1]
    name = type(clf).__name__
    if name == "Pipeline":
        return recipes.get(tuple(n for n, _ in clf.steps), name)
    return names.get(name, name)


def save_model(pipe, model, path, *, allow_pickle=False, provenance=None):
    """Write a fitted pipeline to ``path``: weights only (with ``{"model": model,
    **provenance}``), or a joblib pickle when the format cannot hold it and
    ``allow_pickle``. Returns ``"weights-only"`` or ``"pickle"``."""
    from devicepool import persistence

    reason = why_not_savable(pipe)
    if reason is None:
        persistence.dump(pipe, path, provenance={**(provenance or {}), "model": str(model)})
        return "weights-only"
    if not allow_pickle:
        raise UsageError(f"model {model!r} cannot be saved weights-only ({reason}); "
                         "see --allow-pickle")
    import joblib

    atomic_write(path, lambda fh: joblib.dump(pipe, fh))
    return "pickle"


def read_model_file(path, *, allow_pickle=False):
    """The fitted pipeline in ``path`` and the file's provenance: ``(model, provenance)``.

    ``provenance`` is a dict (``"model"``, ``"devicepool_version"``, the optional
    ``"training"``, ``"validation"`` and ``"open_set"`` keys of ``devicepool train`` and
    ``"forensic"`` keys of ``devicepool calibrate``; see the module), None for a pickle. The model has
    ``classes_`` and ``predict_proba`` or, as ``gsv_svm`` (a linear SVM), only
    ``decision_function``. A weights-only file is read without running code from it; a
    pickle is refused with a :class:`UsageError` unless ``allow_pickle`` (:data:`PICKLE_RISK`).
    """
    at = f"model file {os.fspath(path)!r}"
    if not os.path.exists(path):
        raise UsageError(f"{at} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"model {os.fspath(path)!r} is a folder, not a model file")
    kind = _not_a_model_file(path)
    if kind:
        raise UsageError(f"{at} is {kind}, not a model file; a model file is what 'devicepool train' "
                         "writes (e.g. model.pt); in 'devicepool predict MODEL FILE ...' it comes first")
    from devicepool import persistence

    try:
        model, provenance = persistence.read(path, allow_pickle=allow_pickle)
    except (ValueError, OSError) as exc:
        hint = "; pass --allow-pickle if you did" if "is a pickle" in str(exc) else ""
        raise UsageError(f"cannot load model: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling (--allow-pickle) raises anything
        text = " ".join(str(exc).split())[:200]
        raise UsageError(f"cannot load model {os.fspath(path)!r}: {type(exc).__name__}: {text}") from None
    scores = hasattr(model, "predict_proba") or hasattr(model, "decision_function")
    if not (scores and hasattr(model, "classes_")):
        raise UsageError(f"{at} is not a fitted devicepool classifier (neither predict_proba "
                         "nor decision_function)")
    if provenance is not None and _not_a_model(model):
        raise UsageError(f"cannot load model: {at} holds a {type(model).__name__}, not a devicepool "
                         "model (if it was written by a classifier's save(), devicepool predict needs "
                         "a file of 'devicepool train')")
    return model, provenance


def written_by(provenance):
    """The devicepool version that wrote a model file (a str), or None (a pickle, or a
    file written before the version was recorded)."""
    version = provenance.get("devicepool_version") if isinstance(provenance, dict) else None
    return version if isinstance(version, str) else None


_AUDIO_MAGIC = ((b"RIFF", "a WAV audio file"), (b"RIFX", "a WAV audio file"),
                (b"fLaC", "a FLAC audio file"), (b"OggS", "an Ogg audio file"),
                (b"ID3", "an MP3 audio file"), (b"FORM", "an AIFF audio file"))


def _not_a_model_file(path):
    """What ``path`` is when its first bytes show it is no model file at all (audio, or
    text), else None; model files are zip archives (torch) or pickles."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    for magic, what in _AUDIO_MAGIC:
        if head.startswith(magic):
            return what
    if head and not head.startswith(b"PK") and head[:1] != b"\x80":
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not just a character cut at the 512th byte
                return None
            text = head[:exc.start].decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return "a text file"
    return None


def load_model(path, *, allow_pickle=False):
    """The fitted pipeline in ``path`` (a file of ``devicepool train`` or ``calibrate``).

    A weights-only file is read without running code from it. A pickle is refused with
    a :class:`UsageError` unless ``allow_pickle`` (:data:`PICKLE_RISK`).
    """
    return read_model_file(path, allow_pickle=allow_pickle)[0]
