"""The waveforms themselves, as a feature step: for models that make their own features."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..audio import SAMPLE_RATE
from ._base import UtteranceTransformer

__all__ = ["Waveform"]


class Waveform(UtteranceTransformer):
    """Each utterance's samples at ``sample_rate``, as a float32 ``(n_samples,)`` array.

    The feature step of models that compute their own features from the signal, such
    as a :class:`~devicepool.estimators.FusionClassifier` whose members are whole
    pipelines (``feature="waveform"`` in :func:`devicepool.protocol.register_model`).
    Files are read and resampled to ``sample_rate``; arrays are checked (finite, 1-D,
    integers scaled to [-1, 1)) as every feature transformer checks them. Unlike the
    other transformers of :mod:`devicepool.features` the output is 1-D per utterance.

    Parameters
    ----------
    sample_rate : int, default=16000
    n_jobs : int or None, default=None
        Parallel reading (joblib); the result does not depend on it.

    Examples
    --------
    >>> Waveform().transform([np.zeros(800, dtype=np.int16)])[0].dtype
    dtype('float32')
    """

    _parameter_constraints = {"sample_rate": [SAMPLE_RATE], "n_jobs": [Integral, None]}

    def __init__(self, sample_rate: int = 16000, n_jobs: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.n_jobs = n_jobs

    def _config(self):
        self._validate_params()

    @staticmethod
    def _check_length(waveform, at, config):
        if waveform.shape[0] < 1:
            raise ValueError(f"{at}: has no samples")

    @staticmethod
    def _kernel(waveform, config):
        return np.asarray(waveform, dtype=np.float32)
