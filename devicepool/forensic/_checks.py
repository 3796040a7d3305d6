"""Input checks shared by the forensic modules (log LRs, labels, embeddings)."""

from __future__ import annotations

import numpy as np

from .._validation import where

__all__ = ["HasMethods", "check_embeddings", "check_labels", "check_scores_labels", "check_scores"]


class HasMethods:
    """A parameter constraint: an object with all of the named methods.

    Used with :func:`devicepool._validation.validate_params`, e.g.
    ``HasMethods("transform")`` is satisfied by a fitted classifier used as embedder.
    """

    def __init__(self, *methods):
        self.methods = methods

    def is_satisfied_by(self, value):
        return all(callable(getattr(value, m, None)) for m in self.methods)

    def __str__(self):
        names = ", ".join(repr(m) for m in self.methods)
        return f"an object with the method(s) {names}"


def _as_float_1d(values, name, owner):
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}: {name} must be numeric (one number per trial)") from exc
    if a.ndim != 1:
        raise ValueError(f"{owner}: {name} must be 1-D (one value per trial); got shape {a.shape}")
    return a


def check_scores(scores, *, name="scores", owner):
    """Check a 1-D array of finite numbers.

    Parameters
    ----------
    scores : array-like of shape (n,)
    name, owner : str
        How the message names the array and the function or class checking it.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    a = _as_float_1d(scores, name, owner)
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{owner}: {name} must be finite; trial {i} is {a[i]} ({int(bad.sum())} "
            "value(s) NaN or infinite)"
        )
    return a


def check_scores_labels(scores, y, *, name="llr", owner):
    """Check scores (or log LRs) and hypothesis labels of the same trials.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Finite numbers.
    y : array-like of shape (n,)
        1 (or True) for H1, same device; 0 (or False) for H2, different devices. Both
        must occur.
    name, owner : str
        How the message names ``scores`` and the function or class checking them.

    Returns
    -------
    scores : ndarray of shape (n,), float64
    y : ndarray of shape (n,), int64

    Raises
    ------
    ValueError
        Lengths differ, a value is not finite, a label is not 0/1, or only one
        hypothesis occurs; the message names the rule.
    """
    s = check_scores(scores, name=name, owner=owner)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{owner}: y must be 1-D (one label per trial); got shape {y.shape}")
    if len(s) != len(y):
        raise ValueError(
            f"{owner}: {name} and y must have the same length (one label per trial); "
            f"got {len(s)} and {len(y)}"
        )
    if y.dtype == bool:
        y = y.astype(np.int64)
    ok = np.isin(y, [0, 1]) if y.dtype.kind in "iuf" else np.zeros(len(y), bool)
    if not ok.all():
        shown = sorted({repr(v) for v in y[~ok].tolist()})[:5]
        raise ValueError(
            f"{owner}: y must hold 1 (H1, same device) or 0 (H2, different devices); "
            f"got {', '.join(shown)}"
        )
    y = y.astype(np.int64)
    n1 = int(y.sum())
    if n1 == 0 or n1 == len(y):
        only = "H2 (0)" if n1 == 0 else "H1 (1)"
        raise ValueError(
            f"{owner}: y must contain trials of both hypotheses (1 = H1 same device, "
            f"0 = H2 different devices); got only {only} in {len(y)} trial(s)"
        )
    return s, y


def check_embeddings(E, *, name="E", owner, n_features=None):
    """Check a 2-D array of finite embeddings, one row per utterance.

    Parameters
    ----------
    E : array-like of shape (n_utterances, n_features)
    name, owner : str
    n_features : int, optional
        The width the caller expects (e.g. the one seen in ``fit``).

    Returns
    -------
    ndarray of shape (n_utterances, n_features), float64
    """
    try:
        a = np.asarray(E, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{owner}: {name} must be a numeric array (n_utterances, n_features) of "
            "embeddings"
        ) from exc
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{owner}: {name} must be a non-empty 2-D array (n_utterances, n_features) "
            f"of embeddings; got shape {a.shape}"
        )
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ValueError(f"{where(int(np.flatnonzero(bad)[0]))}: {owner}: {name} has NaN or "
                         "infinite values")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(
            f"{owner}: {name} has {a.shape[1]} features, but {n_features} were seen in fit"
        )
    return a


def check_labels(labels, n, *, name, owner):
    """Check one label (device or speaker) per utterance.

    Parameters
    ----------
    labels : array-like of shape (n,)
    n : int
        The number of utterances.
    name, owner : str

    Returns
    -------
    ndarray of shape (n,)
    """
    if labels is None:
        raise TypeError(f"{owner}: {name} must be given, one per utterance ({n})")
    a = np.asarray(labels)
    if a.ndim != 1 or len(a) != n:
        raise ValueError(
            f"{owner}: {name} must be 1-D with one label per utterance ({n}); got shape "
            f"{a.shape}"
        )
    return a
