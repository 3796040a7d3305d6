"""Weights in the loss: ``sample_weight`` and ``class_weight``, as scikit-learn's
classifiers take them.

Each training item's weight is its utterance's ``sample_weight`` times its class's
``class_weight`` (``"balanced"``: ``n_utterances / (n_classes * count(class))``, as
:func:`sklearn.utils.class_weight.compute_class_weight`). A batch's loss is the weighted
mean ``sum_i w_i l_i / sum_i w_i`` -- the normalisation of torch's
``CrossEntropyLoss(weight=...)`` -- so an integer weight ``k`` trains as ``k`` copies of
the utterance within a batch, and multiplying all weights by a constant changes nothing.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from .._text import plain

__all__ = ["utterance_weights", "weighted_mean"]


def _check_sample_weight(sample_weight, n, owner):
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.ndim != 1 or len(w) != n:
        raise ValueError(f"{owner}: sample_weight must be 1-D with one weight per utterance "
                         f"({n}); got shape {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        raise ValueError(f"{owner}: sample_weight must be finite and >= 0; utterance "
                         f"{bad[0]} has {float(w[bad[0]])!r}")
    if not np.any(w > 0):
        raise ValueError(f"{owner}: sample_weight is zero for every utterance; nothing to fit")
    return w


def _class_weights(class_weight, y_enc, classes, owner):
    if class_weight is None:
        return None
    if isinstance(class_weight, str):  # "balanced" (checked by the constraints)
        present = np.unique(y_enc)
        cw = np.ones(len(classes))
        cw[present] = compute_class_weight("balanced", classes=present, y=y_enc)
        return cw
    unknown = [k for k in class_weight if k not in set(classes.tolist())]
    if unknown:
        raise ValueError(f"{owner}: class_weight names classes not in y: {plain(unknown[:5])}; "
                         f"the classes are {plain(classes[:10])}")
    return np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])


def utterance_weights(y_enc, classes, sample_weight, class_weight, owner):
    """Per-utterance loss weights, or None when neither kind of weight is given.

    Parameters
    ----------
    y_enc : ndarray of int, shape (n_utterances,)
    classes : ndarray, shape (n_classes,)
    sample_weight : array-like of shape (n_utterances,), scalar or None
    class_weight : None, "balanced" or dict
    owner : str
        The estimator named in error messages.
    """
    w = None if sample_weight is None else _check_sample_weight(sample_weight, len(y_enc), owner)
    cw = _class_weights(class_weight, y_enc, classes, owner)
    if cw is not None:
        w = cw[y_enc] if w is None else w * cw[y_enc]
    return w


def weighted_mean(per_item, weight):
    """``sum(w * l) / sum(w)`` (0 when the batch's weights are all 0)."""
    weight = weight.to(per_item.dtype)
    return (per_item * weight).sum() / weight.sum().clamp_min(1e-12)
