"""Weights-only payloads of the classical systems, the fusion and the pipelines around them.

:func:`estimator_payload` turns a fitted estimator into a *node*: a dict of plain values
(``None``, bool, int, float, str, and lists, tuples and dicts of them) and tensors, which
:func:`torch.save` writes and ``torch.load(weights_only=True)`` reads back without
running code; :func:`estimator_from_payload` rebuilds the estimator. Only the classes of
:data:`ALLOWED` are written or read: a class name in a payload is looked up in that dict
(never imported by the name the file gives), and anything else is refused with a
``ValueError`` naming it. Only the attributes listed below are set on a rebuilt
estimator.

Every node names its class under ``"estimator"``. The nodes::

    FilterBank | DFTMagnitude | Waveform
        {"estimator", "params"}
    MFCC
        {"estimator", "params"}       params["filterbank"]: None or a FilterBank node
    GaussianMixture
        {"estimator", "params", "fitted": {"weights_", "means_", "covariances_",
         "precisions_cholesky_", "precisions_": tensors; "converged_": bool,
         "n_iter_": int, "lower_bound_": float, "n_features_in_": int,
         optional "lower_bounds_": list of float}}
    GaussianSupervector
        {"estimator", "params", "fitted": {"ubm_": GaussianMixture node,
         "n_features_in_": int, "n_ubm_frames_": int}}
    GMMUBMClassifier
        {"estimator", "params", "fitted": {"classes_": labels, "ubm_": GaussianMixture
         node, "means_": tensor, "calibration_": [float a, tensor b],
         "n_features_in_": int, "n_ubm_frames_": int}}
    LinearSVC (scikit-learn)
        {"estimator", "params", "fitted": {"classes_": labels, "coef_", "intercept_":
         tensors, "n_features_in_": int, "n_iter_": int,
         optional "feature_names_in_": labels}}
    Pipeline (scikit-learn)
        {"estimator", "params": {"memory", "transform_input", "verbose"},
         "steps": [[name, node | None | "passthrough"], ...]}
    FusionClassifier
        {"estimator", "params": <all but estimators>, "fitted": {"classes_": labels,
         "names": [str], "estimators_": [node, ...], "weights_", "offsets_": tensors,
         "dev_cross_entropy_", "dev_accuracy_": {str: float}, "n_dev_": int}}
    SACNNClassifier | DACNNClassifier | DFTCNNClassifier
        devicepool.estimators._persistence.classifier_payload(est), unchanged

``labels`` is ``{"values": list, "dtype": numpy dtype string or "object"}``. Numeric
arrays are tensors of the array's own dtype (float64 stays float64) and memory layout, so
a rebuilt estimator computes bit-identical outputs. A rebuilt
:class:`~devicepool.estimators.FusionClassifier` gets ``estimators`` = clones of its
fitted members (the unfitted templates have the same parameters).

Parameters are stored with ``get_params(deep=False)``; numpy scalars become Python
numbers. A parameter that is not a plain value is refused (``ValueError``), except the
ones that only steer fitting (:data:`FIT_ONLY_PARAMS`: a ``RandomState``, a joblib
``Memory``, initial arrays of a mixture...), which are left out: the rebuilt estimator
has the class's default for them and predicts the same.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from ._payload_values import (
    FIT_ONLY_PARAMS,
    _construct,
    _Fields,
    _labels,
    _node_params,
    _params,
    _tensor,
)

__all__ = ["ALLOWED", "NETWORKS", "CLASSIFIERS", "FIT_ONLY_PARAMS", "estimator_payload",
           "estimator_from_payload", "check_savable", "savable", "is_classifier_node"]

#: class name -> (module, attribute): the only classes a payload may name
ALLOWED = {
    "FilterBank": ("devicepool.features", "FilterBank"),
    "DFTMagnitude": ("devicepool.features", "DFTMagnitude"),
    "Waveform": ("devicepool.features", "Waveform"),
    "MFCC": ("devicepool.features", "MFCC"),
    "GaussianMixture": ("sklearn.mixture", "GaussianMixture"),
    "GaussianSupervector": ("devicepool.estimators.classical", "GaussianSupervector"),
    "GMMUBMClassifier": ("devicepool.estimators.classical", "GMMUBMClassifier"),
    "LinearSVC": ("sklearn.svm", "LinearSVC"),
    "Pipeline": ("sklearn.pipeline", "Pipeline"),
    "FusionClassifier": ("devicepool.estimators.fusion", "FusionClassifier"),
    "SACNNClassifier": ("devicepool.estimators.classifiers", "SACNNClassifier"),
    "DACNNClassifier": ("devicepool.estimators.classifiers", "DACNNClassifier"),
    "DFTCNNClassifier": ("devicepool.estimators.classifiers", "DFTCNNClassifier"),
}
#: the networks, stored as :func:`~devicepool.estimators._persistence.classifier_payload`
NETWORKS = ("SACNNClassifier", "DACNNClassifier", "DFTCNNClassifier")
#: allow-listed classifiers (a Pipeline is one when its last step is)
CLASSIFIERS = NETWORKS + ("GMMUBMClassifier", "LinearSVC", "FusionClassifier")


def _is_passthrough(step):
    """A Pipeline step that is no estimator: None or ``"passthrough"``."""
    return step is None or (isinstance(step, str) and step == "passthrough")


def _allowed_class(name):
    module, attr = ALLOWED[name]
    return getattr(importlib.import_module(module), attr)


def _name_of(est):
    """The allow-list name of ``est``'s exact class (not a subclass), or None."""
    name = type(est).__name__
    if name in ALLOWED and type(est) is _allowed_class(name):
        return name
    return None


