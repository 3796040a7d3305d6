"""Open-set device identification: a closed-set classifier that may answer "unknown device".

:class:`OpenSetClassifier` wraps a FITTED classifier (``predict_proba``, ``classes_``)
and rejects a recording when its confidence score is not above a threshold. The
threshold is set on held-out recordings of devices the classifier was NOT trained on
(:meth:`OpenSetClassifier.calibrate`): it is the lowest that accepts at most ``far`` of
them (the false acceptance rate); the rate at which recordings of the known devices are
then rejected is recorded too.

Two confidence scores are offered:

* ``"max_proba"`` (default): the largest class probability (the maximum-softmax
  baseline of Hendrycks & Gimpel). It lies in ``[1 / n_classes, 1]`` and reads as a
  probability, but saturates: a confident network gives probabilities that round to
  1.0 in float32 for many recordings, known or not, and tied scores at the threshold
  can only be rejected together (the achieved rate is then below ``far`` and more
  known recordings are rejected).
* ``"margin"``: the difference of the two largest log probabilities (equal to the
  difference of the two largest logits), taken from ``predict_log_proba`` when the
  classifier has it. It does not saturate, so ties are rare; prefer it for confident
  networks. For two classes both scores rank recordings identically.

Which is better depends on the network and the devices: compare ``frr_`` of both at
the same ``far`` on your calibration data.
"""

from __future__ import annotations

import copy
import math
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .. import persistence
from .._validation import Interval, StrOptions, validate_params
from ._checks import HasMethods

__all__ = ["UNKNOWN", "OpenSetClassifier"]

#: The label :meth:`OpenSetClassifier.predict` gives a rejected recording.
UNKNOWN = "unknown device"


