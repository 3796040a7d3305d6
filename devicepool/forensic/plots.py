"""Tippett, DET and ECE plots of log10 likelihood ratios.

Matplotlib is the optional ``plot`` extra; it is imported only when a function is
called. The functions draw with the object API (:class:`matplotlib.figure.Figure`,
no :mod:`matplotlib.pyplot` state), take ``ax=None`` (a new figure) and return the
axes; save with ``ax.figure.savefig(path)``. The numbers come from
:mod:`devicepool.forensic.metrics` (``tippett_data``, ``det_data``, ``ece_data``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .metrics import det_data, ece_data, eer, tippett_data

__all__ = ["plot_det", "plot_ece", "plot_tippett"]

_H1 = "H1: same device"
_H2 = "H2: different devices"
_DET_TICKS = np.array([0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9])


def _axes(ax, figsize=(4.5, 3.5)):
    """Return ``ax``, or the axes of a new figure when ``ax`` is None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("devicepool.forensic.plots needs matplotlib: "
                          "pip install devicepool[plot]") from None
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _finish(ax, title):
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_tippett(llr, y, ax=None, title=None):
    """Tippett plot: per hypothesis, the proportion of trials with ``log10 LR >= x``.

    Parameters
    ----------
    llr : array-like of shape (n,)
        log10 LRs.
    y : array-like of shape (n,)
        1 = H1 (same device), 0 = H2.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
    """
    d = tippett_data(llr, y)
    ax = _axes(ax)
    ax.plot(d.llr, d.h1, drawstyle="steps-pre", color="C0", label=_H1)
    ax.plot(d.llr, d.h2, drawstyle="steps-pre", color="C3", linestyle="--", label=_H2)
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel(r"$\log_{10}$ LR")
    ax.set_ylabel(r"proportion of trials with $\log_{10}$ LR $\geq x$")
    ax.set_ylim(-0.02, 1.02)
    return _finish(ax, title)


def plot_det(llr, y, ax=None, title=None):
    """DET curve on probit (normal deviate) axes, with the equal-error-rate point.

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        Ticks are labelled in percent; rates of 0 or 1 are drawn at the axis edge
        (0.05 % and 99.95 %).
    """
    d = det_data(llr, y)
    rate = eer(llr, y)
    lo = 0.0005
    ax = _axes(ax)
    ax.plot(norm.ppf(np.clip(d.fpr, lo, 1 - lo)), norm.ppf(np.clip(d.fnr, lo, 1 - lo)),
            color="C0", label="system")
    ax.plot([norm.ppf(max(rate, lo))], [norm.ppf(max(rate, lo))], "o", color="C3",
            label=f"EER {100 * rate:.1f} %")
    ticks = norm.ppf(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, labels=labels)
    ax.set_xlim(norm.ppf(lo), norm.ppf(0.95))
    ax.set_ylim(norm.ppf(lo), norm.ppf(0.95))
    ax.set_xlabel("false alarm rate, H2 decided H1 (%)")
    ax.set_ylabel("miss rate, H1 decided H2 (%)")
    return _finish(ax, title)


def plot_ece(llr, y, ax=None, title=None, prior_log_odds=None):
    """ECE plot: empirical cross-entropy of the system, after PAV, and of LR = 1.

    Parameters
    ----------
    llr : array-like of shape (n,)
    y : array-like of shape (n,)
    ax : matplotlib Axes, optional
    title : str, optional
    prior_log_odds : array-like of shape (k,), optional
        Prior log10 odds (default ``np.linspace(-2.5, 2.5, 51)``).

    Returns
    -------
    ax : matplotlib Axes
    """
    d = ece_data(llr, y, prior_log_odds)
    ax = _axes(ax)
    ax.plot(d.prior_log_odds, d.system, color="C0", label="system")
    ax.plot(d.prior_log_odds, d.calibrated, color="C2", linestyle="--",
            label="after PAV calibration")
    ax.plot(d.prior_log_odds, d.reference, color="0.4", linestyle=":", label="neutral (LR = 1)")
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel(r"prior $\log_{10}$ odds of H1")
    ax.set_ylabel("empirical cross-entropy (bits)")
    ax.set_ylim(bottom=0.0)
    return _finish(ax, title)
