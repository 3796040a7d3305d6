"""Score-level fusion of device classifiers: :class:`FusionClassifier`."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.sparse import issparse
from scipy.special import log_softmax, softmax
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._typing import ArrayLike
from .._validation import Interval, StrOptions, validate_params
from ._linear_fusion import cross_entropy, fit_linear_fusion, fuse
from ._routing import fit_with_groups
from ._targets import check_target, encode_target, known_label_accuracy

__all__ = ["FusionClassifier", "greedy_selection", "member_scores"]

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


def _member_inputs(members, X):
    """``(keys, inputs)``: for a member Pipeline whose first step is a stateless transformer
    (``requires_fit`` False, e.g. :class:`~devicepool.features.FilterBank`) a key (its class
    and parameters) and its features of ``X``, computed once per key (members with the same
    first step share them); for another member None and ``X``."""
    keys, done = [], {}
    for est in members:
        step = est.steps[0][1] if isinstance(est, Pipeline) and len(est.steps) > 1 else None
        if step is None or step == "passthrough" or get_tags(step).requires_fit:
            keys.append(None)
            continue
        params = sorted((k, repr(v)) for k, v in step.get_params(deep=False).items() if k != "n_jobs")
        keys.append((type(step).__module__, type(step).__qualname__, tuple(params)))
        if keys[-1] not in done:
            done[keys[-1]] = clone(step).transform(X)
    return keys, [X if key is None else done[key] for key in keys]


def _tail(est, key):
    """What of a member reads its shared features: all but the first step (the same
    fitted objects), or the whole member."""
    return est if key is None else est[1:]


def _fit_member(est, key, X, y, groups):
    """A clone of member ``est`` fitted on ``X`` (its shared features when ``key``: the
    rest of the pipeline is fitted; the stateless first step needs no fit)."""
    est = clone(est)
    tail = fit_with_groups(_tail(est, key), X, y, groups)
    if key is not None:  # the fitted steps (the same objects unless the Pipeline caches)
        est.steps = [est.steps[0], *tail.steps]
    return est


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


def greedy_selection(cross_entropies, calibrated, dev_scores, y_dev):
    """Forward selection of fusion members on held-out scores (``selection="greedy"``).

    Start from the member of lowest calibrated cross-entropy, try the others in order of
    theirs and add one when the equally weighted sum of calibrated members lowers it by
    more than Akaike's penalty for one more parameter, the member's weight (``1 / n`` nats
    per utterance; its class offsets mostly restate the priors the others' already hold),
    so a member that helps only by chance is left out.

    Parameters
    ----------
    cross_entropies : sequence of float, one per member
        Each member's cross-entropy after its own calibration.
    calibrated : sequence of (float, ndarray of shape (n_classes,)), one per member
        Each member's calibration ``(a, b)``.
    dev_scores : sequence of ndarray of shape (n_dev, n_classes)
    y_dev : ndarray of int, shape (n_dev,)

    Returns
    -------
    list of int
        Member indices, sorted.
    """
    order = sorted(range(len(cross_entropies)), key=lambda i: cross_entropies[i])
    chosen, best = [order[0]], cross_entropies[order[0]]
    penalty = 1.0 / len(y_dev)
    for m in order[1:]:
        trial = chosen + [m]
        z = fuse([dev_scores[i] for i in trial], [calibrated[i][0] for i in trial],
                 np.sum([calibrated[i][1] for i in trial], axis=0))
        ce = cross_entropy(z, y_dev)
        if ce < best - penalty:
            chosen, best = trial, ce
    return sorted(chosen)


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


def _cross_fit_folds(y, groups, n_folds, seed):
    """``n_folds`` folds of whole speakers (stratified utterances without ``groups``), each
    training part holding every class; fewer when there are fewer speakers (at least 2),
    None when impossible."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    n_classes = int(y.max()) + 1
    if groups is not None:
        k = min(n_folds, len(np.unique(groups)))
        if k < 2:
            return None
        splits = list(GroupKFold(k).split(y, y, groups))
    else:
        k = min(n_folds, int(np.bincount(y).min()))
        if k < 2:
            return None
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y))
    if any(len(np.unique(y[tr])) < n_classes for tr, _ in splits):
        return None
    return splits


