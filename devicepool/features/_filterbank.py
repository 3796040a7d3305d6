"""Log mel filterbank features (paper §2.1: 24 bands, 25 ms frames, 10 ms shift, 16 kHz)."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.fft
from scipy.signal import get_window

from .._validation import Interval, validate_params
from ..audio import SAMPLE_RATE
from ._base import UtteranceTransformer
from ._framing import frame_signal, mel_band_edges, mel_filterbank, n_frames_for, next_pow2

__all__ = ["FilterBank", "log_mel_filterbank", "LOG_FLOOR"]

#: Power floor before the natural log, so silent frames give finite features.
LOG_FLOOR = 1e-10

#: Frames per block in :meth:`FilterBank.transform` (n_fft=512: 1 MiB of frames and 1 MiB
#: of spectrum, near a core's L2 cache; 1024-frame blocks measured 2x slower on 1 thread).
BLOCK_FRAMES = 256


@dataclass(frozen=True)
class _FBankConfig:
    frame_length: int
    frame_shift: int
    n_fft: int
    window: np.ndarray
    preemphasis: float
    weights: np.ndarray  # (n_mels, n_used_bins)
    bin_lo: int
    bin_hi: int
    spans: tuple  # per band, (first, last + 1) of its non-zero weights in the used bins


def _preemphasise(x, coefficient):
    """Whole-signal pre-emphasis: ``y[0] = x[0]``, ``y[n] = x[n] - a * x[n - 1]``."""
    if not coefficient:
        return x
    y = np.empty_like(x)
    y[0] = x[0]
    np.subtract(x[1:], coefficient * x[:-1], out=y[1:])
    return y


def _block_log_mel(frames, config):
    """Log mel energies of a block of windowed frames.

    Parameters
    ----------
    frames : ndarray of shape (n_rows, n_fft), float64, C-contiguous
        Windowed frames, possibly of several utterances, zero-padded to ``n_fft``
        columns (left unchanged).
    config : _FBankConfig

    Returns
    -------
    log_mel : ndarray of shape (n_rows, n_mels), float64
        A transposed view of a C-contiguous (n_mels, n_rows) array.
    """
    spec = scipy.fft.rfft(frames, axis=1)[:, config.bin_lo : config.bin_hi]
    power = np.square(spec.real)
    power += np.square(spec.imag)  # (n_rows, n_used_bins)
    # band by band over the bins each triangle covers (~8 % of the dense product's work);
    # matrix-vector products are not split across BLAS threads, whose start-up costs
    # more than the product on these sizes and stalls when the cores are busy
    mel = np.empty((config.weights.shape[0], power.shape[0]))  # (n_mels, n_rows)
    for band, (lo, hi) in enumerate(config.spans):
        np.dot(power[:, lo:hi], config.weights[band, lo:hi], out=mel[band])
    np.maximum(mel, LOG_FLOOR, out=mel)
    return np.log(mel, out=mel).T


def _log_mel_blocks(waveforms, config, block_frames=BLOCK_FRAMES):
    """Log mel filterbanks of many waveforms, computed in blocks of frames.

    The windowed frames of consecutive waveforms are packed into one buffer of
    ``block_frames`` rows; the FFT, power spectrum, mel product and log then run once per
    block instead of once per utterance (fewer Python-level calls on longer arrays).
    Each row is transformed on its own, so the result does not depend on
    the packing.

    Parameters
    ----------
    waveforms : iterable of ndarray of shape (n_samples,), float64
        Checked waveforms, each at least one frame long.
    config : _FBankConfig
    block_frames : int, default=BLOCK_FRAMES

    Returns
    -------
    features : list of ndarray of shape (n_frames, n_mels), float32
    """
    length, shift = config.frame_length, config.frame_shift
    n_mels = config.weights.shape[0]
    outputs = []
    buffer = None
    pending = []  # (output array, first row in it, rows) in buffer order
    filled = 0

    def flush():
        log_mel = _block_log_mel(buffer[:filled], config)
        row = 0
        for out, start, count in pending:
            out[start : start + count] = log_mel[row : row + count]
            row += count
        pending.clear()

    for x in waveforms:
        frames = frame_signal(_preemphasise(x, config.preemphasis), length, shift)
        n = frames.shape[0]
        out = np.empty((n, n_mels), dtype=np.float32)
        outputs.append(out)
        if buffer is None:
            # zero-padded to n_fft once: frames are written to the first `length` columns
            buffer = np.zeros((block_frames, config.n_fft), dtype=np.float64)
        start = 0
        while start < n:
            count = min(n - start, block_frames - filled)
            np.multiply(frames[start : start + count], config.window,
                        out=buffer[filled : filled + count, :length])
            pending.append((out, start, count))
            filled += count
            start += count
            if filled == block_frames:
                flush()
                filled = 0
    if filled:
        flush()
    return outputs


def log_mel_filterbank(waveform, config):
    """Log mel filterbank of one waveform (the kernel of :class:`FilterBank`).

    Parameters
    ----------
    waveform : ndarray of shape (n_samples,), float64
    config : _FBankConfig
        As built by :meth:`FilterBank._config`.

    Returns
    -------
    features : ndarray of shape (n_frames, n_mels), float32

    Examples
    --------
    >>> fb = FilterBank()
    >>> log_mel_filterbank(np.ones(16000), fb._config()).shape
    (98, 24)
    """
    n = n_frames_for(waveform.shape[0], config.frame_length, config.frame_shift)
    if n == 0:
        return np.empty((0, config.weights.shape[0]), dtype=np.float32)
    return _log_mel_blocks([waveform], config, block_frames=min(n, BLOCK_FRAMES))[0]


class FilterBank(UtteranceTransformer):
    """Log mel filterbank energies per frame, one ``(n_frames, n_mels)`` array per utterance.

    The front end of the paper (Naini, Singhal & Ghosh, §2.1): 24 log mel filterbank
    energies from 25 ms frames every 10 ms of 16 kHz speech. Stateless: ``fit`` only
    checks the parameters.

    Per utterance: samples (or a file, resampled to ``sample_rate``) -> whole-signal
    pre-emphasis ``y[n] = x[n] - preemphasis * x[n-1]`` -> frames of ``frame_length``
    samples every ``frame_shift`` samples, **without centring or padding** (an utterance of
    N samples gives ``1 + (N - frame_length) // frame_shift`` frames; a trailing part
    shorter than a frame shift is not covered) -> window -> zero-padded ``n_fft`` real FFT
    -> power spectrum -> unnormalised triangular filters on the HTK mel scale between
    ``f_min`` and ``f_max`` -> natural log of ``max(energy, 1e-10)``.

    Parameters
    ----------
    sample_rate : int, default=16000
        Rate in Hz of the waveforms; files at other rates are resampled to it.
    n_mels : int, default=24
        Number of mel bands.
    frame_length_ms : float, default=25.0
        Frame length in ms (rounded to whole samples: 400 at 16 kHz).
    frame_shift_ms : float, default=10.0
        Frame shift in ms (160 samples at 16 kHz).
    n_fft : int or None, default=None
        FFT size, ``>= frame length``; None gives the next power of two (512 at 16 kHz).
    window : str, default="hamming"
        Any :func:`scipy.signal.get_window` name (periodic form).
    preemphasis : float, default=0.97
        Pre-emphasis coefficient in [0, 1); 0 disables it.
    f_min : float, default=20.0
        Lowest band edge in Hz.
    f_max : float or None, default=None
        Highest band edge in Hz; None is the Nyquist frequency.
    n_jobs : int or None, default=None
        Utterances processed in parallel by joblib (None or 1: sequential).

    See Also
    --------
    DFTMagnitude : the input representation of the DFT-CNN baseline.

    Notes
    -----
    Errors name the utterance index (and path) and the rule: empty, shorter than one
    frame, NaN/Inf samples, unsupported item types, missing or unreadable files.

    Examples
    --------
    >>> import numpy as np
    >>> from devicepool import FilterBank
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.standard_normal(16000), rng.standard_normal(8000)]
    >>> feats = FilterBank().fit_transform(X)
    >>> [f.shape for f in feats]
    [(98, 24), (48, 24)]
    >>> feats[0].dtype
    dtype('float32')
    """

    _parameter_constraints = {
        "sample_rate": [SAMPLE_RATE],
        "n_mels": [Interval(Integral, 1, None, closed="left")],
        "frame_length_ms": [Interval(Real, 0, None, closed="neither")],
        "frame_shift_ms": [Interval(Real, 0, None, closed="neither")],
        "n_fft": [Interval(Integral, 1, None, closed="left"), None],
        "window": [str],
        "preemphasis": [Interval(Real, 0, 1, closed="left")],
        "f_min": [Interval(Real, 0, None, closed="left")],
        "f_max": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 24,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        n_fft: int | None = None,
        window: str = "hamming",
        preemphasis: float = 0.97,
        f_min: float = 20.0,
        f_max: float | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.n_fft = n_fft
        self.window = window
        self.preemphasis = preemphasis
        self.f_min = f_min
        self.f_max = f_max
        self.n_jobs = n_jobs

    # -- parameters ---------------------------------------------------------------------
    @property
    def frame_length(self):
        """Frame length in samples."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

    @property
    def frame_shift(self):
        """Frame shift in samples."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    def n_frames(self, n_samples):
        """Frames produced for an utterance of ``n_samples`` samples (0 if too short)."""
        return n_frames_for(int(n_samples), self.frame_length, self.frame_shift)

    def _config(self):
        sr = self._validate_params()
        length, shift = self.frame_length, self.frame_shift
        if length < 2:
            raise ValueError(
                f"frame_length_ms={self.frame_length_ms} gives {length} sample(s) at "
                f"{sr} Hz; a frame needs at least 2 samples"
            )
        if shift < 1:
            raise ValueError(
                f"frame_shift_ms={self.frame_shift_ms} gives 0 samples at {sr} Hz; "
                "the shift must be at least one sample"
            )
        n_fft = next_pow2(length) if self.n_fft is None else self.n_fft
        if n_fft < length:
            raise ValueError(f"n_fft={n_fft} is smaller than the frame length ({length} samples)")
        try:
            window = get_window(self.window, length, fftbins=True).astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unknown window {self.window!r}: {exc}") from None
        pre = self.preemphasis
        nyquist = sr / 2.0
        f_max = nyquist if self.f_max is None else self.f_max
        f_min = self.f_min
        if f_max > nyquist:
            raise ValueError(f"f_max={f_max} Hz is above the Nyquist frequency {nyquist} Hz")
        if f_min >= f_max:
            raise ValueError(f"f_min={f_min} Hz must be below f_max={f_max} Hz")
        weights = mel_filterbank(sr, n_fft, int(self.n_mels), float(f_min), float(f_max))
        used = np.flatnonzero(weights.any(axis=0))
        lo, hi = int(used[0]), int(used[-1]) + 1  # only bins some filter touches
        spans = []
        for band in weights[:, lo:hi]:
            nonzero = np.flatnonzero(band)
            spans.append((int(nonzero[0]), int(nonzero[-1]) + 1))
        return _FBankConfig(
            frame_length=length,
            frame_shift=shift,
            n_fft=int(n_fft),
            window=window,
            preemphasis=float(pre),
            weights=np.ascontiguousarray(weights[:, lo:hi]),
            bin_lo=lo,
            bin_hi=hi,
            spans=tuple(spans),
        )

    @staticmethod
    def _check_length(waveform, at, config):
        if waveform.shape[0] < config.frame_length:
            raise ValueError(
                f"{at}: {waveform.shape[0]} samples is shorter than one frame "
                f"({config.frame_length} samples)"
            )

    @classmethod
    def _transform_chunk(cls, items, offset, sample_rate, config):
        """Features of ``items``: frames of consecutive utterances are processed together
        in blocks of ``BLOCK_FRAMES`` frames (one FFT call and one mel product per block)."""
        return _log_mel_blocks(cls._checked_waveforms(items, offset, sample_rate, config), config)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``mel00``, ``mel01``, ...

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        names : ndarray of str objects, shape (n_mels,)
        """
        validate_params({"n_mels": self.n_mels}, self._parameter_constraints,
                        owner=type(self).__name__)
        width = max(2, len(str(self.n_mels - 1)))
        return np.asarray([f"mel{k:0{width}d}" for k in range(self.n_mels)], dtype=object)

    def band_frequencies(self):
        """Centre frequency in Hz of each mel band, shape (n_mels,)."""
        f_max = self.sample_rate / 2.0 if self.f_max is None else self.f_max
        return mel_band_edges(self.n_mels, self.f_min, f_max)[1:-1]

