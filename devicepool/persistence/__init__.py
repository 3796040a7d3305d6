"""One file format for every fitted devicepool object: :func:`dump` and :func:`load`.

A file is one dict of plain values and tensors written by :func:`torch.save` and read with
``torch.load(weights_only=True)``, so loading never runs code from the file. Each estimator
is a *node* (qualified class name, ``get_params(deep=False)``, the rest of its pickle
state); only the classes of :data:`ALLOWED` are written, or imported when read; hooks store
the networks' and ``DeviceEmbedding``'s torch state. The layout is in ``docs/design.md``
("The file format"). Files of devicepool 0.1-0.5 are read through :mod:`._legacy`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings

import numpy as np
import torch

from .._io import atomic_write
from .._validation import where
from . import _legacy

__all__ = ["ALLOWED", "FIT_ONLY", "FORMAT", "FORMAT_VERSION", "check_savable", "dump", "load",
           "read", "to_payload", "from_payload"]

FORMAT = "devicepool.pipeline"  # the tag of 0.3: older readers answer "update devicepool"
FORMAT_VERSION = 3
_NETWORK, _EMBEDDING = "network", "embedding"
#: qualified name -> hook (None: the generic node): the only classes a file may name
ALLOWED = {
    "devicepool.features.FilterBank": None, "devicepool.features.DFTMagnitude": None,
    "devicepool.features.Waveform": None, "devicepool.features.MFCC": None,
    "devicepool.estimators.GaussianSupervector": None, "devicepool.estimators.GMMUBMClassifier": None,
    "devicepool.estimators.FusionClassifier": None,
    "devicepool.estimators.SACNNClassifier": _NETWORK, "devicepool.estimators.DACNNClassifier": _NETWORK,
    "devicepool.estimators.DFTCNNClassifier": _NETWORK, "devicepool.estimators.DeviceEmbedding": _EMBEDDING,
    "devicepool.forensic.DeviceLR": None, "devicepool.forensic.OpenSetClassifier": None,
    "devicepool.forensic.PLDAScorer": None, "devicepool.forensic.CosineScorer": None,
    "devicepool.forensic.SNormCosineScorer": None, "devicepool.forensic.LogisticCalibrator": None,
    "devicepool.forensic.IsotonicCalibrator": None, "sklearn.isotonic.IsotonicRegression": None,
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis": None,
    "sklearn.pipeline.Pipeline": None, "sklearn.mixture.GaussianMixture": None, "sklearn.svm.LinearSVC": None,
}
#: parameters added with a new default: the value a file written before them meant
#: (DFTMagnitude's segments were not tapered before 0.6)
_BEFORE = {"devicepool.features.DFTMagnitude": {"window": None}}
#: the same for the readings of devicepool's own networks, where their module takes them
#: (SA-/DA-CNN normalised no utterance's level or tilt before 0.6)
_READINGS_BEFORE = {"utterance_norm": 0}
FIT_ONLY = frozenset("random_state memory class_weight weights_init means_init precisions_init".split())
_PLAIN = (type(None), bool, int, float, str)
#: a network's module parameters its weights belong to
_READINGS = ("band_pooling", "batch_norm", "utterance_norm")
_EMBEDDING_NET = ("n_features", "backbone", "channels", "embedding_dim")  # DeviceEmbeddingNet(...)


def _class(name):
    module, attr = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), attr)


def _name_of(est):
    """The allow-list name of ``est``'s exact class, or None."""
    cls = type(est)
    for name in ALLOWED:
        if name.endswith(f".{cls.__name__}") and _class(name) is cls:
            return name
    return None


def _is_pair(v, kind=tuple):
    return isinstance(v, kind) and len(v) == 2 and isinstance(v[0], str)


def _pair_name(x, i):
    """The name of a stored ``(name, estimator)`` pair (a Pipeline's step), else ``i``."""
    return x["__tuple__"][0] if isinstance(x, dict) and _is_pair(x.get("__tuple__"), list) else i