def _one_line(exc, limit=200):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


# --------------------------------------------------------------------------- the codecs
# each codec: encode(est, path) -> node; decode(cls, node, ctx, path) -> est;
# children(est, path) -> [(path, child)] of an unfitted estimator (for check_savable)


def _enc_simple(est, path):
    return {"estimator": type(est).__name__, "params": _params(est, path)}


def _dec_simple(cls, node, ctx, path):
    return _construct(cls, _node_params(node, path, ctx[0]), path, ctx[0])


def _enc_mfcc(est, path):
    params = _params(est, path, skip=("filterbank",))
    fb = est.filterbank
    params["filterbank"] = None if fb is None else _encode(fb, f"{path}.filterbank", ("FilterBank",))
    return {"estimator": "MFCC", "params": params}


def _dec_mfcc(cls, node, ctx, path):
    params = _node_params(node, path, ctx[0])
    fb = params.get("filterbank")
    if fb is not None:
        params["filterbank"] = _decode(fb, ctx, f"{path}.filterbank", ("FilterBank",))
    return _construct(cls, params, path, ctx[0])


def _children_mfcc(est, path):
    return [] if est.filterbank is None else [(f"{path}.filterbank", est.filterbank, ("FilterBank",))]


_GMM_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def _enc_gmm(est, path):
    fitted = {k: _tensor(getattr(est, k), f"{path}.{k}") for k in _GMM_ARRAYS}
    fitted.update(converged_=bool(est.converged_), n_iter_=int(est.n_iter_),
                  lower_bound_=float(est.lower_bound_), n_features_in_=int(est.n_features_in_))
    if hasattr(est, "lower_bounds_"):
        fitted["lower_bounds_"] = [float(v) for v in est.lower_bounds_]
    return {"estimator": "GaussianMixture", "params": _params(est, path), "fitted": fitted}


def _dec_gmm(cls, node, ctx, path):
    est = _dec_simple(cls, node, ctx, path)
    f = _Fields(node, path, ctx[0])
    for key in _GMM_ARRAYS:
        setattr(est, key, f.array(key))
    est.converged_ = f.bool("converged_")
    est.n_iter_ = f.int("n_iter_")
    est.lower_bound_ = np.float64(f.float("lower_bound_"))
    est.n_features_in_ = f.int("n_features_in_")
    if f.has("lower_bounds_"):
        bounds = f.fitted["lower_bounds_"]
        if not isinstance(bounds, list):
            raise f._bad("lower_bounds_", "a list")
        est.lower_bounds_ = [float(v) for v in bounds]
    return est


