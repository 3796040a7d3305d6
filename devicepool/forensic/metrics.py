"""Performance metrics of log10 likelihood ratios: Cllr, Cllr_min, EER, Tippett, DET, ECE.

Every function takes ``llr``, the log10 likelihood ratios of ``n`` trials (ndarray
``(n,)``, finite), and ``y``, their true hypotheses: 1 for H1 (same device), 0 for H2
(different devices). Both hypotheses must occur.

**Cllr** (Brümmer & du Preez 2006) is the log-likelihood-ratio cost in bits,
``0.5 * (mean_H1 log2(1 + 1/LR) + mean_H2 log2(1 + LR))``: 0 for a perfect system,
1 for the neutral system that always says LR = 1, above 1 for a misleading one. It is
computed with ``logaddexp`` from the log LRs, so it is exact for any finite log LR.

**Cllr_min** is Cllr after the best monotone recalibration: the pool-adjacent-violators
(PAV) fit of ``y`` on ``llr`` (:class:`sklearn.isotonic.IsotonicRegression`, ties of
``llr`` pooled) gives posteriors ``p``, turned into LRs by dividing the posterior
odds by the prior odds of the data, ``n1 / n0``. Convention: **exact, no clipping**. A
PAV posterior of 0 occurs only in a bin holding H2 trials alone and one of 1 only in a
bin of H1 trials alone; the LR there is 0 (or infinite) and the cost of each of those
trials is exactly 0 (``log2(1 + 0)``), so the costs are computed from the log LRs with
infinities allowed and no bound is needed. This is the same value as the
ROC-convex-hull formulation. ``cllr_cal = cllr - cllr_min`` is the calibration loss.

**ECE** (Ramos & Gonzalez-Rodriguez) is the empirical cross-entropy over a range of
prior log10 odds ``o``: ``P1 * mean_H1 log2(1 + 1/(LR 10**o)) + P2 * mean_H2 log2(1 +
LR 10**o)`` with ``P1 = 10**o / (1 + 10**o)``, ``P2 = 1 - P1``; at ``o = 0`` it is Cllr.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import det_curve, roc_curve

from ._checks import check_scores, check_scores_labels

__all__ = [
    "elub_bounds",
    "DetData",
    "EceData",
    "TippettData",
    "cllr",
    "cllr_cal",
    "cllr_min",
    "det_data",
    "ece_data",
    "eer",
    "tippett_data",
]

_LN10 = np.log(10.0)
_LN2 = np.log(2.0)


class TippettData(NamedTuple):
    """Tippett curves: proportion of each hypothesis' trials with ``log10 LR >= x``."""

    llr: np.ndarray  #: the distinct log10 LRs, sorted, shape (k,)
    h1: np.ndarray  #: proportion of H1 trials with log10 LR >= llr, shape (k,)
    h2: np.ndarray  #: proportion of H2 trials with log10 LR >= llr, shape (k,)


class DetData(NamedTuple):
    """Detection error trade-off: error rates when deciding H1 for ``llr >= threshold``."""

    fpr: np.ndarray  #: H2 trials decided H1 (false alarms), shape (k,)
    fnr: np.ndarray  #: H1 trials decided H2 (misses), shape (k,)
    thresholds: np.ndarray  #: the log10 LR thresholds, shape (k,)


class EceData(NamedTuple):
    """Empirical cross-entropy (bits) per prior log10 odds."""

    prior_log_odds: np.ndarray  #: prior log10 odds of H1, shape (k,)
    system: np.ndarray  #: ECE of the LRs as given, shape (k,)
    calibrated: np.ndarray  #: ECE after PAV recalibration (the minimum), shape (k,)
    reference: np.ndarray  #: ECE of the neutral system LR = 1, shape (k,)


def _costs(ln_lr, y):
    """Per-trial costs in bits: ``log2(1 + 1/LR)`` for H1, ``log2(1 + LR)`` for H2.

    ``ln_lr`` (natural log, shape (n,)) may be ``+inf`` for H1 or ``-inf`` for H2
    trials (cost 0).
    """
    signed = np.where(y == 1, -ln_lr, ln_lr)
    return np.logaddexp(0.0, signed) / _LN2


def _balanced_mean(costs, y):
    return 0.5 * (costs[y == 1].mean() + costs[y == 0].mean())


