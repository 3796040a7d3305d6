"""|DFT| of 0.5 s segments: the input of the DFT-CNN baseline (Verma & Khanna)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.fft
import scipy.signal

from .._validation import Interval
from ..audio import SAMPLE_RATE
from ._base import UtteranceTransformer

__all__ = ["DFTMagnitude", "segment_spectra"]


def _taper(window, length):
    return scipy.signal.get_window(window, length, fftbins=True)


def segment_spectra(waveform, segment_length, min_length, window=None):
    """Magnitude spectra of the non-overlapping segments of one waveform.

    Parameters
    ----------
    waveform : ndarray of shape (n_samples,)
    segment_length : int
        Samples per segment (8000 for 0.5 s at 16 kHz).
    min_length : int
        Shortest trailing remainder (and shortest utterance) that still makes a segment.
    window : str, tuple or None, default=None
        Taper applied to each segment before the DFT, by its
        :func:`scipy.signal.get_window` name (``"hann"``...); None is rectangular. An
        utterance shorter than one segment is tapered over its own length, then
        zero-padded.

    Returns
    -------
    spectra : ndarray of shape (n_segments, segment_length // 2 + 1), float32
        ``|rfft(window * segment)|``.

    Examples
    --------
    >>> segment_spectra(np.ones(20000), 8000, 4000).shape
    (3, 4001)
    """
    n = waveform.shape[0]
    if n < segment_length:  # one zero-padded segment (n >= min_length checked by caller)
        segments = np.zeros((1, segment_length), dtype=np.float64)
        segments[0, :n] = waveform if window is None else waveform * _taper(window, n)
    else:
        n_full = n // segment_length
        segments = waveform[: n_full * segment_length].reshape(n_full, segment_length)
        if n - n_full * segment_length >= min_length:
            # the remainder becomes a last whole segment ending at the last sample
            segments = np.concatenate([segments, waveform[None, n - segment_length :]])
        if window is not None:
            segments = segments * _taper(window, segment_length)
    return np.abs(scipy.fft.rfft(segments, axis=1)).astype(np.float32)


class DFTMagnitude(UtteranceTransformer):
    """Magnitude spectra of 0.5 s segments, one ``(n_segments, 4001)`` array per utterance.

    The input representation of the DFT-CNN baseline of Verma & Khanna: each utterance
    is cut into non-overlapping segments of ``segment_ms`` (8000 samples at 16 kHz) and
    each segment becomes ``|rfft(window * segment)|``, ``segment // 2 + 1`` = 4001 bins.
    Stateless.

    The window is the one choice the paper leaves open. Its default, a Hann taper, was
    measured against the plain DFT (``window=None``, a rectangular window): with the
    plain DFT, the sidelobes of the strong low harmonics of voiced speech (decaying
    only as 1/f) cover the weak bands where devices differ most (band edges, codec
    noise floors), and the DFT-CNN learns the training speakers instead. On real
    speech (FSDD through the embedded corpus's 6 devices, speaker 3-fold, seed 0) the
    Hann taper took the DFT-CNN from 80.9 % to 93.8 % at 400 steps (96.9 % at its 800);
    see ``docs/performance.md``. Model files written before the parameter existed read
    back with ``window=None``, as they were trained.

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
    window : str, tuple or None, default="hann"
        Taper of each segment, any :func:`scipy.signal.get_window` spec (``"hann"``,
        ``"blackman"``, ``("kaiser", 8.0)``...); None (or ``"boxcar"``) is the plain,
        rectangular DFT of devicepool 0.5 and earlier.
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
        "window": [str, tuple, None],
        "n_jobs": [Integral, None],
    }

    def __init__(self, sample_rate: int = 16000, segment_ms: float = 500.0,
                 min_segment_fraction: float = 0.5, window: str | tuple | None = "hann",
                 n_jobs: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.segment_ms = segment_ms
        self.min_segment_fraction = min_segment_fraction
        self.window = window
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
        window = self.window
        if window == "boxcar":
            window = None
        if window is not None:
            try:
                _taper(window, seg)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"window={self.window!r} is not a window scipy.signal.get_window knows "
                    f"({exc}); give a name such as 'hann', a tuple such as ('kaiser', 8.0), "
                    "or None for the rectangular window"
                ) from None
        return seg, max(1, int(np.ceil(frac * seg))), window

    @staticmethod
    def _check_length(waveform, at, config):
        seg, min_length, _ = config
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