def _enc_gsv(est, path):
    fitted = {"ubm_": _encode(est.ubm_, f"{path}.ubm_", ("GaussianMixture",)),
              "n_features_in_": int(est.n_features_in_), "n_ubm_frames_": int(est.n_ubm_frames_)}
    return {"estimator": type(est).__name__, "params": _params(est, path), "fitted": fitted}


def _dec_gsv(cls, node, ctx, path):
    est = _dec_simple(cls, node, ctx, path)
    f = _Fields(node, path, ctx[0])
    est.ubm_ = _decode(f._get("ubm_"), ctx, f"{path}.ubm_", ("GaussianMixture",))
    est.n_features_in_ = f.int("n_features_in_")
    est.n_ubm_frames_ = f.int("n_ubm_frames_")
    return est


def _enc_gmmubm(est, path):
    node = _enc_gsv(est, path)
    a, b = est.calibration_
    node["fitted"].update(classes_=_labels(est.classes_, f"{path}.classes_"),
                          means_=_tensor(est.means_, f"{path}.means_"),
                          calibration_=[float(a), _tensor(b, f"{path}.calibration_")])
    return node


def _dec_gmmubm(cls, node, ctx, path):
    est = _dec_gsv(cls, node, ctx, path)
    f = _Fields(node, path, ctx[0])
    est.classes_ = f.labels("classes_")
    est.means_ = f.array("means_")
    cal = f._get("calibration_")
    if not (isinstance(cal, (list, tuple)) and len(cal) == 2 and isinstance(cal[0], (int, float))
            and not isinstance(cal[0], bool) and isinstance(cal[1], torch.Tensor)):
        raise f._bad("calibration_", "[float, tensor]")
    est.calibration_ = (float(cal[0]), cal[1].detach().cpu().numpy())
    return est


def _enc_svm(est, path):
    fitted = {"classes_": _labels(est.classes_, f"{path}.classes_"),
              "coef_": _tensor(est.coef_, f"{path}.coef_"),
              "intercept_": _tensor(est.intercept_, f"{path}.intercept_"),
              "n_features_in_": int(est.n_features_in_), "n_iter_": int(est.n_iter_)}
    if hasattr(est, "feature_names_in_"):
        fitted["feature_names_in_"] = _labels(est.feature_names_in_, f"{path}.feature_names_in_")
    return {"estimator": "LinearSVC", "params": _params(est, path), "fitted": fitted}


def _dec_svm(cls, node, ctx, path):
    est = _dec_simple(cls, node, ctx, path)
    f = _Fields(node, path, ctx[0])
    est.classes_ = f.labels("classes_")
    est.coef_ = f.array("coef_")
    est.intercept_ = f.array("intercept_")
    est.n_features_in_ = f.int("n_features_in_")
    est.n_iter_ = f.int("n_iter_")
    if f.has("feature_names_in_"):
        est.feature_names_in_ = f.labels("feature_names_in_")
    return est


def _step_path(path, name):
    return f"{path}.steps[{name!r}]"


def _enc_pipeline(est, path):
    steps = []
    for name, step in est.steps:
        at = _step_path(path, name)
        steps.append([str(name), step if _is_passthrough(step) else _encode(step, at)])
    return {"estimator": "Pipeline", "params": _params(est, path, skip=("steps",)), "steps": steps}


def _dec_pipeline(cls, node, ctx, path):
    params = _node_params(node, path, ctx[0])
    raw = node.get("steps")
    if not (isinstance(raw, (list, tuple)) and raw and all(
            isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str) for s in raw)):
        raise ValueError(f"{ctx[0]}: damaged model file: {path} has no steps")
    steps = [(name, step if _is_passthrough(step) else _decode(step, ctx, _step_path(path, name)))
             for name, step in raw]
    params.pop("steps", None)
    return _construct(cls, dict(params, steps=steps), path, ctx[0])


def _children_pipeline(est, path):
    return [(_step_path(path, name), step, None) for name, step in est.steps
            if not _is_passthrough(step)]


