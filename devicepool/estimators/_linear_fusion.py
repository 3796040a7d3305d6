"""Multi-class linear score calibration and fusion (one weight per system, one offset per
class), fitted by minimising the cross-entropy.

For ``M`` systems giving scores ``S_m`` of shape ``(n, C)`` (log-posteriors, log-likelihood
ratios or SVM decision values) the fused score is ``z = sum_m a_m S_m + b`` and the
posterior ``softmax(z)``: the multi-class form of linear logistic-regression fusion
(Brümmer & du Preez 2006; Brümmer's FoCal Multiclass). ``M = 1`` is the calibration of
one system (a scale and class offsets). The objective is convex in ``(a, b)``; a small
ridge penalty on ``a`` keeps it bounded when the scores separate the classes.

Because a member alone (the other weights zero) is one of the candidates, the fused
cross-entropy on the data it is fitted on is never above a calibrated member's (up to
the ridge term); :func:`cross_entropy` measures it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

__all__ = ["fit_linear_fusion", "fuse", "cross_entropy"]


def fuse(scores, weights, offsets):
    """``sum_m a_m S_m + b``: fused scores of shape ``(n, C)`` (log-posteriors up to a
    per-row constant)."""
    z = np.asarray(offsets, np.float64)[None, :] + 0.0
    for a, s in zip(weights, scores):
        z = z + a * np.asarray(s, np.float64)
    return z


def cross_entropy(log_posteriors, y):
    """Mean ``-log P(true class)`` in nats."""
    lp = log_softmax(np.asarray(log_posteriors, np.float64), axis=1)
    return float(-lp[np.arange(len(y)), y].mean())


def fit_linear_fusion(scores, y, n_classes, *, ridge=1e-4, offset_ridge=0.0, sample_weight=None):
    """Fit the weights ``a`` (one per system) and offsets ``b`` (one per class).

    Parameters
    ----------
    scores : list of ndarray of shape (n_samples, n_classes)
        One score matrix per system, columns in class order.
    y : ndarray of int, shape (n_samples,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
    ridge : float, default=1e-4
        Penalty ``ridge * sum_m a_m^2`` added to the mean cross-entropy.
    offset_ridge : float, default=0.0
        Penalty ``offset_ridge * sum_c (b_c - log prior_c)^2``: keeps the offsets near the
        log class priors where the scores separate the classes and nothing else pins
        them (few held-out speakers), instead of letting them absorb those speakers'
        errors.
    sample_weight : ndarray of shape (n_samples,), optional

    Returns
    -------
    weights : ndarray of shape (n_systems,)
    offsets : ndarray of shape (n_classes,), summing to zero
    """
    S = np.stack([np.asarray(s, np.float64) for s in scores])      # (M, n, C)
    m, n, c = S.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    w = w / w.sum()
    onehot = np.zeros((n, c))
    onehot[np.arange(n), y] = 1.0
    # scale each system's scores to unit spread for the optimiser; undone below
    spread = np.array([max(float(np.std(s)), 1e-12) for s in S])
    Sn = S / spread[:, None, None]

    def objective(theta):
        a, b = theta[:m], theta[m:]
        z = np.tensordot(a, Sn, axes=1) + b
        lp = log_softmax(z, axis=1)
        loss = -np.sum(w * np.sum(onehot * lp, axis=1))
        g = (np.exp(lp) - onehot) * w[:, None]                      # (n, C)
        grad_a = np.einsum("mnc,nc->m", Sn, g)
        grad_b = g.sum(axis=0)
        reg = ridge * np.sum((a / spread) ** 2) + offset_ridge * np.sum((b - b0) ** 2)
        return loss + reg, np.concatenate([grad_a + 2 * ridge * a / spread**2,
                                           grad_b + 2 * offset_ridge * (b - b0)])

    prior = np.bincount(y, weights=w, minlength=c)
    b0 = np.log(np.maximum(prior, 1e-12))
    theta0 = np.concatenate([np.full(m, 1.0 / m), b0])
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-9})
    a = res.x[:m] / spread
    b = res.x[m:] - res.x[m:].mean()
    return a, b
