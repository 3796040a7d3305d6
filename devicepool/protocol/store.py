"""What the protocol keeps on disk: atomic files, result records, Fig. 2 data.

Layout of an ``out_dir``::

    results/<model>/<condition>/fold<k>.json        one record per (model, condition, fold)
    results/<model>/attention-<mode>-fold<k>.npz    Fig. 2 data of an attention model's fit
    cache/features-<kind>-<key>.npz                 features of the corpus (see cache.py)
    cache/voicing-<key>.npz                         frame voicing labels of the corpus
    protocol.json                                   seeds, folds, settings
    .lock                                           the running run's lock (see lock.py)

Every file is written to a temporary file ``.<name>.XXXX.tmp`` in its folder, flushed,
given the mode ``0o666`` less the umask (as :func:`open` would), and renamed over its final
name (:func:`os.replace`), so a file is absent or complete. A file found damaged (not
JSON, a record lacking keys, a truncated npz) is reported with a ``UserWarning`` naming
it and treated as absent: recomputed and replaced.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from .._io import atomic_write_json, atomic_write_npz, pack_ragged, remove_stale_temps, unpack_ragged
from .conditions import CONDITIONS, _slug

#: time reduction assumed for attention files written before it was stored (DA-CNN's)
_DEFAULT_TIME_REDUCTION = 4

# --------------------------------------------------------------------------- files


def _remove_stale_temps(out_dir):
    """Delete the temporary files a killed run left in ``out_dir`` (top level, ``results/``
    and ``cache/``); only while holding the folder's lock, so no writer is using them."""
    folders = [out_dir]
    for sub in ("results", "cache"):
        folders += [root for root, _, _ in os.walk(os.path.join(out_dir, sub))]
    remove_stale_temps(folders)


def _damaged(path, what, problem, action):
    """None, for a damaged file; with an ``action`` (what the caller does instead), warn
    first, naming the file and what is wrong with it."""
    if action is not None:
        warnings.warn(f"{path}: corrupt {what} ({problem}); {action}", UserWarning, stacklevel=3)
    return None


# --------------------------------------------------------------------------- results


def _result_path(results_dir, model, condition, fold):
    return os.path.join(results_dir, model, _slug(condition), f"fold{fold}.json")


def _attention_path(results_dir, model, train_mode, fold):
    return os.path.join(results_dir, model, f"attention-{train_mode}-fold{fold}.npz")


#: keys of a result record that readers rely on, and their JSON types
_RECORD_KEYS = {
    "format": int, "model": str, "condition": str, "fold": int, "train_mode": str,
    "test_mode": str, "accuracy": (int, float), "n_train": int, "n_test": int,
    "train_speakers": list, "test_speakers": list, "labels": list, "confusion_matrix": list,
    "test_index": list, "y_pred": list, "seed": int, "config_key": str, "fit_seconds": (int, float),
}


def _record_problem(rec, expect=None):
    """What is wrong with a result record (a str), or None when it is sound.

    ``expect``: the ``(model, condition, fold)`` its path says it holds.

    Examples
    --------
    >>> _record_problem([])
    'not a JSON object'
    >>> _record_problem({"format": 1})
    "lacks 'model'"
    """
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key, kind in _RECORD_KEYS.items():
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


def _read_record(path, expect=None, action=None):
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
        return _damaged(path, "result file", f"unreadable: {exc}", action)
    try:
        rec = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # truncated or not JSON (UnicodeDecodeError is a ValueError)
        return _damaged(path, "result file", f"not JSON: {exc}", action)
    problem = _record_problem(rec, expect)
    if problem is not None:
        return _damaged(path, "result file", problem, action)
    return rec


def _attention_key(path, action=None):
    """The settings key stored in an attention file: None when absent or damaged (with a
    warning naming it and ``action``), ``""`` for a file written before keys were stored."""
    if not os.path.exists(path):
        return None
    try:
        _, key = _read_attention(path)
    except Exception as exc:  # BadZipFile, EOFError, ValueError, KeyError, zlib.error, ...
        return _damaged(path, "attention file", f"{type(exc).__name__}: {exc}", action)
    return key or ""


def _task_status(task):
    """``("done" | "todo" | "other", path)``: whether a fit's files are all there with this
    run's settings, or the path of one holding other settings. A damaged file warns
    (naming it) and counts as missing: its fit runs again and replaces it."""
    redo = "recomputing it"
    done = True
    for cond, path in task.paths.items():
        rec = _read_record(path, (task.model, cond, task.fold), action=redo)
        if rec is not None and rec["config_key"] != task.config_key:
            return "other", path
        done &= rec is not None
    if task.attention_path:
        key = _attention_key(task.attention_path, action=redo)
        if key and key != task.config_key:
            return "other", task.attention_path
        done &= key is not None
    return ("done" if done else "todo"), None


def _write_task_outputs(task, records, attention):
    """Write what a fit produced, never touching an output a previous run finished.

    A run interrupted between the files of one fit (its matched and mismatched results,
    its attention data) redoes that fit on resume; the files it had already written stay
    as they are (same seed, same numbers), only the missing (or damaged, or other
    settings') ones are written.
    """
    path = task.attention_path
    if attention is not None and path and _attention_key(path) != task.config_key:
        _save_attention(path, attention, task.config_key)
    for rec in records:
        path = task.paths[rec["condition"]]
        old = _read_record(path, (task.model, rec["condition"], task.fold))
        if old is None or old["config_key"] != task.config_key:
            atomic_write_json(path, rec)


