"""Fitted forensic models as plain values and arrays, and back (no pickled code).

:meth:`DeviceLR.to_payload <devicepool.forensic.DeviceLR.to_payload>` and
:meth:`OpenSetClassifier.to_payload <devicepool.forensic.OpenSetClassifier.to_payload>`
return a dict of strings, numbers, None, lists, dicts and numpy arrays (float64 or
int64). Nothing in it is code: convert the arrays to tensors (``torch.from_numpy``) to
write it with :func:`torch.save` and read it back with ``torch.load(weights_only=True)``
(what ``devicepool calibrate`` does), or to lists (``.tolist()``) for JSON. The
``from_payload`` class methods accept arrays, tensors or nested lists alike.

A ``DeviceLR`` payload (``format`` ``"devicepool.forensic.DeviceLR"``, ``format_version``
2; version 1, without bounds and the AS-norm scorer, is still read)::

    {"format": ..., "format_version": 1,
     "params": {"scoring": "plda" | "cosine" | "snorm", "calibration": "logistic" | "isotonic",
                "lda_dim": int | None, "n_references": int, "max_pairs": int,
                "random_state": int | None, "bounds": "elub" | None},
     "n_features_in": int,
     "scorer": {"kind": "plda" | "cosine" | "snorm", "lda_dim": ..., "n_features_in": int,
                "devices": [labels], "mean": (d,),
                "lda": None | {"xbar": (d,), "scalings": (d, r), "n_components": k},
                # PLDA only:
                "model_mean": (k,), "projection": (k, k), "between": (k,),
                # AS-norm only:
                "top_k": int, "cohort": (n_devices, k)},
     "calibrator": {"kind": "logistic", "C": float, "coef": float, "intercept": float,
                    "prior_log_odds": float}
                 | {"kind": "isotonic", "X_thresholds": (t,), "y_thresholds": (t,),
                    "prior_log_odds": float, "llr_bounds": [low, high]},
     "calibration": {"scores": (p,), "labels": (p,), "n_same_pairs": int,
                     "n_diff_pairs": int},
     "llr_bounds": [low, high]}   # log10; absent in payloads of 0.4 and earlier (unbounded)

The scorer's LDA step is kept as the affine map it applies (``(x - xbar) @
scalings[:, :k]``, what :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis`
with the SVD solver computes) and restored as :class:`LinearProjection`, so a payload
does not depend on scikit-learn's private attributes. The isotonic calibrator is
restored by refitting :class:`~sklearn.isotonic.IsotonicRegression` on its own
thresholds, which reproduces them exactly (an isotonic sequence is its own PAV fit).
Only the built-in scorers and calibrators (exactly these classes) can be written; a
custom one raises ``TypeError``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.isotonic import IsotonicRegression

from .calibration import IsotonicCalibrator, LogisticCalibrator
from .scoring import CosineScorer, PLDAScorer, SNormCosineScorer

__all__ = ["LR_FORMAT", "OPENSET_FORMAT", "FORMAT_VERSION", "LinearProjection", "lr_payload",
           "lr_from_payload", "openset_payload", "openset_from_payload"]

LR_FORMAT = "devicepool.forensic.DeviceLR"
OPENSET_FORMAT = "devicepool.forensic.OpenSetClassifier"
FORMAT_VERSION = 2  # 2 (0.5): "bounds" and "llr_bounds", the "snorm" scorer; 1 still reads

_SCORER_KINDS = {PLDAScorer: "plda", CosineScorer: "cosine", SNormCosineScorer: "snorm"}
_CALIBRATOR_KINDS = {LogisticCalibrator: "logistic", IsotonicCalibrator: "isotonic"}


class LinearProjection:
    """The affine map of a fitted SVD-solver LDA: ``(X - xbar_) @ scalings_[:, :n_components]``.

    What a scorer restored from a payload holds as ``lda_`` (its ``transform`` is the
    only method the scorers call).
    """

    def __init__(self, xbar, scalings, n_components):
        self.xbar_ = np.asarray(xbar, dtype=float)
        self.scalings_ = np.asarray(scalings, dtype=float)
        self.n_components = int(n_components)

    def transform(self, X):
        """Project ``X`` of shape ``(n, d)`` to ``(n, n_components)``."""
        X_new = (np.asarray(X, dtype=float) - self.xbar_) @ self.scalings_
        return X_new[:, : self.n_components]


def _array(value, dtype=float):
    return np.array(np.asarray(value), dtype=dtype)  # a copy: never a view of a tensor


def _labels(values):
    return np.asarray(values).tolist()


def _kind(obj, kinds, what):
    kind = kinds.get(type(obj))
    if kind is None:
        raise TypeError(f"DeviceLR.to_payload: cannot write a {type(obj).__name__} {what}; only "
                        f"{', '.join(c.__name__ for c in kinds)} (exactly these classes)")
    return kind


# --------------------------------------------------------------------------- scorer


def _lda_payload(lda):
    if lda is None:
        return None
    if isinstance(lda, LinearProjection):
        return {"xbar": lda.xbar_.copy(), "scalings": lda.scalings_.copy(),
                "n_components": lda.n_components}
    if getattr(lda, "solver", "svd") != "svd":
        raise TypeError("DeviceLR.to_payload: the scorer's LDA must use the SVD solver")
    xbar = np.asarray(lda.xbar_, dtype=float)
    k = int(lda.transform(xbar[None, :]).shape[1])
    return {"xbar": xbar.copy(), "scalings": np.asarray(lda.scalings_, dtype=float).copy(),
            "n_components": k}


def _scorer_payload(scorer):
    kind = _kind(scorer, _SCORER_KINDS, "scorer")
    out = {"kind": kind, "lda_dim": scorer.lda_dim, "n_features_in": int(scorer.n_features_in_),
           "devices": _labels(scorer.devices_), "mean": _array(scorer.mean_),
           "lda": _lda_payload(scorer.lda_)}
    if kind == "plda":
        out.update(model_mean=_array(scorer.model_mean_), projection=_array(scorer.projection_),
                   between=_array(scorer.between_))
    if kind == "snorm":
        out.update(top_k=int(scorer.top_k), cohort=_array(scorer.cohort_))
    return out


def _scorer_from_payload(p):
    cls = {v: k for k, v in _SCORER_KINDS.items()}.get(p["kind"])
    if cls is None:
        raise ValueError(f"unknown scorer kind {p['kind']!r} (known: plda, cosine, snorm)")
    scorer = cls(lda_dim=p["lda_dim"])
    if cls is SNormCosineScorer:
        scorer.top_k = int(p["top_k"])
        scorer.cohort_ = _array(p["cohort"])
    scorer.devices_ = np.asarray(p["devices"])
    scorer.n_features_in_ = int(p["n_features_in"])
    scorer.mean_ = _array(p["mean"])
    lda = p["lda"]
    scorer.lda_ = (None if lda is None else
                   LinearProjection(_array(lda["xbar"]), _array(lda["scalings"]), lda["n_components"]))
    if cls is PLDAScorer:
        scorer.model_mean_ = _array(p["model_mean"])
        scorer.projection_ = _array(p["projection"])
        scorer.between_ = _array(p["between"])
    return scorer


# --------------------------------------------------------------------------- calibrator


def _calibrator_payload(cal):
    kind = _kind(cal, _CALIBRATOR_KINDS, "calibrator")
    if kind == "logistic":
        return {"kind": kind, "C": float(cal.C), "coef": float(cal.coef_),
                "intercept": float(cal.intercept_), "prior_log_odds": float(cal.prior_log_odds_)}
    iso = cal.isotonic_
    return {"kind": kind, "X_thresholds": _array(iso.X_thresholds_),
            "y_thresholds": _array(iso.y_thresholds_),
            "prior_log_odds": float(cal.prior_log_odds_),
            "llr_bounds": [float(b) for b in cal.llr_bounds_]}


def _calibrator_from_payload(p):
    kind = p["kind"]
    if kind == "logistic":
        cal = LogisticCalibrator(C=float(p["C"]))
        cal.coef_, cal.intercept_ = float(p["coef"]), float(p["intercept"])
    elif kind == "isotonic":
        cal = IsotonicCalibrator()
        x, y = _array(p["X_thresholds"]), _array(p["y_thresholds"])
        cal.isotonic_ = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y)
        low, high = (float(b) for b in p["llr_bounds"])
        cal.llr_bounds_ = (low, high)
    else:
        raise ValueError(f"unknown calibrator kind {kind!r} (known: logistic, isotonic)")
    cal.prior_log_odds_ = float(p["prior_log_odds"])
    return cal


# --------------------------------------------------------------------------- DeviceLR


def _plain_setting(value, kinds):
    """A setting as a plain value: a name stays, a built-in object becomes its kind."""
    if isinstance(value, str):
        return value
    return _kind(value, kinds, "setting")


def lr_payload(model):
    """The payload of a fitted :class:`~devicepool.forensic.DeviceLR` (see the module)."""
    rs = model.random_state
    params = {"scoring": _plain_setting(model.scoring, _SCORER_KINDS),
              "calibration": _plain_setting(model.calibration, _CALIBRATOR_KINDS),
              "lda_dim": model.lda_dim, "n_references": int(model.n_references),
              "max_pairs": int(model.max_pairs),
              "random_state": int(rs) if isinstance(rs, Integral) else None,
              "bounds": model.bounds}
    return {"format": LR_FORMAT, "format_version": FORMAT_VERSION, "params": params,
            "n_features_in": int(model.n_features_in_),
            "scorer": _scorer_payload(model.scorer_),
            "calibrator": _calibrator_payload(model.calibrator_),
            "calibration": {"scores": _array(model.calibration_scores_),
                            "labels": _array(model.calibration_labels_, np.int64),
                            "n_same_pairs": int(model.n_same_pairs_),
                            "n_diff_pairs": int(model.n_diff_pairs_)},
            "llr_bounds": [float(b) for b in model.llr_bounds_]}


def _check_format(payload, fmt, owner):
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{owner}.from_payload: not a {owner} payload (format {found!r}, "
                         f"expected {fmt!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{owner}.from_payload: payload format version {version!r}; this "
                         f"devicepool reads version {FORMAT_VERSION} (update devicepool)")


def lr_from_payload(cls, payload, embedder=None):
    """A fitted ``cls`` (:class:`~devicepool.forensic.DeviceLR`) from :func:`lr_payload`."""
    _check_format(payload, LR_FORMAT, "DeviceLR")
    try:
        params = dict(payload["params"])
        # payloads of 0.4 and earlier: no bounds (their LRs were never bounded)
        params.setdefault("bounds", None)
        model = cls(embedder=embedder, **params)
        model.n_features_in_ = int(payload["n_features_in"])
        model.scorer_ = _scorer_from_payload(payload["scorer"])
        model.calibrator_ = _calibrator_from_payload(payload["calibrator"])
        cal = payload["calibration"]
        model.calibration_scores_ = _array(cal["scores"])
        model.calibration_labels_ = _array(cal["labels"], np.int64)
        model.n_same_pairs_ = int(cal["n_same_pairs"])
        model.n_diff_pairs_ = int(cal["n_diff_pairs"])
        bounds = payload.get("llr_bounds")
        model.llr_bounds_ = ((-np.inf, np.inf) if bounds is None
                             else (float(bounds[0]), float(bounds[1])))
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"DeviceLR.from_payload: damaged payload ({type(exc).__name__}: "
                         f"{exc})") from None
    return model


# --------------------------------------------------------------------------- open set


def openset_payload(model):
    """The payload of a calibrated :class:`~devicepool.forensic.OpenSetClassifier`."""
    return {"format": OPENSET_FORMAT, "format_version": FORMAT_VERSION,
            "params": {"far": float(model.far), "score": str(model.score)},
            "threshold": float(model.threshold_), "far_": float(model.far_),
            "frr_": float(model.frr_), "n_known": int(model.n_known_),
            "n_unknown": int(model.n_unknown_)}


def openset_from_payload(cls, payload, classifier):
    """A calibrated ``cls`` around ``classifier`` from :func:`openset_payload`."""
    _check_format(payload, OPENSET_FORMAT, "OpenSetClassifier")
    try:
        model = cls(classifier, **dict(payload["params"]))
        model.threshold_ = float(payload["threshold"])
        model.far_, model.frr_ = float(payload["far_"]), float(payload["frr_"])
        model.n_known_, model.n_unknown_ = int(payload["n_known"]), int(payload["n_unknown"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"OpenSetClassifier.from_payload: damaged payload "
                         f"({type(exc).__name__}: {exc})") from None
    return model
