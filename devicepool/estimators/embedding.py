"""``DeviceEmbedding``: a pretrained device embedding as a scikit-learn transformer.

Waveforms or audio files in, one vector per recording out, with no training: the
network was pretrained on thousands of simulated devices (``devicepool pretrain``;
``docs/pretrained.md``) and ships inside the package as a weights-only bundle
(``devicepool/pretrained/device_embedding.pt``). Recordings that sound as if they were
made with the same device get nearby vectors (compare them by cosine, or with
:class:`devicepool.forensic.DeviceLR`, whose :meth:`~devicepool.forensic.DeviceLR.pretrained`
adds the shipped scorer and calibration).

The bundle is a file of :func:`devicepool.persistence.dump` (weights only: reading it
runs no code from it) holding a fitted ``DeviceEmbedding`` (its network's settings and
weights, its sample rate and filter bank), with the provenance ``{"recipe", "provenance",
"validation", "calibration_data"}`` (JSON str: the PretrainRecipe, who made it, the
figures measured when it was made or recalibrated) and ``"lr"`` (the DeviceLR payload of
its back end, or None). Bundles of devicepool 0.5 (format ``"devicepool.DeviceEmbedding"``
1, the shipped one) still load.
"""

from __future__ import annotations

import functools
import json
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .._typing import UtteranceSet
from .._validation import Interval, validate_params
from ..persistence import from_payload, read_weights_only

__all__ = ["DeviceEmbedding", "PRETRAINED_PATH", "read_bundle"]

#: The shipped bundle.
PRETRAINED_PATH = Path(__file__).resolve().parent.parent / "pretrained" / "device_embedding.pt"


@functools.lru_cache(maxsize=4)
def _read(path, mtime):
    try:
        return read_weights_only(path)
    except ValueError as exc:
        raise ValueError(f"{path!r} is not a devicepool embedding bundle: {exc}") from None


def read_bundle(path=None):
    """The bundle at ``path`` (default: the shipped one): ``(embedding, provenance)``, a
    fitted :class:`DeviceEmbedding` and a dict (see the module).

    Raises
    ------
    FileNotFoundError
        No file there.
    ValueError
        Not a bundle, or a newer format.
    """
    path = Path(PRETRAINED_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding bundle at {str(path)!r}")
    emb, provenance = from_payload(_read(str(path), path.stat().st_mtime_ns), source=repr(str(path)))
    if type(emb) is not DeviceEmbedding:
        raise ValueError(f"{str(path)!r} is not a devicepool embedding bundle (it holds a "
                         f"{type(emb).__name__})")
    return emb, provenance


def bundle_metadata(provenance):
    """The bundle's recipe, provenance and validation figures as plain dicts."""
    return {k: json.loads(provenance[k]) for k in ("recipe", "provenance", "validation", "calibration_data")
            if k in provenance}


class DeviceEmbedding(TransformerMixin, BaseEstimator):
    """Pretrained device embedding: recordings in, unit-length vectors out; no fit needed.

    Parameters
    ----------
    weights : str or os.PathLike or None, default=None
        An embedding bundle (``devicepool pretrain`` writes one); None: the shipped one.
    sample_rate : int or None, default=None
        Rate of waveform (array) inputs; files are read and resampled by themselves.
        None: the network's rate (16000). Arrays at another rate are resampled to it.
    batch_size : int, default=32
        Recordings per forward pass (length-sorted, padded and masked: padding never
        changes a vector).
    normalize : bool, default=True
        Return unit-length vectors (what the cosine scorer compares).

    Attributes
    ----------
    embedding_dim_ : int
    sample_rate_ : int
        The network's rate.
    metadata_ : dict
        The bundle's recipe, provenance and validation figures.

    Examples
    --------
    >>> import numpy as np
    >>> from devicepool import DeviceEmbedding
    >>> emb = DeviceEmbedding.pretrained()
    >>> E = emb.transform([np.random.default_rng(0).standard_normal(16000) * 0.1])
    >>> E.shape, round(float(np.linalg.norm(E[0])), 3)
    ((1, 128), 1.0)
    """

    _parameter_constraints = {
        "weights": [str, Path, None],
        "sample_rate": [Interval(Integral, 1000, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
    }

    def __init__(self, weights=None, sample_rate=None, batch_size=32, normalize=True):
        self.weights = weights
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.normalize = normalize

    @classmethod
    def pretrained(cls, **params):
        """The shipped embedding, loaded (``DeviceEmbedding(**params).fit()``)."""
        return cls(**params).fit()

    def fit(self, X: UtteranceSet | None = None, y: object = None) -> DeviceEmbedding:
        """Load the network (nothing is trained; ``X`` and ``y`` are ignored)."""
        validate_params(self.get_params(deep=False), self._parameter_constraints, owner="DeviceEmbedding")
        emb, provenance = read_bundle(self.weights)
        self.network_, self.sample_rate_, self.n_mels_ = emb.network_, emb.sample_rate_, emb.n_mels_
        self.embedding_dim_ = emb.embedding_dim_
        self.metadata_ = bundle_metadata(provenance)
        return self

    def __sklearn_is_fitted__(self):
        return True  # nothing to learn: transform loads the network when it has to

    def _features(self, X):
        from ..audio import resample
        from ..features import FilterBank

        rate = self.sample_rate_ if self.sample_rate is None else int(self.sample_rate)
        if rate != self.sample_rate_:
            X = [x if isinstance(x, (str, Path)) else resample(np.asarray(x, dtype=np.float64), rate,
                                                                self.sample_rate_) for x in X]
        return FilterBank(sample_rate=self.sample_rate_, n_mels=self.n_mels_).fit_transform(X)

    def embed_features(self, feats):
        """Vectors ``(n, embedding_dim)`` of log filter-bank features (what ``transform``
        computes from audio); ``feats`` is a sequence of ``(n_frames, n_mels)`` arrays."""
        import torch

        if not hasattr(self, "network_"):
            self.fit()
        lengths = np.array([len(f) for f in feats], dtype=np.int64)
        out = np.empty((len(feats), self.embedding_dim_), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        with torch.no_grad():
            for i in range(0, len(order), self.batch_size):
                rows = order[i:i + self.batch_size]
                x = np.zeros((len(rows), int(lengths[rows].max()), self.n_mels_), dtype=np.float32)
                for j, r in enumerate(rows):
                    x[j, :lengths[r]] = feats[r]
                out[rows] = self.network_(torch.from_numpy(x), torch.from_numpy(lengths[rows])).numpy()
        if self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def transform(self, X: UtteranceSet) -> np.ndarray:
        """Embeddings of the recordings ``X``.

        Parameters
        ----------
        X : sequence of 1-D waveforms or audio file paths, length n

        Returns
        -------
        E : ndarray of shape (n, embedding_dim_), float32
        """
        if not hasattr(self, "network_"):
            self.fit()
        return self.embed_features(self._features(X))

    def get_feature_names_out(self, input_features=None):
        if not hasattr(self, "network_"):
            self.fit()
        return np.array([f"embedding{i}" for i in range(self.embedding_dim_)], dtype=object)