class _Writer:
    """Objects to nodes; ``check``: only whether they could be (unfitted networks pass)."""

    def __init__(self, check=False):
        self.ids, self.check = {}, check

    def node(self, est, path):
        if id(est) in self.ids:
            return {"__ref__": self.ids[id(est)]}
        name = _name_of(est)
        if name is None:
            cls = type(est)
            raise ValueError(f"{path}: {cls.__module__}.{cls.__qualname__} cannot be saved in a "
                             "weights-only model file (not in devicepool.persistence.ALLOWED)")
        node = {"class": name, "id": len(self.ids)}
        self.ids[id(est)] = node["id"]
        params = est.get_params(deep=False)
        if ALLOWED[name] == _NETWORK:  # parameters that are not plain (callbacks...): defaults
            return dict(node, **({} if self.check else self.network(est, {
                k: self.value(v, path, "") for k, v in params.items() if _plain(v)})))
        kept = {}
        for key, value in params.items():
            try:
                kept[key] = self.value(value, f"{path}.{key}", f"parameter {key!r} of {type(est).__name__}")
            except ValueError:
                if key not in FIT_ONLY:
                    raise
        if ALLOWED[name] == _EMBEDDING:
            net = getattr(est, "network_", None)
            return dict(node, params=kept, fitted={} if net is None else {
                "network": {k: getattr(net, k) for k in _EMBEDDING_NET}, "state_dict": _state_dict(net),
                "sample_rate_": int(est.sample_rate_), "n_mels_": int(est.n_mels_)})
        fitted = {k: self.value(v, f"{path}.{k}", f"attribute {k!r}") for k, v in est.__getstate__().items()
                  if k not in params and k != "_sklearn_version"}
        return dict(node, params=kept, fitted=fitted)

    def network(self, est, params):
        if not est.__sklearn_is_fitted__():  # a template (of a fusion): its parameters
            return {"params": params, "fitted": {}}
        params.update({f"module__{r}": getattr(est.module_, r) for r in _READINGS if hasattr(est.module_, r)})
        return {"params": dict(sorted(params.items())), "fitted": {  # sorted: the same node once loaded
            "fitted_classes_": self.value(est.fitted_classes_, "", "classes"),
            "n_features_in_": int(est.n_features_in_), "state_dict": _state_dict(est.module_)}}

    def value(self, v, path, what):
        if isinstance(v, np.generic):
            return dict(_array(np.asarray(v), path, what), scalar=True)
        if isinstance(v, _PLAIN):
            return v
        if isinstance(v, torch.Tensor):
            return v.detach().cpu()
        if isinstance(v, np.ndarray):
            return _array(v, path, what)
        if isinstance(v, (list, tuple)):
            if _is_pair(v):
                return {"__tuple__": [v[0], self.value(v[1], path, what)]}
            items = [self.value(x, f"{path}[{x[0]!r}]" if _is_pair(x) else f"{path}[{i}]", what)
                     for i, x in enumerate(v)]
            return items if isinstance(v, list) else {"__tuple__": items}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"__dict__": {k: self.value(x, f"{path}[{k!r}]", what) for k, x in v.items()}}
        if hasattr(v, "get_params"):
            return self.node(v, path)
        raise ValueError(f"{path}: {what} is a {type(v).__name__}, not a value the weights-only "
                         "model file can hold")


def _state_dict(module):
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _plain(v):
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return isinstance(v, _PLAIN) and not isinstance(v, np.generic)


def _array(a, path, what):
    """An array as ``{"__ndarray__": tensor}`` (same dtype and C/F layout) or, for labels
    and other dtypes torch lacks, ``{"__ndarray__": list, "dtype": str}``."""
    if a.dtype.kind in "biufc" and not (a.dtype.kind == "u" and a.dtype.itemsize > 1):
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if not (a.flags.c_contiguous or a.flags.f_contiguous) or not a.flags.writeable:
            a = np.array(a, order="K" if a.flags.f_contiguous else "C")
        return {"__ndarray__": torch.from_numpy(a)}
    values = a.tolist()
    if not _plain(values):
        raise ValueError(f"{path}: {what} is an array of dtype {a.dtype} holding objects other "
                         "than plain values; the weights-only model file cannot hold it")
    return {"__ndarray__": values, "dtype": "object" if a.dtype == object else a.dtype.str}


