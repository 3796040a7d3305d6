"""What the protocol keeps on disk: atomic files, result records, Fig. 2 data.

Layout of an ``out_dir``::

    results/<model>/<condition>/fold<k>.json        one record per (model, condition, fold)
    results/<model>/attention-<mode>-fold<k>.npz    Fig. 2 data of an attention model's fit
    cache/features-<kind>-<key>.npz                 features of the corpus (see cache.py)
    cache/voicing-<key>.npz                         frame voicing labels of the corpus
    protocol.json                                   seeds, folds, settings

Every file is written to a temporary file ``.<name>.XXXX.tmp`` in its folder, flushed,
and renamed over its final name (:func:`os.replace`), so a file is absent or complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from .conditions import CONDITIONS, _slug

#: version of the result record schema (``"format"`` in every record)
_RESULT_FORMAT = 1

#: time reduction assumed for attention files written before it was stored (DA-CNN's)
_DEFAULT_TIME_REDUCTION = 4


# --------------------------------------------------------------------------- files


def _atomic_write_bytes(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # ".<name>.XXXX.tmp": a half-written file never matches a reader's "*.json" glob
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_text(path, text):
    _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_write_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write_bytes(path, buf.getvalue())


def _to_jsonable(value):
    """Plain JSON values (lists, numbers, str) of nested dicts, lists and numpy values.

    Examples
    --------
    >>> _to_jsonable({"a": np.arange(2), 1: (np.float32(0.5), None)})
    {'a': [0, 1], '1': [0.5, None]}
    """
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _atomic_write_json(path, obj):
    _atomic_write_text(path, json.dumps(_to_jsonable(obj), indent=1, sort_keys=True) + "\n")


def _read_json(path):
    """The JSON document at ``path``, or None when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _digest(*parts):
    """SHA-256 (hex) of values: arrays by dtype, shape and bytes, anything else by repr."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _corpus_fingerprint(corpus):
    """SHA-256 of a :class:`~devicepool.protocol.conditions.Corpus`: audio (paths by
    absolute path and size, arrays by content), labels, modes and sample rate."""
    h = hashlib.sha256()
    h.update(repr(corpus.sample_rate).encode())
    for item in corpus.data:
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            try:
                size = os.path.getsize(path)
            except OSError:
                size = -1
            h.update(f"path:{os.path.abspath(path)}:{size}".encode())
        else:
            arr = np.ascontiguousarray(np.asarray(item))
            h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        h.update(b"\x00")
    for arr in (corpus.target, corpus.groups, corpus.mode):
        h.update("\x1f".join(map(str, arr)).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


# --------------------------------------------------------------------------- results


def _config_key(fingerprint, n_splits, random_state, model, params, mode_augmentation):
    """The settings key stored in every record: a folder never mixes two settings."""
    return _digest(_RESULT_FORMAT, fingerprint, n_splits, int(random_state), model,
                   sorted((k, repr(v)) for k, v in params.items()),
                   *(["mode-augmentation"] if mode_augmentation else []))[:24]


def _result_path(results_dir, model, condition, fold):
    return os.path.join(results_dir, model, _slug(condition), f"fold{fold}.json")


def _attention_path(results_dir, model, train_mode, fold):
    return os.path.join(results_dir, model, f"attention-{train_mode}-fold{fold}.npz")


def _other_settings(task):
    """Path of a finished record of ``task`` made with other settings, or None."""
    for path in task.paths.values():
        rec = _read_json(path)
        if rec is not None and rec.get("config_key") != task.config_key:
            return path
    return None


def _task_done(task):
    """Whether every file of a fit exists with this run's settings."""
    for path in task.paths.values():
        rec = _read_json(path)
        if rec is None or rec.get("config_key") != task.config_key:
            return False
    return not task.attention_path or os.path.exists(task.attention_path)


def _write_task_outputs(task, records, attention):
    """Write what a fit produced, never touching an output a previous run finished.

    A run interrupted between the files of one fit (its matched and mismatched results,
    its attention data) redoes that fit on resume; the files it had already written stay
    as they are (same seed, same numbers), only the missing ones are written.
    """
    path = task.attention_path
    if attention is not None and path and not os.path.exists(path):
        _save_attention(path, attention)
    for rec in records:
        path = task.paths[rec["condition"]]
        old = _read_json(path)
        if old is None or old.get("config_key") != task.config_key:
            _atomic_write_json(path, rec)


