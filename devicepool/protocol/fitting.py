"""One fit of the protocol: what it is given (:class:`FitTask`, :class:`FitData`), what it
does (:func:`_fit_task`: fit, predict every condition of its training mode, attention of
Fig. 2 in the same pass as the matched condition's predictions) and what it returns.

A fit runs wherever joblib sends it (here, a loky worker, a dask worker): everything it
reads travels with its arguments.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .conditions import CONDITIONS
from .keys import _RESULT_FORMAT
from .registry import ModelSpec

if TYPE_CHECKING:
    from ..features import AttentionWeights

__all__ = ["FitData", "FitTask"]

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


@dataclass(frozen=True, eq=False)
class FitData:
    """What every fit of one feature kind reads: features and labels of all utterances
    (mode-augmentation copies appended, marked in ``augmented``) and the folds."""

    features: np.ndarray
    target: np.ndarray
    mode: np.ndarray
    groups: np.ndarray
    folds: list
    labels: list
    augmented: np.ndarray | None = None
    sample_rate: int = 16000

    def test_index(self, test_mode, fold):
        """Held-out utterances of ``fold`` in ``test_mode`` (never a training copy)."""
        held = self.folds[fold] & (self.mode == test_mode)
        if self.augmented is not None:
            held &= ~self.augmented
        return np.flatnonzero(held)

    def __sizeof__(self):
        # dask's sizeof: joblib's dask backend scatters arguments over 1 kB once per call
        arrays = [*self.features, self.target, self.mode, self.groups, *self.folds]
        return object.__sizeof__(self) + sum(np.asarray(a).nbytes for a in arrays)


@dataclass
class _Fitted:
    """A fitted estimator, its training utterances and the fit's wall time."""

    est: object
    train_idx: np.ndarray
    seconds: float


@dataclass
class _Predictions:
    """Predictions (None: not made) of the utterances ``index``, with their wall time and,
    from an attention model's one pass, the Fig. 2 data."""

    index: np.ndarray
    pred: np.ndarray | None
    seconds: float
    attention: AttentionWeights | None = None


@contextlib.contextmanager
def _torch_threads(n):
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _fit_estimator(task, data):
    train_idx = np.flatnonzero((data.mode == task.train_mode) & ~data.folds[task.fold])
    est = task.spec.make_classifier(data.sample_rate, random_state=task.seed, **task.params)
    if task.progress and "progress" in est.get_params() and "progress" not in task.params:
        est.set_params(progress=True)  # the estimator's own epoch bar
    # speaker-disjoint internal validation (the networks' early stopping, the GMM-UBM's
    # calibration folds, the fusion's inner split), also through a Pipeline
    from ..estimators import fit_with_groups

    t0 = time.perf_counter()
    fit_with_groups(est, data.features[train_idx], data.target[train_idx], data.groups[train_idx])
    return _Fitted(est, train_idx, time.perf_counter() - t0)


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

    train_idx, test_idx = fitted.train_idx, predictions.index
    truth = data.target[test_idx]
    pred = np.asarray(predictions.pred).astype(str)
    labels = [str(x) for x in data.labels]
    return {
        "format": _RESULT_FORMAT, "model": task.model, "condition": cond, "fold": task.fold,
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


def _fit_task(task, data):
    """Fit one (model, training mode, fold); return its records and Fig. 2 data.

    For a model with attention (and an ``out_dir``), the held-out utterances of the
    training mode are run once: the matched condition's predictions and the attention
    come from the same outputs. Other conditions use ``predict``.
    """
    with _torch_threads(task.threads):
        fitted = _fit_estimator(task, data)
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


def _numbered_fit(i, task, data):
    return i, _fit_task(task, data)
