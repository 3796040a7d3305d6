"""Score-level fusion of device classifiers: :class:`FusionClassifier`."""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from scipy.sparse import issparse
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._typing import ArrayLike
from .._validation import Interval, validate_params
from ._linear_fusion import cross_entropy, fit_linear_fusion, fuse
from ._routing import groups_fit_params
from ._targets import check_known, check_target, encode_target

__all__ = ["FusionClassifier", "member_scores"]

#: floor of a member's posterior before the log (a saturated softmax stays finite)
PROBA_FLOOR = 1e-10


def _take(X, index):
    if hasattr(X, "iloc"):  # a DataFrame
        return X.iloc[index]
    if isinstance(X, np.ndarray):
        return X[index]
    if not isinstance(X, (list, tuple)) and hasattr(X, "__array__"):
        return np.asarray(X)[index]
    return [X[i] for i in index]


def _fit_member(est, X, y, groups):
    # e.g. the networks' speaker-disjoint validation, also inside a Pipeline
    return est.fit(X, y, **groups_fit_params(est, groups))


def member_scores(est, X, classes):
    """A fitted member's scores ``(n, n_classes)`` in the order of ``classes``.

    Log-posteriors (``log max(p, 1e-10)``) for a member with ``predict_proba``, else its
    ``decision_function`` (one column for two classes is spread as ``[-d/2, d/2]``).
    """
    if hasattr(est, "predict_proba"):
        s = np.log(np.maximum(np.asarray(est.predict_proba(X), np.float64), PROBA_FLOOR))
    elif hasattr(est, "decision_function"):
        s = np.asarray(est.decision_function(X), np.float64)
        if s.ndim == 1:
            s = np.stack([-s / 2, s / 2], axis=1)
    else:
        raise TypeError(f"{type(est).__name__} has neither predict_proba nor "
                        "decision_function; it cannot be fused")
    own = np.asarray(est.classes_)
    if len(own) != len(classes) or not np.array_equal(own, classes):
        order = np.searchsorted(own, classes)
        if not np.array_equal(own[np.minimum(order, len(own) - 1)], classes):
            raise ValueError(f"{type(est).__name__} was fitted on other classes than the fusion")
        s = s[:, order]
    return s


