"""The paper's evaluation protocol (Table 3 and Fig. 2), resumable and reproducible.

The protocol of Naini, Singhal & Ghosh, run on any corpus Bunch returned by
:mod:`devicepool.datasets`:

* **Ex-1** (condition ``"MOBI"``): neutral speech only (MOBIPHONE in the paper);
* **Ex-2**: ``"N"`` neutral -> neutral, ``"W"`` whisper -> whisper, and the mismatched
  ``"N/W"`` (train on the neutral speech of the training speakers, test on the whispered
  speech of the held-out speakers) and ``"W/N"``.

Folds are speaker-disjoint: :class:`sklearn.model_selection.GroupKFold` on the speaker
ids of the whole corpus, so every mode uses the same folds and ``"N/W"`` tests the other
mode of the *same* held-out speakers. One model is fitted per (model, training mode,
fold) and serves every condition with that training mode (``"N"`` and ``"N/W"`` share
the neutral fits). Accuracy is utterance-level; Table 3 reports mean ± std over folds
(population standard deviation, ``ddof=0``) in percent.

Nothing is lost: every finished (model, condition, fold) result is written atomically
(temporary file + :func:`os.replace`) as JSON under ``out_dir/results/`` the moment it is
known, and a rerun with the same settings reuses it. A killed run loses at most the fit
in progress. Features are computed once per corpus and cached (in memory and, with an
``out_dir``, on disk under ``out_dir/cache/``).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import platform
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "CONDITIONS",
    "PAPER_TABLE3",
    "ProtocolResult",
    "available_conditions",
    "chance_levels",
    "combine_results",
    "load_results",
    "make_folds",
    "paper_claims",
    "register_model",
    "registered_models",
    "run_protocol",
    "write_report",
]

#: condition code -> (training mode, test mode, column title)
CONDITIONS = {
    "MOBI": ("neutral", "neutral", "MOBI (Ex-1)"),
    "N": ("neutral", "neutral", "N"),
    "W": ("whisper", "whisper", "W"),
    "N/W": ("neutral", "whisper", "N/W"),
    "W/N": ("whisper", "neutral", "W/N"),
}

#: the paper's Table 3 (utterance-level accuracy, %)
PAPER_TABLE3 = {
    "dft_cnn": {"MOBI": 92.21, "N": 93.8, "W": 91.54, "N/W": 73.72, "W/N": 66.86},
    "sa_cnn": {"MOBI": 86.64, "N": 97.82, "W": 99.08, "N/W": 60.52, "W/N": 49.36},
    "da_cnn": {"MOBI": 94.56, "N": 99.12, "W": 99.37, "N/W": 69.45, "W/N": 51.4},
}

_MODES = ("neutral", "whisper")
_RESULT_FORMAT = 1


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _ModelSpec:
    name: str
    label: str
    feature: str
    factory: Callable[..., Any]
    attention: bool = False


def _estimator_factory(class_name):
    def factory(**params):
        from devicepool import estimators

        return getattr(estimators, class_name)(**params)

    factory.__name__ = f"make_{class_name}"
    return factory


def _feature_factory(class_name):
    def factory(sample_rate):
        from devicepool import features

        return getattr(features, class_name)(sample_rate=sample_rate)

    factory.__name__ = f"make_{class_name}"
    return factory


_MODELS: dict[str, _ModelSpec] = {}
_FEATURES: dict[str, Callable[[int], Any]] = {
    "fbank": _feature_factory("FilterBank"),
    "dft": _feature_factory("DFTMagnitude"),
}


def register_model(name, factory, feature="fbank", label=None, attention=False):
    """Register a model for :func:`run_protocol` under ``name``.

    Parameters
    ----------
    name : str
        Model key used in ``models=`` and in result files.
    factory : callable
        ``factory(random_state=..., **params)`` returns an unfitted sklearn classifier
        that takes an utterance set of features.
    feature : {"fbank", "dft"}
        Features the classifier reads: :class:`~devicepool.features.FilterBank` or
        :class:`~devicepool.features.DFTMagnitude` (computed once per corpus).
    label : str, optional
        Row title in Table 3 (defaults to ``name``).
    attention : bool, default=False
        Whether the classifier has ``attention_weights(X)`` returning time and band
        weights (DA-CNN), used for Fig. 2.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> register_model("majority", lambda random_state=None, **p: DummyClassifier())
    >>> "majority" in registered_models()
    True
    >>> _ = _MODELS.pop("majority")
    """
    if feature not in _FEATURES:
        raise ValueError(f"feature must be one of {sorted(_FEATURES)}, got {feature!r}")
    _MODELS[name] = _ModelSpec(name, label or name, feature, factory, bool(attention))


def registered_models():
    """Return the names of the models :func:`run_protocol` knows, in table order."""
    return list(_MODELS)


register_model("dft_cnn", _estimator_factory("DFTCNNClassifier"), "dft", "DFT-CNN (baseline)")
register_model("sa_cnn", _estimator_factory("SACNNClassifier"), "fbank", "SA-CNN")
register_model("da_cnn", _estimator_factory("DACNNClassifier"), "fbank", "DA-CNN", attention=True)


# --------------------------------------------------------------------------- helpers


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


def _to_jsonable(value):
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
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _labels_array(values, name, n):
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"corpus.{name} must have one entry per utterance ({n}), got shape {arr.shape}")
    return arr


def _check_corpus(corpus):
    for key in ("data", "target", "groups"):
        if not hasattr(corpus, key) and not (isinstance(corpus, dict) and key in corpus):
            raise TypeError(
                f"corpus must be a Bunch with data, target, groups (and mode, sample_rate); "
                f"missing {key!r}"
            )
    get = corpus.get if isinstance(corpus, dict) else lambda k, d=None: getattr(corpus, k, d)
    data = list(get("data"))
    n = len(data)
    if n == 0:
        raise ValueError("corpus is empty: no utterances")
    target = _labels_array(get("target"), "target", n)
    groups = _labels_array(get("groups"), "groups", n)
    mode = get("mode")
    mode = np.full(n, "neutral", dtype=object) if mode is None else _labels_array(mode, "mode", n)
    mode = np.asarray([str(m) for m in mode], dtype=object)
    bad = sorted(set(mode) - set(_MODES))
    if bad:
        raise ValueError(f"corpus.mode values must be 'neutral' or 'whisper', got {bad}")
    sample_rate = int(get("sample_rate", 16000) or 16000)
    utterance = get("utterance")
    return data, target, groups, mode, sample_rate, utterance


def _corpus_fingerprint(data, target, groups, mode, sample_rate):
    h = hashlib.sha256()
    h.update(repr(sample_rate).encode())
    for item in data:
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
    for arr in (target, groups, mode):
        h.update("\x1f".join(map(str, arr)).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _seed_for(random_state, model, train_mode, fold):
    ss = np.random.SeedSequence(
        [int(random_state), zlib.crc32(model.encode()), _MODES.index(train_mode), int(fold)]
    )
    return int(ss.generate_state(1)[0] % (2**31 - 1))


def _slug(condition):
    return condition.replace("/", "-")


def _progress_bar(enabled, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


# --------------------------------------------------------------------------- folds


def available_conditions(mode):
    """Conditions a corpus with these ``mode`` labels can serve by default.

    A corpus with both neutral and whispered speech serves Ex-2 (``N``, ``W``, ``N/W``,
    ``W/N``); a neutral-only corpus serves Ex-1 (``MOBI``); a whisper-only one ``W``.

    Examples
    --------
    >>> available_conditions(["neutral", "whisper"])
    ['N', 'W', 'N/W', 'W/N']
    >>> available_conditions(["neutral"])
    ['MOBI']
    """
    modes = set(map(str, mode))
    if {"neutral", "whisper"} <= modes:
        return ["N", "W", "N/W", "W/N"]
    if modes == {"neutral"}:
        return ["MOBI"]
    if modes == {"whisper"}:
        return ["W"]
    return []


def make_folds(groups, n_splits=3):
    """Speaker-disjoint folds: the held-out speakers of each ``GroupKFold`` split.

    Parameters
    ----------
    groups : array-like of shape (n_utterances,)
        Speaker id per utterance (all modes together, so every mode gets the same folds).
    n_splits : int, default=3

    Returns
    -------
    folds : list of ndarray of bool, shape (n_utterances,)
        ``folds[k][i]`` is True when utterance ``i``'s speaker is held out in fold ``k``.

    Examples
    --------
    >>> sorted(f.astype(int).tolist() for f in make_folds(["a", "a", "b", "c"], 3))
    [[0, 0, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]]
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray([str(g) for g in groups])
    n_speakers = len(set(groups))
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if n_speakers < n_splits:
        raise ValueError(
            f"speaker-disjoint {n_splits}-fold cross-validation needs at least {n_splits} "
            f"speakers, the corpus has {n_speakers}"
        )
    folds = []
    for _, test in GroupKFold(n_splits=n_splits).split(np.zeros(len(groups)), groups=groups):
        held = np.zeros(len(groups), dtype=bool)
        held[np.isin(groups, np.unique(groups[test]))] = True
        folds.append(held)
    return folds