# --------------------------------------------------------------------------- attention


def _save_attention(path, att, config_key=None):
    """Write an :class:`~devicepool.features.AttentionWeights` as an npz (no pickle): packed
    ragged arrays, and the settings key of the fit that made it. The voicing is stored as
    codes into ``label_names``, the classes present in sorted order (the format's own
    code book)."""
    labels = att.frame_labels or [np.zeros(0, dtype="U1") for _ in att.time]
    names = np.unique(np.concatenate(labels)) if labels else np.zeros(0, dtype="U1")
    codes = [np.searchsorted(names, lab).astype(np.int8) for lab in labels]
    time_values, time_lengths = pack_ragged(att.time, np.float32)
    label_values, label_lengths = pack_ragged(codes, np.int8)
    arrays = {
        "time_values": time_values, "time_lengths": time_lengths,
        "label_values": label_values, "label_lengths": label_lengths,
        "label_names": np.asarray(names, dtype="U8"),
        "utterance_index": np.asarray(att.utterance_index, dtype=np.int64),
        "time_reduction": np.asarray(int(att.time_reduction), dtype=np.int64),
    }
    if att.band is not None:
        arrays["band_weights"] = np.asarray(att.band, dtype=np.float32)
    if config_key is not None:
        arrays["config_key"] = np.asarray(config_key)
    atomic_write_npz(path, **arrays)


def _check_packed(values, lengths, name):
    if lengths.ndim != 1 or np.any(lengths < 0) or int(lengths.sum()) != len(values):
        raise ValueError(f"{name}: lengths do not add up to the values")


def _read_attention(path):
    """``(AttentionWeights, settings key or None)`` of an attention npz; ValueError (or
    the reader's own error) when the file is damaged."""
    from ..features import AttentionWeights, voicing_codes

    with np.load(path, allow_pickle=False) as z:
        names = z["label_names"].astype(str)
        index = z["utterance_index"]
        for v, n in (("time_values", "time_lengths"), ("label_values", "label_lengths")):
            _check_packed(z[v], z[n], v)
            if len(z[n]) != len(index):
                raise ValueError(f"{n} has {len(z[n])} entries for {len(index)} utterances")
        band = z["band_weights"] if "band_weights" in z.files else None
        if band is not None and (band.ndim != 2 or len(band) != len(index)):
            raise ValueError(f"band_weights of shape {band.shape} for {len(index)} utterances")
        book = voicing_codes(names, "label_names") if len(names) else np.zeros(0, np.int8)
        codes = unpack_ragged(z["label_values"], z["label_lengths"])
        att = AttentionWeights(
            [np.asarray(t).ravel() for t in unpack_ragged(z["time_values"], z["time_lengths"])], band,
            int(z["time_reduction"]) if "time_reduction" in z.files else _DEFAULT_TIME_REDUCTION,
            index, [book[np.asarray(c).ravel().astype(int)] for c in codes])
        return att, (str(z["config_key"]) if "config_key" in z.files else None)


def _load_attention(path):
    """Read an attention npz back into an :class:`~devicepool.features.AttentionWeights`."""
    return _read_attention(path)[0]


def _merge_attention(parts):
    """One training mode's Fig. 2 data, all fits together (``ProtocolResult.attention``)."""
    from ..features import AttentionWeights

    return AttentionWeights.concat(parts)


# --------------------------------------------------------------------------- reading back


def _read_results_dir(results_dir):
    """Records and ``train_mode -> [AttentionWeights]`` found under ``results_dir``; a damaged
    file is skipped with a warning naming it."""
    records, attention_parts = [], {}
    if not os.path.isdir(results_dir):
        return records, attention_parts
    for root, _, files in sorted(os.walk(results_dir)):
        for f in sorted(files):
            path = os.path.join(root, f)
            if f.endswith(".json") and not f.startswith("."):
                rec = _read_record(path, action="skipped")
                if rec is not None:
                    records.append(rec)
            elif f.startswith("attention-") and f.endswith(".npz"):
                try:
                    att = _load_attention(path)
                except Exception as exc:  # BadZipFile, EOFError, ValueError, KeyError, ...
                    _damaged(path, "attention file", f"{type(exc).__name__}: {exc}", "skipped")
                    continue
                attention_parts.setdefault(f.split("-")[1], []).append(att)
    return records, attention_parts


def load_results(out_dir, models=None):
    """Read the finished results of a protocol folder back into a :class:`ProtocolResult`.

    Examples
    --------
    >>> load_results(tempfile.mkdtemp()).records
    []
    """
    from .registry import registered_models
    from .report import _summarise

    records, attention_parts = _read_results_dir(os.path.join(os.fspath(out_dir), "results"))
    found = []
    for r in records:
        if r["model"] not in found:
            found.append(r["model"])
    if models is None:
        known = registered_models()
        models = [m for m in known if m in found] + [m for m in found if m not in known]
    conds = [c for c in CONDITIONS if any(r["condition"] == c for r in records)]
    attention = {k: _merge_attention(v) for k, v in attention_parts.items()}
    return _summarise([r for r in records if r["model"] in models], list(models), conds, [],
                      attention, {})
