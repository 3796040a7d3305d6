"""Embedded parallel multi-device corpus: :func:`make_device_corpus`."""

from __future__ import annotations

import os
from collections import defaultdict
from numbers import Integral, Real

import numpy as np

from ..audio import check_sample_rate, read_audio_file
from ._base import check_root, finish_bunch, natural_key, normalise_mode
from ._devices import DEFAULT_DEVICES, DeviceSpec, apply_device
from ._synth import draw_speaker, synthesise_utterance

__all__ = ["make_device_corpus", "vocalise", "vocalise_recordings", "whisperise",
           "whisperise_recordings"]

_NEUTRAL_DBFS = -20.0
_WHISPER_DBFS = -32.0


def _check_int(value, name, low=1):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _seed(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(
            f"random_state must be an int or None, got {type(random_state).__name__}; "
            "the corpus is built from independent per-recording seeds derived from it"
        )
    if random_state < 0:
        raise ValueError(f"random_state must be >= 0, got {random_state}")
    return int(random_state)


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
    return _recording_copies(waveforms, sample_rate, vocalise, level_db, random_state)


def _trim_silence(x, sr, threshold_db=-35.0):
    """Cut leading/trailing parts quieter than ``threshold_db`` re the peak (10 ms frames)."""
    hop = max(int(0.01 * sr), 1)
    m = len(x) // hop
    if m < 3:
        return x
    e = 10 * np.log10(np.mean(x[: m * hop].reshape(m, hop) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(e > e.max() + threshold_db)
    if len(on) == 0:
        return x
    return x[max(on[0] - 2, 0) * hop : min(on[-1] + 3, m) * hop]


def _source_speakers(source, source_pattern):
    """Files of a real-speech folder grouped by speaker: {speaker: [paths]}."""
    from .folder import _pattern_regex, _walk

    root = check_root(source, "speech source folder")
    regex, fields = _pattern_regex(source_pattern)
    if "speaker" not in fields:
        raise ValueError(
            f"source_pattern {source_pattern!r} has no {{speaker}} field to group the files by"
        )
    files = _walk(root)
    if not files:
        raise ValueError(f"speech source folder {str(root)!r} is empty")
    by_speaker = defaultdict(list)
    for rel in files:
        m = regex.fullmatch(rel)
        if m is not None:
            by_speaker[m.group("speaker")].append(os.path.join(root, rel))
    if not by_speaker:
        raise ValueError(
            f"no file in speech source folder {str(root)!r} matches source_pattern "
            f"{source_pattern!r} (e.g. {os.path.join(root, files[0])!r})"
        )
    return {s: sorted(v, key=natural_key) for s, v in by_speaker.items()}


def _real_utterance(paths, sample_rate, duration, rng):
    """Concatenate randomly chosen files of one speaker into an utterance >= duration."""
    order = rng.permutation(len(paths))
    parts, total = [], 0.0
    for k, j in enumerate(order):
        x, _ = read_audio_file(paths[j], sample_rate)
        x = _trim_silence(x, sample_rate)
        gap = np.zeros(int(rng.uniform(0.06, 0.18) * sample_rate))
        parts += [gap, x]
        total += (len(x) + len(gap)) / sample_rate
        if total >= duration:
            break
    parts.append(np.zeros(int(rng.uniform(0.06, 0.18) * sample_rate)))
    return np.concatenate(parts)


def _set_level(x, level_db):
    active = np.abs(x) > 1e-3 * max(np.abs(x).max(), 1e-12)
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0
    y = x * (10 ** (level_db / 20.0) / max(rms, 1e-12))
    peak = np.abs(y).max()
    return y * (0.9 / peak) if peak > 0.9 else y


def _check_devices(devices, n_devices):
    if devices is None:
        if n_devices is None:
            n_devices = 6
        n_devices = _check_int(n_devices, "n_devices")
        if n_devices > len(DEFAULT_DEVICES):
            raise ValueError(
                f"n_devices={n_devices} but only {len(DEFAULT_DEVICES)} default devices are "
                "defined; pass devices=[DeviceSpec(...), ...] for more"
            )
        return list(DEFAULT_DEVICES[:n_devices])
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty")
    for i, d in enumerate(devices):
        if not isinstance(d, DeviceSpec):
            raise TypeError(f"devices[{i}] must be a DeviceSpec, got {type(d).__name__}")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ValueError(f"device names must be unique, got {names}")
    if n_devices is not None and n_devices != len(devices):
        raise ValueError(f"n_devices={n_devices} but {len(devices)} devices were given")
    return devices


def make_device_corpus(
    n_devices=None,
    n_speakers=None,
    n_utterances=8,
    *,
    modes=("neutral", "whisper"),
    sample_rate=16000,
    source=None,
    source_pattern="{label}_{speaker}_{take}.wav",
    duration=1.5,
    devices=None,
    variability=1.0,
    random_state=0,
    return_X_y=False,
):
    """Make a parallel multi-device speech corpus from real device components.

    Every utterance is "recorded" by every device: the clean utterance goes through
    each device's chain (measured microphone impulse response, band limits, noise
    floor with hum, gain and clipping, and a real codec round trip through
    libsndfile; see :class:`devicepool.datasets.DeviceSpec` and
    ``docs/datasets.md``). Every recording has its own placement tilt, gain and noise
    level, so devices are told apart by their fingerprint, not by a constant level.

    Speech source:

    * ``source=None``: the built-in source-filter synthesiser (speaker-specific
      pitch, vocal-tract length, glottal tilt, breathiness, rate and loudness; voiced,
      unvoiced and silent segments). Utterance ``u`` is the same phone sequence for
      every speaker. Whisper uses noise excitation, no pitch, a raised first formant
      and a level about 12 dB lower.
    * ``source=<folder>``: real speech. Files are grouped by the ``{speaker}`` field
      of ``source_pattern`` (default: the Free Spoken Digit Dataset naming
      ``{digit}_{speaker}_{index}.wav``); each utterance concatenates randomly chosen
      files of that speaker (silences trimmed, 60-180 ms gaps) until it lasts at least
      ``duration`` seconds. Whisper is made by LPC whisperisation (:func:`whisperise`):
      the frame-wise LPC envelope is driven by noise instead of the residual, at a
      level 12 dB lower. Speakers are the first ``n_speakers`` in natural sort order.

    Parameters
    ----------
    n_devices : int, optional
        Number of default devices to use (the first ``n_devices`` of
        ``DEFAULT_DEVICES``; 6 if neither this nor ``devices`` is given, at most 12).
    n_speakers : int, optional
        Number of speakers; default 9 for the synthesiser, every speaker of the
        folder for a real source.
    n_utterances : int, default=8
        Utterances per speaker and mode.
    modes : sequence of {"neutral", "whisper"}, default=("neutral", "whisper")
    sample_rate : int, default=16000
    source : None, str or os.PathLike, default=None
        ``None`` for the synthesiser, or a folder of real speech.
    source_pattern : str, default="{label}_{speaker}_{take}.wav"
        File-name pattern of a real source (fields in braces; ``{speaker}`` required).
    duration : float, default=1.5
        Nominal utterance duration in seconds (synthetic utterances vary by the
        speaker's rate, about +/-20 %).
    devices : sequence of DeviceSpec, optional
        Custom devices instead of the defaults.
    variability : float, default=1.0
        Strength of the per-recording conditions that are not part of the device
        (ambient noise SNR, random room/placement EQ and tilt, gain and noise-floor
        jitter; see ``docs/datasets.md``). ``0`` records every utterance through the
        bare device chains (an easy corpus); larger values make it harder.
    random_state : int or None, default=0
        Seed of everything (speakers, sentences realisation, device randomness). The
        same value gives bit-identical audio. ``None`` draws a fresh seed.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``data``: 1-D object ndarray of float32 waveforms (n_recordings,), at
        ``sample_rate``; ``target``: device names; ``groups``: speaker ids
        (``"spk01"``, ... or the source's speaker names); ``mode``; ``utterance``:
        id shared by the parallel recordings (``"spk01_u03_neutral"``);
        ``sample_rate``; ``devices``; ``target_names``; ``device_info``: list of dicts
        describing each device chain; ``speaker_info``: dict of speaker parameters
        (synthesiser) or source files (real source); ``DESCR``.
        Recordings are ordered by device, then speaker, utterance and mode.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    TypeError, ValueError
        Invalid parameters (each named); ``n_speakers`` larger than the source has.
    FileNotFoundError
        ``source`` does not exist.

    Examples
    --------
    >>> b = make_device_corpus(n_devices=2, n_speakers=2, n_utterances=1, random_state=0)
    >>> len(b.data), b.devices
    (8, ['studio_condenser', 'voice_recorder_adpcm'])
    >>> b.utterance[:2].tolist(), b.data[0].dtype
    (['spk01_u01_neutral', 'spk01_u01_whisper'], dtype('float32'))
    """
    sr = check_sample_rate(sample_rate)
    if sr < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sr}")
    device_specs = _check_devices(devices, n_devices)
    n_utterances = _check_int(n_utterances, "n_utterances")
    if isinstance(modes, str):
        modes = (modes,)
    modes = list(dict.fromkeys(normalise_mode(m, "modes") for m in modes))
    if not modes:
        raise ValueError("modes is empty; use ('neutral',), ('whisper',) or both")
    if isinstance(duration, bool) or not isinstance(duration, Real) or not 0.2 <= duration <= 30:
        raise ValueError(f"duration must be a number of seconds in [0.2, 30], got {duration!r}")
    if isinstance(variability, bool) or not isinstance(variability, Real) or not 0 <= variability <= 3:
        raise ValueError(f"variability must be a number in [0, 3], got {variability!r}")
    seed = _seed(random_state)

    # Speakers.
    if source is None:
        n_speakers = 9 if n_speakers is None else _check_int(n_speakers, "n_speakers")
        spk_rng = np.random.default_rng([seed, 1])
        speakers = {
            f"spk{i + 1:02d}": draw_speaker(spk_rng, female=bool(i % 2)) for i in range(n_speakers)
        }
        speaker_info = {k: v.as_dict() for k, v in speakers.items()}
        src_desc = "built-in source-filter speech synthesiser"
    else:
        by_speaker = _source_speakers(source, source_pattern)
        names = sorted(by_speaker, key=natural_key)
        if n_speakers is None:
            n_speakers = len(names)
        n_speakers = _check_int(n_speakers, "n_speakers")
        if n_speakers > len(names):
            raise ValueError(
                f"n_speakers={n_speakers} but the speech source {os.fspath(source)!r} has only "
                f"{len(names)} speakers ({', '.join(names)})"
            )
        speakers = {s: by_speaker[s] for s in names[:n_speakers]}
        speaker_info = {s: {"n_files": len(v)} for s, v in speakers.items()}
        src_desc = f"real speech from {os.fspath(source)!r} (whisper by LPC whisperisation)"

    # Clean utterances (one per speaker, utterance, mode).
    clean = []  # (speaker, u, mode, waveform)
    for si, (spk, params) in enumerate(speakers.items()):
        for u in range(n_utterances):
            if source is not None:
                base = _real_utterance(params, sr, duration, np.random.default_rng([seed, 2, si, u]))
                level = np.random.default_rng([seed, 3, si, u]).normal(0.0, 1.5)
            for mode in modes:
                mi = 0 if mode == "neutral" else 1
                rng = np.random.default_rng([seed, 4, si, u, mi])
                if source is None:
                    x = synthesise_utterance(params, u, mode, sr, duration, rng)
                elif mode == "neutral":
                    x = _set_level(base, _NEUTRAL_DBFS + level)
                else:
                    x = _set_level(whisperise(base, sr, rng), _WHISPER_DBFS + level)
                clean.append((spk, u, mode, x))

    data, target, groups, mode_arr, utt = [], [], [], [], []
    for di, spec in enumerate(device_specs):
        for ci, (spk, u, mode, x) in enumerate(clean):
            rng = np.random.default_rng([seed, 5, di, ci])
            y = apply_device(x, spec, sr, rng, variability=variability).astype(np.float32)
            data.append(y)
            target.append(spec.name)
            groups.append(spk)
            mode_arr.append(mode)
            utt.append(f"{spk}_u{u + 1:02d}_{mode}")
    X = np.empty(len(data), dtype=object)
    X[:] = data

    lengths = np.array([len(x) for x in data]) / sr
    descr = "\n".join(
        [
            "Parallel multi-device speech corpus made by devicepool.datasets.make_device_corpus",
            "",
            f"Source: {src_desc}. Every utterance is recorded by every device; each device",
            "is a seeded chain: measured microphone impulse response (MicIRP collection,",
            "micirp.blogspot.com & Xaudia.com), band limits, noise floor, gain/clipping and a",
            "real libsndfile codec round trip.",
            "",
            f"- devices ({len(device_specs)}): " + ", ".join(d.name for d in device_specs),
            f"- speakers: {len(speakers)}, utterances per speaker and mode: {n_utterances}",
            f"- modes: {', '.join(modes)}",
            f"- recordings: {len(data)} ({lengths.min():.2f}-{lengths.max():.2f} s, "
            f"mean {lengths.mean():.2f} s) at {sr} Hz",
            f"- variability: {variability}, random_state: {random_state}",
        ]
        + [f"  * {d.name}: {d.description}" for d in device_specs]
    )
    return finish_bunch(
        data=X,
        target=target,
        groups=groups,
        mode=mode_arr,
        utterance=utt,
        sample_rate=sr,
        descr=descr,
        return_X_y=return_X_y,
        extra={
            "device_info": [d.as_dict() for d in device_specs],
            "speaker_info": speaker_info,
        },
    )
