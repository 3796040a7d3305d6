"""|DFT| of 0.5 s segments: the input of the DFT-CNN baseline (Verma & Khanna)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.fft

from .._validation import Interval
from ..audio import SAMPLE_RATE
from ._base import UtteranceTransformer

__all__ = ["DFTMagnitude", "segment_spectra"]


def segment_spectra(waveform, segment_length, min_length):
    """Magnitude spectra of the non-overlapping segments of one waveform.

    Parameters
    ----------
    waveform : ndarray of shape (n_samples,)
    segment_length : int
        Samples per segment (8000 for 0.5 s at 16 kHz).
    min_length : int
        Shortest trailing remainder (and shortest utterance) that still makes a segment.

    Returns
    -------
    spectra : ndarray of shape (n_segments, segment_length // 2 + 1), float32
        ``|rfft(segment)|`` with a rectangular window.

    Examples
    --------
    >>> segment_spectra(np.ones(20000), 8000, 4000).shape
    (3, 4001)
    """
    n = waveform.shape[0]
    if n < segment_length:  # one zero-padded segment (n >= min_length checked by caller)
        segments = np.zeros((1, segment_length), dtype=np.float64)
        segments[0, :n] = waveform
    else:
        n_full = n // segment_length
        segments = waveform[: n_full * segment_length].reshape(n_full, segment_length)
        if n - n_full * segment_length >= min_length:
            # the remainder becomes a last whole segment ending at the last sample
            segments = np.concatenate([segments, waveform[None, n - segment_length :]])
    return np.abs(scipy.fft.rfft(segments, axis=1)).astype(np.float32)


class DFTMagnitude(UtteranceTransformer):
    """Magnitude spectra of 0.5 s segments, one ``(n_segments, 4001)`` array per utterance.

    The input representation of the DFT-CNN baseline of Verma & Khanna: each utterance
    is cut into non-overlapping segments of ``segment_ms`` (8000 samples at 16 kHz) and
    each segment becomes ``|rfft(segment)|`` (rectangular window), ``segment // 2 + 1``
    = 4001 bins. Stateless.

    Edges, so that nothing is dropped silently:

    * **Trailing partial segment.** When the remainder after the last whole segment
      holds at least ``min_segment_fraction`` of a segment, one more segment is taken:
      the *last* ``segment`` samples of the utterance (it overlaps the previous segment;
      no zero padding, so its spectrum has the same scale as the others). A shorter
      remainder (< 250 ms by default) is not used.
    * **Utterance shorter than one segment.** When it holds at least
      ``min_segment_fraction`` of a segment it is zero-padded to one segment (a single
      row); shorter utterances raise ``ValueError`` naming the utterance.

    Parameters
    ----------
    sample_rate : int, default=16000
    segment_ms : float, default=500.0
        Segment length in ms.
    min_segment_fraction : float, default=0.5
        In (0, 1]: the shortest remainder / utterance, as a fraction of a segment, that
        still gives a segment. ``1.0`` keeps whole segments only.
    n_jobs : int or None, default=None
        Utterances processed in parallel by joblib.

    Examples
    --------
    >>> import numpy as np
    >>> from devicepool import DFTMagnitude
    >>> X = [np.random.default_rng(0).standard_normal(20000)]
    >>> DFTMagnitude().fit_transform(X)[0].shape  # 2 whole segments + the last 0.5 s
    (3, 4001)
    """

    _parameter_constraints = {
        "sample_rate": [SAMPLE_RATE],
        "segment_ms": [Interval(Real, 0, None, closed="neither")],
        "min_segment_fraction": [Interval(Real, 0, 1, closed="right")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, sample_rate: int = 16000, segment_ms: float = 500.0,
                 min_segment_fraction: float = 0.5, n_jobs: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.segment_ms = segment_ms
        self.min_segment_fraction = min_segment_fraction
        self.n_jobs = n_jobs

    @property
    def segment_length(self):
        """Segment length in samples."""
        return int(round(self.sample_rate * self.segment_ms / 1000.0))

    @property
    def n_bins(self):
        """Number of magnitude bins per segment (``segment_length // 2 + 1``)."""
        return self.segment_length // 2 + 1

    def _config(self):
        sr = self._validate_params()
        frac = self.min_segment_fraction
        seg = self.segment_length
        if seg < 2:
            raise ValueError(
                f"segment_ms={self.segment_ms} gives {seg} sample(s) at {sr} Hz; a segment "
                "needs at least 2 samples"
            )
        return seg, max(1, int(np.ceil(frac * seg)))

    @staticmethod
    def _check_length(waveform, at, config):
        seg, min_length = config
        if waveform.shape[0] < min_length:
            raise ValueError(
                f"{at}: {waveform.shape[0]} samples is shorter than the "
                f"shortest usable segment ({min_length} of {seg} samples)"
            )

    @staticmethod
    def _kernel(waveform, config):
        return segment_spectra(waveform, *config)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the bin frequencies, ``dft_0.0Hz`` ...

        Returns
        -------
        names : ndarray of str objects, shape (n_bins,)
        """
        self._config()
        freqs = np.arange(self.n_bins) * self.sample_rate / self.segment_length
        return np.asarray([f"dft_{f:g}Hz" for f in freqs], dtype=object)
