"""Plain values of the weights-only payloads (:mod:`._payloads`): numpy scalars made
Python ones, parameters checked to be plain, arrays as tensors of their own dtype and
layout, class labels, typed reading of a node's fitted state, construction of an
allow-listed class from stored parameters."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FIT_ONLY_PARAMS"]

#: parameters that only steer fitting: left out of a payload when not plain values
FIT_ONLY_PARAMS = frozenset({"random_state", "memory", "class_weight", "weights_init",
                             "means_init", "precisions_init"})


def _clean(value):
    """``value`` with numpy scalars turned into Python ones (lists, tuples, dicts too)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (bool, int, float, str)) and _plain(v) for k, v in value.items())
    return False


def _params(est, path, skip=()):
    """``est.get_params(deep=False)`` as plain values (see the module docstring)."""
    out = {}
    for key, value in est.get_params(deep=False).items():
        if key in skip:
            continue
        value = _clean(value)
        if _plain(value):
            out[key] = value
        elif key not in FIT_ONLY_PARAMS:
            raise ValueError(f"{path}: parameter {key!r} of {type(est).__name__} is a "
                             f"{type(value).__name__}, not a plain value; the weights-only "
                             "model file cannot hold it")
    return out


def _tensor(array, path):
    """A numeric array as a tensor of the same dtype, values and (C or F) layout."""
    a = np.asarray(array)
    if a.dtype.kind not in "biufc" or (a.dtype.kind == "u" and a.dtype.itemsize > 1):
        raise ValueError(f"{path}: an array of dtype {a.dtype} cannot be stored as a tensor")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not (a.flags.c_contiguous or a.flags.f_contiguous) or not a.flags.writeable:
        a = np.array(a, order="K" if a.flags.f_contiguous else "C")
    return torch.from_numpy(a)


def _labels(array, path):
    """Class labels (any dtype, object included) as ``{"values", "dtype"}``."""
    a = np.asarray(array)
    values = _clean(a.tolist())
    if not _plain(values):
        raise ValueError(f"{path}: labels of dtype {a.dtype} are not plain values; the "
                         "weights-only model file cannot hold them")
    return {"values": values, "dtype": "object" if a.dtype == object else a.dtype.str}


class _Fields:
    """Typed reading of a node's ``"fitted"`` dict; errors name the field."""

    def __init__(self, node, path, source):
        fitted = node.get("fitted")
        if not isinstance(fitted, dict):
            raise ValueError(f"{source}: damaged model file: {path} has no fitted state")
        self.fitted, self.path, self.source = fitted, path, source

    def _get(self, key):
        if key not in self.fitted:
            raise ValueError(f"{self.source}: damaged model file: {self.path}.{key} is missing")
        return self.fitted[key]

    def _bad(self, key, what):
        value = self.fitted.get(key)
        return ValueError(f"{self.source}: damaged model file: {self.path}.{key} should be "
                          f"{what}, not a {type(value).__name__}")

    def has(self, key):
        return key in self.fitted

    def array(self, key):
        value = self._get(key)
        if not isinstance(value, torch.Tensor):
            raise self._bad(key, "a tensor")
        return value.detach().cpu().numpy()

    def int(self, key):
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an int")
        return value

    def float(self, key):
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, "a number")
        return float(value)

    def bool(self, key):
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "a bool")
        return value

    def labels(self, key):
        value = self._get(key)
        if not (isinstance(value, dict) and isinstance(value.get("values"), list)
                and isinstance(value.get("dtype"), str)):
            raise self._bad(key, "labels ({'values': [...], 'dtype': ...})")
        try:
            dtype = object if value["dtype"] == "object" else np.dtype(value["dtype"])
            return np.asarray(value["values"], dtype=dtype)
        except (TypeError, ValueError):
            raise self._bad(key, f"labels of dtype {value['dtype']!r}") from None

    def floats(self, key):
        value = self._get(key)
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                                and not isinstance(v, bool)
                                                for k, v in value.items())):
            raise self._bad(key, "a dict of str -> float")
        return {k: float(v) for k, v in value.items()}


def _node_params(node, path, source):
    params = node.get("params")
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"{source}: damaged model file: {path} has no parameters")
    return dict(params)


def _construct(cls, params, path, source):
    """``cls(**params)``; scikit-learn parameters of another version that are None (its
    default there) are dropped, any other unknown one is an error naming it."""
    known = set(cls._get_param_names()) if cls.__module__.startswith("sklearn.") else None
    if known is not None:
        unknown = sorted(k for k in params if k not in known)
        if any(params[k] is not None for k in unknown):
            raise ValueError(f"{source}: {path}: {cls.__name__} of this scikit-learn has no "
                             f"parameter(s) {unknown} (the file was written with another "
                             "scikit-learn)")
        params = {k: v for k, v in params.items() if k in known}
    return cls(**params)