def _member_path(path, name):
    return f"{path}.estimators_[{name!r}]"


def _enc_fusion(est, path):
    names = list(est.named_estimators_)
    if len(names) != len(est.estimators_):
        raise ValueError(f"{path}: FusionClassifier has {len(est.estimators_)} fitted members "
                         f"but {len(names)} names")
    fitted = {"classes_": _labels(est.classes_, f"{path}.classes_"), "names": names,
              "estimators_": [_encode(m, _member_path(path, n)) for n, m in zip(names, est.estimators_)],
              "weights_": _tensor(est.weights_, f"{path}.weights_"),
              "offsets_": _tensor(est.offsets_, f"{path}.offsets_"),
              "dev_cross_entropy_": {str(k): float(v) for k, v in est.dev_cross_entropy_.items()},
              "dev_accuracy_": {str(k): float(v) for k, v in est.dev_accuracy_.items()},
              "n_dev_": int(est.n_dev_)}
    return {"estimator": "FusionClassifier", "params": _params(est, path, skip=("estimators",)),
            "fitted": fitted}


def _dec_fusion(cls, node, ctx, path):
    from sklearn.base import clone

    params = _node_params(node, path, ctx[0])
    params.pop("estimators", None)
    f = _Fields(node, path, ctx[0])
    names, members = f._get("names"), f._get("estimators_")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise f._bad("names", "a list of str")
    if not (isinstance(members, list) and len(members) == len(names)):
        raise f._bad("estimators_", f"a list of {len(names)} members")
    fitted = [_decode(m, ctx, _member_path(path, n)) for n, m in zip(names, members)]
    est = _construct(cls, dict(params, estimators=[(n, clone(m)) for n, m in zip(names, fitted)]),
                     path, ctx[0])
    est.classes_ = f.labels("classes_")
    est.estimators_ = fitted
    est.named_estimators_ = dict(zip(names, fitted))
    est.weights_ = f.array("weights_")
    est.offsets_ = f.array("offsets_")
    est.dev_cross_entropy_ = f.floats("dev_cross_entropy_")
    est.dev_accuracy_ = f.floats("dev_accuracy_")
    est.n_dev_ = f.int("n_dev_")
    return est


def _children_fusion(est, path):
    members = est.estimators if isinstance(est.estimators, (list, tuple)) else None
    if members is None or not all(isinstance(m, tuple) and len(m) == 2 for m in members):
        raise ValueError(f"{path}: FusionClassifier.estimators is not a list of (name, estimator)")
    return [(_member_path(path, name), member, None) for name, member in members]


def _enc_network(est, path):
    from ._persistence import classifier_payload

    return classifier_payload(est)


def _dec_network(cls, node, ctx, path):
    from ._persistence import classifier_from_payload

    return classifier_from_payload(cls, node, source=f"{ctx[0]}: {path}", device=ctx[1])


def _no_children(est, path):
    return []


def _network_params(est, path):
    return {}  # classifier_payload keeps the plain parameters only, as it always has


_CODECS = {  # name -> (encode, decode, children, check params)
    "FilterBank": (_enc_simple, _dec_simple, _no_children, _params),
    "DFTMagnitude": (_enc_simple, _dec_simple, _no_children, _params),
    "Waveform": (_enc_simple, _dec_simple, _no_children, _params),
    "MFCC": (_enc_mfcc, _dec_mfcc, _children_mfcc,
             lambda est, path: _params(est, path, skip=("filterbank",))),
    "GaussianMixture": (_enc_gmm, _dec_gmm, _no_children, _params),
    "GaussianSupervector": (_enc_gsv, _dec_gsv, _no_children, _params),
    "GMMUBMClassifier": (_enc_gmmubm, _dec_gmmubm, _no_children, _params),
    "LinearSVC": (_enc_svm, _dec_svm, _no_children, _params),
    "Pipeline": (_enc_pipeline, _dec_pipeline, _children_pipeline,
                 lambda est, path: _params(est, path, skip=("steps",))),
    "FusionClassifier": (_enc_fusion, _dec_fusion, _children_fusion,
                         lambda est, path: _params(est, path, skip=("estimators",))),
    **{name: (_enc_network, _dec_network, _no_children, _network_params) for name in NETWORKS},
}
assert set(_CODECS) == set(ALLOWED)


