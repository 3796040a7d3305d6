"""The target of a fit: one label per utterance, checked as scikit-learn does."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["check_target"]


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
