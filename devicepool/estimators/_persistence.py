"""The classifiers' file format: weights, plain parameters and classes, no pickled code.

A file holds one dict written by :func:`torch.save` with only tensors, strings, numbers,
lists and dicts, so it is read with ``torch.load(path, weights_only=True)``: loading
never runs code from the file.

Format versions: 1 (devicepool 0.1); 2 stores the module's readings (``band_pooling``,
``batch_norm``) with the weights. A version-1 file of SA-/DA-CNN loads with the
paper's readings, which it was trained with.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._validation import where

__all__ = ["FORMAT", "FORMAT_VERSION", "save_classifier", "load_classifier", "read_weights_only"]

FORMAT = "devicepool.estimator"
FORMAT_VERSION = 2
_READINGS = ("band_pooling", "batch_norm")  # module parameters the weights belong to
_PAPER_READINGS = {"SACNN": {"module__band_pooling": "mean", "module__batch_norm": False},
                   "DACNN": {"module__band_pooling": "sum", "module__batch_norm": False}}


def _is_plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    return False


def classifier_payload(est):
    """The dict :func:`save_classifier` writes (tensors on the CPU)."""
    check_is_fitted(est)
    params = {k: v for k, v in est.get_params(deep=False).items() if _is_plain(v)}
    for name in _READINGS:
        if hasattr(est.module_, name):
            params[f"module__{name}"] = getattr(est.module_, name)
    classes = est.classes_
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": type(est).__name__,
        "params": params,
        "classes": classes.tolist(),
        "classes_dtype": classes.dtype.str if classes.dtype != object else "object",
        "n_features_in": int(est.n_features_in_),
        "state_dict": {k: v.detach().cpu() for k, v in est.module_.state_dict().items()},
    }


def save_classifier(est, path):
    """Write ``est`` (fitted) to ``path``; see the module docstring."""
    torch.save(classifier_payload(est), path)


def classifier_from_payload(cls, payload, *, source="payload", device="cpu", **overrides):
    """Rebuild a fitted ``cls`` from a payload of :func:`classifier_payload`."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{source} is not a devicepool estimator file")
    version = payload.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise ValueError(f"{source} was written by a newer devicepool (format {version})")
    if payload["estimator"] != cls.__name__:
        raise ValueError(f"{source} holds a {payload['estimator']}, not a {cls.__name__}")
    params = dict(payload["params"])
    module_cls = getattr(cls, "_module_cls", None)
    if version < 2 and module_cls is not None:
        for k, v in _PAPER_READINGS.get(module_cls.__name__, {}).items():
            params.setdefault(k, v)
    params["device"] = device
    params.update(overrides)
    est = cls(**params)
    dt = payload["classes_dtype"]
    est.fitted_classes_ = np.asarray(payload["classes"], dtype=object if dt == "object" else dt)
    est.n_features_in_ = int(payload["n_features_in"])
    est.initialize()
    est.module_.load_state_dict(payload["state_dict"])
    est.module_.to(device)
    return est


def load_classifier(cls, path, device="cpu", **overrides):
    """Read a file of :func:`save_classifier` (``weights_only`` loading) into ``cls``."""
    payload = read_weights_only(path)
    return classifier_from_payload(cls, payload, source=where(path=path), device=device,
                                   **overrides)


def read_weights_only(path):
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear error for a
    missing, corrupt or foreign file (naming it; torch's own message suggests loading
    with ``weights_only=False``, which would run code from the file: never do that
    with a file you did not write)."""
    at = where(path=path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{at}: no such model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        kind = ("it holds objects other than weights and plain values (refused: loading "
                "them would run code from the file)" if "Weights only load failed" in str(exc)
                else f"{type(exc).__name__}")
        raise ValueError(f"{at}: not a readable devicepool model file: corrupt, truncated "
                         f"or of another kind ({kind})") from None