def _pav_ln_lr(llr, y):
    """Natural-log LRs of the PAV recalibration of ``llr``, shape (n,); may be +-inf."""
    p = IsotonicRegression(increasing=True, out_of_bounds="clip").fit_transform(llr, y)
    n1 = y.sum()
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p) - np.log(n1 / (len(y) - n1))


def cllr(llr, y):
    """Log-likelihood-ratio cost (bits).

    Parameters
    ----------
    llr : array-like of shape (n,)
        log10 likelihood ratios.
    y : array-like of shape (n,)
        1 = H1 (same device), 0 = H2 (different devices).

    Returns
    -------
    float

    Examples
    --------
    >>> cllr([0.0, 0.0], [1, 0])
    1.0
    """
    llr, y = check_scores_labels(llr, y, owner="cllr")
    return float(_balanced_mean(_costs(llr * _LN10, y), y))


def cllr_min(llr, y):
    """Cllr after the optimal monotone (PAV) recalibration (bits); exact, see the module.

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)

    Returns
    -------
    float
        ``0 <= cllr_min(llr, y) <= min(1, cllr(llr, y))``.
    """
    llr, y = check_scores_labels(llr, y, owner="cllr_min")
    return float(_balanced_mean(_costs(_pav_ln_lr(llr, y), y), y))


def cllr_cal(llr, y):
    """Calibration loss ``cllr(llr, y) - cllr_min(llr, y)`` (bits).

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)

    Returns
    -------
    float
    """
    return cllr(llr, y) - cllr_min(llr, y)


def elub_bounds(llr, y, *, add_misleading=1, step=0.01):
    """Empirical lower and upper bounds of log10 LRs (ELUB; Vergeer et al., 2016).

    How far do the calibration data support an LR? At each decision threshold ``t`` (an
    LR; the Bayes decision at prior odds ``1 / t``), the system's Bayes error rate, with
    ``add_misleading`` maximally misleading comparisons of each hypothesis added to the
    data (an H1 pair with LR 0 and an H2 pair with LR infinity), is compared with that of
    the neutral system (LR = 1 always). The upper bound is the smallest ``t > 1`` where
    the system does worse than the neutral one, the lower bound the largest ``t < 1``:
    LRs beyond them are not supported by the data (a few hundred pairs cannot support
    an LR of a million).

    Parameters
    ----------
    llr : array-like of shape (n,)
        log10 LRs of the calibration (or validation) pairs.
    y : array-like of shape (n,)
        1 = H1, 0 = H2.
    add_misleading : int, default=1
    step : float, default=0.01
        Grid of thresholds, in log10 units.

    Returns
    -------
    (low, high) : tuple of float
        Bounds in log10 units (``low <= 0 <= high``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.ones(200), np.zeros(200)]
    >>> llr = np.r_[rng.normal(2, 1, 200), rng.normal(-2, 1, 200)]
    >>> low, high = elub_bounds(llr, y)
    >>> bool(-4 < low < -1.5), bool(1.5 < high < 4)
    (True, True)
    """
    llr, y = check_scores_labels(llr, y, owner="elub_bounds")
    h1 = np.sort(llr[y == 1])
    h0 = np.sort(llr[y == 0])
    n1, n0 = len(h1) + add_misleading, len(h0) + add_misleading
    top = max(0.0, float(llr.max())) + step
    bottom = min(0.0, float(llr.min())) - step
    grid = np.arange(np.floor(bottom / step), np.ceil(top / step) + 1) * step
    # misses: H1 pairs at or below t (the added misleading one always); false alarms: H2 above t
    miss = (np.searchsorted(h1, grid, side="right") + add_misleading) / n1
    fa = (len(h0) - np.searchsorted(h0, grid, side="right") + add_misleading) / n0
    odds = 10.0 ** -grid  # prior odds of H1 at which t is the decision threshold
    p1 = odds / (1 + odds)
    system = p1 * miss + (1 - p1) * fa
    neutral = np.minimum(p1, 1 - p1)
    worse = system > neutral
    above = grid[(grid > 0) & worse]
    below = grid[(grid < 0) & worse]
    high = float(above.min()) if len(above) else float(grid.max())
    low = float(below.max()) if len(below) else float(grid.min())
    return low, high


