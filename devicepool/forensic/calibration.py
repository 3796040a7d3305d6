"""Calibrators: from a raw comparison score to a log10 likelihood ratio.

Fitted on the scores of calibration pairs with known hypotheses (1 = H1, same device;
0 = H2, different devices), scikit-learn style: ``fit(scores, y)`` then
``transform(scores)`` returns log10 LRs.

* :class:`LogisticCalibrator` -- an affine map ``log10 LR = a * score + b`` fitted by
  logistic regression (:class:`sklearn.linear_model.LogisticRegression`) with balanced
  class weights. A logistic regression's log odds are the log LR plus the log prior odds
  of its training data; balanced weights make the weighted data's prior 1/2 (log odds
  0), so the fitted log odds are the natural-log LR itself. Monotone and smooth; the
  usual choice when the calibration data are few.
* :class:`IsotonicCalibrator` -- the pool-adjacent-violators (PAV) fit of ``y`` on the
  score (:class:`sklearn.isotonic.IsotonicRegression`, linear interpolation between
  its points, constant beyond the calibration scores); a posterior ``p`` becomes
  ``LR = (p / (1 - p)) / (n1 / n0)``. Bounds: PAV gives LR = 0 or infinity in bins of
  one hypothesis only, which no finite data can support. The LRs are clipped to
  ``[1 / n1, n0]`` (``n1``, ``n0`` the numbers of H1 and H2 calibration pairs): the
  largest LR a bin of H1 pairs could have if one misleading H2 pair were added to it
  is ``(n1_bin / n1) / (1 / n0) <= n0``, and symmetrically ``1 / n1`` at the bottom.

Both are symmetric in the hypotheses: fitted with the labels swapped (and, for the
isotonic one, the scores negated so that they still increase with the new H1), the
LRs are the reciprocals.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, validate_params
from ._checks import check_scores, check_scores_labels

__all__ = ["IsotonicCalibrator", "LogisticCalibrator"]

_LN10 = np.log(10.0)


class LogisticCalibrator(BaseEstimator):
    """Affine score-to-log10-LR map fitted by class-balanced logistic regression.

    The scores are standardised before the fit (so ``C`` does not depend on their
    scale) and the coefficients mapped back.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 regularisation strength of the slope (on standardised scores); the
        intercept is not penalised.

    Attributes
    ----------
    coef_ : float
        ``a``: log10 LR per unit of score.
    intercept_ : float
        ``b``: log10 LR at score 0.
    prior_log_odds_ : float
        log10(n1 / n0) of the calibration data (for information; not in the LR).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = np.r_[rng.normal(2, 1, 500), rng.normal(0, 1, 500)]
    >>> y = np.r_[np.ones(500), np.zeros(500)]
    >>> cal = LogisticCalibrator().fit(s, y)
    >>> round(cal.coef_, 1)  # analytic: ln LR = 2 s - 2, so 2 / ln(10) = 0.87 per unit
    0.9
    """

    _parameter_constraints = {"C": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, scores, y):
        """Fit on calibration scores and hypotheses.

        Parameters
        ----------
        scores : array-like of shape (n,)
        y : array-like of shape (n,)
            1 = H1 (same device), 0 = H2.

        Returns
        -------
        self
        """
        validate_params(self.get_params(), self._parameter_constraints, owner="LogisticCalibrator")
        s, y = check_scores_labels(scores, y, name="scores", owner="LogisticCalibrator")
        centre, spread = s.mean(), s.std()
        spread = spread if spread > 0 else 1.0
        model = LogisticRegression(C=self.C, class_weight="balanced")
        model.fit(((s - centre) / spread)[:, None], y)
        slope = model.coef_[0, 0] / spread
        self.coef_ = float(slope / _LN10)
        self.intercept_ = float((model.intercept_[0] - slope * centre) / _LN10)
        self.prior_log_odds_ = float(np.log10(y.sum() / (len(y) - y.sum())))
        return self

    def transform(self, scores):
        """log10 LRs of scores.

        Parameters
        ----------
        scores : array-like of shape (m,)

        Returns
        -------
        llr : ndarray of shape (m,)
        """
        check_is_fitted(self, "coef_")
        s = check_scores(scores, name="scores", owner="LogisticCalibrator")
        return self.coef_ * s + self.intercept_


class IsotonicCalibrator(BaseEstimator):
    """Monotone (PAV) score-to-log10-LR map, LRs bounded to ``[1 / n1, n0]``.

    Attributes
    ----------
    isotonic_ : sklearn.isotonic.IsotonicRegression
        The PAV fit of the posterior of H1 on the score.
    prior_log_odds_ : float
        log10(n1 / n0) of the calibration data, divided out of the posterior odds.
    llr_bounds_ : tuple of float
        ``(-log10(n1), log10(n0))``: no output falls outside.

    Examples
    --------
    >>> cal = IsotonicCalibrator().fit([0, 1, 2, 3], [0, 0, 1, 1])
    >>> cal.transform([0, 3]).tolist()  # bounded: 1/n1 and n0, here 1/2 and 2
    [-0.3010299956639812, 0.3010299956639812]
    """

    _parameter_constraints: dict = {}

    def fit(self, scores, y):
        """Fit on calibration scores and hypotheses.

        Parameters
        ----------
        scores : array-like of shape (n,)
        y : array-like of shape (n,)
            1 = H1 (same device), 0 = H2.

        Returns
        -------
        self
        """
        s, y = check_scores_labels(scores, y, name="scores", owner="IsotonicCalibrator")
        n1 = int(y.sum())
        n0 = len(y) - n1
        self.isotonic_ = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(s, y)
        self.prior_log_odds_ = float(np.log10(n1 / n0))
        self.llr_bounds_ = (-float(np.log10(n1)), float(np.log10(n0)))
        return self

    def transform(self, scores):
        """log10 LRs of scores, within :attr:`llr_bounds_`.

        Parameters
        ----------
        scores : array-like of shape (m,)

        Returns
        -------
        llr : ndarray of shape (m,)
        """
        check_is_fitted(self, "isotonic_")
        s = check_scores(scores, name="scores", owner="IsotonicCalibrator")
        p = np.clip(self.isotonic_.predict(s), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            llr = np.log10(p) - np.log10(1.0 - p) - self.prior_log_odds_
        return np.clip(llr, *self.llr_bounds_)
