"""Speaking-mode conversion by frame-wise LPC re-synthesis: whisperise and vocalise.

:func:`whisperise` drives the LPC envelope of neutral speech with noise (whisper-like,
no pitch), :func:`vocalise` drives it with a glottal pulse train (pitched). The
``*_recordings`` variants make level-matched copies of recorded utterances for mode
augmentation. :mod:`devicepool.datasets.corpus` uses :func:`whisperise` for the
whisper of a real speech source and re-exports every name defined here.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .._validation import Interval, validate_params
from ..audio import SAMPLE_RATE, check_sample_rate

__all__ = ["vocalise", "vocalise_recordings", "whisperise", "whisperise_recordings"]

_SEED = Interval(Integral, 0, None, closed="left")  # an int seed; no RandomState objects

_COPIES_CONSTRAINTS = {
    "waveforms": ["array-like"],
    "sample_rate": [SAMPLE_RATE],
    "level_db": [Interval(Real, None, None, closed="neither")],
    "random_state": [_SEED],
}


def whisperise(x, sample_rate, rng, *, order=None, frame=0.025, level_db=None, deemphasise=False):
    """Turn neutral speech into whisper-like speech by LPC re-synthesis from noise.

    Each 25 ms Hann frame (50 % overlap) of the pre-emphasised signal is analysed by
    linear prediction (autocorrelation method, order ``2 + sample_rate / 1000``); the
    frame is re-synthesised by driving the all-pole LPC envelope with white noise of
    the residual's energy instead of the residual itself, and overlap-added. The
    result keeps the vocal-tract envelope (formants, timing, loudness contour) but
    has no pitch, like whisper. The first formant is not shifted.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    sample_rate : int
    rng : numpy.random.Generator
    order : int, optional
        LPC order (default ``2 + sample_rate // 1000``).
    frame : float, default=0.025
        Frame length in seconds.
    level_db : float, optional
        If given, scale the output to this RMS level (dBFS) over its active part.
    deemphasise : bool, default=False
        Undo the analysis pre-emphasis (``1 - 0.97 z^-1``) on the output, so that the
        output's long-term spectrum follows the input's envelope instead of tilting up
        by about 6 dB per octave. The corpus's whisper keeps the tilt (``False``).

    Returns
    -------
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> x = np.sign(np.sin(2 * np.pi * 120 * t)) * 0.1
    >>> y = whisperise(x, 16000, np.random.default_rng(0))
    >>> y.shape
    (16000,)
    """
    sr = int(sample_rate)
    n_pad = 4 * int(order or 2 + sr // 1000)

    def noise(i, n_win):
        return rng.standard_normal(n_win + n_pad)

    return _lpc_resynthesis(x, sr, noise, order=order, frame=frame, level_db=level_db,
                            deemphasise=deemphasise)


def _lpc_resynthesis(x, sample_rate, excitation, *, order=None, frame=0.025, level_db=None,
                     deemphasise=False):
    """Frame-wise LPC analysis of ``x`` and re-synthesis from ``excitation(i, n_win)``.

    Each 25 ms Hann frame (50 % overlap) of the pre-emphasised signal gets its all-pole
    envelope ``1 / A(z)`` (autocorrelation method); ``excitation(i, n_win)`` returns
    ``n_win + 4 * order`` samples of unit mean power for frame ``i`` (the first
    ``4 * order`` warm the filter up), scaled to the frame's residual energy, filtered
    and overlap-added.
    """
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter

    sr = int(sample_rate)
    order = int(order or 2 + sr // 1000)
    n_win = int(round(frame * sr)) // 2 * 2
    hop = n_win // 2
    win = np.hanning(n_win + 1)[:-1]  # periodic Hann: 50 % overlap sums to 1
    xe = lfilter([1.0, -0.97], [1.0], x)
    n = len(x)
    n_frames = int(np.ceil(max(n - n_win, 0) / hop)) + 1
    xp = np.pad(xe, (0, (n_frames - 1) * hop + n_win - n))
    y = np.zeros_like(xp)
    floor = 1e-10 * n_win
    for i in range(n_frames):
        seg = xp[i * hop : i * hop + n_win] * win
        r = np.correlate(seg, seg, "full")[n_win - 1 : n_win + order]
        if r[0] <= floor:
            continue
        r = r.copy()
        r[0] *= 1.0 + 1e-6  # white-noise correction keeps the system well conditioned
        try:
            a = solve_toeplitz(r[:order], -r[1 : order + 1])
        except np.linalg.LinAlgError:
            continue
        A = np.concatenate([[1.0], a])
        err = max(r[0] + np.dot(a, r[1 : order + 1]), 0.0)
        g = np.sqrt(err / np.sum(win**2))
        e = excitation(i, n_win) * g
        out = lfilter([1.0], A, e)[order * 4 :]
        y[i * hop : i * hop + n_win] += out * win
    y = y[:n]
    if deemphasise:
        y = lfilter([1.0], [1.0, -0.97], y)
    if level_db is not None:
        active = np.abs(y) > 1e-3 * max(np.abs(y).max(), 1e-12)
        rms = np.sqrt(np.mean(y[active] ** 2)) if active.any() else 1.0
        y = y * (10 ** (level_db / 20.0) / max(rms, 1e-12))
    return y


def vocalise(x, sample_rate, rng, *, f0_range=(90.0, 220.0), breath=0.05, order=None,
             frame=0.025, deemphasise=True):
    """The converse of :func:`whisperise`: re-synthesise with a voiced-like source.

    The frame-wise LPC envelope of ``x`` is driven by a glottal pulse train instead of
    noise: one pulse per period at a fundamental drawn uniformly from ``f0_range`` that
    drifts smoothly (+-10 %) over the utterance, low-passed (a 2-pole glottal roll-off,
    about -12 dB/octave above 2 F0), plus ``breath`` of white noise. Whispered speech
    through a device becomes pitched speech through the same device (the envelope, and
    with it the device's colouration, is kept).

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    sample_rate : int
    rng : numpy.random.Generator
    f0_range : (float, float), default=(90, 220)
    breath : float, default=0.05
        Share of noise power in the excitation.
    order, frame, deemphasise
        As :func:`whisperise` (here the pre-emphasis is undone by default).

    Returns
    -------
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.01
    >>> vocalise(x, 16000, np.random.default_rng(1)).shape
    (16000,)
    """
    from scipy.signal import lfilter

    sr = int(sample_rate)
    n = len(x)
    n_pad = 4 * int(order or 2 + sr // 1000)
    f0 = rng.uniform(*f0_range)
    t = np.arange(n + 2 * n_pad + sr) / sr
    drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 2 * np.pi))
    phase = np.cumsum(f0 * drift / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)               # 1 at each period start
    pole = np.exp(-2 * np.pi * 2 * f0 / sr)
    source = lfilter([1.0], [1.0, -2 * pole, pole * pole], pulses)
    source -= source.mean()
    source /= np.sqrt(np.mean(source**2)) + 1e-12
    noise = rng.standard_normal(len(source))
    source = np.sqrt(1 - breath) * source + np.sqrt(breath) * noise
    hop = (int(round(frame * sr)) // 2 * 2) // 2

    def pulse_train(i, n_win):
        e = source[n_pad + i * hop - n_pad : n_pad + i * hop + n_win]
        return e / (np.sqrt(np.mean(e * e)) + 1e-12)

    return _lpc_resynthesis(x, sr, pulse_train, order=order, frame=frame,
                            deemphasise=deemphasise)


def _recording_copies(waveforms, sample_rate, resynthesise, level_db, random_state):
    """``resynthesise`` each waveform (generator ``[random_state, i]``), ``level_db`` re its RMS."""
    out = np.empty(len(waveforms), dtype=object)
    gain = 10 ** (float(level_db) / 20.0)
    for i, x in enumerate(waveforms):
        x = np.asarray(x, dtype=np.float64)
        y = resynthesise(x, sample_rate, np.random.default_rng([int(random_state), i]),
                         deemphasise=True)
        rms_in = np.sqrt(np.mean(x * x))
        rms_out = np.sqrt(np.mean(y * y))
        out[i] = (y * (gain * rms_in / rms_out if rms_out > 0 else 0.0)).astype(np.float32)
    return out


def whisperise_recordings(waveforms, sample_rate, *, level_db=-12.0, random_state=0):
    """Whisper-like copies of *recorded* neutral speech, for mode augmentation.

    Each recording is whisperised by :func:`whisperise` (frame-wise LPC envelope driven
    by noise, pre-emphasis undone). The LPC envelope of a recording is the vocal tract *and* the device's
    response together, so the copy keeps the device's colouration while the source
    becomes whisper-like (no pitch, noise excitation). The copy's RMS is the
    original's plus ``level_db`` (whisper is about 12 dB softer). Noise floor and codec
    artefacts of the device are not reproduced exactly: this is an approximation used
    to vary the source during training, never test material.

    Parameters
    ----------
    waveforms : sequence of ndarray of shape (n_samples,)
    sample_rate : int
    level_db : float, default=-12.0
    random_state : int, default=0
        Recording ``i`` uses the noise generator seeded by ``[random_state, i]``.

    Returns
    -------
    copies : ndarray of object, shape (n_recordings,)
        float32 waveforms of the same lengths.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(8000) / 16000
    >>> x = (np.sign(np.sin(2 * np.pi * 150 * t)) * 0.1).astype("float32")
    >>> w = whisperise_recordings([x], 16000)[0]
    >>> w.shape, round(float(20 * np.log10(np.std(w) / np.std(x))))
    ((8000,), -12)
    """
    sample_rate = check_sample_rate(sample_rate, owner="whisperise_recordings")
    validate_params(
        dict(waveforms=waveforms, sample_rate=sample_rate, level_db=level_db,
             random_state=random_state),
        _COPIES_CONSTRAINTS, owner="whisperise_recordings",
    )
    return _recording_copies(waveforms, sample_rate, whisperise, level_db, random_state)


def vocalise_recordings(waveforms, sample_rate, *, level_db=12.0, random_state=0):
    """Pitched copies of *recorded* whispered speech (:func:`vocalise`), for mode augmentation.

    The converse of :func:`whisperise_recordings`: the recording's LPC envelope (vocal
    tract and device colouration) driven by a glottal pulse train, ``level_db`` louder
    (neutral speech is about 12 dB louder than whisper). Training material only.

    Parameters
    ----------
    waveforms : sequence of ndarray of shape (n_samples,)
    sample_rate : int
    level_db : float, default=12.0
    random_state : int, default=0

    Returns
    -------
    copies : ndarray of object, shape (n_recordings,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000).astype("float32") * 0.01
    >>> v = vocalise_recordings([x], 16000)[0]
    >>> v.shape, round(float(20 * np.log10(np.std(v) / np.std(x))))
    ((8000,), 12)
    """
    sample_rate = check_sample_rate(sample_rate, owner="vocalise_recordings")
    validate_params(
        dict(waveforms=waveforms, sample_rate=sample_rate, level_db=level_db,
             random_state=random_state),
        _COPIES_CONSTRAINTS, owner="vocalise_recordings",
    )
    return _recording_copies(waveforms, sample_rate, vocalise, level_db, random_state)