class OpenSetClassifier(BaseEstimator):
    """Closed-set classifier plus a rejection threshold set for a false acceptance rate.

    Parameters
    ----------
    classifier : fitted classifier
        With ``predict_proba`` and ``classes_`` (e.g. a fitted
        :class:`~devicepool.estimators.DACNNClassifier`); used as given (wrap it in
        :class:`sklearn.frozen.FrozenEstimator` to keep it fitted through
        :func:`sklearn.base.clone`).
    far : float in [0, 1), default=0.05
        Target false acceptance rate: at most this fraction of the calibration
        recordings of unknown devices is accepted.
    score : {"max_proba", "margin"}, default="max_proba"
        The confidence score (see the module).

    Attributes
    ----------
    threshold_ : float
        A recording is accepted when its score is strictly above this.
    far_ : float
        Fraction of calibration unknowns accepted (``<= far``).
    frr_ : float
        Fraction of calibration recordings of known devices rejected.
    n_known_, n_unknown_ : int
        Calibration recordings of each kind.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-3, 1, (50, 2)), rng.normal(3, 1, (50, 2))]
    >>> clf = LogisticRegression().fit(X, np.repeat(["a", "b"], 50))
    >>> open_set = OpenSetClassifier(clf, far=0.1).calibrate(X, rng.normal(0, 1, (40, 2)))
    >>> bool(open_set.far_ <= 0.1), open_set.predict([[-3.0, -3.0]]).tolist()
    (True, ['a'])
    """

    _parameter_constraints = {
        "classifier": [HasMethods("predict_proba")],
        "far": [Interval(Real, 0, 1, closed="left")],
        "score": [StrOptions({"max_proba", "margin"})],
    }

    def __init__(self, classifier, far=0.05, score="max_proba"):
        self.classifier = classifier
        self.far = far
        self.score = score

    def _class_scores(self, X):
        """Per-class probabilities (``"max_proba"``) or log probabilities, ``(n, n_classes)``."""
        clf = self.classifier
        if self.score == "margin" and callable(getattr(clf, "predict_log_proba", None)):
            return np.asarray(clf.predict_log_proba(X), dtype=float)
        proba = np.asarray(clf.predict_proba(X), dtype=float)
        if self.score == "max_proba":
            return proba
        with np.errstate(divide="ignore"):
            return np.log(proba)

    def _scores_and_labels(self, X):
        """Confidence scores ``(n,)`` and the classifier's labels ``(n,)`` from one pass."""
        classes = np.asarray(self.classifier.classes_)
        values = self._class_scores(X)
        if values.ndim != 2 or values.shape[1] != len(classes) or len(classes) < 2:
            raise ValueError(
                f"OpenSetClassifier: the classifier returned class scores of shape "
                f"{values.shape}; expected (n_recordings, {len(classes)}) with at least 2 classes"
            )
        top = np.argmax(values, axis=1)
        if self.score == "max_proba":
            return values[np.arange(len(top)), top], classes[top]
        two = np.sort(values, axis=1)[:, -2:]
        margin = two[:, 1] - two[:, 0]  # +inf where the runner-up has probability 0
        return np.minimum(margin, np.finfo(float).max), classes[top]

    def calibrate(self, X_known, X_unknown):
        """Set the threshold on held-out recordings of known and of unknown devices.

        Parameters
        ----------
        X_known : input of the classifier, n_known recordings
            Recordings of devices the classifier knows (held out from its training).
        X_unknown : input of the classifier, n_unknown recordings
            Recordings of devices the classifier was not trained on.

        Returns
        -------
        self
        """
        validate_params(self.get_params(deep=False), self._parameter_constraints,
                        owner="OpenSetClassifier")
        if not hasattr(self.classifier, "classes_"):
            raise NotFittedError("OpenSetClassifier: the classifier must be fitted (it has no "
                                 "classes_)")
        if any(hasattr(X, "__len__") and len(X) == 0 for X in (X_known, X_unknown)):
            raise ValueError("OpenSetClassifier: calibrate needs at least one recording of "
                             "known and one of unknown devices")
        known = self._scores_and_labels(X_known)[0]
        unknown = self._scores_and_labels(X_unknown)[0]
        allowed = math.floor(self.far * len(unknown) + 1e-9)  # unknowns that may pass
        self.threshold_ = float(np.sort(unknown)[::-1][allowed])
        self.far_ = float(np.mean(unknown > self.threshold_))
        self.frr_ = float(np.mean(known <= self.threshold_))
        self.n_known_, self.n_unknown_ = len(known), len(unknown)
        return self

    def decision_scores(self, X):
        """Confidence scores (higher = more like a known device).

        Parameters
        ----------
        X : input of the classifier, n recordings

        Returns
        -------
        scores : ndarray of shape (n,)
        """
        return self._scores_and_labels(X)[0]

    def predict(self, X):
        """The classifier's device, or :data:`UNKNOWN` where the score is not above the threshold.

        Parameters
        ----------
        X : input of the classifier, n recordings

        Returns
        -------
        labels : ndarray of shape (n,), dtype object
        """
        if not hasattr(self, "threshold_"):
            raise NotFittedError("This OpenSetClassifier has no threshold yet; call "
                                 "calibrate(X_known, X_unknown) first.")
        scores, labels = self._scores_and_labels(X)
        out = labels.astype(object)
        out[scores <= self.threshold_] = UNKNOWN
        return out

    def to_payload(self):
        """The calibration (settings, ``threshold_``, ``far_``, ``frr_``, counts), without the
        classifier, as :func:`devicepool.persistence.to_payload` gives it.

        Returns
        -------
        payload : dict
        """
        if not hasattr(self, "threshold_"):
            raise NotFittedError("This OpenSetClassifier has no threshold yet; call "
                                 "calibrate(X_known, X_unknown) first.")
        return persistence.to_payload(copy.copy(self).set_params(classifier=None))

    @classmethod
    def from_payload(cls, payload, classifier):
        """A calibrated ``OpenSetClassifier`` around ``classifier`` (the fitted classifier
        it was calibrated with) from :meth:`to_payload`'s dict (or one of devicepool 0.5).

        Returns
        -------
        model : OpenSetClassifier
        """
        model = persistence.from_payload(payload, source="OpenSetClassifier payload")[0]
        if type(model) is not cls:
            raise ValueError(f"not an OpenSetClassifier payload: it holds a {type(model).__name__}")
        return model.set_params(classifier=classifier)
