"""Open-set identification by enrolment: :class:`EnrolledDevices`.

A user enrols the devices they know with a few recordings each (``fit(X, devices)``; no
network is trained). A new recording is compared with every enrolled device by the
calibrated likelihood ratio of a :class:`~devicepool.forensic.DeviceLR` (by default the
shipped pretrained one): it is assigned to the device of highest LR, or answered
:data:`~devicepool.forensic.UNKNOWN` when no LR is above the threshold (by default
LR > 1: the evidence must favour the device over the population). A threshold for a
chosen false acceptance rate can be set on recordings of other devices
(:meth:`EnrolledDevices.calibrate`).

Unlike the maximum class probability of a closed-set network
(:class:`~devicepool.forensic.OpenSetClassifier`), which is confident for devices it never
heard, the LR compares a recording with each enrolled device on the scale of a device
population, so a recording far from all of them gets LR < 1 against each.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, validate_params
from ._checks import check_labels
from .openset import UNKNOWN

__all__ = ["EnrolledDevices", "enrolment_references"]


def enrolment_references(devices, speakers, k):
    """Indices of at most ``k`` recordings per device to enrol, the speakers taken in turn
    (a device's first recording of each speaker, then the second of each, ...), so the
    references span the speakers; sorted. ``speakers`` may be None (in order)."""
    devices = np.asarray(devices)
    speakers = np.zeros(len(devices), dtype=int) if speakers is None else np.asarray(speakers)
    chosen = []
    for d in np.unique(devices):
        idx = np.flatnonzero(devices == d)
        rank = np.empty(len(idx), dtype=int)  # how many of this speaker's recordings came before
        for s in np.unique(speakers[idx]):
            mine = speakers[idx] == s
            rank[mine] = np.arange(mine.sum())
        chosen.extend(idx[np.lexsort((idx, rank))][:k])
    return np.sort(np.asarray(chosen, dtype=int))


class EnrolledDevices(ClassifierMixin, BaseEstimator):
    """Identify recordings among enrolled devices, or answer "unknown device".

    Each device's enrolled recordings are its references: the calibration's LRs are best
    calibrated for ``lr.n_references`` of them (3 for the shipped one); enrolling many
    more averages more references and makes the LRs somewhat overconfident.

    Parameters
    ----------
    lr : DeviceLR or None, default=None
        A fitted likelihood-ratio system with an embedder (recordings in); None: the
        shipped pretrained one (:meth:`DeviceLR.pretrained`).
    threshold : float, default=0.0
        log10 LR a recording must exceed against its best device to be accepted (0: LR > 1).

    Attributes
    ----------
    classes_ : ndarray of str
        The enrolled devices.
    lr_ : DeviceLR
    n_enrolled_ : ndarray of int
        Recordings enrolled per device.
    threshold_ : float
        The threshold in use (``threshold``, or the one :meth:`calibrate` set).

    Examples
    --------
    >>> from devicepool import make_device_corpus
    >>> c = make_device_corpus(n_devices=3, n_speakers=2, n_utterances=2, modes="neutral")
    >>> spk = np.asarray(c.groups)
    >>> model = EnrolledDevices().fit(c.data[spk == "spk01"], c.target[spk == "spk01"])
    >>> float((model.predict(c.data[spk == "spk02"]) == c.target[spk == "spk02"]).mean())
    1.0
    """

    _parameter_constraints = {
        "lr": "no_validation",  # a fitted DeviceLR or None, checked in fit
        "threshold": [Interval(Real, None, None, closed="neither")],
    }

    def __init__(self, lr=None, threshold=0.0):
        self.lr = lr
        self.threshold = threshold

    def fit(self, X, y):
        """Enrol the recordings ``X`` of the devices ``y`` (a few per device).

        Parameters
        ----------
        X : sequence of waveforms or paths, length n
            Or, when ``lr`` has no embedder (``DeviceLR.pretrained(embedder=None)``), their
            embeddings ``(n, n_features)``; :meth:`predict` then takes embeddings too.
        y : array-like of shape (n,)
            Device of each recording.

        Returns
        -------
        self
        """
        from .lr import DeviceLR

        validate_params(self.get_params(deep=False), self._parameter_constraints, owner="EnrolledDevices")
        lr = DeviceLR.pretrained() if self.lr is None else self.lr
        check_is_fitted(lr, "calibrator_")
        E = lr._embed(X, "X", n_features=lr.n_features_in_)
        y = check_labels(y, len(E), name="y", owner="EnrolledDevices")
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.lr_ = lr
        self.enrolled_ = [E[codes == k] for k in range(len(self.classes_))]
        self.n_enrolled_ = np.array([len(e) for e in self.enrolled_])
        self.threshold_ = float(self.threshold)
        return self

    def _raw_llrs(self, X):
        """Unbounded log10 LRs ``(n, n_classes)``: the decisions use these, so that LRs tied
        at the calibration's bound are still ranked."""
        check_is_fitted(self, "enrolled_")
        lr = self.lr_
        E = lr._embed(X, "X", n_features=lr.n_features_in_)
        return np.stack([lr.calibrator_.transform(lr.scorer_.score(E, e)) for e in self.enrolled_], axis=1)

    def decision_function(self, X, bounded=True):
        """log10 LR of each recording against each enrolled device, ``(n, n_classes)``,
        bounded as :meth:`DeviceLR.predict_llr` bounds it (``bounded=False``: as the
        calibration gives them, which :meth:`predict` ranks, so that LRs tied at a bound
        still tell the nearest device)."""
        raw = self._raw_llrs(X)
        return np.clip(raw, *self.lr_.llr_bounds_) if bounded else raw

    def predict(self, X):
        """The enrolled device of highest LR, or :data:`UNKNOWN` when it is not above the
        threshold; shape (n,), object."""
        L = self._raw_llrs(X)
        best = L.argmax(axis=1)
        out = self.classes_[best].astype(object)
        out[L[np.arange(len(L)), best] <= self.threshold_] = UNKNOWN
        return out

    def calibrate(self, X_unknown, far=0.05):
        """Set the threshold so that at most ``far`` of the recordings ``X_unknown`` (of devices
        NOT enrolled) are accepted; returns self."""
        if not 0 <= far < 1:
            raise ValueError(f"EnrolledDevices.calibrate: far must be in [0, 1); got {far!r}")
        best = self._raw_llrs(X_unknown).max(axis=1)
        self.threshold_ = float(np.quantile(best, 1 - far, method="higher"))
        self.far_ = float(np.mean(best > self.threshold_))
        return self