# --------------------------------------------------------------------------- features


def _pack(arrays):
    lengths = np.asarray([a.shape[0] for a in arrays], dtype=np.int64)
    width = arrays[0].shape[1] if arrays[0].ndim == 2 else 0
    values = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1, width) for a in arrays])
    return values, lengths


def _unpack(values, lengths):
    out = np.empty(len(lengths), dtype=object)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    for i, (a, b) in enumerate(zip(starts, ends)):
        out[i] = values[a:b]
    return out


def _compute_features(kind, data, sample_rate, fingerprint, cache_dir, progress, n_jobs, memo):
    transformer = _FEATURES[kind](sample_rate)
    try:
        params = transformer.get_params()
    except AttributeError:
        params = {}
    key = _digest(kind, fingerprint, sorted((k, repr(v)) for k, v in params.items() if k != "n_jobs"))
    if key in memo:
        return memo[key]
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"features-{kind}-{key[:20]}.npz")
        if os.path.exists(path):
            try:
                with np.load(path, allow_pickle=False) as z:
                    feats = _unpack(z["values"], z["lengths"])
                if len(feats) == len(data):
                    memo[key] = feats
                    return feats
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: recompute
    if n_jobs is not None and "n_jobs" in params:
        transformer.set_params(n_jobs=n_jobs)
    chunk = 64
    arrays = []
    with _progress_bar(progress, total=len(data), desc=f"features ({kind})", unit="utt") as bar:
        for start in range(0, len(data), chunk):
            part = transformer.transform(list(data[start : start + chunk]))
            arrays.extend(part)
            bar.update(len(part))
    feats = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        feats[i] = np.asarray(a, dtype=np.float32)
    if path is not None:
        values, lengths = _pack(list(feats))
        buf = io.BytesIO()
        np.savez(buf, values=values, lengths=lengths)
        _atomic_write_bytes(path, buf.getvalue())
    memo[key] = feats
    return feats