# --------------------------------------------------------------------------- attention


@dataclass
class FoldAttention:
    """Fig. 2 data of one fit: attention on the held-out utterances of its training mode.

    Attributes
    ----------
    utterance_index : ndarray of int, shape (n,)
        Corpus positions of the utterances.
    time_weights : list of ndarray
        Per utterance, float32 ``(ceil(n_frames / time_reduction),)``.
    band_weights : ndarray of shape (n, n_bands) or None
    time_reduction : int
        Feature frames per output frame of the network (4 for SA-CNN and DA-CNN).
    frame_labels : list of ndarray of str or None
        Per utterance, the voicing class of every feature frame (attached by the runner
        from the feature cache; None until then).
    """

    utterance_index: np.ndarray
    time_weights: list
    band_weights: np.ndarray | None
    time_reduction: int
    frame_labels: list | None = None


def _save_attention(path, att):
    """Write a :class:`FoldAttention` as an npz (no pickle): packed ragged arrays."""
    from .cache import _pack

    labels = att.frame_labels or [np.zeros(0, dtype="U1") for _ in att.time_weights]
    names = np.unique(np.concatenate(labels)) if labels else np.zeros(0, dtype="U1")
    codes = [np.searchsorted(names, lab).astype(np.int8) for lab in labels]
    time_values, time_lengths = _pack(att.time_weights, np.float32)
    label_values, label_lengths = _pack(codes, np.int8)
    arrays = {
        "time_values": time_values, "time_lengths": time_lengths,
        "label_values": label_values, "label_lengths": label_lengths,
        "label_names": np.asarray(names, dtype="U8"),
        "utterance_index": np.asarray(att.utterance_index, dtype=np.int64),
        "time_reduction": np.asarray(int(att.time_reduction), dtype=np.int64),
    }
    if att.band_weights is not None:
        arrays["band_weights"] = np.asarray(att.band_weights, dtype=np.float32)
    _atomic_write_npz(path, **arrays)


def _load_attention(path):
    """Read an attention npz back into a :class:`FoldAttention`."""
    from .cache import _unpack

    with np.load(path, allow_pickle=False) as z:
        names = z["label_names"].astype(str)
        time_w = _unpack(z["time_values"], z["time_lengths"])
        codes = _unpack(z["label_values"], z["label_lengths"])
        return FoldAttention(
            utterance_index=z["utterance_index"],
            time_weights=[np.asarray(t).ravel() for t in time_w],
            band_weights=z["band_weights"] if "band_weights" in z.files else None,
            time_reduction=int(z["time_reduction"]) if "time_reduction" in z.files
            else _DEFAULT_TIME_REDUCTION,
            frame_labels=[names[np.asarray(c).ravel().astype(int)] for c in codes],
        )


def _merge_attention(parts):
    """One training mode's Fig. 2 data, all fits together (``ProtocolResult.attention``)."""
    if not parts:
        return None
    band = [p.band_weights for p in parts if p.band_weights is not None]
    return {
        "band_weights": np.concatenate(band) if band else None,
        "time_weights": [t for p in parts for t in p.time_weights],
        "frame_labels": [f for p in parts for f in (p.frame_labels or [])],
        "time_reduction": [int(p.time_reduction) for p in parts for _ in p.time_weights],
        "utterance_index": np.concatenate([np.asarray(p.utterance_index, dtype=np.int64)
                                           for p in parts]),
    }


# --------------------------------------------------------------------------- reading back


def _read_results_dir(results_dir):
    """Records and ``train_mode -> [FoldAttention]`` found under ``results_dir``."""
    records, attention_parts = [], {}
    if not os.path.isdir(results_dir):
        return records, attention_parts
    for root, _, files in sorted(os.walk(results_dir)):
        for f in sorted(files):
            path = os.path.join(root, f)
            if f.endswith(".json") and not f.startswith("."):
                rec = _read_json(path)
                if rec is not None and "condition" in rec:
                    records.append(rec)
            elif f.startswith("attention-") and f.endswith(".npz"):
                train_mode = f.split("-")[1]
                attention_parts.setdefault(train_mode, []).append(_load_attention(path))
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
