"""The model file of ``devicepool train``, ``predict``, ``calibrate`` and ``compare``: weights only.

``devicepool train`` writes one dict with :func:`torch.save` that holds only plain values
(strings, numbers, lists, dicts) and tensors::

    {"format": "devicepool.pipeline", "format_version": 1,
     "devicepool_version": <the devicepool that wrote the file, e.g. "0.3.0">,
     "model": <registry name>,
     "features": {"class": "FilterBank" | "DFTMagnitude", "params": <get_params()>},
     "classifier": <devicepool.estimators._persistence.classifier_payload(clf)>}

``devicepool predict`` reads it with ``torch.load(weights_only=True)``
(:func:`~devicepool.estimators._persistence.read_weights_only`) and rebuilds the
pipeline from allow-listed classes only (:data:`FEATURES`, :data:`ESTIMATORS`), so
reading a model file never runs code from it. Pickles (joblib files of older versions,
or a registered model whose classifier the format cannot hold) are written and read only
with ``allow_pickle=True`` (``--allow-pickle``): :data:`PICKLE_RISK`.

Files are written atomically: ``OUTPUT.tmp`` (flushed to disk), its mode set from the
umask (``0o666 & ~umask``), then :func:`os.replace`; an interruption removes the
temporary file, so ``OUTPUT`` is either the old file, the new one, or absent.

``devicepool_version`` is optional (files written before it was recorded lack it and
still load; :func:`written_by` reads it, None when absent). ``devicepool calibrate``
sets it to its own version and adds two optional keys (the format version stays 1: a reader
that does not know them, e.g. ``devicepool predict`` of devicepool 0.3, ignores them)::

     "forensic": <DeviceLR.to_payload(), its arrays as float64 / int64 tensors>,
     "forensic_data": {"corpus", "root", "pattern", "mode", "sample_rate",
                       "n_recordings", "n_speakers", "devices", "cllr", "cllr_min"}

(:mod:`devicepool.forensic._payload` describes the first; the second describes the
calibration corpus, the relevant population of the LRs). :func:`read_model_file` returns
the payload with the pipeline, and :func:`save_payload` writes a payload as
:func:`save_model` does.
"""

from __future__ import annotations

import contextlib
import os

from .._validation import where
from ._common import UsageError

__all__ = ["FORMAT", "FORMAT_VERSION", "FEATURES", "ESTIMATORS", "PICKLE_RISK", "check_output",
           "weights_only_savable", "pipeline_payload", "pipeline_from_payload", "save_model",
           "save_payload", "read_model_file", "load_model", "model_name_of", "written_by"]

FORMAT = "devicepool.pipeline"
FORMAT_VERSION = 1
#: feature transformers of :mod:`devicepool.features` a model file may name
FEATURES = ("FilterBank", "DFTMagnitude")
#: classifiers of :mod:`devicepool.estimators` a model file may name
ESTIMATORS = ("SACNNClassifier", "DACNNClassifier", "DFTCNNClassifier")
PICKLE_RISK = "loading a pickle runs any code it contains; only for files you wrote yourself"

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18",
                     b"x\x01", b"x\x5e", b"x\x9c", b"x\xda")  # joblib's compressors


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


# --------------------------------------------------------------------------- writing


def weights_only_savable(pipe):
    """Whether ``pipe`` is ``[features, classifier]`` of allow-listed devicepool classes."""
    from sklearn.pipeline import Pipeline

    from devicepool import estimators, features

    if not isinstance(pipe, Pipeline) or len(pipe.steps) != 2:
        return False
    feats, clf = pipe.steps[0][1], pipe.steps[1][1]
    return (any(type(feats) is getattr(features, n) for n in FEATURES)
            and any(type(clf) is getattr(estimators, n) for n in ESTIMATORS))


def pipeline_payload(pipe, model):
    """The dict :func:`save_model` writes for a fitted ``pipe`` of registered ``model``."""
    from devicepool.estimators._persistence import classifier_payload

    feats, clf = pipe.steps[0][1], pipe.steps[1][1]
    params = {k: v for k, v in feats.get_params(deep=False).items() if _plain(v)}
    from devicepool import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "devicepool_version": __version__,
            "model": str(model),
            "features": {"class": type(feats).__name__, "params": params},
            "classifier": classifier_payload(clf)}


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


def _umask():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it; set it straight back
    os.umask(mask)
    return mask


def _write_atomically(path, write):
    """``write(fh)`` into ``path + ".tmp"``, flush it to disk, then rename it to ``path``."""
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave a half-written file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_payload(payload, path):
    """Write a model-file payload (plain values and tensors) to ``path`` atomically."""
    import torch

    _write_atomically(path, lambda fh: torch.save(payload, fh))


def model_name_of(pipe):
    """The registry name of a devicepool pipeline's classifier (for a pickled pipeline,
    whose file does not record it): ``da_cnn``, ``sa_cnn``, ``dft_cnn``, else the
    classifier's class name."""
    names = {"DACNNClassifier": "da_cnn", "SACNNClassifier": "sa_cnn", "DFTCNNClassifier": "dft_cnn"}
    name = type(pipe.steps[-1][1]).__name__
    return names.get(name, name)


def save_model(pipe, model, path, *, allow_pickle=False):
    """Write a fitted pipeline to ``path``: weights only, or a joblib pickle when the
    format cannot hold it and ``allow_pickle``. Returns ``"weights-only"`` or ``"pickle"``."""
    if weights_only_savable(pipe):
        import torch

        payload = pipeline_payload(pipe, model)
        _write_atomically(path, lambda fh: torch.save(payload, fh))
        return "weights-only"
    if not allow_pickle:
        raise UsageError(f"model {model!r} cannot be saved weights-only; see --allow-pickle")
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
    from devicepool.estimators._persistence import FORMAT as CLASSIFIER_FORMAT
    from devicepool.estimators._persistence import classifier_from_payload

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = (" (it holds a classifier alone, as written by its save(); devicepool predict "
                "needs a file of 'devicepool train')"
                if isinstance(payload, dict) and payload.get("format") == CLASSIFIER_FORMAT else "")
        raise ValueError(f"{source} is not a devicepool model file{hint}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{source} has model file format {version!r}; this devicepool reads "
                         f"format {FORMAT_VERSION} (update devicepool)")
    feats, clf = payload.get("features"), payload.get("classifier")
    fname = feats.get("class") if isinstance(feats, dict) else None
    cname = clf.get("estimator") if isinstance(clf, dict) else None
    if fname not in FEATURES:
        raise ValueError(f"{source}: unknown feature step {fname!r} in the model file "
                         f"(allowed: {', '.join(FEATURES)})")
    if cname not in ESTIMATORS:
        raise ValueError(f"{source}: unknown classifier {cname!r} in the model file "
                         f"(allowed: {', '.join(ESTIMATORS)})")
    try:
        step = getattr(features, fname)(**dict(feats["params"]))
        est = classifier_from_payload(getattr(estimators, cname), clf, source=source, device=device)
    except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise ValueError(f"{source}: damaged model file ({_one_line(exc)})") from None
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
    keys of ``devicepool calibrate``), None for a pickle. A weights-only file is read
    without running code from it; a pickle is refused with a :class:`UsageError`
    unless ``allow_pickle`` (:data:`PICKLE_RISK`).
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
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise UsageError(f"{at} is not a fitted devicepool classifier (no predict_proba)")
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
