"""Features and voicing labels of a corpus: computed once, in one pass over the audio.

Each utterance's waveform is loaded once (:func:`devicepool.audio.as_waveform`) per
chunk of :data:`_CHUNK` utterances and handed to every feature transformer still needed
and, for Fig. 2, to :func:`devicepool.features.voicing_labels`. The results are kept in
memory for the run and, with a cache folder, on disk as npz files (no pickle)::

    features-<kind>-<key>.npz   values (n_frames_total, width) float32, lengths (n,)
    voicing-<key>.npz           values (n_frames_total,) int8 codes, lengths (n,), label_names

``<key>`` is a digest of the corpus fingerprint and the transformer's parameters (for
voicing: of the fingerprint, the sample rate and the labeller's version).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write_npz, pack_ragged, unpack_ragged
from .._progress import show_bars
from .keys import digest as _digest
from .records import damaged as _damaged
from .registry import _make_features

_log = logging.getLogger("devicepool.protocol.cache")

#: utterances loaded and transformed together
_CHUNK = 64
#: bump when devicepool.features.voicing_labels changes its output (invalidates caches)
_VOICING_VERSION = 1
#: joblib backends whose workers run on this machine
_LOCAL_BACKENDS = ("LokyBackend", "MultiprocessingBackend", "ThreadingBackend", "SequentialBackend")


def _progress_bar(enabled, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=not show_bars(enabled), file=sys.stderr, dynamic_ncols=True, **kwargs)


def _remote_backend():
    """Whether joblib's active backend runs its workers elsewhere (dask.distributed)."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return type(backend).__name__ not in _LOCAL_BACKENDS


def _voicing_classes():
    from devicepool.features import VOICING_CLASSES

    return VOICING_CLASSES


def _voicing_codes(wave, sample_rate):
    """int8 code (index into ``VOICING_CLASSES``) of every FilterBank frame of ``wave``."""
    from devicepool.features import voicing_codes, voicing_labels

    return voicing_codes(voicing_labels(wave, sample_rate))


def _compute_features(data, sample_rate, transformers, voicing=False, progress=False):
    """One pass over the audio: ``name -> object array`` for each transformer (float32
    features) and, with ``voicing``, ``"voicing"`` (int8 codes per frame)."""
    from devicepool.audio import as_waveform

    out = {name: [] for name in transformers}
    codes = []
    names = [*transformers, *(["voicing"] if voicing else [])]
    # with a dask backend the features are made here, not shipped out as waveforms
    local = _local_joblib() if _remote_backend() else contextlib.nullcontext()
    with local, _progress_bar(progress, total=len(data), desc=f"features ({', '.join(names)})",
                              unit="utt") as bar:
        for start in range(0, len(data), _CHUNK):
            index = range(start, min(start + _CHUNK, len(data)))
            waves = [as_waveform(data[i], sample_rate, index=i) for i in index]
            for name, transformer in transformers.items():
                out[name].extend(transformer.transform(waves))
            if voicing:
                codes.extend(_voicing_codes(w, sample_rate) for w in waves)
            bar.update(len(waves))
    result = {name: _object_array(arrays, np.float32) for name, arrays in out.items()}
    if voicing:
        result["voicing"] = _object_array(codes, np.int8)
    return result


def _local_joblib():
    from joblib import parallel_config

    return parallel_config(backend="loky")


def _object_array(arrays, dtype):
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = np.asarray(a, dtype=dtype)
    return out