class _Reader:
    """Nodes to objects, allow-listed classes only; errors name the file and the place."""

    def __init__(self, source, device="cpu", overrides=None):
        self.source, self.device, self.overrides, self.objects = source, device, overrides or {}, {}

    def damaged(self, path, why):
        return ValueError(f"{self.source}: damaged model file: {path} {why}")

    def node(self, node, path, top=False):
        name = node.get("class")
        if name not in ALLOWED:
            raise ValueError(f"{self.source}: unknown class {name!r} at {path} in the model file "
                             "(not in devicepool.persistence.ALLOWED)")
        if not (isinstance(node.get("params"), dict) and isinstance(node.get("fitted"), dict)
                and all(isinstance(k, str) and not k.startswith("__") for k in node["fitted"])):
            raise self.damaged(path, f"({name.rsplit('.', 1)[1]}) has no parameters or fitted state")
        cls = _class(name)
        params = {k: self.value(v, f"{path}.{k}") for k, v in node["params"].items()}
        params = dict(_BEFORE.get(name, {}), **params)
        try:
            if ALLOWED[name] == _NETWORK:
                est = self.network(cls, params, node["fitted"], path, top)
            elif ALLOWED[name] == _EMBEDDING:
                est = self.embedding(cls(**params), node["fitted"])
            else:
                est = _construct(cls, params, self.source, path)
                state = {k: self.value(v, f"{path}.{k}") for k, v in node["fitted"].items()}
                if name.startswith("sklearn."):  # of this scikit-learn: _construct checked the parameters
                    state["_sklearn_version"] = importlib.import_module("sklearn").__version__
                est.__setstate__(state)
        except (KeyError, TypeError, AttributeError, RuntimeError, IndexError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise self.damaged(path, f"({cls.__name__}): {type(exc).__name__}: {text}") from None
        self.objects[node.get("id")] = est
        return est

    def network(self, cls, params, fitted, path, top):
        params["device"] = self.device
        params = dict(params, **(self.overrides if top else {}))
        if params.get("module") is None:  # devicepool's network: readings added since the file
            takes = inspect.signature(cls._module_cls).parameters
            params.update({f"module__{r}": v for r, v in _READINGS_BEFORE.items()
                           if r in takes and f"module__{r}" not in params})
        est = cls(**params)
        if not fitted:
            return est
        est.fitted_classes_ = self.value(fitted["fitted_classes_"], f"{path}.fitted_classes_")
        est.n_features_in_ = int(fitted["n_features_in_"])
        est.initialize()
        est.module_.load_state_dict(fitted["state_dict"])
        est.module_.to(self.device)
        return est

    def embedding(self, est, fitted):
        if fitted:  # the network, for inference only
            net = _class("devicepool.models.embedding_net.DeviceEmbeddingNet")(**fitted["network"])
            net.load_state_dict(fitted["state_dict"])
            est.network_ = net.eval().requires_grad_(False)
            est.sample_rate_, est.n_mels_ = int(fitted["sample_rate_"]), int(fitted["n_mels_"])
            est.embedding_dim_ = net.embedding_dim
        return est

    def value(self, v, path):
        if isinstance(v, _PLAIN) or isinstance(v, torch.Tensor):
            return v
        if isinstance(v, list):
            return [self.value(x, f"{path}[{_pair_name(x, i)!r}]") for i, x in enumerate(v)]
        if isinstance(v, dict) and "class" in v:
            return self.node(v, path)
        if isinstance(v, dict) and "__ref__" in v and v["__ref__"] in self.objects:
            return self.objects[v["__ref__"]]
        if isinstance(v, dict) and isinstance(v.get("__tuple__"), list):
            return tuple(self.value(x, path) for x in v["__tuple__"])
        if isinstance(v, dict) and isinstance(v.get("__dict__"), dict):
            return {k: self.value(x, f"{path}[{k!r}]") for k, x in v["__dict__"].items()}
        if isinstance(v, dict) and "__ndarray__" in v:
            a = v["__ndarray__"]
            try:
                a = (a.numpy() if isinstance(a, torch.Tensor) else
                     np.asarray(a, dtype=object if v["dtype"] == "object" else np.dtype(v["dtype"])))
            except (KeyError, TypeError, ValueError):
                raise self.damaged(path, "is not a readable array") from None
            return a[()] if v.get("scalar") else a
        raise self.damaged(path, f"holds a {type(v).__name__} of no known kind")


def _construct(cls, params, source, path):
    """``cls(**params)``; a scikit-learn parameter of another version that is None (its
    default there) is dropped, any other unknown one is an error naming it."""
    if cls.__module__.startswith("sklearn."):
        known = set(cls._get_param_names())
        unknown = sorted(k for k in params if k not in known)
        if any(params[k] is not None for k in unknown):
            raise ValueError(f"{source}: {path}: {cls.__name__} of this scikit-learn has no "
                             f"parameter(s) {unknown} (the file was written with another scikit-learn)")
        params = {k: v for k, v in params.items() if k in known}
    return cls(**params)


def check_savable(est, path="object"):
    """Raise ``ValueError`` (naming what and where) unless :func:`dump` can hold ``est`` once
    fitted (allow-listed classes, storable parameters); ``devicepool train`` asks before fitting."""
    _Writer(check=True).node(est, path)


def to_payload(obj, provenance=None):
    """The dict :func:`dump` writes (plain values and CPU tensors only)."""
    from .. import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "devicepool_version": __version__,
            "provenance": _tensors(provenance or {}), "object": _Writer().node(obj, "object")}


