"""The model file of ``devicepool train``, ``predict``, ``calibrate`` and ``compare``: weights only.

``devicepool train`` writes one dict with :func:`torch.save` that holds only plain values
(strings, numbers, lists, dicts) and tensors::

    {"format": "devicepool.pipeline", "format_version": 1 | 2,
     "devicepool_version": <the devicepool that wrote the file, e.g. "0.3.0">,
     "model": <registry name>,
     "features": {"class": "FilterBank" | "DFTMagnitude" | "Waveform",
                  "params": <get_params()>},
     "classifier": <a classifier node>}

The classifier node names its class under ``"estimator"``:

* a network (``SACNNClassifier``, ``DACNNClassifier``, ``DFTCNNClassifier``):
  :func:`devicepool.estimators._persistence.classifier_payload` of it. Such a file has
  ``"format_version": 1``, byte for byte what earlier versions wrote.
* a classical system or a fusion (``gsv_svm``, ``gmm_ubm``, ``fusion`` of the registry,
  or any other combination of the same classes): a node of
  :mod:`devicepool.estimators._payloads` -- ``"Pipeline"`` (its ``"steps"`` nodes in
  order: ``MFCC`` with an optional ``FilterBank``, ``GaussianSupervector``,
  ``LinearSVC``, ``GMMUBMClassifier``, ...), ``"GMMUBMClassifier"`` or
  ``"FusionClassifier"`` (its fitted members, each a whole pipeline node -- a
  ``FilterBank`` or ``DFTMagnitude`` step and a classifier, networks included -- that
  reads the waveforms of the ``Waveform`` feature step; plus the fusion weights, offsets
  and held-out report). Gaussian mixtures are stored as their arrays
  (weights, means, variances, precision Cholesky factors), labels as a list and its
  numpy dtype, every array as a tensor of its own dtype: a rebuilt pipeline predicts
  bit-identically. Such a file has ``"format_version": 2``.

``format_version`` is the oldest format whose reader reads the file; :data:`FORMAT_VERSION`
is the newest this devicepool reads. An older devicepool (format 1 only) refuses a
version-2 file cleanly, before looking at its classes: ``has model file format 2; this
devicepool reads format 1 (update devicepool)``. Past that check it would still stop at
``unknown classifier 'Pipeline'`` (or ``unknown feature step 'Waveform'``): an old reader
never crashes on a new file and never runs code from it.

``devicepool predict`` reads it with ``torch.load(weights_only=True)``
(:func:`~devicepool.estimators._persistence.read_weights_only`) and rebuilds the
pipeline from allow-listed classes only (:data:`FEATURES`, :data:`CLASSIFIERS` and, inside
a node, :data:`devicepool.estimators._payloads.ALLOWED`), so reading a model file never
runs code from it: a class name is looked up in those lists, never imported by the name the
file gives. Pickles (joblib files of older versions, or a registered model whose
classifier the format cannot hold) are written and read only with ``allow_pickle=True``
(``--allow-pickle``): :data:`PICKLE_RISK`.

Files are written atomically by the package's one writer (:func:`devicepool._io.atomic_write`:
a temporary ``.OUTPUT.XXXXXXXX.tmp`` flushed to disk, its mode set from the umask, then
:func:`os.replace`); an interruption removes the temporary file, so ``OUTPUT`` is either
the old file, the new one, or absent. ``OUTPUT.tmp``, the temporary name of 0.2-0.5, is
removed when found.

``devicepool_version`` is optional (files written before it was recorded lack it and
still load; :func:`written_by` reads it, None when absent). ``devicepool calibrate``
sets it to its own version and adds two optional keys (the format version stays as it
was: a reader that does not know them, e.g. ``devicepool predict`` of devicepool 0.3,
ignores them)::

     "forensic": <DeviceLR.to_payload(), its arrays as float64 / int64 tensors>,
     "forensic_data": {"corpus", "root", "pattern", "mode", "sample_rate",
                       "n_recordings", "n_speakers", "devices", "cllr", "cllr_min"}

(:mod:`devicepool.forensic._payload` describes the first; the second describes the
calibration corpus, the relevant population of the LRs). :func:`read_model_file` returns
the payload with the pipeline, and :func:`save_payload` writes a payload as
:func:`save_model` does.
"""

from __future__ import annotations

import os

from .._io import atomic_write
from .._validation import where
from ._common import UsageError

__all__ = ["FORMAT", "FORMAT_VERSION", "FEATURES", "ESTIMATORS", "CLASSIFIERS", "PICKLE_RISK",
           "check_output", "weights_only_savable", "why_not_savable", "pipeline_payload",
           "pipeline_from_payload", "save_model", "save_payload", "read_model_file", "load_model",
           "model_name_of", "written_by"]

