"""The keys that tie a protocol folder's files to what made them.

* the **corpus fingerprint**: SHA-256 of the audio's *content* (a file by the SHA-256 of
  its bytes, an array by its bytes), labels, speakers, modes and sample rate, in corpus
  order. Rewriting a recording, even with the same size and modification time, changes it;
  moving or renaming the corpus folder does not.
* the **settings key** of a result (``config_key`` in every record and attention file):
  the fingerprint, folds (``n_splits``), base seed, model, its parameters, the mode
  augmentation and, for a registered template, its recipe (every plain parameter of the
  pipeline as made and its networks' module defaults: a changed library default is
  another setting).
* the **feature cache keys** (:mod:`.cache`): the fingerprint and the transformer's
  parameters.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

#: version of the result record schema (``"format"`` in every record)
RESULT_FORMAT = 1

#: file digests of this process: (path, device, inode, size, mtime, ctime) -> sha256
_FILE_DIGESTS = {}
#: a file changed less than this long ago (ns) is hashed again each time (a rewrite in
#: the same timestamp tick would otherwise look unchanged)
_SETTLED_NS = 3_000_000_000


def digest(*parts):
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


def _stat_key(path, st):
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _file_digest(path):
    """SHA-256 (hex) of the bytes of the file at ``path``, read in 1 MiB chunks.

    Digests are remembered in this process only (never on disk), keyed by the file's
    device, inode, size, modification and change times: any rewrite changes the change
    time (``st_ctime``, which ``os.utime`` cannot set back), so it is always seen.
    """
    path = os.path.abspath(path)
    known = _FILE_DIGESTS.get(_stat_key(path, os.stat(path)))
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        before = _stat_key(path, os.fstat(fh.fileno()))
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        after = _stat_key(path, os.fstat(fh.fileno()))
    digest = h.hexdigest()
    if before == after and time.time_ns() - max(after[4], after[5]) > _SETTLED_NS:
        _FILE_DIGESTS[after] = digest
    return digest


def corpus_fingerprint(corpus):
    """SHA-256 of a :class:`~devicepool.datasets.Corpus`: the audio by content
    (a file by the SHA-256 of its bytes, wherever it lies; an array by dtype, shape and
    bytes), the labels, modes and sample rate, in corpus order."""
    h = hashlib.sha256()
    h.update(repr(corpus.sample_rate).encode())
    for item in corpus.data:
        if isinstance(item, (str, os.PathLike)):
            try:
                h.update(f"file:{_file_digest(os.fspath(item))}".encode())
            except OSError as exc:  # the feature pass names the file; its error decides
                h.update(f"unreadable:{os.path.abspath(os.fspath(item))}:{exc.errno}".encode())
        else:
            arr = np.ascontiguousarray(np.asarray(item))
            h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        h.update(b"\x00")
    for arr in (corpus.target, corpus.groups, corpus.mode):
        h.update("\x1f".join(map(str, arr)).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def augmentation_token(mode_augmentation):
    """The settings key's (and the copies' feature cache's) part for ``mode_augmentation``:
    none when off; ``True`` and ``"both"`` keep the token of the releases before the
    one-direction settings."""
    if not mode_augmentation:
        return []
    if mode_augmentation in (True, "both"):
        return ["mode-augmentation"]
    return [f"mode-augmentation-{mode_augmentation}"]


def settings_key(fingerprint, n_splits, random_state, model, params, mode_augmentation, recipe=None):
    """The settings key stored in every record: a folder never mixes two settings.

    ``recipe`` (:func:`model_recipe`) is what the model is beyond the parameters given, so
    a library default that changed between two runs (a new release) makes another key."""
    return digest(RESULT_FORMAT, fingerprint, n_splits, int(random_state), model,
                   sorted((k, repr(v)) for k, v in params.items()),
                   *augmentation_token(mode_augmentation),
                   *([] if recipe is None else ["recipe", recipe]))[:24]


def model_recipe(pipeline):
    """Every plain parameter (None, bool, number, str) of ``pipeline`` as made, nested
    estimators included, and the constructor defaults of each network's own module (which
    the network's ``get_params`` does not list): a sorted list of ``(name, repr)``."""
    import inspect

    plain = (type(None), bool, int, float, str)
    out = []
    for name, value in pipeline.get_params(deep=True).items():
        if isinstance(value, plain):
            out.append((name, repr(value)))
        module_cls = getattr(value, "_module_cls", None)
        if module_cls is not None and getattr(value, "module", None) is None:
            for p in inspect.signature(module_cls).parameters.values():
                if p.default is not p.empty:
                    out.append((f"{name}.module.{p.name}", repr(p.default)))
    return sorted(out)
