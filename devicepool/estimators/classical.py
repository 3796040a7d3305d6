"""The classical school of recording-device identification, in scikit-learn style.

* :class:`GaussianSupervector` -- a transformer: a universal background model (UBM, a
  diagonal :class:`~sklearn.mixture.GaussianMixture`) fitted on the training frames in
  ``fit``; ``transform`` maps each utterance to the normalised mean supervector of its
  MAP-adapted model (Campbell et al. 2006; for devices Kotropoulos & Samaras 2014).
  Followed by a linear SVM it is the Gaussian-supervector SVM (``gsv_svm`` in the
  registry).
* :class:`GMMUBMClassifier` -- one MAP-adapted GMM per device, scored by the average
  frame log-likelihood ratio against the UBM (Reynolds et al. 2000; for devices Hanilçi
  et al. 2012), with posteriors calibrated on out-of-fold scores (``gmm_ubm``).

Both read an utterance set of frame features ``(n_frames, n_features)``, typically
:class:`~devicepool.features.MFCC` after :class:`~devicepool.features.FilterBank`. The
UBM is trained on at most ``ubm_frames`` frames drawn uniformly from the training set,
so its cost and memory do not grow with the corpus; the statistics of every utterance
are then computed in chunks (:mod:`._gmm`).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from .._typing import ArrayLike, FeatureSet
from .._validation import Interval, check_feature_set, validate_params
from . import _gmm
from ._linear_fusion import fit_linear_fusion, fuse
from ._targets import check_target, encode_target, known_label_accuracy
from ._weights import _check_sample_weight

__all__ = ["GaussianSupervector", "GMMUBMClassifier"]

_UBM_CONSTRAINTS = {
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "relevance": [Interval(Real, 0, None, closed="neither")],
    "ubm_frames": [Interval(Integral, 1, None, closed="left"), None],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "reg_covar": [Interval(Real, 0, None, closed="left")],
    "random_state": ["random_state"],
}


def _seed(random_state):
    """An int seed for GaussianMixture and a Generator for the frame draw."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1)), random_state
    if isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(2**31 - 1))
        return seed, np.random.default_rng(seed)
    return random_state, np.random.default_rng(random_state)


class _UBMMixin:
    """Fitting the UBM on a frame sample of an utterance set (shared by both estimators)."""

    def _fit_ubm(self, X):
        n_frames = sum(len(u) for u in X)
        if n_frames < self.n_components:
            raise ValueError(f"{type(self).__name__}: {n_frames} training frames cannot fit "
                             f"a UBM of n_components={self.n_components}")
        seed, rng = _seed(self.random_state)
        frames = _gmm.sample_frames(X, self.ubm_frames, rng)
        self.ubm_ = _gmm.fit_ubm(frames, self.n_components, max_iter=self.max_iter,
                                 reg_covar=self.reg_covar, random_state=seed)
        self.n_features_in_ = X[0].shape[1]
        self.n_ubm_frames_ = len(frames)
        self.n_iter_ = int(self.ubm_.n_iter_)
        return self