FORMAT = "devicepool.pipeline"
#: the newest format this devicepool reads (and writes, for a classical or fused model)
FORMAT_VERSION = 2
#: the format of a file whose classifier is a network (what earlier versions wrote)
NETWORK_FORMAT_VERSION = 1
#: feature transformers of :mod:`devicepool.features` a model file may name
FEATURES = ("FilterBank", "DFTMagnitude", "Waveform")
#: the networks of :mod:`devicepool.estimators`, stored as their classifier payloads
ESTIMATORS = ("SACNNClassifier", "DACNNClassifier", "DFTCNNClassifier")
#: every classifier a model file may name at its top (nodes of
#: :mod:`devicepool.estimators._payloads` besides the networks)
CLASSIFIERS = ESTIMATORS + ("GMMUBMClassifier", "FusionClassifier", "Pipeline")
PICKLE_RISK = "loading a pickle runs any code it contains; only for files you wrote yourself"

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18",
                     b"x\x01", b"x\x5e", b"x\x9c", b"x\xda")  # joblib's compressors


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


# --------------------------------------------------------------------------- writing


def why_not_savable(pipe):
    """Why the weights-only model file cannot hold ``pipe`` (a str), or None when it can.

    It can when ``pipe`` is ``Pipeline([(name, features), (name, classifier)])`` with the
    features one of :data:`FEATURES` and the classifier one of :data:`CLASSIFIERS` (a
    ``Pipeline`` classifier ending in a classifier), every class inside it allow-listed
    (:data:`devicepool.estimators._payloads.ALLOWED`) and every parameter that matters
    for prediction a plain value. Fitted or not: ``devicepool train`` asks before fitting.
    """
    from sklearn.pipeline import Pipeline

    from devicepool import features
    from devicepool.estimators import _payloads

    if type(pipe) is not Pipeline or len(pipe.steps) != 2:
        return "it is not a Pipeline of two steps (features, classifier)"
    feats, clf = pipe.steps[0][1], pipe.steps[1][1]
    if not any(type(feats) is getattr(features, n) for n in FEATURES):
        return (f"its feature step is a {type(feats).__name__}, not one of "
                f"{', '.join(FEATURES)}")
    if type(clf).__name__ not in CLASSIFIERS:
        return (f"its classifier is a {type(clf).__name__}, not one of {', '.join(CLASSIFIERS)} "
                "(a Pipeline ending in an allow-listed classifier)")
    try:
        _payloads.check_savable(clf, path=f"steps[{pipe.steps[1][0]!r}]")
    except (ValueError, TypeError, AttributeError) as exc:
        return str(exc)
    if not _payloads.is_classifier_node(clf):
        last = clf
        while type(last) is Pipeline and last.steps:
            last = last.steps[-1][1]
        return (f"its classifier Pipeline ends in a {type(last).__name__}, not one of "
                f"{', '.join(_payloads.CLASSIFIERS)}")
    return None


def weights_only_savable(pipe):
    """Whether ``pipe`` is ``[features, classifier]`` of allow-listed classes (see
    :func:`why_not_savable`)."""
    return why_not_savable(pipe) is None


def pipeline_payload(pipe, model):
    """The dict :func:`save_model` writes for a fitted ``pipe`` of registered ``model``.

    A network classifier gives a format-1 payload, identical to earlier versions'; any
    other allow-listed classifier a format-2 payload (see the module docstring).
    """
    from devicepool.estimators._payloads import estimator_payload

    feats, clf = pipe.steps[0][1], pipe.steps[1][1]
    params = {k: v for k, v in feats.get_params(deep=False).items() if _plain(v)}
    node = estimator_payload(clf, path="classifier")
    version = NETWORK_FORMAT_VERSION if node["estimator"] in ESTIMATORS else FORMAT_VERSION
    from devicepool import __version__

    return {"format": FORMAT, "format_version": version, "devicepool_version": __version__,
            "model": str(model),
            "features": {"class": type(feats).__name__, "params": params},
            "classifier": node}