# --------------------------------------------------------------------------- walking


def _allowed_names(allowed):
    return ", ".join(allowed if allowed is not None else ALLOWED)


def _checked_name(est, path, allowed):
    name = _name_of(est)
    if name is None or (allowed is not None and name not in allowed):
        cls = type(est)
        raise ValueError(f"{path}: {cls.__module__}.{cls.__qualname__} cannot be saved in a "
                         f"weights-only model file (allowed here: {_allowed_names(allowed)})")
    return name


def _encode(est, path, allowed=None):
    return _CODECS[_checked_name(est, path, allowed)][0](est, path)


def _decode(node, ctx, path, allowed=None):
    source = ctx[0]
    name = node.get("estimator") if isinstance(node, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"{source}: damaged model file: {path} names no estimator")
    if name not in ALLOWED or (allowed is not None and name not in allowed):
        raise ValueError(f"{source}: unknown estimator {name!r} at {path} in the model file "
                         f"(allowed here: {_allowed_names(allowed)})")
    try:
        return _CODECS[name][1](_allowed_class(name), node, ctx, path)
    except (KeyError, TypeError, AttributeError, RuntimeError, IndexError) as exc:
        raise ValueError(f"{source}: damaged model file: {path} ({name}): {_one_line(exc)}") from None


def estimator_payload(est, path="classifier"):
    """The node of a fitted allow-listed estimator (see the module docstring).

    Parameters
    ----------
    est : estimator
        Fitted; its class and, recursively, those of its steps, members and filterbank
        must be in :data:`ALLOWED` (exactly: subclasses are refused).
    path : str, default="classifier"
        Where ``est`` is, for error messages.

    Returns
    -------
    dict
        Plain values and CPU tensors only.

    Raises
    ------
    ValueError
        A class outside :data:`ALLOWED`, or a parameter or attribute the format cannot
        hold, named with its path (e.g. ``classifier.steps['svm']``).
    """
    return _encode(est, path)


def estimator_from_payload(payload, *, source="payload", device="cpu", path="classifier",
                           allowed=None):
    """Rebuild the fitted estimator of an :func:`estimator_payload` node.

    Parameters
    ----------
    payload : dict
        A node, as read by ``torch.load(weights_only=True)``.
    source : str, default="payload"
        What the node was read from (e.g. a file name), named in errors.
    device : str, default="cpu"
        Device of the networks among the node's members.
    path : str, default="classifier"
        Where the node is in the file, named in errors.
    allowed : sequence of str, optional
        Class names accepted at the top of the node (default: any of :data:`ALLOWED`).

    Returns
    -------
    estimator

    Raises
    ------
    ValueError
        A class name that is not allowed (named, with its path), or a damaged node.
    """
    return _decode(payload, (source, device), path, allowed)


def check_savable(est, path="classifier", allowed=None):
    """Raise ``ValueError`` (naming what and where) unless :func:`estimator_payload` can
    hold ``est`` once it is fitted: its class and those of its steps, members and
    filterbank are in :data:`ALLOWED`, and their parameters are plain values.

    Works on an unfitted estimator (``devicepool train`` checks before it fits).
    """
    name = _checked_name(est, path, allowed)
    _, _, children, params = _CODECS[name]
    params(est, path)
    for at, child, child_allowed in children(est, path):
        check_savable(child, at, child_allowed)


def savable(est):
    """Whether :func:`check_savable` accepts ``est``."""
    try:
        check_savable(est)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def is_classifier_node(est):
    """Whether ``est`` is an allow-listed classifier: one of :data:`CLASSIFIERS`, or a
    ``Pipeline`` whose last step is one."""
    name = _name_of(est)
    if name == "Pipeline":
        steps = getattr(est, "steps", None)
        return bool(steps) and is_classifier_node(steps[-1][1])
    return name in CLASSIFIERS