def _tensors(v):
    """``v`` with arrays as tensors and numpy scalars as Python ones (dicts and lists too)."""
    if isinstance(v, dict):
        return {k: _tensors(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_tensors(x) for x in v)
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    return v.item() if isinstance(v, np.generic) else v


def dump(obj, path, *, provenance=None):
    """Write a fitted devicepool object (or a ``Pipeline`` of them) to ``path`` atomically.

    Parameters
    ----------
    obj : estimator
        Of an :data:`ALLOWED` class, as is every estimator inside it.
    path : str or os.PathLike
    provenance : dict, optional
        Plain values, arrays and tensors to keep with it (:func:`read` returns them, arrays
        as tensors).

    Raises
    ------
    ValueError
        A class outside :data:`ALLOWED` or a value the format cannot hold, named with
        its place (e.g. ``object.steps['clf'].steps['svm']``).
    """
    payload = to_payload(obj, provenance)
    atomic_write(path, lambda fh: torch.save(payload, fh))


def from_payload(payload, *, source="payload", device="cpu", **overrides):
    """``(object, provenance)`` of a payload of :func:`to_payload` or of an older format;
    ``overrides``: constructor parameters of a network at the top."""
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str):
        raise ValueError(f"{source} is not a devicepool model file")
    version = payload.get("format_version", 1)
    if payload["format"] == FORMAT and (not isinstance(version, int) or version > FORMAT_VERSION):
        raise ValueError(f"{source} has model file format {version!r}; this devicepool reads "
                         f"format {FORMAT_VERSION} (update devicepool)")
    old = payload["format"] != FORMAT or version < 3
    payload, fusions = _legacy.translate(payload, source, ALLOWED) if old else (payload, ())
    if not isinstance(payload.get("object"), dict):
        raise ValueError(f"{source}: damaged model file: it holds no object")
    reader = _Reader(source, device, overrides)
    provenance = dict(payload.get("provenance") or {})
    obj = reader.node(payload["object"], "object", top=True)
    _legacy.fix_fusions(reader.objects, fusions)
    if isinstance(payload.get("devicepool_version"), str):
        provenance["devicepool_version"] = payload["devicepool_version"]
    return obj, provenance


def _file_kind(path):
    """``"zip"`` (torch.save), ``"pickle"`` (pickle or compressed joblib) or ``"other"``."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    compressed = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18", b"x\x01", b"x\x5e",
                  b"x\x9c", b"x\xda")  # joblib's compressors
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    pickled = (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(compressed)
    return "pickle" if pickled else "other"


def read_weights_only(path):
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear error naming a
    missing, corrupt or foreign file (torch's own message suggests ``weights_only=False``,
    which would run code from the file: never do that with a file you did not write)."""
    at = where(path=path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{at}: no such model file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the error says it
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        kind = ("it holds objects other than weights and plain values (refused: loading them "
                "would run code from the file)" if "Weights only load failed" in str(exc)
                else type(exc).__name__)
        raise ValueError(f"{at}: not a readable devicepool model file: corrupt, truncated or of "
                         f"another kind ({kind})") from None


def read(path, *, device="cpu", allow_pickle=False, **overrides):
    """``(object, provenance)`` of a file of :func:`dump` or of devicepool 0.1-0.5.

    Parameters
    ----------
    path : str or os.PathLike
    device : str, default="cpu"
        Where the networks' modules go (weights are stored on the CPU).
    allow_pickle : bool, default=False
        Load a pickle (``joblib.dump``) too: that runs any code it holds.
    **overrides
        Constructor parameters replacing the stored ones of a network at the top.

    Returns
    -------
    obj : estimator
    provenance : dict
        What :func:`dump` was given (with ``devicepool_version``); None for a pickle.

    Raises
    ------
    FileNotFoundError
    ValueError
        Not a devicepool file, a pickle (unless ``allow_pickle``), a class outside
        :data:`ALLOWED`, a newer format or a damaged file; the message names the file.
    """
    at = where(path=path)
    kind = _file_kind(path) if os.path.isfile(path) else "zip"
    if kind != "zip" and allow_pickle:
        import joblib

        return joblib.load(path), None
    if kind == "pickle":
        raise ValueError(f"{at} is a pickle (a model file of an older devicepool or joblib.dump), "
                         "refused: loading a pickle runs any code it contains; only for files you wrote "
                         "yourself")
    return from_payload(read_weights_only(path), source=at, device=device, **overrides)


def load(path, *, device="cpu", allow_pickle=False, **overrides):
    """The object of :func:`read` (without its provenance)."""
    return read(path, device=device, allow_pickle=allow_pickle, **overrides)[0]