class GaussianSupervector(_UBMMixin, TransformerMixin, BaseEstimator):
    """Normalised MAP-adapted mean supervectors over a UBM fitted in ``fit``.

    ``fit`` trains the UBM (a diagonal GaussianMixture of ``n_components``) on at most
    ``ubm_frames`` frames drawn uniformly from the training utterances. ``transform``
    computes each utterance's Baum-Welch statistics under the UBM, MAP-adapts the means
    (relevance factor ``relevance``) and returns, with ``normalize``, the offsets
    ``sqrt(w_k) (m_k - mu_k) / sigma_k`` stacked into one ``n_components * n_features``
    row -- a linear kernel on them is the KL-divergence kernel of Campbell et al. (2006).

    An utterance's supervector depends only on its own frames, as a bag: not on the
    other utterances of the set, their order or lengths, nor on the order of its frames.

    Parameters
    ----------
    n_components : int, default=64
        Gaussians in the UBM.
    relevance : float, default=16.0
        MAP relevance factor ``r > 0``: a component moves from the UBM's mean by
        ``n_k / (n_k + r)`` of the way to the utterance's own mean.
    ubm_frames : int or None, default=100_000
        Most frames the UBM is trained on (None: all).
    max_iter : int, default=100
        EM iterations of the UBM.
    reg_covar : float, default=1e-3
        Added to the UBM's variances.
    normalize : bool, default=True
        KL-kernel normalisation of the offsets; False stacks the adapted means.
    random_state : int, RandomState, Generator or None, default=None
        Frame draw and the UBM's initialisation.

    Attributes
    ----------
    ubm_ : GaussianMixture
    n_features_in_ : int
    n_ubm_frames_ : int
        Frames the UBM was trained on.
    n_iter_ : int
        EM iterations the UBM took.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(50, 3)) for _ in range(4)]
    >>> GaussianSupervector(n_components=2, random_state=0).fit_transform(X).shape
    (4, 6)
    """

    _parameter_constraints = {**_UBM_CONSTRAINTS, "normalize": ["boolean"]}

    def __init__(self, n_components: int = 64, relevance: float = 16.0,
                 ubm_frames: int | None = 100_000, max_iter: int = 100,
                 reg_covar: float = 1e-3, normalize: bool = True, random_state=None) -> None:
        self.n_components = n_components
        self.relevance = relevance
        self.ubm_frames = ubm_frames
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.normalize = normalize
        self.random_state = random_state

    def fit(self, X: FeatureSet, y: object = None) -> GaussianSupervector:
        """Fit the UBM on (a uniform sample of) the frames of ``X``.

        Parameters
        ----------
        X : utterance set of arrays (n_frames, n_features)
        y : ignored

        Returns
        -------
        self
        """
        validate_params(self.get_params(deep=False), self._parameter_constraints,
                        owner=type(self).__name__)
        return self._fit_ubm(check_feature_set(X, owner=type(self).__name__))

    def transform(self, X: FeatureSet) -> np.ndarray:
        """Supervectors of the utterances.

        Parameters
        ----------
        X : utterance set of arrays (n_frames, n_features)

        Returns
        -------
        ndarray of shape (n_utterances, n_components * n_features), float64
        """
        check_is_fitted(self, "ubm_")
        X = check_feature_set(X, n_features=self.n_features_in_, owner=type(self).__name__)
        n, f = _gmm.utterance_stats(self.ubm_, X)
        return _gmm.supervectors(self.ubm_, n, f, self.relevance, self.normalize)

    def get_feature_names_out(self, input_features=None):
        """``gsv_k{component}_d{feature}`` for every supervector entry."""
        check_is_fitted(self, "ubm_")
        return np.asarray([f"gsv_k{k}_d{d}" for k in range(self.n_components)
                           for d in range(self.n_features_in_)], dtype=object)


def _calibration_folds(y, groups, n_folds, seed):
    """Out-of-fold splits for the calibration scores: whole speakers with ``groups``;
    None when a fold would leave a class without training utterances."""
    if groups is not None and len(np.unique(groups)) >= 2:
        k = min(n_folds, len(np.unique(groups)))
        splits = list(GroupKFold(k).split(y, y, groups))
    else:
        counts = np.bincount(y)
        k = min(n_folds, int(counts.min()))
        if k < 2:
            return None
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y))
    n_classes = int(y.max()) + 1
    if any(len(np.unique(y[train])) < n_classes for train, _ in splits):
        return None
    return splits


