"""Framing and mel-scale helpers shared by the feature transformers (pure functions)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "frame_signal",
    "n_frames_for",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "mel_band_edges",
    "next_pow2",
]


def next_pow2(n):
    """Smallest power of two >= ``n`` (``n >= 1``)."""
    return 1 << (int(n) - 1).bit_length()


def n_frames_for(n_samples, frame_length, frame_shift):
    """Number of whole frames in ``n_samples`` samples (no centring, no padding).

    ``1 + (n_samples - frame_length) // frame_shift`` when ``n_samples >= frame_length``,
    else 0.

    Examples
    --------
    >>> n_frames_for(16000, 400, 160)
    98
    """
    if n_samples < frame_length:
        return 0
    return 1 + (n_samples - frame_length) // frame_shift


def frame_signal(x, frame_length, frame_shift):
    """Strided view of the whole frames of ``x``.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    frame_length, frame_shift : int
        In samples.

    Returns
    -------
    frames : ndarray of shape (n_frames, frame_length)
        A read-only view (no copy); ``n_frames = 1 + (n_samples - frame_length) // frame_shift``.

    Examples
    --------
    >>> frame_signal(np.arange(10.0), 4, 3)
    array([[0., 1., 2., 3.],
           [3., 4., 5., 6.],
           [6., 7., 8., 9.]])
    """
    n = n_frames_for(x.shape[0], frame_length, frame_shift)
    if n == 0:
        return np.empty((0, frame_length), dtype=x.dtype)
    # rows start every frame_shift samples (as_strided directly: sliding_window_view's
    # checks cost ~10x more per call, which shows on many short utterances)
    step = x.strides[0]
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, frame_length), strides=(step * frame_shift, step), writeable=False
    )


def hz_to_mel(f):
    """HTK mel scale: ``2595 * log10(1 + f / 700)``.

    Examples
    --------
    >>> round(float(hz_to_mel(700.0)), 3)
    781.173
    """
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`.

    Examples
    --------
    >>> round(float(mel_to_hz(hz_to_mel(1000.0))), 6)
    1000.0
    """
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_band_edges(n_mels, f_min, f_max):
    """The ``n_mels + 2`` band edges in Hz, equally spaced on the HTK mel scale.

    Band ``k`` rises from edge ``k``, peaks at edge ``k + 1`` (its centre) and ends at
    edge ``k + 2``.

    Examples
    --------
    >>> edges = mel_band_edges(24, 0.0, 8000.0)
    >>> edges.shape, float(edges[0]), round(float(edges[-1]), 6)
    ((26,), 0.0, 8000.0)
    """
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))


def mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max):
    """Unnormalised triangular mel filters on the HTK mel scale.

    Band edges are ``n_mels + 2`` points equally spaced in mel between ``f_min`` and
    ``f_max``; filter ``k`` rises linearly (in Hz) from edge ``k`` to 1 at edge ``k + 1``
    and falls back to 0 at edge ``k + 2``, evaluated at the ``n_fft // 2 + 1`` FFT bin
    frequencies. Peak height is 1 (no area normalisation).

    Parameters
    ----------
    sample_rate : int
    n_fft : int
    n_mels : int
    f_min, f_max : float
        In Hz, ``0 <= f_min < f_max <= sample_rate / 2``.

    Returns
    -------
    weights : ndarray of shape (n_mels, n_fft // 2 + 1), float64

    Raises
    ------
    ValueError
        When some filter covers no FFT bin (``n_mels`` too large for ``n_fft``).

    Examples
    --------
    >>> mel_filterbank(16000, 512, 24, 20.0, 8000.0).shape
    (24, 257)
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_band_edges(n_mels, f_min, f_max)
    widths = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_bins)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(weights.max(axis=1) <= 0.0)
    if empty.size:
        raise ValueError(
            f"n_mels={n_mels} is too large for n_fft={n_fft} at {sample_rate} Hz between "
            f"f_min={f_min} and f_max={f_max}: mel band {int(empty[0])} covers no FFT bin "
            "(use fewer bands or a larger n_fft)"
        )
    return weights
