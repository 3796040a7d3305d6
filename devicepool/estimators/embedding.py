"""``DeviceEmbedding``: a pretrained device embedding as a scikit-learn transformer.

Waveforms or audio files in, one vector per recording out, with no training: the
network was pretrained on thousands of simulated devices (``devicepool pretrain``;
``docs/pretrained.md``) and ships inside the package as a weights-only bundle
(``devicepool/pretrained/device_embedding.pt``). Recordings that sound as if they were
made with the same device get nearby vectors (compare them by cosine, or with
:class:`devicepool.forensic.DeviceLR`, whose :meth:`~devicepool.forensic.DeviceLR.pretrained`
adds the shipped scorer and calibration).

The bundle (``torch.save`` of plain values and tensors, read with
``torch.load(weights_only=True)``: reading it runs no code from it)::

    {"format": "devicepool.DeviceEmbedding", "format_version": 1,
     "network": {"n_features": int, "backbone": str, "channels": int, "embedding_dim": int},
     "features": {"sample_rate": int, "n_mels": int},
     "state_dict": {name: tensor},
     "recipe": json str (the PretrainRecipe), "provenance": json str,
     "validation": json str (figures measured when it was made),
     "lr": DeviceLR payload (arrays as tensors) or None}
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

__all__ = ["BUNDLE_FORMAT", "DeviceEmbedding", "PRETRAINED_PATH", "read_bundle"]

BUNDLE_FORMAT = "devicepool.DeviceEmbedding"
BUNDLE_VERSION = 1
#: The shipped bundle.
PRETRAINED_PATH = Path(__file__).resolve().parent.parent / "pretrained" / "device_embedding.pt"


def _to_numpy(value):
    """Tensors (nested in dicts and lists) as numpy arrays."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    return value


@functools.lru_cache(maxsize=4)
def _read(path, mtime):
    import torch

    try:
        bundle = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle errors, a text file, a truncated file
        raise ValueError(f"{path!r} is not a devicepool embedding bundle (weights-only torch file): "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path!r} is not a devicepool embedding bundle (format "
                         f"{BUNDLE_FORMAT!r} expected)")
    if int(bundle.get("format_version", 0)) > BUNDLE_VERSION:
        raise ValueError(f"{path!r} has bundle format version {bundle['format_version']}; this "
                         f"devicepool reads up to {BUNDLE_VERSION}: upgrade devicepool")
    return bundle


def read_bundle(path=None):
    """The bundle at ``path`` (default: the shipped one) as a dict (see the module).

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
    return _read(str(path), path.stat().st_mtime_ns)


def bundle_metadata(bundle):
    """The bundle's recipe, provenance and validation figures as plain dicts."""
    return {k: json.loads(bundle[k]) for k in ("recipe", "provenance", "validation", "calibration_data")
            if k in bundle}


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
        from ..models.embedding_net import DeviceEmbeddingNet

        validate_params(self.get_params(deep=False), self._parameter_constraints, owner="DeviceEmbedding")
        bundle = read_bundle(self.weights)
        net = DeviceEmbeddingNet(**bundle["network"])
        net.load_state_dict(bundle["state_dict"])
        self.network_ = net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.sample_rate_ = int(bundle["features"]["sample_rate"])
        self.n_mels_ = int(bundle["features"]["n_mels"])
        self.embedding_dim_ = int(bundle["network"]["embedding_dim"])
        self.metadata_ = bundle_metadata(bundle)
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
