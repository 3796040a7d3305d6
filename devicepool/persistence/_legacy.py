"""Files of devicepool 0.1-0.5, translated into payloads of the current format (their
layouts are in ``docs/design.md``, "Files of earlier versions"): ``devicepool.estimator``
1-2 (a network's ``save()``; version 1 lacks the module's readings, which were the
paper's), ``devicepool.pipeline`` 1-2 (``devicepool train`` / ``calibrate``: short class
names, a fusion's member names), the ``devicepool.DeviceEmbedding`` bundle 1, and the
``DeviceLR`` / ``OpenSetClassifier`` payloads 1-2 of 0.4-0.5 (the LDA map becomes the
SVD-solver LDA it was, the isotonic thresholds the ``IsotonicRegression`` that fits them).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = ["translate", "fix_fusions"]

_PAPER_READINGS = {"SACNNClassifier": {"module__band_pooling": "mean", "module__batch_norm": False},
                   "DACNNClassifier": {"module__band_pooling": "sum", "module__batch_norm": False}}
_KEPT = ("model", "forensic", "forensic_data")  # what the CLI kept beside the pipeline
_BUNDLE_KEPT = ("recipe", "provenance", "validation", "lr", "calibration_data")
_FORENSIC = "devicepool.forensic."
_SCORERS = {"plda": ("PLDAScorer", ("model_mean", "projection", "between")), "cosine": ("CosineScorer", ()),
            "snorm": ("SNormCosineScorer", ("cohort",))}


def _node(name, params, **fitted):
    return {"class": name if name.startswith("sklearn.") else _FORENSIC + name, "params": params,
            "fitted": fitted}


def _array(x, dtype=float):
    return {"__ndarray__": torch.from_numpy(np.array(np.asarray(x), dtype=dtype))}


def _scorer(p):
    name, extra = _SCORERS[p["kind"]]
    lda, devices = p["lda"], np.asarray(p["devices"])
    if lda is not None:  # the affine map of the SVD solver: (x - xbar_) @ scalings_[:, :_max_components]
        k = int(lda["n_components"])
        lda = _node("sklearn.discriminant_analysis.LinearDiscriminantAnalysis", {"n_components": k},
                    xbar_=_array(lda["xbar"]), scalings_=_array(lda["scalings"]), _max_components=k,
                    n_features_in_=int(p["n_features_in"]))
    params = {"lda_dim": p["lda_dim"], **({"top_k": int(p["top_k"])} if p["kind"] == "snorm" else {})}
    return _node(name, params, devices_={"__ndarray__": devices.tolist(), "dtype": devices.dtype.str},
                 n_features_in_=int(p["n_features_in"]), mean_=_array(p["mean"]), lda_=lda,
                 **{f"{k}_": _array(p[k]) for k in extra})


def _calibrator(p):
    if p["kind"] == "logistic":
        return _node("LogisticCalibrator", {"C": float(p["C"])}, coef_=float(p["coef"]),
                     intercept_=float(p["intercept"]), prior_log_odds_=float(p["prior_log_odds"]))
    x, y = (np.array(np.asarray(p[k]), dtype=float) for k in ("X_thresholds", "y_thresholds"))
    iso = _node("sklearn.isotonic.IsotonicRegression", {"increasing": True, "out_of_bounds": "clip"},
                increasing_=True, X_min_=float(x.min()), X_max_=float(x.max()), X_thresholds_=_array(x),
                y_thresholds_=_array(y))
    return _node("IsotonicCalibrator", {}, isotonic_=iso, prior_log_odds_=float(p["prior_log_odds"]),
                 llr_bounds_={"__tuple__": [float(b) for b in p["llr_bounds"]]})


def _forensic(p, source):
    """A node of a ``DeviceLR`` or ``OpenSetClassifier`` payload of 0.4-0.5."""
    version, name = p.get("format_version"), p["format"][len(_FORENSIC):]
    if not isinstance(version, int) or not 1 <= version <= 2:
        raise ValueError(f"{source} has {name} payload format version {version!r}; this devicepool "
                         "reads 1-2 and the current format (update devicepool)")
    if name == "OpenSetClassifier":
        return _node(name, {**p["params"], "classifier": None}, threshold_=float(p["threshold"]),
                     far_=float(p["far_"]), frr_=float(p["frr_"]), n_known_=int(p["n_known"]),
                     n_unknown_=int(p["n_unknown"]))
    for part, kinds in (("scorer", _SCORERS), ("calibrator", ("logistic", "isotonic"))):
        if p[part]["kind"] not in kinds:
            raise ValueError(f"{source}: unknown {part} kind {p[part]['kind']!r} (known: {', '.join(kinds)})")
    c, bounds = p["calibration"], p.get("llr_bounds")
    params = {"bounds": None, **p["params"], "embedder": None}  # 0.4: unbounded
    return _node(name, params, n_features_in_=int(p["n_features_in"]), scorer_=_scorer(p["scorer"]),
                 calibrator_=_calibrator(p["calibrator"]),
                 calibration_scores_=_array(c["scores"]), calibration_labels_=_array(c["labels"], np.int64),
                 n_same_pairs_=int(c["n_same_pairs"]), n_diff_pairs_=int(c["n_diff_pairs"]),
                 llr_bounds_={"__tuple__": [float(b) for b in bounds or (-np.inf, np.inf)]})


class _Translator:
    def __init__(self, source, allowed):
        self.source, self.ids, self.fusions = source, itertools.count(10**6), []
        self.names = {name.rsplit(".", 1)[1]: name for name in allowed}

    def qualified(self, name, path):
        if not isinstance(name, str) or name not in self.names:
            raise ValueError(f"{self.source}: unknown estimator {name!r} at {path} in the model file")
        return self.names[name]

    def plain(self, v):
        if isinstance(v, tuple):
            return {"__tuple__": [self.plain(x) for x in v]}
        if isinstance(v, list):
            return [self.plain(x) for x in v]
        if isinstance(v, dict):
            return {"__dict__": {k: self.plain(x) for k, x in v.items()}}
        return v

    def network(self, old, path):
        version = old.get("format_version", 1)
        if not isinstance(version, int) or version > 2:
            raise ValueError(f"{self.source} was written by a newer devicepool (format {version})")
        name = old.get("estimator")
        params = dict(old["params"])
        if version < 2:
            params = {**_PAPER_READINGS.get(name, {}), **params}
        return {"class": self.qualified(name, path), "id": next(self.ids),
                "params": {k: self.plain(v) for k, v in params.items()},
                "fitted": {"fitted_classes_": {"__ndarray__": old["classes"], "dtype": old["classes_dtype"]},
                           "n_features_in_": old["n_features_in"], "state_dict": old["state_dict"]}}

    def node(self, old, path):
        if not isinstance(old, dict):
            raise ValueError(f"{self.source}: damaged model file: {path} names no estimator")
        if old.get("format") == "devicepool.estimator":
            return self.network(old, path)
        name = old.get("estimator")
        node = {"class": self.qualified(name, path), "id": next(self.ids),
                "params": {k: self.value(v, f"{path}.{k}") for k, v in old.get("params", {}).items()},
                "fitted": {k: self.value(v, f"{path}.{k}") for k, v in old.get("fitted", {}).items()}}
        if name == "Pipeline":
            node["params"]["steps"] = [{"__tuple__": [n, s if s is None or s == "passthrough" else
                                                      self.node(s, f"{path}.steps[{n!r}]")]}
                                       for n, s in old["steps"]]
        elif name == "GMMUBMClassifier" and "calibration_" in old.get("fitted", {}):
            node["fitted"]["calibration_"] = {"__tuple__": node["fitted"]["calibration_"]}
        elif name == "FusionClassifier":
            fitted = node["fitted"]
            names = fitted.pop("names")
            fitted["named_estimators_"] = {"__dict__": {n: {"__ref__": m["id"]}
                                                        for n, m in zip(names, fitted["estimators_"])}}
            node["params"]["estimators"] = []  # fix_fusions: clones of the fitted members
            self.fusions.append(node["id"])
        return node

    def value(self, v, path):
        if isinstance(v, torch.Tensor):
            return {"__ndarray__": v}
        if isinstance(v, dict) and "estimator" in v:
            return self.node(v, path)
        if isinstance(v, dict) and set(v) == {"values", "dtype"}:
            return {"__ndarray__": v["values"], "dtype": v["dtype"]}
        if isinstance(v, dict):
            return {"__dict__": {k: self.value(x, path) for k, x in v.items()}}
        if isinstance(v, (list, tuple)):
            items = [self.value(x, path) for x in v]
            return items if isinstance(v, list) else {"__tuple__": items}
        return v


def translate(payload, source, allowed):
    """``(payload of the current format, fusion node ids for :func:`fix_fusions`)``; the
    short names of the old files are looked up among the qualified names ``allowed``."""
    t = _Translator(source, allowed)
    fmt = payload["format"]
    try:
        if fmt == "devicepool.estimator":
            return {"object": t.network(payload, "object")}, ()
        if fmt in (_FORENSIC + "DeviceLR", _FORENSIC + "OpenSetClassifier"):
            return {"object": _forensic(payload, source)}, ()
        if fmt == "devicepool.DeviceEmbedding":
            if int(payload.get("format_version", 0)) > 1:
                raise ValueError(f"{source} has bundle format version {payload['format_version']}; this "
                                 "devicepool reads up to 1: upgrade devicepool")
            feats = payload["features"]
            fitted = {"network": payload["network"], "state_dict": payload["state_dict"],
                      "sample_rate_": feats["sample_rate"], "n_mels_": feats["n_mels"]}
            emb = {"class": "devicepool.estimators.DeviceEmbedding", "params": {}, "fitted": fitted}
            return {"object": emb, "provenance": {k: payload[k] for k in _BUNDLE_KEPT if k in payload}}, ()
        if fmt != "devicepool.pipeline":
            raise ValueError(f"{source} is not a devicepool model file (format {fmt!r})")
        feats = payload.get("features")
        fname = feats.get("class") if isinstance(feats, dict) else None
        step = {"class": t.qualified(fname, "features"), "id": next(t.ids),
                "params": {k: t.plain(v) for k, v in feats["params"].items()}, "fitted": {}}
        steps = [{"__tuple__": ["features", step]},
                 {"__tuple__": ["clf", t.node(payload.get("classifier"), "classifier")]}]
        pipe = {"class": "sklearn.pipeline.Pipeline", "id": next(t.ids), "params": {"steps": steps},
                "fitted": {}}
        kept = {k: payload[k] for k in _KEPT if k in payload}
        version = payload.get("devicepool_version")
        return {"object": pipe, "provenance": kept, "devicepool_version": version}, t.fusions
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{source}: damaged model file ({type(exc).__name__}: {exc})") from None


def fix_fusions(objects, ids):
    """Give the fusions read from old files their templates: clones of their members."""
    from sklearn.base import clone

    for i in ids:
        fusion = objects[i]
        fusion.estimators = [(n, clone(m)) for n, m in fusion.named_estimators_.items()]
