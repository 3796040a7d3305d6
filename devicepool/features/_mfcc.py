"""Mel-frequency cepstral coefficients: the front end of the classical device-ID systems.

:class:`MFCC` is the DCT of the log mel filterbank (the cepstrum), optionally with its
regression deltas, as used by the GMM-UBM and Gaussian-supervector systems of device
identification (Hanilçi et al. 2012; Kotropoulos & Samaras 2014). It reads the output of
:class:`~devicepool.features.FilterBank` in a ``Pipeline``, or -- given its own
``filterbank`` -- waveforms and audio files, which it needs to keep only the speech or
only the non-speech frames (Kritsiolis & Kotropoulos 2024 model the device on the
non-speech segments).
"""

from __future__ import annotations

import os
import warnings
from numbers import Integral

import numpy as np
from scipy.fft import dct
from sklearn.base import BaseEstimator, TransformerMixin

from .._typing import UtteranceSet
from .._validation import Interval, StrOptions, check_feature_set, validate_params, where
from ..audio import as_waveform, check_utterance_set
from ._base import as_object_array
from ._filterbank import FilterBank
from ._voicing import voicing_labels

__all__ = ["MFCC", "mfcc", "deltas"]

#: voicing classes kept by each ``frames`` choice
_KEPT = {"speech": ("voiced", "unvoiced"), "nonspeech": ("silence",)}


def deltas(features, width=2):
    """Regression deltas over ``±width`` frames (HTK's formula), edges repeated.

    ``d[t] = sum_k k (c[t+k] - c[t-k]) / (2 sum_k k^2)`` for ``k = 1..width``; the first
    and last frames are repeated beyond the ends, so every frame gets a delta.

    Parameters
    ----------
    features : ndarray of shape (n_frames, n_features)
    width : int, default=2

    Returns
    -------
    ndarray of shape (n_frames, n_features), same dtype as ``features``

    Examples
    --------
    >>> deltas(np.arange(6.0)[:, None], width=1).ravel().tolist()
    [0.5, 1.0, 1.0, 1.0, 1.0, 0.5]
    """
    c = np.asarray(features)
    n = c.shape[0]
    pad = np.pad(c, ((width, width), (0, 0)), mode="edge")
    num = np.zeros_like(c, dtype=np.float64)
    for k in range(1, width + 1):
        num += k * (pad[width + k:width + k + n] - pad[width - k:width - k + n])
    return (num / (2.0 * sum(k * k for k in range(1, width + 1)))).astype(c.dtype, copy=False)


def mfcc(log_mel, n_mfcc=20, n_deltas=1, delta_width=2):
    """Cepstra of one utterance's log mel filterbank, with ``n_deltas`` orders of deltas.

    The cepstra are the orthonormal DCT-II of the log band energies, ``c0 .. c{n_mfcc-1}``
    (``c0`` is the scaled mean log energy); deltas of order ``j`` are the deltas of order
    ``j - 1`` (:func:`deltas`).

    Parameters
    ----------
    log_mel : ndarray of shape (n_frames, n_mels)
    n_mfcc : int, default=20
        At most ``n_mels``.
    n_deltas : {0, 1, 2}, default=1
    delta_width : int, default=2

    Returns
    -------
    ndarray of shape (n_frames, n_mfcc * (1 + n_deltas)), float32
        ``[c, Δc, ΔΔc]`` side by side.

    Examples
    --------
    >>> mfcc(np.zeros((5, 24)), n_mfcc=13, n_deltas=2).shape
    (5, 39)
    """
    c = dct(np.asarray(log_mel, np.float64), type=2, axis=1, norm="ortho")[:, :n_mfcc]
    parts = [c]
    for _ in range(n_deltas):
        parts.append(deltas(parts[-1], delta_width))
    return np.hstack(parts).astype(np.float32)


