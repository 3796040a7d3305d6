"""Machinery shared by the stateless per-utterance transformers."""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .._typing import UtteranceSet
from .._validation import validate_params, where
from ..audio import as_waveform, check_sample_rate, check_utterance_set

__all__ = ["UtteranceTransformer", "as_object_array"]


def as_object_array(arrays):
    """Pack a list of arrays into a 1-D object ndarray (never a stacked N-D array)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


class UtteranceTransformer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Base class: a stateless transformer mapping each utterance to a 2-D float32 array.

    Subclasses declare ``_parameter_constraints`` (checked by :meth:`_validate_params`,
    scikit-learn's style), implement ``_config()`` (validate the parameters, then the
    rules that relate several of them, and return what the kernel needs),
    ``_check_length(waveform, at, config)`` (raise ``ValueError`` naming the
    utterance when it is too short) and the static kernel ``_kernel(waveform, config)``,
    or ``_transform_chunk`` to process several utterances at once.
    """

    _parameter_constraints: dict = {}

    def _validate_params(self):
        """Check every parameter against ``_parameter_constraints``; return the sample rate.

        Raises :class:`~devicepool._validation.InvalidParameterError` (a ``ValueError``
        and a ``TypeError``) naming the parameter, the class and the allowed values.
        """
        owner = type(self).__name__
        params = self.get_params(deep=False)
        if "sample_rate" in params:
            # 16000.0 is read as 16000 (check_sample_rate); the constraint is the same
            params["sample_rate"] = check_sample_rate(params["sample_rate"], owner=owner)
        validate_params(params, self._parameter_constraints, owner=owner)
        return params.get("sample_rate")

    def fit(self, X: UtteranceSet | None = None, y: object = None) -> UtteranceTransformer:
        """Check the parameters and the in-memory utterances; nothing is learned.

        The transformer is stateless; ``fit`` exists for the scikit-learn API. Arrays in
        ``X`` are checked (type, shape, finite samples, length); files are only read by
        :meth:`transform`.

        Parameters
        ----------
        X : utterance set or None
        y : ignored

        Returns
        -------
        self
        """
        config = self._config()
        if X is not None:
            sample_rate = check_sample_rate(self.sample_rate, owner=type(self).__name__)
            for i, item in enumerate(check_utterance_set(X)):
                if not isinstance(item, (str, os.PathLike)):
                    self._check_length(as_waveform(item, sample_rate, index=i), where(i), config)
        return self

    def fit_transform(self, X: UtteranceSet, y: object = None, **fit_params: object) -> np.ndarray:
        """Same as :meth:`transform` (which checks everything itself)."""
        return self.transform(X)

    def transform(self, X: UtteranceSet) -> np.ndarray:
        """Compute the features of every utterance.

        With ``n_jobs`` > 1 the utterances are split into contiguous chunks that joblib
        processes in parallel; the result does not depend on ``n_jobs``.

        Parameters
        ----------
        X : utterance set
            Sequence of 1-D waveforms (float, or integers scaled to [-1, 1)) or audio file
            paths, or a 2-D array (n_utterances, n_samples).

        Returns
        -------
        features : ndarray of shape (n_utterances,), dtype object
            One float32 array per utterance, time first.
        """
        config = self._config()
        items = check_utterance_set(X)
        sample_rate = check_sample_rate(self.sample_rate, owner=type(self).__name__)
        chunk = type(self)._transform_chunk
        if self.n_jobs in (None, 1) or len(items) < 2:
            return as_object_array(chunk(items, 0, sample_rate, config))
        from joblib import Parallel, delayed, effective_n_jobs

        n_chunks = min(len(items), 4 * effective_n_jobs(self.n_jobs))
        bounds = np.linspace(0, len(items), n_chunks + 1).round().astype(int)
        parts = Parallel(n_jobs=self.n_jobs)(
            delayed(chunk)(items[a:b], int(a), sample_rate, config)
            for a, b in zip(bounds[:-1], bounds[1:])
            if b > a
        )
        return as_object_array([features for part in parts for features in part])

    @classmethod
    def _checked_waveforms(cls, items, offset, sample_rate, config):
        """Yield ``items`` (utterance indices from ``offset``) as checked waveforms."""
        for index, item in enumerate(items, start=offset):
            waveform = as_waveform(item, sample_rate, index=index)
            path = item if isinstance(item, (str, os.PathLike)) else None
            cls._check_length(waveform, where(index, path), config)
            yield waveform

    @classmethod
    def _transform_chunk(cls, items, offset, sample_rate, config):
        """Load, check and transform ``items``, one utterance at a time with ``_kernel``."""
        waveforms = cls._checked_waveforms(items, offset, sample_rate, config)
        return [cls._kernel(waveform, config) for waveform in waveforms]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        tags.input_tags.allow_nan = False
        return tags