# --------------------------------------------------------------------------- results


@dataclass
class ProtocolResult:
    """Everything a protocol run produced.

    Attributes
    ----------
    records : list of dict
        One per finished (model, condition, fold): ``accuracy`` (fraction),
        ``n_train``, ``n_test``, ``test_speakers``, ``labels``, ``confusion_matrix``,
        ``seed``, ``model_params``, ``fit_seconds``, predictions, ...
    summary : dict
        ``(model, condition) -> {"mean", "std", "n_folds", "accuracies"}`` in percent.
    confusion : dict
        ``(model, condition) -> {"labels": list, "matrix": ndarray}`` summed over folds
        (rows true device, columns predicted).
    attention : dict
        ``training mode -> {"band_weights": (n, 24), "time_weights": list of (n_out,),
        "frame_labels": list of (n_frames,) str}`` from the DA-CNN fits, on held-out
        utterances of the training mode (the data of Fig. 2).
    models, conditions : list of str
    notes : list of str
        Conditions skipped and why, and other remarks.
    paths : dict
        Files written (report, tables, figures).
    config : dict
        Seeds, folds, corpus fingerprint, model parameters.
    """

    records: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    confusion: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    conditions: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def accuracy(self, model, condition):
        """Mean accuracy (%) over folds of ``model`` in ``condition``."""
        return self.summary[(model, condition)]["mean"]

    def table_rows(self, paper=False):
        """Table 3 as rows of strings (first row is the header)."""
        conds = [c for c in CONDITIONS if c in self.conditions]
        header = ["model"] + [CONDITIONS[c][2] for c in conds]
        rows = [header]
        for m in self.models:
            label = _MODELS[m].label if m in _MODELS else m
            row = [label]
            for c in conds:
                s = self.summary.get((m, c))
                cell = "-" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"
                if paper and m in PAPER_TABLE3 and c in PAPER_TABLE3[m]:
                    cell += f" ({PAPER_TABLE3[m][c]:.2f})"
                row.append(cell)
            rows.append(row)
        return rows

    def to_markdown(self, paper=True):
        """Table 3 as a Markdown table: mean ± std over folds (%), paper's value in ()."""
        rows = self.table_rows(paper=paper)
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines) + "\n"

    def to_csv(self, paper=True):
        """Table 3 as CSV text: one row per model, ``mean``/``std`` (and paper) columns."""
        conds = [c for c in CONDITIONS if c in self.conditions]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        head = ["model"]
        for c in conds:
            head += [f"{c} mean", f"{c} std", f"{c} folds"] + ([f"{c} paper"] if paper else [])
        w.writerow(head)
        for m in self.models:
            row = [m]
            for c in conds:
                s = self.summary.get((m, c))
                row += ["", "", 0] if s is None else [f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n_folds"]]
                if paper:
                    row.append(PAPER_TABLE3.get(m, {}).get(c, ""))
            w.writerow(row)
        return buf.getvalue()

    def folds_csv(self):
        """Per-fold accuracies as CSV text."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "condition", "fold", "accuracy", "n_train", "n_test", "seed", "fit_seconds", "test_speakers"])
        for r in self.records:
            w.writerow([r["model"], r["condition"], r["fold"], f"{100 * r['accuracy']:.4f}", r["n_train"],
                        r["n_test"], r["seed"], f"{r['fit_seconds']:.2f}", " ".join(map(str, r["test_speakers"]))])
        return buf.getvalue()


def _summarise(records, models, conditions, notes, attention, config, n_splits=None):
    res = ProtocolResult(models=list(models), conditions=list(conditions), notes=list(notes),
                         attention=attention, config=config)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    morder = {m: i for i, m in enumerate(models)}
    res.records = sorted(records, key=lambda r: (morder.get(r["model"], 99), order[r["condition"]], r["fold"]))
    by = {}
    for r in res.records:
        by.setdefault((r["model"], r["condition"]), []).append(r)
    for key, recs in by.items():
        acc = np.array([100.0 * r["accuracy"] for r in recs])
        res.summary[key] = {"mean": float(acc.mean()), "std": float(acc.std()), "n_folds": len(recs),
                            "accuracies": acc.tolist()}
        labels = list(recs[0]["labels"])
        mat = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for r in recs:
            mat += np.asarray(r["confusion_matrix"], dtype=np.int64)
        res.confusion[key] = {"labels": labels, "matrix": mat}
        if n_splits is not None and len(recs) < n_splits:
            res.notes.append(f"{key[0]} {key[1]}: only {len(recs)} of {n_splits} folds finished")
    return res


def combine_results(*results):
    """Merge protocol results of different corpora (e.g. Ex-1 and Ex-2) into one table.

    Examples
    --------
    >>> combine_results(ProtocolResult(models=["a"]), ProtocolResult(models=["a"])).models
    ['a']
    """
    models, conditions, records, notes, attention, configs = [], [], [], [], {}, []
    seen = set()
    for r in results:
        models += [m for m in r.models if m not in models]
        conditions += [c for c in r.conditions if c not in conditions]
        for rec in r.records:
            key = (rec["model"], rec["condition"], rec["fold"])
            if key in seen:
                raise ValueError(f"results overlap: {key} appears in more than one result")
            seen.add(key)
            records.append(rec)
        notes += r.notes
        for k, v in r.attention.items():
            attention.setdefault(k, v)
        configs.append(r.config)
    conditions = [c for c in CONDITIONS if c in conditions]
    res = _summarise(records, models, conditions, [], attention, {"parts": configs})
    res.notes = notes
    return res


# --------------------------------------------------------------------------- attention


def _voicing_codes(item, sample_rate, index):
    from devicepool.audio import as_waveform
    from devicepool.features import voicing_labels

    wave = as_waveform(item, sample_rate, index=index)
    return np.asarray(voicing_labels(wave, sample_rate)).astype(str)


def _attention_payload(est, feats, data, idx, sample_rate):
    out = est.attention_weights(feats)
    if isinstance(out, dict):
        time_w = out.get("time", out.get("time_weights"))
        band_w = out.get("band", out.get("band_weights"))
    elif isinstance(out, tuple):
        time_w, band_w = out[0], (out[1] if len(out) > 1 else None)
    else:
        time_w, band_w = out, None
    time_list = [np.asarray(t, dtype=np.float32).ravel() for t in time_w]
    labels = [_voicing_codes(data[i], sample_rate, i) for i in idx]
    from devicepool.features import VOICING_CLASSES

    lookup = {name: i for i, name in enumerate(VOICING_CLASSES)}
    codes = [np.array([lookup[x] for x in lab], dtype=np.int8) for lab in labels]
    payload = {
        "time_values": np.concatenate(time_list) if time_list else np.zeros(0, np.float32),
        "time_lengths": np.array([len(t) for t in time_list], dtype=np.int64),
        "label_values": np.concatenate(codes).astype(np.int8) if codes else np.zeros(0, np.int8),
        "label_lengths": np.array([len(c) for c in codes], dtype=np.int64),
        "label_names": np.asarray(VOICING_CLASSES, dtype="U8"),
        "utterance_index": np.asarray(idx, dtype=np.int64),
    }
    if band_w is not None:
        payload["band_weights"] = np.asarray(np.stack([np.asarray(b, np.float32).ravel() for b in band_w]))
    return payload


def _load_attention(path):
    with np.load(path, allow_pickle=False) as z:
        names = z["label_names"].astype(str)
        time_w = list(_unpack(z["time_values"].reshape(-1, 1), z["time_lengths"]))
        labs = list(_unpack(z["label_values"].reshape(-1, 1), z["label_lengths"]))
        out = {
            "time_weights": [t.ravel() for t in time_w],
            "frame_labels": [names[lab.ravel().astype(int)] for lab in labs],
            "band_weights": z["band_weights"] if "band_weights" in z.files else None,
        }
    return out


def _merge_attention(parts):
    if not parts:
        return None
    band = [p["band_weights"] for p in parts if p["band_weights"] is not None]
    return {
        "band_weights": np.concatenate(band) if band else None,
        "time_weights": [t for p in parts for t in p["time_weights"]],
        "frame_labels": [f for p in parts for f in p["frame_labels"]],
    }


# --------------------------------------------------------------------------- protocol


def _mode_copies(data, mode, sample_rate, random_state):
    """Each recording's copy in the other speaking mode (training material only):
    neutral ones whisperised, whispered ones vocalised (``mode_augmentation``)."""
    from devicepool.audio import as_waveform
    from devicepool.datasets import vocalise_recordings, whisperise_recordings

    copies = np.empty(len(data), dtype=object)
    for source_mode, make_copies in (("neutral", whisperise_recordings),
                                     ("whisper", vocalise_recordings)):
        idx = np.flatnonzero(mode == source_mode)
        if len(idx):
            copies[idx] = make_copies([as_waveform(data[i], sample_rate, index=int(i)) for i in idx],
                                      sample_rate, random_state=random_state)
    return copies


def _fit_task(task, feats, data, target, mode, folds, sample_rate, labels, augmented=None):
    """Fit one (model, training mode, fold); return the records and attention payload.

    ``augmented`` marks training-only copies (mode augmentation): they may be trained
    on, never tested on.
    """
    spec = task["spec"]  # carried with the task: worker processes see models registered here
    held = folds[task["fold"]]
    original = np.ones(len(mode), bool) if augmented is None else ~augmented
    train_idx = np.flatnonzero((mode == task["train_mode"]) & ~held)
    est = spec.factory(random_state=task["seed"], **task["params"])
    if task.get("progress") and "progress" in est.get_params() and "progress" not in task["params"]:
        est.set_params(progress=True)  # the estimator's own epoch bar
    fit_kwargs = {}
    if "groups" in inspect.signature(est.fit).parameters:
        # speaker-disjoint internal validation (the classifiers' early stopping)
        fit_kwargs["groups"] = task["groups"][train_idx]
    t0 = time.perf_counter()
    est.fit(feats[train_idx], target[train_idx], **fit_kwargs)
    fit_s = time.perf_counter() - t0
    from sklearn.metrics import confusion_matrix

    records = []
    for cond in task["conditions"]:
        test_mode = CONDITIONS[cond][1]
        test_idx = np.flatnonzero((mode == test_mode) & held & original)
        t1 = time.perf_counter()
        pred = np.asarray(est.predict(feats[test_idx]))
        pred_s = time.perf_counter() - t1
        truth = target[test_idx]
        cm = confusion_matrix(truth.astype(str), pred.astype(str), labels=[str(x) for x in labels])
        records.append({
            "format": _RESULT_FORMAT,
            "model": task["model"],
            "condition": cond,
            "fold": task["fold"],
            "train_mode": task["train_mode"],
            "test_mode": test_mode,
            "accuracy": float(np.mean(pred.astype(str) == truth.astype(str))),
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
            "train_speakers": sorted(set(map(str, task["groups"][train_idx]))),
            "test_speakers": sorted(set(map(str, task["groups"][test_idx]))),
            "labels": [str(x) for x in labels],
            "confusion_matrix": cm,
            "test_index": test_idx,
            "y_pred": pred.astype(str),
            "seed": task["seed"],
            "random_state": task["random_state"],
            "model_params": task["params"],
            "config_key": task["config_key"],
            "fit_seconds": fit_s,
            "predict_seconds": pred_s,
        })
    attention = None
    if spec.attention and task.get("attention_path"):
        test_idx = np.flatnonzero((mode == task["train_mode"]) & held & original)
        attention = _attention_payload(est, feats[test_idx], data, test_idx, sample_rate)
    return records, attention


def _write_task_outputs(task, records, attention):
    """Write what a fit produced, never touching an output a previous run finished.

    A run interrupted between the files of one fit (its matched and mismatched results,
    its attention data) redoes that fit on resume; the files it had already written stay
    as they are (same seed, same numbers), only the missing ones are written.
    """
    path = task.get("attention_path")
    if attention is not None and path and not os.path.exists(path):
        buf = io.BytesIO()
        np.savez(buf, **attention)
        _atomic_write_bytes(path, buf.getvalue())
    for rec in records:
        path = task["paths"][rec["condition"]]
        old = _read_json(path)
        if old is None or old.get("config_key") != task["config_key"]:
            _atomic_write_json(path, rec)


def _task_done(task):
    for cond, path in task["paths"].items():
        rec = _read_json(path)
        if rec is None:
            return False
        if rec.get("config_key") != task["config_key"]:
            return False
    return not task.get("attention_path") or os.path.exists(task["attention_path"])


def run_protocol(
    corpus,
    models=("dft_cnn", "sa_cnn", "da_cnn"),
    conditions=None,
    n_splits=3,
    out_dir=None,
    random_state=0,
    model_params=None,
    progress=True,
    n_jobs=None,
    resume=True,
    report=True,
    title="devicepool: Table 3 reproduction",
    mode_augmentation=False,
):
    """Run the paper's protocol (Table 3, Fig. 2 data) on a corpus.

    Parameters
    ----------
    corpus : Bunch
        From :mod:`devicepool.datasets`: ``data`` (waveforms or paths), ``target``
        (device), ``groups`` (speaker), ``mode`` (``"neutral"``/``"whisper"``; missing
        means all neutral), ``sample_rate``.
    models : sequence of str, default=("dft_cnn", "sa_cnn", "da_cnn")
        Registered model names (see :func:`registered_models`).
    conditions : sequence of str or None
        Among ``"MOBI"``, ``"N"``, ``"W"``, ``"N/W"``, ``"W/N"``. ``None``: all that the
        corpus can serve (:func:`available_conditions`). A requested condition whose
        modes the corpus lacks is skipped with a note in ``result.notes``.
    n_splits : int, default=3
        Speaker-disjoint folds (:func:`make_folds`).
    out_dir : str or path-like, optional
        Folder for results (``results/<model>/<condition>/fold<k>.json``), cached
        features, Fig. 2 data and, with ``report=True``, the report. Rerunning with the
        same ``out_dir`` and settings resumes; results of other settings there raise.
    random_state : int, default=0
        Base seed; each fit's seed is derived from it, the model, training mode and fold,
        and recorded with the results.
    model_params : dict, optional
        Per-model overrides, e.g. ``{"da_cnn": {"max_epochs": 5}}``.
    progress : bool, default=True
        tqdm bars (stderr) for features, fits and folds.
    n_jobs : int, optional
        Parallel fits (joblib, processes) and feature extraction. ``None``: sequential.
    resume : bool, default=True
        Reuse finished results found in ``out_dir``. ``False`` recomputes everything.
    report : bool, default=True
        With ``out_dir``, write report.md, Table 3 (Markdown, CSV), per-fold CSV,
        confusion matrices and the Fig. 2 PNGs (needs matplotlib).
    title : str
        Report title.
    mode_augmentation : bool, default=False
        devicepool's extension beyond the paper: every training recording also trains
        the fit as a copy in the other speaking mode, made from the recording itself --
        neutral recordings whisperised (:func:`devicepool.datasets.whisperise_recordings`:
        the recording's own LPC envelope, device colouration included, driven by noise,
        12 dB softer), whispered ones vocalised (:func:`~devicepool.datasets.vocalise_recordings`:
        the envelope driven by a glottal pulse train, 12 dB louder). The network sees each
        device with both kinds of source while the training speakers and mode stay those
        of the condition. Copies are never tested on. See ``docs/protocol.md`` for the
        ablation.

    Returns
    -------
    result : ProtocolResult

    Examples
    --------
    >>> from devicepool.datasets import make_device_corpus          # doctest: +SKIP
    >>> corpus = make_device_corpus(n_devices=3, n_speakers=6)      # doctest: +SKIP
    >>> res = run_protocol(corpus, models=["da_cnn"],
    ...                    model_params={"da_cnn": {"max_epochs": 3}})  # doctest: +SKIP
    >>> print(res.to_markdown())                                    # doctest: +SKIP
    """
    data, target, groups, mode, sample_rate, _ = _check_corpus(corpus)
    if isinstance(models, str):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("models is empty: name at least one model")
    unknown = [m for m in models if m not in _MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {registered_models()}")
    model_params = dict(model_params or {})
    bad = [k for k in model_params if k not in models]
    if bad:
        raise ValueError(f"model_params names models not run: {bad}; models are {models}")
    for k, v in model_params.items():
        if not isinstance(v, dict):
            raise TypeError(f"model_params[{k!r}] must be a dict of parameters, got {type(v).__name__}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int, got {random_state!r}")

    notes = []
    present = set(mode)
    if conditions is None:
        conditions = available_conditions(mode)
    elif isinstance(conditions, str):
        conditions = [conditions]
    conds = []
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {list(CONDITIONS)}")
        tr, te = CONDITIONS[c][:2]
        if tr not in present or te not in present:
            missing = sorted({tr, te} - present)
            notes.append(f"condition {c} skipped: the corpus has no {' or '.join(missing)} speech")
            continue
        if c not in conds:
            conds.append(c)
    folds = make_folds(groups, n_splits)
    labels = sorted(set(map(str, target)))
    target = np.asarray([str(t) for t in target], dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    fingerprint = _corpus_fingerprint(data, target, groups, mode, sample_rate)
    augmented = None

    results_dir = cache_dir = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        results_dir = os.path.join(out_dir, "results")
        cache_dir = os.path.join(out_dir, "cache")

    # one task per (model, training mode, fold), serving every condition of that training mode
    tasks = []
    for m in models:
        params = dict(model_params.get(m, {}))
        config_key = _digest(_RESULT_FORMAT, fingerprint, n_splits, int(random_state), m,
                             sorted((k, repr(v)) for k, v in params.items()),
                             *(["mode-augmentation"] if mode_augmentation else []))[:24]
        for train_mode in _MODES:
            tconds = [c for c in conds if CONDITIONS[c][0] == train_mode]
            if not tconds:
                continue
            for k in range(n_splits):
                task = {
                    "model": m, "train_mode": train_mode, "fold": k, "conditions": tconds,
                    "seed": _seed_for(random_state, m, train_mode, k), "params": params,
                    "spec": _MODELS[m],
                    "random_state": int(random_state), "config_key": config_key, "groups": groups,
                    "paths": {}, "attention_path": None, "progress": bool(progress),
                }
                train_n = int(np.sum((mode == train_mode) & ~folds[k]))
                if train_n == 0:
                    notes.append(f"{m} fold {k}: no {train_mode} training utterances; skipped")
                    continue
                if results_dir is not None:
                    for c in tconds:
                        task["paths"][c] = os.path.join(results_dir, m, _slug(c), f"fold{k}.json")
                    if _MODELS[m].attention:
                        task["attention_path"] = os.path.join(
                            results_dir, m, f"attention-{train_mode}-fold{k}.npz")
                tasks.append(task)

    # refuse to mix settings in one folder (nothing finished is ever overwritten silently)
    done, todo = [], []
    for task in tasks:
        if results_dir is not None and resume:
            for c, path in task["paths"].items():
                rec = _read_json(path)
                if rec is not None and rec.get("config_key") != task["config_key"]:
                    raise ValueError(
                        f"{out_dir!r} holds results of other settings (corpus, seed, folds or "
                        f"parameters differ; see {path}); use another output folder or resume=False"
                    )
            (done if _task_done(task) else todo).append(task)
        else:
            todo.append(task)

    all_records, attention_parts = [], {}
    for task in done:
        all_records += [_read_json(p) for p in task["paths"].values()]
        if task["attention_path"]:
            attention_parts.setdefault(task["train_mode"], []).append(_load_attention(task["attention_path"]))

    if todo:
        feats_by_kind, memo = {}, {}
        for kind in sorted({_MODELS[t["model"]].feature for t in todo}):
            feats_by_kind[kind] = _compute_features(kind, data, sample_rate, fingerprint, cache_dir,
                                                    progress, n_jobs, memo)
        fit_target, fit_mode, fit_folds = target, mode, folds
        if mode_augmentation:  # every recording once more, as its copy in the other mode
            copies = _mode_copies(data, mode, sample_rate, int(random_state))
            aug_fp = _digest(fingerprint, "mode-augmentation", int(random_state))
            for kind in feats_by_kind:
                extra_feats = _compute_features(kind, copies, sample_rate, aug_fp, cache_dir,
                                                progress, n_jobs, memo)
                feats_by_kind[kind] = np.concatenate([feats_by_kind[kind], extra_feats])
            fit_target, fit_mode = np.concatenate([target, target]), np.concatenate([mode, mode])
            fit_folds = [np.concatenate([f, f]) for f in folds]
            augmented = np.arange(len(fit_mode)) >= len(mode)
            fit_groups = np.concatenate([groups, groups])
            for t in todo:
                t["groups"] = fit_groups
        args = (data, fit_target, fit_mode, fit_folds, sample_rate, labels, augmented)
        bar = _progress_bar(progress, total=len(tasks), initial=len(done), desc="fits", unit="fit")
        with bar:
            if n_jobs is not None and n_jobs != 1 and len(todo) > 1:
                from joblib import Parallel, delayed

                outs = Parallel(n_jobs=n_jobs, return_as="generator")(
                    delayed(_fit_task)(t, feats_by_kind[_MODELS[t["model"]].feature], *args) for t in todo)
                pairs = zip(todo, outs)
            else:
                pairs = ((t, _fit_task(t, feats_by_kind[_MODELS[t["model"]].feature], *args)) for t in todo)
            for task, (records, attention) in pairs:
                if results_dir is not None:
                    _write_task_outputs(task, records, attention)
                all_records += _to_jsonable(records)
                if attention is not None:
                    vals = attention
                    names = vals["label_names"].astype(str)
                    attention_parts.setdefault(task["train_mode"], []).append({
                        "time_weights": [t.ravel() for t in _unpack(vals["time_values"].reshape(-1, 1), vals["time_lengths"])],
                        "frame_labels": [names[c.ravel().astype(int)] for c in _unpack(vals["label_values"].reshape(-1, 1), vals["label_lengths"])],
                        "band_weights": vals.get("band_weights"),
                    })
                bar.set_postfix_str(f"{task['model']} {task['train_mode']} fold {task['fold']}")
                bar.update(1)

    attention = {k: _merge_attention(v) for k, v in attention_parts.items()}
    config = {
        "corpus_fingerprint": fingerprint, "n_utterances": len(data), "n_splits": n_splits,
        "random_state": int(random_state), "sample_rate": sample_rate,
        "folds": [sorted(set(groups[f])) for f in folds], "model_params": model_params,
        "seeds": {f"{t['model']}/{t['train_mode']}/fold{t['fold']}": t["seed"] for t in tasks},
        "devices": labels, "python": platform.python_version(),
    }
    res = _summarise(all_records, models, conds, notes, attention, _to_jsonable(config), n_splits)
    if out_dir is not None:
        _atomic_write_json(os.path.join(out_dir, "protocol.json"), config)
        if report:
            write_report(res, out_dir, title=title)
    return res


def load_results(out_dir, models=None):
    """Read the finished results of a protocol folder back into a :class:`ProtocolResult`.

    Examples
    --------
    >>> load_results(tempfile.mkdtemp()).records
    []
    """
    results_dir = os.path.join(os.fspath(out_dir), "results")
    records, attention_parts = [], {}
    if os.path.isdir(results_dir):
        for root, _, files in sorted(os.walk(results_dir)):
            for f in sorted(files):
                path = os.path.join(root, f)
                if f.endswith(".json") and not f.startswith(".tmp-"):
                    rec = _read_json(path)
                    if rec is not None and "condition" in rec:
                        records.append(rec)
                elif f.startswith("attention-") and f.endswith(".npz"):
                    train_mode = f.split("-")[1]
                    attention_parts.setdefault(train_mode, []).append(_load_attention(path))
    found = []
    for r in records:
        if r["model"] not in found:
            found.append(r["model"])
    if models is None:
        models = [m for m in _MODELS if m in found] + [m for m in found if m not in _MODELS]
    conds = [c for c in CONDITIONS if any(r["condition"] == c for r in records)]
    attention = {k: _merge_attention(v) for k, v in attention_parts.items()}
    return _summarise([r for r in records if r["model"] in models], list(models), conds, [], attention, {})


# --------------------------------------------------------------------------- report


def _figure(figsize=(5, 4)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def chance_levels(result):
    """``condition -> chance accuracy (%)``: 100 / the number of devices in its folds."""
    out = {}
    for r in result.records:
        out.setdefault(r["condition"], 100.0 / max(1, len(r["labels"])))
    return out


def paper_claims(result):
    """One Markdown line per claim of the paper, saying whether this run supports it.

    The claims (Naini, Singhal & Ghosh, Table 3 and its discussion): DA-CNN >= SA-CNN and
    DA-CNN >= the DFT-CNN baseline in matched conditions; whisper is classified at
    least as well as neutral speech (W >= N); accuracy drops when training and test
    modes differ (N/W < N, W/N < W). A claim is judged on the means over folds; when the
    difference is smaller than the larger of the two fold standard deviations, the line
    says so.
    """
    s = result.summary
    label = {m: (_MODELS[m].label if m in _MODELS else m) for m in result.models}

    def cell(m, c):
        v = s.get((m, c))
        return None if v is None else (v["mean"], v["std"])

    def verdict(a, b, holds_if_ge=True):
        (ma, sa), (mb, sb) = a, b
        holds = ma >= mb if holds_if_ge else ma < mb
        close = abs(ma - mb) < max(sa, sb)
        return ("supported" if holds else "not supported") + (
            " (difference within the fold spread)" if close else "")

    lines = []
    matched = [c for c in ("MOBI", "N", "W") if c in result.conditions]
    for a, b, text in (("da_cnn", "sa_cnn", "DA-CNN ≥ SA-CNN (matched modes)"),
                       ("da_cnn", "dft_cnn", "DA-CNN ≥ DFT-CNN baseline (matched modes)")):
        pairs = [(c, cell(a, c), cell(b, c)) for c in matched if cell(a, c) and cell(b, c)]
        for c, x, y in pairs:
            lines.append(f"- {text}, {c}: {x[0]:.1f} vs {y[0]:.1f} -> {verdict(x, y)}")
    for m in result.models:
        n, w = cell(m, "N"), cell(m, "W")
        if n and w:
            lines.append(f"- whisper ≥ neutral, {label[m]}: W {w[0]:.1f} vs N {n[0]:.1f} -> "
                         f"{verdict(w, n)}")
    for m in result.models:
        for cross, same in (("N/W", "N"), ("W/N", "W")):
            x, y = cell(m, cross), cell(m, same)
            if x and y:
                lines.append(f"- mismatch drop, {label[m]}: {cross} {x[0]:.1f} vs {same} {y[0]:.1f} "
                             f"-> {verdict(x, y, holds_if_ge=False)}")
    return lines


def write_report(result, out_dir, title="devicepool: Table 3 reproduction", figures=True, extra=""):
    """Write Table 3 (Markdown, CSV), per-fold CSV, confusion matrices, Fig. 2 and report.md.

    Parameters
    ----------
    result : ProtocolResult
    out_dir : str or path-like
    title : str
    figures : bool, default=True
        Also draw PNGs (confusion matrices, Fig. 2 a-c); needs matplotlib.
    extra : str
        Markdown appended to the report (e.g. timing).

    Returns
    -------
    paths : dict
        Name -> written path (also stored in ``result.paths``).
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}

    def put(name, text):
        path = os.path.join(out_dir, name)
        _atomic_write_text(path, text)
        paths[name] = path

    put("table3.md", result.to_markdown(paper=True))
    put("table3.csv", result.to_csv(paper=True))
    put("folds.csv", result.folds_csv())
    cm_json = {f"{m} {c}": v for (m, c), v in result.confusion.items()}
    put("confusion_matrices.json", json.dumps(_to_jsonable(cm_json), indent=1) + "\n")

    figs = []
    if figures:
        try:
            figs = _draw_figures(result, out_dir)
        except ImportError as exc:  # matplotlib missing: tables only
            result.notes.append(f"figures not drawn: {exc}")
    for name, path, caption in figs:
        paths[name] = path

    lines = [f"# {title}", ""]
    lines += ["## Table 3: utterance-level device classification accuracy (%)", "",
              "Mean ± std over speaker-disjoint folds; the paper's value in parentheses.", "",
              result.to_markdown(paper=True), ""]
    lines += ["Conditions: MOBI = Ex-1, neutral speech of a neutral-only corpus; N = neutral -> neutral; "
              "W = whisper -> whisper; N/W = train neutral, test whisper of the held-out speakers; "
              "W/N = the reverse.", ""]
    chance = chance_levels(result)
    if chance:
        lines += ["Chance level (one over the number of devices): " + ", ".join(
            f"{c} {v:.1f} %" for c, v in chance.items()) + ".", ""]
    claims = paper_claims(result)
    if claims:
        lines += ["## The paper's claims in this run", "",
                  "Judged on the means over folds (the paper's own values are in Table 3's "
                  "parentheses).", ""] + claims + [""]
    fig2 = [f for f in figs if f[0].startswith("fig2")]
    cms = [f for f in figs if not f[0].startswith("fig2")]
    if fig2:
        lines += ["## Fig. 2: DA-CNN attention on held-out utterances", ""]
        for name, path, caption in fig2:
            lines += [f"**{caption}**", "", f"![{caption}]({name})", ""]
    if cms:
        lines += ["## Confusion matrices (rows: true device, columns: predicted; summed over folds)", ""]
        for name, path, caption in cms:
            lines += [f"![{caption}]({name})"]
        lines.append("")
    lines += ["## Per fold", "", "| model | condition | fold | accuracy (%) | n train | n test | seed |",
              "|---|---|---|---|---|---|---|"]
    for r in result.records:
        lines.append(f"| {r['model']} | {r['condition']} | {r['fold']} | {100 * r['accuracy']:.2f} | "
                     f"{r['n_train']} | {r['n_test']} | {r['seed']} |")
    lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    if extra:
        lines += [extra, ""]
    lines += ["Files: `table3.md`, `table3.csv`, `folds.csv`, `confusion_matrices.json`; "
              "per-fold results in `results/`.", ""]
    put("report.md", "\n".join(lines))
    result.paths.update(paths)
    return paths


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _atomic_write_bytes(path, buf.getvalue())
    return path


