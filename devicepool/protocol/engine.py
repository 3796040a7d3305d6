"""The protocols' engine: one fit (:class:`Fit`, :func:`fit_one`) and the dispatch of many
(:func:`run_fits`), written once for every protocol.

A protocol is a plan (its fits), this engine, its measures and its report: the Table-3
protocol (:mod:`.runner`, :mod:`.fitting`) and the forensic one (:mod:`.forensic`) differ
only in what they plan and what they measure on a fitted estimator.

* :func:`fit_one` builds a fit's estimator through the one rule of the registry
  (``spec.make_classifier(sample_rate, random_state=seed, **params)``: a ``"waveform"``
  model is also given the sample rate), fits it on its training utterances with their
  speakers as ``groups`` (:func:`devicepool.estimators.fit_with_groups`) and times it.
* :func:`run_fits` runs a protocol's fit function over its tasks here, one after the
  other, or through joblib (``n_jobs`` loky processes, or inside
  ``with joblib.parallel_backend("dask"):`` a dask.distributed cluster's workers). In
  parallel, fits show no epoch bars of their own (bars of concurrent fits would
  interleave) and, on a cluster, each fit runs with one torch thread; results come back
  as the fits finish. Ctrl-C stops joblib's workers and reaches the caller (which holds
  its folder's lock in a ``with``).

A task travels to its worker with everything it reads (the model's spec included), so
worker processes can fit models registered in this process only.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import numpy as np

from .cache import _progress_bar, _remote_backend
from .registry import ModelSpec

__all__ = ["Fit", "FitData", "Fitted", "fit_one", "run_fits"]


@dataclass(frozen=True, eq=False)
class FitData:
    """What every fit of one feature kind reads: features and labels of all utterances
    (mode-augmentation copies appended, marked in ``augmented``) and the folds.

    Attributes
    ----------
    features : ndarray of object, shape (n_utterances,)
        Per utterance, its features ``(n_frames, width)`` (or samples).
    target, mode, groups : ndarray of shape (n_utterances,)
        Device, speaking mode and speaker of each utterance.
    folds : list of ndarray of bool, shape (n_utterances,)
        Held-out utterances of each speaker-disjoint fold (Table 3; empty otherwise).
    labels : list of str
        The corpus's devices.
    augmented : ndarray of bool, shape (n_utterances,), or None
    sample_rate : int
    """

    features: np.ndarray
    target: np.ndarray
    mode: np.ndarray
    groups: np.ndarray
    folds: list = ()
    labels: list = ()
    augmented: np.ndarray | None = None
    sample_rate: int = 16000

    def train_index(self, train_mode, fold):
        """Training utterances of ``fold`` in ``train_mode`` (copies included)."""
        return np.flatnonzero((self.mode == train_mode) & ~self.folds[fold])

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


@dataclass(frozen=True, eq=False)
class Fit:
    """One estimator fit: the model, its parameters and seed, what it trains on and what
    its fitted estimator is then applied to.

    Attributes
    ----------
    spec : ModelSpec
    params : dict
        The model's parameters (``model_params``).
    seed : int
        The estimator's ``random_state`` (:func:`~.conditions.seed_for`).
    train_index : ndarray of int, shape (n_train,)
        Rows of :class:`FitData` it is fitted on.
    predict_index : ndarray of int or None
        Rows the protocol's fit function applies the fitted estimator to.
    key : hashable
        What the protocol knows the fit by (the forensic protocol: its fold).
    progress : bool
        The estimator's own epoch bar (set off by :func:`run_fits` in parallel).
    threads : int or None
        Torch intra-op threads during the fit (None: the process's setting).
    """

    spec: ModelSpec
    params: dict
    seed: int
    train_index: np.ndarray
    predict_index: np.ndarray | None = None
    key: object = None
    progress: bool = False
    threads: int | None = None


@dataclass
class Fitted:
    """A fitted estimator, its training rows and the fit's wall time (seconds)."""

    est: object
    train_index: np.ndarray
    seconds: float


@contextlib.contextmanager
def torch_threads(n):
    """Torch's intra-op threads set to ``n`` inside the block (None: left as they are)."""
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


def fit_one(fit, data):
    """Build ``fit``'s estimator, fit it on ``data``'s rows ``fit.train_index`` with their
    speakers as groups (the networks' early stopping, the GMM-UBM's calibration folds,
    the fusion's inner split hold out whole speakers, also through a Pipeline), and time it.

    Parameters
    ----------
    fit : Fit
    data : FitData

    Returns
    -------
    Fitted
    """
    from ..estimators import fit_with_groups

    est = fit.spec.make_classifier(data.sample_rate, random_state=fit.seed, **fit.params)
    if fit.progress and "progress" in est.get_params() and "progress" not in fit.params:
        est.set_params(progress=True)  # the estimator's own epoch bar
    idx = fit.train_index
    t0 = time.perf_counter()
    fit_with_groups(est, data.features[idx], data.target[idx], data.groups[idx])
    return Fitted(est, idx, time.perf_counter() - t0)


def in_parallel(n_jobs, n_fits):
    """Whether :func:`run_fits` sends ``n_fits`` fits to joblib's workers."""
    return n_jobs is not None and n_jobs != 1 and n_fits >= 2


def _call(fn, task, data):
    with torch_threads(task.threads):
        return fn(task, data)


def _numbered_fit(i, fn, task, data):
    return i, _call(fn, task, data)


def _outcomes(tasks, fn, data, n_jobs):
    if not in_parallel(n_jobs, len(tasks)):
        yield from ((t, _call(fn, t, data[t.spec.feature])) for t in tasks)
        return
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    tasks = [replace(t, progress=False) for t in tasks]
    if _remote_backend():  # one torch thread per fit on a cluster's worker
        tasks = [replace(t, threads=1) for t in tasks]
    unordered = get_active_backend()[0].supports_return_generator
    outs = Parallel(n_jobs=n_jobs, return_as="generator_unordered" if unordered else "list")(
        delayed(_numbered_fit)(i, fn, t, data[t.spec.feature]) for i, t in enumerate(tasks))
    yield from ((tasks[i], out) for i, out in outs)


def run_fits(tasks, fn, data, n_jobs=None, progress=False, desc="fits", n_done=0, describe=None):
    """``(task, fn(task, data[task.spec.feature]))`` for every task, as the fits finish.

    Parameters
    ----------
    tasks : iterable of Fit
        Or of a protocol's own frozen dataclass with ``spec``, ``progress`` and
        ``threads`` fields (the Table-3 protocol's :class:`~.fitting.FitTask`).
    fn : callable
        ``fn(task, data) -> outcome``, a module-level function (it travels to the
        workers); it runs with ``task.threads`` torch threads.
    data : mapping
        Feature kind -> :class:`FitData`.
    n_jobs : int or None
        joblib's ``n_jobs``; None or 1 (or a single task): here, one after the other.
    progress : bool
        One bar over the fits (``desc``; ``n_done`` fits counted as finished already;
        ``describe(task)`` shown beside it after each fit).

    Yields
    ------
    task, outcome
        The task as it ran (in parallel: ``progress=False``; on a cluster ``threads=1``).
    """
    tasks = list(tasks)
    bar = _progress_bar(progress, total=n_done + len(tasks), initial=n_done, desc=desc, unit="fit")
    with bar:
        for task, out in _outcomes(tasks, fn, data, n_jobs):
            yield task, out
            if describe is not None:
                bar.set_postfix_str(describe(task))
            bar.update(1)