def eer(llr, y, *, return_threshold=False):
    """Equal error rate: where the false-alarm and miss rates cross.

    The ROC (:func:`sklearn.metrics.roc_curve`, all thresholds) is scanned for the first
    threshold where the miss rate ``1 - tpr`` is no longer above the false-alarm rate
    ``fpr``; between that point and the one before, both rates are interpolated linearly
    and the EER is their crossing.

    Parameters
    ----------
    llr : array-like of shape (n,)
        log10 LRs (any score that is higher for H1 works).
    y : array-like of shape (n,)
    return_threshold : bool, default=False
        Also return the threshold at the crossing (interpolated the same way).

    Returns
    -------
    eer : float
        A fraction in [0, 1].
    threshold : float
        Only with ``return_threshold=True``: decide H1 for ``llr >= threshold``.
    """
    llr, y = check_scores_labels(llr, y, owner="eer")
    fpr, tpr, thr = roc_curve(y, llr, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # starts at 1 (nothing accepted), ends at -1
    i = int(np.flatnonzero(diff <= 0)[0])
    if diff[i] == 0 or i == 0:
        rate, threshold = fpr[i], thr[i]
    else:
        t = diff[i - 1] / (diff[i - 1] - diff[i])
        rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
        lo = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
        threshold = lo + t * (thr[i] - lo)
    return (float(rate), float(threshold)) if return_threshold else float(rate)


def tippett_data(llr, y):
    """Tippett curves: per hypothesis, the proportion of trials with ``log10 LR >= x``.

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)

    Returns
    -------
    TippettData
        ``(llr, h1, h2)``, each of shape (k,), ``k`` the number of distinct log LRs.
    """
    llr, y = check_scores_labels(llr, y, owner="tippett_data")
    grid = np.unique(llr)
    out = []
    for label in (1, 0):
        values = np.sort(llr[y == label])
        out.append(1.0 - np.searchsorted(values, grid, side="left") / len(values))
    return TippettData(grid, out[0], out[1])


def det_data(llr, y):
    """False-alarm and miss rates over all thresholds (:func:`sklearn.metrics.det_curve`).

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)

    Returns
    -------
    DetData
        ``(fpr, fnr, thresholds)``, each of shape (k,); plot on probit axes
        (:func:`scipy.stats.norm.ppf`), as :func:`~devicepool.forensic.plot_det` does.
    """
    llr, y = check_scores_labels(llr, y, owner="det_data")
    fpr, fnr, thresholds = det_curve(y, llr, pos_label=1)
    return DetData(fpr, fnr, thresholds)


def _ece(ln_lr, y, ln_odds):
    """ECE (bits) per prior (natural) log odds ``ln_odds`` (k,) of LRs ``ln_lr`` (n,)."""
    out = np.empty(len(ln_odds))
    p1 = expit(ln_odds)
    h1, h2 = ln_lr[y == 1], ln_lr[y == 0]
    for k, o in enumerate(ln_odds):
        c1 = np.logaddexp(0.0, -(h1 + o)).mean()
        c2 = np.logaddexp(0.0, h2 + o).mean()
        out[k] = (p1[k] * c1 + (1.0 - p1[k]) * c2) / _LN2
    return out


def ece_data(llr, y, prior_log_odds=None):
    """Empirical cross-entropy of the system, its PAV recalibration and LR = 1.

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)
    prior_log_odds : array-like of shape (k,), default=np.linspace(-2.5, 2.5, 51)
        Prior log10 odds of H1.

    Returns
    -------
    EceData
        ``(prior_log_odds, system, calibrated, reference)``, each of shape (k,). At prior
        log odds 0, ``system`` is :func:`cllr`, ``calibrated`` :func:`cllr_min` and
        ``reference`` 1.
    """
    llr, y = check_scores_labels(llr, y, owner="ece_data")
    if prior_log_odds is None:
        prior_log_odds = np.linspace(-2.5, 2.5, 51)
    prior = check_scores(prior_log_odds, name="prior_log_odds", owner="ece_data")
    ln_odds = prior * _LN10
    return EceData(
        prior,
        _ece(llr * _LN10, y, ln_odds),
        _ece(_pav_ln_lr(llr, y), y, ln_odds),
        _ece(np.zeros_like(llr), y, ln_odds),
    )