def _draw_figures(result, out_dir):
    from devicepool import plotting

    figs = []
    for (m, c), cm in result.confusion.items():
        fig, ax = _figure((5.5, 4.5))
        plotting.plot_confusion_matrix(cm["matrix"], cm["labels"], ax=ax,
                                       title=f"{_MODELS[m].label if m in _MODELS else m}, {c}")
        name = f"confusion-{m}-{_slug(c)}.png"
        figs.append((name, _save(fig, out_dir, name), f"Confusion matrix, {m}, {c}"))
    att = {k: v for k, v in result.attention.items() if v is not None}
    bands = {f"{k} model": np.asarray(v["band_weights"]) for k, v in sorted(att.items())
             if v.get("band_weights") is not None and len(v["band_weights"])}
    if bands:
        fig, ax = _figure((6, 4))
        plotting.plot_band_weights(bands, ax=ax,
                                   title="Fig. 2(a): DA-CNN mean band weights (held-out utterances)")
        figs.append(("fig2a-band-weights.png", _save(fig, out_dir, "fig2a-band-weights.png"),
                     "Fig. 2(a): mean DA-CNN band weights, neutral and whisper models"))
    for panel, train_mode in (("b", "neutral"), ("c", "whisper")):
        v = att.get(train_mode)
        if not v or not v["time_weights"]:
            continue
        labels = [plotting.align_frame_labels(lab, len(tw), factor=4)
                  for tw, lab in zip(v["time_weights"], v["frame_labels"])]
        fig, ax = _figure((6, 4))
        plotting.plot_time_weight_distribution(
            v["time_weights"], labels, ax=ax,
            title=f"Fig. 2({panel}): DA-CNN time weights, {train_mode} model")
        name = f"fig2{panel}-time-weights-{train_mode}.png"
        figs.append((name, _save(fig, out_dir, name),
                     f"Fig. 2({panel}): distribution of DA-CNN time weights over voiced / unvoiced / "
                     f"silence frames, {train_mode} model"))
    return figs
