"""The target of a fit: one label per utterance, checked as scikit-learn does."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets

from .._text import plain

__all__ = ["check_target", "encode_target", "check_known", "known_label_accuracy"]


def check_target(y, n, owner):
    """``y`` as a 1-D array of ``n`` class labels (a column vector warns and is raveled).

    Raises
    ------
    ValueError
        ``y`` is None, not 1-D, of another length than ``X``, or not class labels.
    """
    if y is None:
        raise ValueError(
            f"{owner} requires y to be passed, but the target y is None "
            "(one label per utterance is needed)"
        )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected.",
                      DataConversionWarning, stacklevel=4)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per utterance); got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"X has {n} utterances but y has {len(y)} labels; they must match")
    check_classification_targets(y)
    return y


def encode_target(y, classes, owner, sorted_classes=False):
    """``(classes, y encoded as indices into classes)``.

    ``classes`` None: the sorted labels of ``y``. Given ``classes`` (the ``classes``
    parameter, or ``classes_`` of a warm start when ``sorted_classes``) must hold every
    label of ``y``; at least 2 classes.
    """
    given = classes is not None
    classes = np.unique(y) if classes is None else classes
    unseen = ~np.isin(y, classes)
    if unseen.any():
        raise ValueError(f"y contains labels not in classes: {plain(np.unique(y[unseen])[:5])}")
    if len(classes) < 2:
        raise ValueError(f"{owner} needs at least 2 classes in y; got 1 class ({plain(classes[0])!r})")
    if not given or sorted_classes:
        return classes, np.searchsorted(classes, y)
    lookup = {v: i for i, v in enumerate(classes.tolist())}
    return classes, np.array([lookup[v] for v in y.tolist()], dtype=np.int64)


def check_known(y, classes):
    """ValueError naming the labels of ``y`` that are not in ``classes`` (fitted ones)."""
    unseen = ~np.isin(y, classes)
    if unseen.any():
        raise ValueError(
            f"y contains labels not seen in fit: {plain(np.unique(y[unseen])[:5])}; "
            f"known classes are {plain(classes)}"
        )


def known_label_accuracy(est, X, y, sample_weight=None):
    """``est``'s accuracy on ``(X, y)``, refusing labels it was not fitted on (the
    ``score`` of every devicepool classifier)."""
    from sklearn.metrics import accuracy_score
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.ravel()
    check_known(y, est.classes_)
    return accuracy_score(y, est.predict(X), sample_weight=sample_weight)