def _given_splits(cv, y, groups, owner):
    """The folds of a splitter (``cv.split(X, y, groups)``) or of an iterable of
    ``(train, held_out)`` pairs, checked: held-out parts disjoint, every class in each
    training part."""
    pairs = cv.split(np.zeros((len(y), 1)), y, groups) if hasattr(cv, "split") else cv
    splits = [(np.asarray(tr, dtype=np.intp), np.asarray(held, dtype=np.intp)) for tr, held in pairs]
    held = np.concatenate([h for _, h in splits]) if splits else np.array([], dtype=np.intp)
    if not splits or len(np.unique(held)) != len(held):
        raise ValueError(f"{owner}: cv must give at least one fold, with disjoint held-out parts")
    n_classes = int(y.max()) + 1
    for i, (tr, _) in enumerate(splits):
        if len(np.unique(y[tr])) < n_classes:
            raise ValueError(f"{owner}: the training part of cv fold {i} lacks a device; every "
                             "device must be in every training part")
    return splits


class _Splitter:
    """Constraint: a cross-validation splitter or an iterable of (train, test) pairs."""

    def is_satisfied_by(self, value):
        return not isinstance(value, str) and (hasattr(value, "split") or hasattr(value, "__iter__"))

    def __str__(self):
        return "a splitter (with split(X, y, groups)) or an iterable of (train, test) pairs"


