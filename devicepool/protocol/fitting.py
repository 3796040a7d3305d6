"""One fit of the Table-3 protocol: what it is (:class:`FitTask`), what it does
(:func:`fit_task`: the engine's :func:`~.engine.fit_one`, then predictions for every
condition of its training mode, attention of Fig. 2 in the same pass as the matched
condition's predictions) and what it returns (result records).

A fit runs wherever the engine sends it (here, a loky worker, a dask worker): everything
it reads travels with its arguments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .conditions import CONDITIONS
from .engine import Fit, fit_one
from .keys import RESULT_FORMAT
from .registry import ModelSpec

if TYPE_CHECKING:
    from ..features import AttentionWeights

__all__ = ["FitTask", "fit_task"]

#: time reduction assumed for an estimator with ``attention_weights`` only
_FALLBACK_TIME_REDUCTION = 4


@dataclass(frozen=True, eq=False)
class FitTask:
    """One fit: a (model, training mode, fold), serving every condition of that mode.

    The model's :class:`~devicepool.protocol.ModelSpec` travels with the task, so worker
    processes (and dask workers) can fit models registered in this process only.
    ``paths`` maps each condition to its result file and ``attention_path`` names the
    Fig. 2 file (both empty without an ``out_dir``). ``threads``: torch intra-op threads
    for the fit (None leaves the process's setting).
    """

    model: str
    spec: ModelSpec
    train_mode: str
    fold: int
    conditions: tuple
    seed: int
    params: dict
    random_state: int
    config_key: str
    paths: dict = field(default_factory=dict)
    attention_path: str | None = None
    progress: bool = False
    threads: int | None = None

    @property
    def key(self):
        return (self.model, self.train_mode, self.fold)

    def as_fit(self, data):
        """The engine's :class:`~.engine.Fit` of this task on ``data``."""
        return Fit(self.spec, self.params, self.seed, data.train_index(self.train_mode, self.fold),
                   key=self.key, progress=self.progress, threads=self.threads)


@dataclass
class _Predictions:
    """Predictions (None: not made) of the utterances ``index``, with their wall time and,
    from an attention model's one pass, the Fig. 2 data."""

    index: np.ndarray
    pred: np.ndarray | None
    seconds: float
    attention: AttentionWeights | None = None


def _predict(est, data, index):
    t0 = time.perf_counter()
    pred = est.predict(data.features[index])
    return _Predictions(index, pred, time.perf_counter() - t0)


def _fold_attention(index, time_w, band_w, time_reduction):
    from ..features import AttentionWeights

    band = None if band_w is None else np.stack([np.asarray(b, np.float32).ravel() for b in band_w])
    return AttentionWeights(time_w, band, int(time_reduction), index)


def _held_out_outputs(est, task, data):
    """Predictions and attention of the held-out utterances of the training mode, from
    one ``predict_outputs`` pass (or ``attention_weights`` for an estimator without it)."""
    idx = data.test_index(task.train_mode, task.fold)
    X = data.features[idx]
    t0 = time.perf_counter()
    if hasattr(est, "predict_outputs"):
        out = est.predict_outputs(X)
        pred = np.asarray(est.classes_)[np.asarray(out.logits).argmax(axis=1)]
        seconds, att = time.perf_counter() - t0, out.attention
        attention = None if att is None else _fold_attention(idx, att.time, att.band,
                                                             att.time_reduction)
        return _Predictions(idx, pred, seconds, attention)
    out = est.attention_weights(X)
    if isinstance(out, dict):
        time_w, band_w = out.get("time", out.get("time_weights")), out.get("band", out.get("band_weights"))
    elif isinstance(out, tuple):
        time_w, band_w = out[0], (out[1] if len(out) > 1 else None)
    else:
        time_w, band_w = out, None
    attention = _fold_attention(idx, time_w, band_w, _FALLBACK_TIME_REDUCTION)
    return _Predictions(idx, None, time.perf_counter() - t0, attention)


def _record(task, data, fitted, cond, predictions):
    from sklearn.metrics import confusion_matrix

    train_idx, test_idx = fitted.train_index, predictions.index
    truth = data.target[test_idx]
    pred = np.asarray(predictions.pred).astype(str)
    labels = [str(x) for x in data.labels]
    return {
        "format": RESULT_FORMAT, "model": task.model, "condition": cond, "fold": task.fold,
        "train_mode": task.train_mode, "test_mode": CONDITIONS[cond][1],
        "accuracy": float(np.mean(pred == truth.astype(str))),
        "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
        "train_speakers": sorted(set(map(str, data.groups[train_idx]))),
        "test_speakers": sorted(set(map(str, data.groups[test_idx]))),
        "labels": labels,
        "confusion_matrix": confusion_matrix(truth.astype(str), pred, labels=labels),
        "test_index": test_idx, "y_pred": pred, "seed": task.seed,
        "random_state": task.random_state, "model_params": task.params,
        "config_key": task.config_key, "fit_seconds": fitted.seconds,
        "predict_seconds": predictions.seconds, "devicepool_version": __version__,
    }


def fit_task(task, data):
    """Fit one (model, training mode, fold); return its records and Fig. 2 data.

    For a model with attention (and an ``out_dir``), the held-out utterances of the
    training mode are run once: the matched condition's predictions and the attention
    come from the same outputs. Other conditions use ``predict``.
    """
    fitted = fit_one(task.as_fit(data), data)
    held = None
    if task.spec.attention and task.attention_path:
        held = _held_out_outputs(fitted.est, task, data)
    records = []
    for cond in task.conditions:
        test_mode = CONDITIONS[cond][1]
        if held is not None and held.pred is not None and test_mode == task.train_mode:
            predictions = held  # the matched condition: from the attention pass
        else:
            predictions = _predict(fitted.est, data, data.test_index(test_mode, task.fold))
        records.append(_record(task, data, fitted, cond, predictions))
    return records, (held.attention if held is not None else None)
