"""What the Table-3 protocol keeps: :class:`ResultStore` (a folder on disk),
:class:`MemoryStore` (this process only, ``out_dir=None``), and the Fig. 2 data format.

Layout of an ``out_dir``::

    results/<model>/<condition>/fold<k>.json        one record per (model, condition, fold)
    results/<model>/attention-<mode>-fold<k>.npz    Fig. 2 data of an attention model's fit
    cache/features-<kind>-<key>.npz                 features of the corpus (see cache.py)
    cache/voicing-<key>.npz                         frame voicing labels of the corpus
    protocol.json                                   seeds, folds, settings
    .lock                                           the running run's lock (see lock.py)

Every file is written atomically (:mod:`devicepool._io`: a temporary file
``.<name>.XXXX.tmp`` in its folder, flushed, given the mode ``0o666`` less the umask,
renamed over its final name), so a file is absent or complete. A file found damaged (not
JSON, a record lacking keys (:mod:`.records`), a truncated npz) is reported with a
``UserWarning`` naming it and treated as absent: recomputed and replaced. Folders written
by devicepool 0.4 and 0.5 have this layout and are resumed and loaded as they are.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

import numpy as np

from .._io import atomic_write_json, atomic_write_npz, pack_ragged, remove_stale_temps, unpack_ragged
from .conditions import slug
from .lock import output_lock
from .records import damaged as _damaged
from .records import read_record

#: time reduction assumed for attention files written before it was stored (DA-CNN's)
_DEFAULT_TIME_REDUCTION = 4

# --------------------------------------------------------------------------- results


def _attention_path(results_dir, model, train_mode, fold):
    return os.path.join(results_dir, model, f"attention-{train_mode}-fold{fold}.npz")


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


# --------------------------------------------------------------------------- the stores


class ResultStore:
    """The results of a protocol folder (the layout above): what the runner asks of it,
    one fit (a :class:`~.fitting.FitTask`) at a time, and everything at once.

    Parameters
    ----------
    out_dir : str or path-like

    Examples
    --------
    >>> import tempfile
    >>> ResultStore(tempfile.mkdtemp()).load_all()
    ([], {})
    """

    def __init__(self, out_dir):
        self.out_dir = os.fspath(out_dir)
        self.results_dir = os.path.join(self.out_dir, "results")
        self.cache_dir = os.path.join(self.out_dir, "cache")  #: the feature cache's folder

    def lock(self, wait=False, notify=False):
        """The folder's exclusive lock (:func:`~.lock.output_lock`), for a ``with``."""
        return output_lock(self.out_dir, wait=wait, notify=notify)

    def remove_stale_temps(self):
        """Delete the temporary files a killed run left (top level, ``results/`` and
        ``cache/``); only while holding the folder's lock, so no writer is using them."""
        folders = [self.out_dir]
        for sub in ("results", "cache"):
            folders += [root for root, _, _ in os.walk(os.path.join(self.out_dir, sub))]
        remove_stale_temps(folders)

    def locate(self, task):
        """``task`` with the paths of its files: a result per condition and, for an
        attention model, its Fig. 2 data (which makes the fit compute it)."""
        paths = {c: os.path.join(self.results_dir, task.model, slug(c), f"fold{task.fold}.json")
                 for c in task.conditions}
        att = (_attention_path(self.results_dir, task.model, task.train_mode, task.fold)
               if task.spec.attention else None)
        return replace(task, paths=paths, attention_path=att)

    def status(self, task):
        """``("done" | "todo" | "other", path)``: whether a fit's files are all there with
        this run's settings, or the path of one holding other settings. A damaged file warns
        (naming it) and counts as missing: its fit runs again and replaces it."""
        redo = "recomputing it"
        done = True
        for cond, path in task.paths.items():
            rec = read_record(path, (task.model, cond, task.fold), action=redo)
            if rec is not None and rec["config_key"] != task.config_key:
                return "other", path
            done &= rec is not None
        if task.attention_path:
            key = _attention_key(task.attention_path, action=redo)
            if key and key != task.config_key:
                return "other", task.attention_path
            done &= key is not None
        return ("done" if done else "todo"), None

    def read(self, task):
        """A finished fit's records and Fig. 2 data (None for a model without attention)."""
        records = [read_record(p, (task.model, c, task.fold)) for c, p in task.paths.items()]
        return records, (_load_attention(task.attention_path) if task.attention_path else None)

    def write(self, task, records, attention):
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
            old = read_record(path, (task.model, rec["condition"], task.fold))
            if old is None or old["config_key"] != task.config_key:
                atomic_write_json(path, rec)

    def write_config(self, config):
        """``protocol.json``: seeds, folds, settings of the run."""
        atomic_write_json(os.path.join(self.out_dir, "protocol.json"), config)

    def load_all(self):
        """Records and ``train_mode -> [AttentionWeights]`` found in the folder; a damaged file
        is skipped with a warning naming it."""
        records, attention_parts = [], {}
        if not os.path.isdir(self.results_dir):
            return records, attention_parts
        for root, _, files in sorted(os.walk(self.results_dir)):
            for f in sorted(files):
                path = os.path.join(root, f)
                if f.endswith(".json") and not f.startswith("."):
                    rec = read_record(path, action="skipped")
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


class MemoryStore:
    """A :class:`ResultStore` of this process only (a run without ``out_dir``): nothing is
    written to disk or resumed, and a fit is given no files, so it computes no Fig. 2 data.

    Examples
    --------
    >>> MemoryStore().load_all()
    ([], {})
    """

    out_dir = cache_dir = None

    def __init__(self):
        self.outcomes, self.config = {}, None

    def lock(self, wait=False, notify=False):
        return contextlib.nullcontext()

    def remove_stale_temps(self):
        pass

    def locate(self, task):
        return task

    def status(self, task):
        return ("done" if task.key in self.outcomes else "todo"), None

    def read(self, task):
        return self.outcomes[task.key]

    def write(self, task, records, attention):
        self.outcomes[task.key] = (records, attention)

    def write_config(self, config):
        self.config = config

    def load_all(self):
        records, attention_parts = [], {}
        for (_, train_mode, _), (recs, att) in self.outcomes.items():
            records += recs
            if att is not None:
                attention_parts.setdefault(train_mode, []).append(att)
        return records, attention_parts