def check_output(path):
    """Check, before any work, that ``path`` can be written; create its parent folders.

    Returns whether a leftover ``path + ".tmp"`` (of an interrupted run) was removed.
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
    leftover = os.path.lexists(tmp)
    try:  # the probe is the temporary file itself: what the save will write
        with open(tmp, "wb"):
            pass
        os.remove(tmp)
    except OSError as exc:
        raise UsageError(f"cannot write the model file {path!r} in {parent!r}: "
                         f"{exc.strerror or exc}") from None
    return leftover


def _write_atomically(path, write):
    """``write(fh)`` into a temporary file that becomes ``path`` once complete (the
    package's one atomic writer, :func:`devicepool._io.atomic_write`)."""
    atomic_write(path, write)


def save_payload(payload, path):
    """Write a model-file payload (plain values and tensors) to ``path`` atomically."""
    import torch

    _write_atomically(path, lambda fh: torch.save(payload, fh))


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


def save_model(pipe, model, path, *, allow_pickle=False):
    """Write a fitted pipeline to ``path``: weights only, or a joblib pickle when the
    format cannot hold it and ``allow_pickle``. Returns ``"weights-only"`` or ``"pickle"``."""
    reason = why_not_savable(pipe)
    if reason is None:
        import torch

        payload = pipeline_payload(pipe, model)
        _write_atomically(path, lambda fh: torch.save(payload, fh))
        return "weights-only"
    if not allow_pickle:
        raise UsageError(f"model {model!r} cannot be saved weights-only ({reason}); "
                         "see --allow-pickle")
    import joblib

    _write_atomically(path, lambda fh: joblib.dump(pipe, fh))
    return "pickle"


# --------------------------------------------------------------------------- reading


def _file_kind(path):
    """``"zip"`` (torch.save), ``"pickle"`` (pickle or compressed joblib) or ``"other"``."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(_COMPRESSED_MAGIC):
        return "pickle"
    return "other"


def _one_line(exc, limit=200):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def pipeline_from_payload(payload, source="payload", device="cpu"):
    """Rebuild the fitted ``Pipeline`` of a :func:`pipeline_payload` dict (allow-listed
    classes only; ``ValueError`` naming ``source`` for anything else)."""
    from sklearn.pipeline import Pipeline

    from devicepool import estimators, features
    from devicepool.estimators._payloads import estimator_from_payload, is_classifier_node
    from devicepool.estimators._persistence import FORMAT as CLASSIFIER_FORMAT
    from devicepool.estimators._persistence import classifier_from_payload

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = (" (it holds a classifier alone, as written by its save(); devicepool predict "
                "needs a file of 'devicepool train')"
                if isinstance(payload, dict) and payload.get("format") == CLASSIFIER_FORMAT else "")
        raise ValueError(f"{source} is not a devicepool model file{hint}")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ValueError(f"{source} has model file format {version!r}; this devicepool reads "
                         f"format {FORMAT_VERSION} (update devicepool)")
    feats, clf = payload.get("features"), payload.get("classifier")
    fname = feats.get("class") if isinstance(feats, dict) else None
    cname = clf.get("estimator") if isinstance(clf, dict) else None
    if fname not in FEATURES:
        raise ValueError(f"{source}: unknown feature step {fname!r} in the model file "
                         f"(allowed: {', '.join(FEATURES)})")
    if cname not in CLASSIFIERS:
        raise ValueError(f"{source}: unknown classifier {cname!r} in the model file "
                         f"(allowed: {', '.join(CLASSIFIERS)})")
    try:
        step = getattr(features, fname)(**dict(feats["params"]))
        if cname in ESTIMATORS:  # format 1: read as earlier versions read it
            est = classifier_from_payload(getattr(estimators, cname), clf, source=source,
                                          device=device)
        else:
            est = estimator_from_payload(clf, source=source, device=device, path="classifier",
                                         allowed=CLASSIFIERS)
    except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise ValueError(f"{source}: damaged model file ({_one_line(exc)})") from None
    if not is_classifier_node(est):
        raise ValueError(f"{source}: the model file's classifier ({cname}) does not end in a "
                         "classifier")
    return Pipeline([("features", step), ("clf", est)])


def _load_pickle(path):
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything
        raise UsageError(f"cannot load model {os.fspath(path)!r}: {_one_line(exc)}") from None


def read_model_file(path, *, allow_pickle=False):
    """The fitted pipeline in ``path`` and the file's payload: ``(model, payload)``.

    ``payload`` is the dict of a weights-only file (with the optional ``"forensic"``
    keys of ``devicepool calibrate``), None for a pickle. The model has ``classes_`` and
    ``predict_proba`` or, as ``gsv_svm`` (a linear SVM), only ``decision_function``. A
    weights-only file is read without running code from it; a pickle is refused with a
    :class:`UsageError` unless ``allow_pickle`` (:data:`PICKLE_RISK`).
    """
    if not os.path.exists(path):
        raise UsageError(f"model file {os.fspath(path)!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"model {os.fspath(path)!r} is a folder, not a model file")
    at = where(path=path)
    kind = _file_kind(path)
    if kind == "pickle" and not allow_pickle:
        raise UsageError(f"cannot load model: {at} is a pickle (a model file of an older devicepool or "
                         f"joblib.dump), refused: {PICKLE_RISK}; pass --allow-pickle if you did")
    payload = None
    if kind != "zip" and allow_pickle:
        model = _load_pickle(path)
    else:
        from devicepool.estimators._persistence import read_weights_only

        try:
            payload = read_weights_only(path)
            model = pipeline_from_payload(payload, source=at)
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot load model: {exc}") from None
    scores = hasattr(model, "predict_proba") or hasattr(model, "decision_function")
    if not (scores and hasattr(model, "classes_")):
        raise UsageError(f"{at} is not a fitted devicepool classifier (neither predict_proba "
                         "nor decision_function)")
    return model, payload


def written_by(payload):
    """The devicepool version recorded in a model file's payload (a str), or None (a
    pickle, or a file written before the version was recorded)."""
    version = payload.get("devicepool_version") if isinstance(payload, dict) else None
    return version if isinstance(version, str) else None


def load_model(path, *, allow_pickle=False):
    """The fitted pipeline in ``path`` (a file of ``devicepool train`` or ``calibrate``).

    A weights-only file is read without running code from it. A pickle is refused with
    a :class:`UsageError` unless ``allow_pickle`` (:data:`PICKLE_RISK`).
    """
    return read_model_file(path, allow_pickle=allow_pickle)[0]