class GMMUBMClassifier(_UBMMixin, ClassifierMixin, BaseEstimator):
    """One MAP-adapted GMM per device over a shared UBM, scored by log-likelihood ratios.

    ``fit`` trains the UBM (as :class:`GaussianSupervector` does), pools the Baum-Welch
    statistics of each class's utterances and MAP-adapts the UBM's means to them (weights
    and variances stay the UBM's). :meth:`llr_scores` gives, per utterance and device,
    the mean over frames of ``log p(x | device) - log p(x | UBM)``;
    :meth:`decision_function` gives them calibrated.

    **Calibrated posteriors.** :meth:`predict_proba` is ``softmax(a * score + b)`` with a
    scale ``a`` and class offsets ``b`` fitted (cross-entropy) on out-of-fold scores of
    the training utterances: the device models are re-adapted without each fold --
    whole speakers when ``fit`` is given ``groups`` -- and the fold is scored, so the
    calibration sees scores of unseen speakers, as the test will. Re-adaptation only
    subtracts statistics, so it costs one scoring pass. Without enough utterances per
    class for ``cv`` folds, ``a = 1, b = 0`` with a warning. :meth:`predict` is the
    arg-max of the posteriors.

    Parameters
    ----------
    n_components, relevance, ubm_frames, max_iter, reg_covar, random_state
        As in :class:`GaussianSupervector`.
    calibration_folds : int, default=3
        Folds of the out-of-fold calibration scores.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    ubm_ : GaussianMixture
    means_ : ndarray of shape (n_classes, n_components, n_features)
        MAP-adapted means of each device model.
    calibration_ : tuple of (float, ndarray of shape (n_classes,))
        The scale ``a`` and offsets ``b``.
    n_features_in_ : int
    n_iter_ : int
        EM iterations the UBM took.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(loc=c, size=(40, 2)) for c in (0, 0, 0, 3, 3, 3)]
    >>> clf = GMMUBMClassifier(n_components=2, random_state=0).fit(X, [0, 0, 0, 1, 1, 1])
    >>> clf.predict([rng.normal(loc=3, size=(40, 2))]).tolist()
    [1]
    """

    # with metadata routing on, a Pipeline hands its ``groups`` here by default
    __metadata_request__fit = {"groups": True}

    _parameter_constraints = {**_UBM_CONSTRAINTS,
                              "calibration_folds": [Interval(Integral, 2, None, closed="left")]}

    def __init__(self, n_components: int = 64, relevance: float = 16.0,
                 ubm_frames: int | None = 100_000, max_iter: int = 100, reg_covar: float = 1e-3,
                 calibration_folds: int = 3, random_state=None) -> None:
        self.n_components = n_components
        self.relevance = relevance
        self.ubm_frames = ubm_frames
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def fit(self, X: FeatureSet, y: ArrayLike, groups: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> GMMUBMClassifier:
        """Fit the UBM, the device models and the calibration.

        Parameters
        ----------
        X : utterance set of arrays (n_frames, n_features)
        y : array-like of shape (n_utterances,)
            Device labels.
        groups : array-like of shape (n_utterances,), optional
            Speaker of each utterance: the calibration folds hold out whole speakers.
        sample_weight : array-like of shape (n_utterances,), optional
            Weights of the utterances' statistics in their device models and in the
            calibration (the UBM is trained on unweighted frames).

        Returns
        -------
        self
        """
        owner = type(self).__name__
        validate_params(self.get_params(deep=False), self._parameter_constraints, owner=owner)
        X = check_feature_set(X, owner=owner)
        y = check_target(y, len(X), owner)
        self.classes_, y_enc = encode_target(y, None, owner)
        w = (np.ones(len(X)) if sample_weight is None
             else _check_sample_weight(sample_weight, len(X), owner))
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (len(X),):
                raise ValueError(f"{owner}: groups must have one entry per utterance "
                                 f"({len(X)}); got shape {groups.shape}")
        self._fit_ubm(X)
        n, f = _gmm.utterance_stats(self.ubm_, X)
        n, f = n * w[:, None], f * w[:, None, None]
        n_classes = len(self.classes_)
        class_n = np.stack([n[y_enc == c].sum(0) for c in range(n_classes)])
        class_f = np.stack([f[y_enc == c].sum(0) for c in range(n_classes)])
        self.means_ = _gmm.map_means(self.ubm_.means_, class_n, class_f, self.relevance)
        self.calibration_ = self._calibrate(X, y_enc, groups, n, f, class_n, class_f, w)
        return self

    def _calibrate(self, X, y_enc, groups, n, f, class_n, class_f, w):
        seed, _ = _seed(self.random_state)
        splits = _calibration_folds(y_enc, groups, self.calibration_folds, seed)
        if splits is None:
            warnings.warn(f"{type(self).__name__}: too few utterances (or speakers) per device "
                          f"for {self.calibration_folds} calibration folds; predict_proba is the "
                          "softmax of the uncalibrated scores", UserWarning, stacklevel=3)
            return 1.0, np.zeros(len(self.classes_))
        oof = np.empty((len(X), len(self.classes_)))
        onehot = np.eye(len(self.classes_))[y_enc]                       # (n, C)
        for _, held in splits:
            # device models without the held-out utterances: subtract their statistics
            cn = class_n - onehot[held].T @ n[held]
            cf = class_f - np.einsum("uc,ukd->ckd", onehot[held], f[held])
            means = _gmm.map_means(self.ubm_.means_, cn, cf, self.relevance)
            oof[held] = _gmm.llr_scores(self.ubm_, means, [X[i] for i in held])
        (a,), b = fit_linear_fusion([oof], y_enc, len(self.classes_), sample_weight=w)
        return float(a), b

    def llr_scores(self, X: FeatureSet) -> np.ndarray:
        """Mean frame log-likelihood ratio of each device model against the UBM.

        Returns
        -------
        ndarray of shape (n_utterances, n_classes)
        """
        check_is_fitted(self, "means_")
        X = check_feature_set(X, n_features=self.n_features_in_, owner=type(self).__name__)
        return _gmm.llr_scores(self.ubm_, self.means_, X)

    def _calibrated(self, X):
        scores = self.llr_scores(X)
        a, b = self.calibration_
        return fuse([scores], [a], b)

    def decision_function(self, X: FeatureSet) -> np.ndarray:
        """Calibrated scores ``a * llr + b`` (log-posteriors up to a per-row constant).

        Returns
        -------
        ndarray of shape (n_utterances, n_classes), or (n_utterances,) for two classes
            For two classes, scikit-learn's convention: the log-odds of ``classes_[1]``.
        """
        z = self._calibrated(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X: FeatureSet) -> np.ndarray:
        """Calibrated device posteriors, shape (n_utterances, n_classes)."""
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X: FeatureSet) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        return log_softmax(self._calibrated(X), axis=1)

    def predict(self, X: FeatureSet) -> np.ndarray:
        """Most probable device of each utterance (values of ``classes_``)."""
        best = np.argmax(self.predict_log_proba(X), axis=1)  # checks that it is fitted
        return self.classes_[best]

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; labels not seen in ``fit`` raise ValueError."""
        return known_label_accuracy(self, X, y, sample_weight)