class FusionClassifier(ClassifierMixin, _BaseComposition):
    """Score-level fusion of several device classifiers, trained on held-out speakers.

    ``fit`` splits the training **speakers** (``groups``; without them the utterances,
    stratified, with a warning) into ``cv`` folds and fits a clone of every member on each
    fold's complement, so every training utterance gets *out-of-fold* scores from members
    that never saw its speaker (``cv=None``: one split instead, ``validation_fraction`` of
    the speakers held out). Each member's scores are its log-posteriors
    (``predict_proba``) or its ``decision_function``. On them:

    * ``weighting="equal"`` (default): each member is calibrated alone, ``a_m s_m + b_m``
      (a scale and class offsets by multi-class logistic regression), and the calibrated
      scores are summed: the product of the members' calibrated posteriors;
    * ``weighting="learned"``: one linear logistic fusion ``z = sum_m a_m s_m + b``, the
      weights fitted jointly (Brümmer & du Preez 2006; :mod:`._linear_fusion`). On the
      held-out scores its cross-entropy is never above a calibrated member's, but with
      few speakers the relative weights are poorly determined.

    The posterior is ``softmax(z)``. The members are then fitted again on the whole
    training set (``refit``). The defaults were chosen by measurement on 0.4's members
    (``docs/classical.md``): with 4-6 training speakers per fold, the learned weights of
    one split fell below the best member on some folds; cross-fitted, equally weighted
    calibrated members did not. With 0.6's stronger members, scored across speaking
    modes too, cross-fitted learned weights over every member were at or above the best
    member where equal weights were not: the registered ``fusion`` model uses them
    (``cv=3, weighting="learned", selection=None``). A fit costs ``cv + 1`` fits of every member. Members that
    are pipelines starting with the same stateless feature transformer (same class and
    parameters, e.g. :class:`~devicepool.features.FilterBank`) share its features: they
    are computed once on all of ``X`` per ``fit`` (and per prediction), not per member
    and fold; the numbers are the same as fitting each pipeline whole.

    Parameters
    ----------
    estimators : list of (str, estimator)
        The members; each takes the same ``X`` (e.g. whole pipelines over waveforms).
    cv : int, splitter, iterable or None, default=3
        Cross-fitting folds, scikit-learn's ``cv`` convention: an int ``k`` is
        ``GroupKFold(k)`` over the speakers (``StratifiedKFold(k, shuffle=True,
        random_state=random_state)`` without ``groups``; fewer folds when there are fewer
        speakers); a splitter is called as ``cv.split(X, y, groups)``; an iterable gives
        ``(train, held_out)`` index pairs (held-out parts disjoint). None: one split.
    weighting : {"equal", "learned"}, default="equal"
        How the members' scores are combined (above).
    selection : {"greedy", None}, default="greedy"
        Which members are fused. ``"greedy"``: forward selection on the held-out scores,
        from the member of lowest calibrated cross-entropy, trying each other one in order
        of its own and adding it when the equally weighted sum of calibrated members then
        has a cross-entropy lower by more than Akaike's penalty for the added weight; a
        member left out gets weight 0 and is not refitted, so on the held-out
        scores the equally weighted fusion is never worse (in cross-entropy) than its best
        member. None: every member.
    validation_fraction : float, default=1/3
        Share of the speakers (or utterances) held out when ``cv=None``.
    refit : bool, default=True
        Refit the members on all training data (False, with ``cv=None`` only, keeps the
        members fitted on the inner training part: cheaper, less data).
    ridge : float, default=1e-4
        Ridge penalty on the scales and weights.
    offset_ridge : float, default=1e-2
        Penalty on the class offsets' distance from the log class priors. Unpenalised
        (0, the earlier behaviour), offsets fitted on one held-out speaker whose scores
        the members already separate reached ±20 and cost the fused system 2 points below
        its one member on real speech; see :func:`._linear_fusion.fit_linear_fusion`.
    random_state : int or None, default=None
        The inner split (and the folds without ``groups``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    estimators_ : list of estimator
        The fitted members that ``selection`` kept (a member left out is neither refitted
        nor run at prediction).
    named_estimators_ : dict
        Their names -> the fitted members.
    weights_ : ndarray of shape (n_members,)
        0 for a member ``selection`` left out.
    selected_ : list of str
        The members fused (all of them with ``selection=None``).
    offsets_ : ndarray of shape (n_classes,)
    dev_cross_entropy_ : dict
        Name (and ``"fused"``) -> cross-entropy in nats on the held-out scores, each
        member after its own scale-and-offset calibration.
    dev_accuracy_ : dict
        Name (and ``"fused"``) -> accuracy on the held-out scores.
    n_dev_ : int
        Utterances the fusion was fitted on (all of them with ``cv``).

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

    # with metadata routing on, a Pipeline hands its ``groups`` to the fusion by default
    __metadata_request__fit = {"groups": True}

    _parameter_constraints = {
        "estimators": [list],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "cv": [Interval(Integral, 2, None, closed="left"), None, _Splitter()],
        "weighting": [StrOptions({"equal", "learned"})],
        "refit": ["boolean"],
        "selection": [StrOptions({"greedy"}), None],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "offset_ridge": [Interval(Real, 0, None, closed="left")],
        "random_state": [Interval(int, 0, None, closed="left"), None],
    }

    def __init__(self, estimators, cv: int | None = 3, weighting: str = "equal",
                 selection: str | None = "greedy", validation_fraction: float = 1 / 3,
                 refit: bool = True, ridge: float = 1e-4, offset_ridge: float = 1e-2,
                 random_state: int | None = None) -> None:
        self.estimators = estimators
        self.cv = cv
        self.weighting = weighting
        self.selection = selection
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.ridge = ridge
        self.offset_ridge = offset_ridge
        self.random_state = random_state

    def get_params(self, deep=True):
        """Parameters; with ``deep``, also each member (``<name>``) and its parameters
        (``<name>__<param>``), scikit-learn's convention for ensembles."""
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        """Set parameters, the members' too (``<name>__<param>``); returns self."""
        self._set_params("estimators", **params)
        return self

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
        """Fit the members on each inner training part, the fusion on their held-out
        scores, then (``refit``) the members on everything.

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
        splits = self._splits(y_enc, groups)
        if groups is None:
            warnings.warn(f"{owner}: fit without groups; the fusion is trained on held-out "
                          "utterances of the training speakers, which flatters the members "
                          "(pass groups=speakers)", UserWarning, stacklevel=2)
        keys, inputs = _member_inputs([est for _, est in self.estimators], X)
        dev = np.concatenate([held for _, held in splits])
        dev_scores = [np.empty((len(y), len(self.classes_))) for _ in self.estimators]
        for tr, held in splits:
            g = None if groups is None else groups[tr]
            inner = [_fit_member(est, key, _take(x, tr), y[tr], g)
                     for (_, est), key, x in zip(self.estimators, keys, inputs)]
            for scores, est, key, x in zip(dev_scores, inner, keys, inputs):
                scores[held] = member_scores(_tail(est, key), _take(x, held), self.classes_)
        dev_scores = [s[dev] for s in dev_scores]
        calibrated = self._dev_report(names, dev_scores, y_enc[dev])
        chosen = (greedy_selection([self.dev_cross_entropy_[n] for n in names], calibrated,
                                   dev_scores, y_enc[dev])
                  if self.selection == "greedy" else list(range(len(names))))
        self.selected_ = [names[i] for i in chosen]
        self.weights_ = np.zeros(len(names))
        if self.weighting == "learned":
            w, self.offsets_ = fit_linear_fusion(
                [dev_scores[i] for i in chosen], y_enc[dev], len(self.classes_), ridge=self.ridge,
                offset_ridge=self.offset_ridge)
            self.weights_[chosen] = w
        else:  # each member calibrated alone, the calibrated scores summed
            self.weights_[chosen] = [calibrated[i][0] for i in chosen]
            self.offsets_ = np.sum([calibrated[i][1] for i in chosen], axis=0)
        self._fused_dev_report(dev_scores, y_enc[dev])
        refit = self.refit or len(splits) > 1
        self.estimators_ = [_fit_member(self.estimators[i][1], keys[i], inputs[i], y, groups)
                            if refit else inner[i] for i in chosen]  # a member left out is not refit
        self.named_estimators_ = dict(zip(self.selected_, self.estimators_))
        self.n_dev_ = len(dev)
        try:  # tabular members know their width; pipelines over utterances do not
            self.n_features_in_ = self.estimators_[0].n_features_in_
        except AttributeError:
            pass
        return self

    def _splits(self, y_enc, groups):
        """``[(train, held_out), ...]``: one inner split, or ``cv`` cross-fitting folds."""
        owner, who = type(self).__name__, ("speakers" if groups is not None else "utterances")
        if self.cv is None:
            split = _inner_split(y_enc, groups, self.validation_fraction, self.random_state)
            if split is None:
                raise ValueError(f"{owner}: no inner split leaves every device on both sides "
                                 f"({who} too few); the fusion cannot be trained")
            return [split]
        if not isinstance(self.cv, Integral):  # a splitter, or (train, held_out) pairs
            return _given_splits(self.cv, y_enc, groups, owner)
        splits = _cross_fit_folds(y_enc, groups, self.cv, self.random_state)
        if splits is None:
            raise ValueError(f"{owner}: cv={self.cv} folds that leave every device in each "
                             f"training part do not exist ({who} too few)")
        if len(splits) < self.cv:
            warnings.warn(f"{owner}: {len(splits)} cross-fitting folds instead of cv={self.cv} "
                          f"(only {len(splits)} {who} per device to spread)", UserWarning,
                          stacklevel=3)
        return splits

    def _dev_report(self, names, dev_scores, y_dev):
        """Each member calibrated alone on the held-out scores: its ``(a, b)``, and its
        cross-entropy and accuracy there."""
        n_classes = len(self.classes_)
        self.dev_cross_entropy_, self.dev_accuracy_ = {}, {}
        calibrated = []
        for name, s in zip(names, dev_scores):
            (a,), b = fit_linear_fusion([s], y_dev, n_classes, ridge=self.ridge,
                                        offset_ridge=self.offset_ridge)
            calibrated.append((float(a), b))
            self.dev_cross_entropy_[name] = cross_entropy(fuse([s], [a], b), y_dev)
            self.dev_accuracy_[name] = float(np.mean(s.argmax(1) == y_dev))
        return calibrated

    def _fused_dev_report(self, dev_scores, y_dev):
        fused = fuse(dev_scores, self.weights_, self.offsets_)
        self.dev_cross_entropy_["fused"] = cross_entropy(fused, y_dev)
        self.dev_accuracy_["fused"] = float(np.mean(fused.argmax(1) == y_dev))

    def member_scores(self, X):
        """Each fitted (kept) member's scores, ``name -> (n_utterances, n_classes)``."""
        check_is_fitted(self, "estimators_")
        keys, inputs = _member_inputs(self.estimators_, X)
        return {name: member_scores(_tail(est, key), x, self.classes_)
                for (name, est), key, x in zip(self.named_estimators_.items(), keys, inputs)}

    def _fused(self, X):
        names = [name for name, _ in self.estimators]
        scores = self.member_scores(X)
        return fuse(list(scores.values()), self.weights_[[names.index(n) for n in scores]],
                    self.offsets_)

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
        """Accuracy on ``(X, y)``; labels not seen in ``fit`` raise ValueError."""
        return known_label_accuracy(self, X, y, sample_weight)