class MFCC(TransformerMixin, BaseEstimator):
    """MFCCs (and deltas) per frame, one ``(n_frames, n_mfcc * (1 + n_deltas))`` array per
    utterance; stateless.

    Two inputs:

    * ``filterbank=None`` (default): an utterance set of log mel filterbanks
      ``(n_frames, n_mels)``, the output of :class:`FilterBank` (``Pipeline([("fbank",
      FilterBank()), ("mfcc", MFCC()), ...])``); every frame is kept.
    * ``filterbank=FilterBank(...)``: waveforms or audio files, which the given
      filterbank turns into log mel energies here. Then ``frames="speech"`` or
      ``"nonspeech"`` keeps only the frames that :func:`~devicepool.features.voicing_labels`
      (framed as the filterbank) labels voiced or unvoiced, or silence. Deltas are
      computed on the whole utterance before frames are dropped. An utterance with no
      frame of the kind asked for keeps all its frames, with a ``UserWarning`` naming it.

    Parameters
    ----------
    n_mfcc : int, default=20
        Cepstral coefficients ``c0 .. c{n_mfcc-1}`` (at most the number of bands).
    n_deltas : {0, 1, 2}, default=1
        Orders of regression deltas appended (1: Δ, 2: Δ and ΔΔ).
    delta_width : int, default=2
        Frames on each side in the delta regression.
    frames : {"all", "speech", "nonspeech"}, default="all"
        Frames kept (anything but ``"all"`` needs ``filterbank``).
    filterbank : FilterBank or None, default=None
        Compute the log mel energies from waveforms with this transformer.

    Examples
    --------
    >>> from devicepool.features import FilterBank
    >>> t = np.arange(16000) / 16000
    >>> fb = FilterBank().transform([np.sin(2 * np.pi * 440 * t)])
    >>> MFCC().transform(fb)[0].shape
    (98, 40)
    >>> MFCC(n_deltas=0, filterbank=FilterBank()).transform([np.sin(2 * np.pi * 440 * t)])[0].shape
    (98, 20)
    """

    _parameter_constraints: dict = {
        "n_mfcc": [Interval(Integral, 1, None, closed="left")],
        "n_deltas": [Interval(Integral, 0, 2, closed="both")],
        "delta_width": [Interval(Integral, 1, None, closed="left")],
        "frames": [StrOptions({"all", "speech", "nonspeech"})],
        "filterbank": [FilterBank, None],
    }

    def __init__(self, n_mfcc: int = 20, n_deltas: int = 1, delta_width: int = 2,
                 frames: str = "all", filterbank: FilterBank | None = None) -> None:
        self.n_mfcc = n_mfcc
        self.n_deltas = n_deltas
        self.delta_width = delta_width
        self.frames = frames
        self.filterbank = filterbank

    def _check_params(self):
        validate_params(self.get_params(deep=False), self._parameter_constraints,
                        owner=type(self).__name__)
        if self.frames != "all" and self.filterbank is None:
            raise ValueError(
                f"MFCC(frames={self.frames!r}) needs the waveforms to find the "
                f"{self.frames} frames: give MFCC(filterbank=FilterBank(), frames="
                f"{self.frames!r}) waveforms or audio files instead of a filterbank's output")
        if self.filterbank is not None and self.n_mfcc > self.filterbank.n_mels:
            raise ValueError(f"n_mfcc={self.n_mfcc} is more than the filterbank's "
                             f"{self.filterbank.n_mels} bands")

    def fit(self, X: UtteranceSet | None = None, y: object = None) -> MFCC:
        """Check the parameters; nothing is learned.

        Parameters
        ----------
        X : utterance set or None
            Log filterbanks are checked here (finite, 2-D, at least one frame); waveforms
            and files are read by :meth:`transform` only.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        if X is not None and self.filterbank is None:
            check_feature_set(X, owner="MFCC")
        return self

    def fit_transform(self, X: UtteranceSet, y: object = None, **fit_params: object) -> np.ndarray:
        """Same as :meth:`transform`."""
        return self.transform(X)

    def transform(self, X: UtteranceSet) -> np.ndarray:
        """MFCCs of every utterance.

        Parameters
        ----------
        X : utterance set
            Log mel filterbanks ``(n_frames, n_mels)`` (``filterbank=None``), or
            waveforms / audio paths (``filterbank`` given).

        Returns
        -------
        ndarray of shape (n_utterances,), dtype object
            One float32 array ``(n_kept_frames, n_mfcc * (1 + n_deltas))`` per utterance.

        Raises
        ------
        ValueError
            ``n_mfcc`` exceeds the number of bands, or an utterance breaks the input
            rules (named by its index or path).
        """
        self._check_params()
        args = (self.n_mfcc, self.n_deltas, self.delta_width)
        if self.filterbank is None:
            items = check_feature_set(X, owner="MFCC")
            if self.n_mfcc > items[0].shape[1]:
                raise ValueError(f"n_mfcc={self.n_mfcc} is more than the input's "
                                 f"{items[0].shape[1]} bands per frame")
            return as_object_array([mfcc(u, *args) for u in items])
        return as_object_array(self._from_waveforms(X, args))

    def _from_waveforms(self, X, args):
        fb = self.filterbank
        items = check_utterance_set(X)
        if self.frames == "all":
            return [mfcc(u, *args) for u in fb.transform(items)]
        # each file is read once, for both the filterbank and the voicing labels
        waves = [as_waveform(item, fb.sample_rate, index=i) for i, item in enumerate(items)]
        config = fb._config()
        for i, (item, wave) in enumerate(zip(items, waves)):
            path = item if isinstance(item, (str, os.PathLike)) else None
            fb._check_length(wave, where(i, path), config)
        out, empty = [], []
        for i, (item, wave, feats) in enumerate(zip(items, waves, fb.transform(waves))):
            cepstra = mfcc(feats, *args)
            labels = voicing_labels(wave, fb.sample_rate, fb.frame_length_ms, fb.frame_shift_ms)
            keep = np.isin(labels, _KEPT[self.frames])
            if keep.any():
                cepstra = cepstra[keep]
            else:
                path = item if isinstance(item, (str, os.PathLike)) else None
                empty.append(where(i, path))
            out.append(np.ascontiguousarray(cepstra))
        if empty:
            shown = "; ".join(empty[:5]) + (f"; and {len(empty) - 5} more" if len(empty) > 5 else "")
            warnings.warn(f"MFCC(frames={self.frames!r}): no {self.frames} frame in {shown}; "
                          "all their frames are used", UserWarning, stacklevel=3)
        return out

    def get_feature_names_out(self, input_features=None):
        """``c00 .. c19``, then ``d_c00 ..`` and ``dd_c00 ..`` for the deltas."""
        self._check_params()
        base = [f"c{k:02d}" for k in range(self.n_mfcc)]
        names = list(base)
        for order in range(1, self.n_deltas + 1):
            names += ["d" * order + "_" + b for b in base]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        return tags