def _inner_split(y, groups, fraction, seed):
    """Indices ``(train, dev)`` of the inner split: whole speakers with ``groups``, every
    class on both sides; None when no such split exists."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    if groups is not None:
        speakers = np.unique(groups)
        if len(speakers) >= 2:
            n_dev = min(len(speakers) - 1, max(1, int(round(fraction * len(speakers)))))
            for _ in range(50):
                dev = np.isin(groups, rng.choice(speakers, n_dev, replace=False))
                if (len(np.unique(y[dev])) == n_classes
                        and len(np.unique(y[~dev])) == n_classes):
                    return np.flatnonzero(~dev), np.flatnonzero(dev)
        return None
    if np.bincount(y).min() < 2:
        return None
    n_dev = max(n_classes, int(np.ceil(fraction * len(y))))
    if len(y) - n_dev < n_classes:
        return None
    sss = StratifiedShuffleSplit(1, test_size=n_dev, random_state=seed)
    return next(sss.split(np.zeros(len(y)), y))


class FusionClassifier(ClassifierMixin, BaseEstimator):
    """Score-level fusion of several device classifiers, trained on an inner split.

    ``fit`` holds out ``validation_fraction`` of the training speakers (with ``groups``;
    else of the utterances, stratified, with a warning), fits a clone of every member on
    the rest and scores the held-out part. On those scores it fits a multi-class linear
    logistic fusion: ``z = sum_m a_m s_m + b``, one weight per member and one offset per
    class, posterior ``softmax(z)`` (:mod:`._linear_fusion`). Each member's scores are
    its log-posteriors (``predict_proba``) or its ``decision_function``. With ``refit``
    the members are then fitted again on the whole training set (the weights stay).

    On the held-out part the fused cross-entropy is never above any member's after the
    same calibration (a member alone is one of the candidates); ``dev_cross_entropy_``
    reports both, and ``dev_accuracy_`` the accuracies.

    Parameters
    ----------
    estimators : list of (str, estimator)
        The members; each takes the same ``X`` (e.g. whole pipelines over waveforms).
    validation_fraction : float, default=1/3
        Share of the speakers (or utterances) held out to fit the fusion.
    refit : bool, default=True
        Refit the members on all training data after the fusion is fitted (False keeps
        the members fitted on the inner training part: cheaper, less data).
    ridge : float, default=1e-4
        Ridge penalty on the fusion weights.
    random_state : int or None, default=None
        The inner split.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    estimators_ : list of estimator
        The fitted members.
    named_estimators_ : dict
    weights_ : ndarray of shape (n_members,)
    offsets_ : ndarray of shape (n_classes,)
    dev_cross_entropy_ : dict
        Name (and ``"fused"``) -> cross-entropy in nats on the held-out part, each
        member after its own scale-and-offset calibration.
    dev_accuracy_ : dict
        Name (and ``"fused"``) -> accuracy on the held-out part.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 40)
    >>> X = rng.normal(size=(80, 2)) + y[:, None]
    >>> fused = FusionClassifier([("lr", LogisticRegression()), ("nb", GaussianNB())],
    ...                          random_state=0).fit(X, y)
    >>> fused.predict(X[:2]).shape, sorted(fused.dev_accuracy_)
    ((2,), ['fused', 'lr', 'nb'])
    """

    _parameter_constraints = {
        "estimators": [list],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "refit": ["boolean"],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "random_state": [Interval(int, 0, None, closed="left"), None],
    }

    def __init__(self, estimators, validation_fraction: float = 1 / 3, refit: bool = True,
                 ridge: float = 1e-4, random_state: int | None = None) -> None:
        self.estimators = estimators
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.ridge = ridge
        self.random_state = random_state

    def _check_members(self):
        owner = type(self).__name__
        validate_params(self.get_params(deep=False), self._parameter_constraints, owner=owner)
        if not self.estimators:
            raise ValueError(f"{owner}: estimators is empty; give at least one (name, estimator)")
        names = []
        for i, item in enumerate(self.estimators):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(f"{owner}: estimators[{i}] must be a (name, estimator) tuple")
            if not (hasattr(item[1], "fit") and
                    (hasattr(item[1], "predict_proba") or hasattr(item[1], "decision_function"))):
                raise TypeError(f"{owner}: estimators[{i}] ({item[0]!r}) needs fit and "
                                "predict_proba or decision_function")
            names.append(item[0])
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: estimator names must be unique; got {names}")
        return names

    def fit(self, X, y: ArrayLike, groups: ArrayLike | None = None) -> FusionClassifier:
        """Fit the members on the inner training part, the fusion on the held-out part,
        then (``refit``) the members on everything.

        Parameters
        ----------
        X : utterance set (or whatever every member takes), n_utterances long
        y : array-like of shape (n_utterances,)
        groups : array-like of shape (n_utterances,), optional
            Speakers: the inner split holds out whole speakers, and members whose ``fit``
            takes ``groups`` get them.

        Returns
        -------
        self
        """
        owner = type(self).__name__
        names = self._check_members()
        if issparse(X):
            raise TypeError(f"{owner}: sparse input is not supported (an utterance set or an array)")
        n = _num_samples(X)
        if n == 0:
            raise ValueError(f"{owner}: X has 0 utterances; at least one per device is needed")
        y = check_target(y, n, owner)
        self.classes_, y_enc = encode_target(y, None, owner)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (len(y),):
                raise ValueError(f"{owner}: groups must have one entry per utterance "
                                 f"({len(y)}); got shape {groups.shape}")
        split = _inner_split(y_enc, groups, self.validation_fraction, self.random_state)
        if split is None:
            raise ValueError(f"{owner}: no inner split leaves every device on both sides "
                             f"({'speakers' if groups is not None else 'utterances'} too few); "
                             "the fusion cannot be trained")
        if groups is None:
            warnings.warn(f"{owner}: fit without groups; the fusion is trained on held-out "
                          "utterances of the training speakers, which flatters the members "
                          "(pass groups=speakers)", UserWarning, stacklevel=2)
        tr, dev = split
        sub = lambda idx: (_take(X, idx), y[idx], None if groups is None else groups[idx])  # noqa: E731
        inner = [_fit_member(clone(est), *sub(tr)) for _, est in self.estimators]
        X_dev = _take(X, dev)
        dev_scores = [member_scores(est, X_dev, self.classes_) for est in inner]
        self.weights_, self.offsets_ = fit_linear_fusion(dev_scores, y_enc[dev],
                                                         len(self.classes_), ridge=self.ridge)
        self._dev_report(names, dev_scores, y_enc[dev])
        self.estimators_ = ([_fit_member(clone(est), X, y, groups) for _, est in self.estimators]
                            if self.refit else inner)
        self.named_estimators_ = dict(zip(names, self.estimators_))
        self.n_dev_ = len(dev)
        try:  # tabular members know their width; pipelines over utterances do not
            self.n_features_in_ = self.estimators_[0].n_features_in_
        except AttributeError:
            pass
        return self

    def _dev_report(self, names, dev_scores, y_dev):
        n_classes = len(self.classes_)
        fused = fuse(dev_scores, self.weights_, self.offsets_)
        ce = {"fused": cross_entropy(fused, y_dev)}
        acc = {"fused": float(np.mean(fused.argmax(1) == y_dev))}
        for name, s in zip(names, dev_scores):
            a, b = fit_linear_fusion([s], y_dev, n_classes, ridge=self.ridge)
            ce[name] = cross_entropy(fuse([s], a, b), y_dev)
            acc[name] = float(np.mean(s.argmax(1) == y_dev))
        self.dev_cross_entropy_, self.dev_accuracy_ = ce, acc

    def member_scores(self, X):
        """Each fitted member's scores, ``name -> (n_utterances, n_classes)``."""
        check_is_fitted(self, "estimators_")
        return {name: member_scores(est, X, self.classes_)
                for name, est in self.named_estimators_.items()}

    def _fused(self, X):
        return fuse(list(self.member_scores(X).values()), self.weights_, self.offsets_)

    def decision_function(self, X) -> np.ndarray:
        """Fused scores ``z = sum_m a_m s_m + b`` (log-posteriors up to a constant).

        Returns
        -------
        ndarray of shape (n_utterances, n_classes), or (n_utterances,) for two classes
            For two classes, scikit-learn's convention: ``z[:, 1] - z[:, 0]``.
        """
        z = self._fused(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        """Fused posteriors ``softmax(z)``, shape (n_utterances, n_classes)."""
        return softmax(self._fused(X), axis=1)

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        return log_softmax(self._fused(X), axis=1)

    def predict(self, X) -> np.ndarray:
        """Most probable device (values of ``classes_``)."""
        best = np.argmax(self._fused(X), axis=1)  # checks that it is fitted
        return self.classes_[best]

    def score(self, X, y, sample_weight=None):
        """Accuracy (unknown labels in ``y`` are refused)."""
        check_is_fitted(self, "estimators_")
        check_known(np.asarray(y), self.classes_)
        return super().score(X, y, sample_weight=sample_weight)