@dataclass
class FeatureCache:
    """Features of corpora for one protocol run: in memory, and on disk with ``cache_dir``.

    Parameters
    ----------
    cache_dir : str or None
        Folder of the npz files (``out_dir/cache``); None keeps them in memory only.
    progress : bool
        A tqdm bar while features are computed.
    n_jobs : int or None
        Passed to the feature transformers (joblib; on this machine).
    """

    cache_dir: str | None = None
    progress: bool = False
    n_jobs: int | None = None
    memo: dict = field(default_factory=dict)

    def features(self, data, sample_rate, fingerprint, kinds, voicing=False):
        """``kind -> object array of (n_frames, width) float32`` for each of ``kinds``
        and, with ``voicing``, ``"voicing" -> object array of int8 codes per frame``.

        Everything missing from the memo and the cache folder is computed in one pass
        over the audio (each waveform loaded once).
        """
        transformers = {kind: _make_features(kind, sample_rate) for kind in kinds}
        keys = {kind: _feature_key(kind, fingerprint, t) for kind, t in transformers.items()}
        if voicing:
            keys["voicing"] = _digest("voicing", _VOICING_VERSION, fingerprint, int(sample_rate))
        found = {name: self._lookup(name, key, len(data)) for name, key in keys.items()}
        missing = [name for name, value in found.items() if value is None]
        _log.info("features of %d utterances: %s", len(data), ", ".join(
            f"{name} {'to compute' if name in missing else 'cached'}" for name in keys))
        if missing:
            todo = {name: transformers[name] for name in missing if name != "voicing"}
            if self.n_jobs is not None:
                for t in todo.values():
                    if "n_jobs" in _params(t):
                        t.set_params(n_jobs=self.n_jobs)
            computed = _compute_features(data, sample_rate, todo, "voicing" in missing,
                                         self.progress)
            for name in missing:
                self._store(name, keys[name], computed[name])
                found[name] = computed[name]
        return found

    def _path(self, name, key):
        if self.cache_dir is None:
            return None
        prefix = "voicing" if name == "voicing" else f"features-{name}"
        return os.path.join(self.cache_dir, f"{prefix}-{key[:20]}.npz")

    def _lookup(self, name, key, n):
        if key in self.memo:
            return self.memo[key]
        path = self._path(name, key)
        if path is None or not os.path.exists(path):
            return None
        try:
            value = _read_cached(path, name, n)
        except Exception as exc:  # BadZipFile, EOFError, ValueError, KeyError, zlib.error, ...
            return _damaged(path, "feature cache", f"{type(exc).__name__}: {exc}", "recomputing it")
        self.memo[key] = value
        return value

    def _store(self, name, key, value):
        self.memo[key] = value
        path = self._path(name, key)
        if path is None:
            return
        if name == "voicing":
            values, lengths = pack_ragged(list(value), np.int8)
            atomic_write_npz(path, values=values, lengths=lengths,
                              label_names=np.asarray(_voicing_classes(), dtype="U8"))
        else:
            values, lengths = pack_ragged(list(value), np.float32)
            atomic_write_npz(path, values=values, lengths=lengths)


def _read_cached(path, name, n):
    """The ``n`` cached arrays in ``path``; ValueError (or the reader's own error) when
    the file is damaged: truncated, lengths that do not add up, not ``n`` utterances."""
    with np.load(path, allow_pickle=False) as z:
        if name == "voicing" and tuple(z["label_names"].astype(str)) != _voicing_classes():
            raise ValueError("voicing classes differ from this version's")
        values, lengths = z["values"], z["lengths"]
    if lengths.ndim != 1 or np.any(lengths < 0) or int(lengths.sum()) != len(values):
        raise ValueError("lengths do not add up to the values")
    if len(lengths) != n:
        raise ValueError(f"{len(lengths)} utterances, the corpus has {n}")
    if values.ndim != (1 if name in ("voicing", "waveform") else 2):
        raise ValueError(f"values of shape {values.shape}")
    return unpack_ragged(values, lengths)


def _params(transformer):
    try:
        return transformer.get_params()
    except AttributeError:
        return {}


def _feature_key(kind, fingerprint, transformer):
    params = _params(transformer)
    return _digest(kind, fingerprint, sorted((k, repr(v)) for k, v in params.items() if k != "n_jobs"))
