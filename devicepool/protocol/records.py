"""The result record of the Table-3 protocol: its schema, checking one and reading one back.

A record is one (model, condition, fold): a JSON object written by :mod:`.fitting`
(``"format"``: :data:`~.keys.RESULT_FORMAT`) and kept by :mod:`.store`.
"""

from __future__ import annotations

import json
import warnings

import numpy as np

from .conditions import CONDITIONS

#: keys of a result record that readers rely on, and their JSON types
RECORD_KEYS = {
    "format": int, "model": str, "condition": str, "fold": int, "train_mode": str,
    "test_mode": str, "accuracy": (int, float), "n_train": int, "n_test": int,
    "train_speakers": list, "test_speakers": list, "labels": list, "confusion_matrix": list,
    "test_index": list, "y_pred": list, "seed": int, "config_key": str, "fit_seconds": (int, float),
}


def damaged(path, what, problem, action):
    """None, for a damaged file; with an ``action`` (what the caller does instead), warn
    first, naming the file and what is wrong with it."""
    if action is not None:
        warnings.warn(f"{path}: corrupt {what} ({problem}); {action}", UserWarning, stacklevel=3)
    return None


def record_problem(rec, expect=None):
    """What is wrong with a result record (a str), or None when it is sound.

    ``expect``: the ``(model, condition, fold)`` its path says it holds.

    Examples
    --------
    >>> record_problem([])
    'not a JSON object'
    >>> record_problem({"format": 1})
    "lacks 'model'"
    """
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key, kind in RECORD_KEYS.items():
        if key not in rec:
            return f"lacks {key!r}"
        if not isinstance(rec[key], kind) or isinstance(rec[key], bool):
            return f"{key!r} is a {type(rec[key]).__name__}"
    if rec["condition"] not in CONDITIONS:
        return f"unknown condition {rec['condition']!r}"
    n_labels = len(rec["labels"])
    if np.shape(rec["confusion_matrix"]) != (n_labels, n_labels):
        return "confusion matrix does not match the labels"
    if not len(rec["test_index"]) == len(rec["y_pred"]) == rec["n_test"]:
        return "predictions do not match n_test"
    if expect is not None and (rec["model"], rec["condition"], rec["fold"]) != tuple(expect):
        return f"holds {rec['model']} {rec['condition']} fold {rec['fold']}, not {' '.join(map(str, expect))}"
    return None


def read_record(path, expect=None, action=None):
    """The sound result record at ``path``, or None when it is absent or damaged.

    A damaged file (unreadable, not JSON, truncated, lacking keys) warns naming it and
    ``action`` (what the caller does instead); ``action=None`` reads quietly.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return damaged(path, "result file", f"unreadable: {exc}", action)
    try:
        rec = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # truncated or not JSON (UnicodeDecodeError is a ValueError)
        return damaged(path, "result file", f"not JSON: {exc}", action)
    problem = record_problem(rec, expect)
    if problem is not None:
        return damaged(path, "result file", problem, action)
    return rec
