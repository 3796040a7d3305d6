"""Embedded parallel multi-device corpus: :func:`make_device_corpus`.

The speaking-mode conversions (:func:`whisperise`, :func:`vocalise`,
:func:`whisperise_recordings`, :func:`vocalise_recordings`) live in
:mod:`devicepool.datasets._modes` and are re-exported here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .._text import plain
from .._typing import PathLike
from .._validation import Interval, validate_params
from ..audio import check_sample_rate, read_audio_file
from ._base import check_root, finish_corpus, natural_key, normalise_mode
from ._devices import DEFAULT_DEVICES, DeviceSpec, apply_device
from ._modes import _COPIES_CONSTRAINTS as _COPIES_CONSTRAINTS
from ._modes import _SEED, vocalise, vocalise_recordings, whisperise, whisperise_recordings
from ._modes import _lpc_resynthesis as _lpc_resynthesis
from ._modes import _recording_copies as _recording_copies
from ._synth import draw_speaker, synthesise_utterance

if TYPE_CHECKING:
    from ._base import Corpus

__all__ = ["make_device_corpus", "vocalise", "vocalise_recordings", "whisperise",
           "whisperise_recordings"]

_NEUTRAL_DBFS = -20.0
_WHISPER_DBFS = -32.0


_COUNT = Interval(Integral, 1, None, closed="left")


def _seed(random_state):
    """The corpus's root seed: ``random_state`` (validated already), or a fresh one."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    return int(random_state)


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
    for j in order:
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
    """Scale ``x`` to ``level_db`` dBFS RMS over its active part, peak limited to 0.9."""
    active = np.abs(x) > 1e-3 * max(np.abs(x).max(), 1e-12)
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0
    y = x * (10 ** (level_db / 20.0) / max(rms, 1e-12))
    peak = np.abs(y).max()
    return y * (0.9 / peak) if peak > 0.9 else y


def _check_devices(devices, n_devices):
    """The device chains: the first ``n_devices`` defaults, or the checked ``devices``."""
    if devices is None:
        if n_devices is None:
            n_devices = 6
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
        raise ValueError(f"device names must be unique, got {plain(names)}")
    if n_devices is not None and n_devices != len(devices):
        raise ValueError(f"n_devices={n_devices} but {len(devices)} devices were given")
    return devices


_CORPUS_CONSTRAINTS = {
    "n_devices": [_COUNT, None],
    "n_speakers": [_COUNT, None],
    "n_utterances": [_COUNT],
    "modes": [str, "array-like"],
    "sample_rate": [Interval(Integral, 8000, None, closed="left")],
    "source": ["path-like", None],
    "source_pattern": [str],
    "duration": [Interval(Real, 0.2, 30, closed="both")],
    "devices": ["array-like", None],
    "variability": [Interval(Real, 0, 3, closed="both")],
    "random_state": [_SEED, None],
    "return_X_y": ["boolean"],
}


class _CorpusPlan(NamedTuple):
    """The validated settings of one :func:`make_device_corpus` call."""

    sr: int
    devices: list  # of DeviceSpec
    n_utterances: int
    modes: list  # of "neutral"/"whisper", in the caller's order
    duration: float
    variability: float
    seed: int  # root seed of every generator


class _Speakers(NamedTuple):
    """The corpus's speakers and what the corpus and DESCR say about them."""

    params: dict  # {name: SpeakerParams} (synthesiser) or {name: [paths]} (real source)
    info: dict  # the corpus's ``speaker_info``
    description: str  # the source, for DESCR
    real: bool  # True for a folder of real speech


class _Clean(NamedTuple):
    """One clean (device-free) utterance."""

    speaker: str
    index: int
    mode: str
    x: np.ndarray


class _Recordings(NamedTuple):
    """The corpus's recordings, ordered by device, then speaker, utterance and mode."""

    data: np.ndarray  # object array of float32 waveforms
    target: list
    groups: list
    mode: list
    utterance: list


def _check_modes(modes):
    """``modes`` as a list of distinct normalised mode names, in the given order."""
    if isinstance(modes, str):
        modes = (modes,)
    modes = list(dict.fromkeys(normalise_mode(m, "modes") for m in modes))
    if not modes:
        raise ValueError("modes is empty; use ('neutral',), ('whisper',) or both")
    return modes


def _synthetic_speakers(n_speakers, seed):
    """``n_speakers`` (default 9) synthesiser speakers, alternately male and female."""
    n_speakers = 9 if n_speakers is None else int(n_speakers)
    spk_rng = np.random.default_rng([seed, 1])
    speakers = {
        f"spk{i + 1:02d}": draw_speaker(spk_rng, female=bool(i % 2)) for i in range(n_speakers)
    }
    return _Speakers(
        params=speakers,
        info={k: v.as_dict() for k, v in speakers.items()},
        description="built-in source-filter speech synthesiser",
        real=False,
    )


def _real_speakers(source, source_pattern, n_speakers):
    """The first ``n_speakers`` (default all) speakers of a real-speech folder."""
    by_speaker = _source_speakers(source, source_pattern)
    names = sorted(by_speaker, key=natural_key)
    n_speakers = len(names) if n_speakers is None else int(n_speakers)
    if n_speakers > len(names):
        raise ValueError(
            f"n_speakers={n_speakers} but the speech source {os.fspath(source)!r} has only "
            f"{len(names)} speakers ({', '.join(names)})"
        )
    speakers = {s: by_speaker[s] for s in names[:n_speakers]}
    return _Speakers(
        params=speakers,
        info={s: {"n_files": len(v)} for s, v in speakers.items()},
        description=f"real speech from {os.fspath(source)!r} (whisper by LPC whisperisation)",
        real=True,
    )


def _clean_utterances(plan, speakers):
    """The clean utterances, one per (speaker, utterance, mode), in that order.

    Every utterance has its own generators seeded from ``plan.seed``: ``[seed, 2, si, u]``
    (real source: the files drawn), ``[seed, 3, si, u]`` (real source: level offset) and
    ``[seed, 4, si, u, mi]`` (synthesis or whisperisation of mode ``mi``).
    """
    sr, seed = plan.sr, plan.seed
    clean = []
    for si, (spk, params) in enumerate(speakers.params.items()):
        for u in range(plan.n_utterances):
            if speakers.real:
                base = _real_utterance(params, sr, plan.duration, np.random.default_rng([seed, 2, si, u]))
                level = np.random.default_rng([seed, 3, si, u]).normal(0.0, 1.5)
            for mode in plan.modes:
                mi = 0 if mode == "neutral" else 1
                rng = np.random.default_rng([seed, 4, si, u, mi])
                if not speakers.real:
                    x = synthesise_utterance(params, u, mode, sr, plan.duration, rng)
                elif mode == "neutral":
                    x = _set_level(base, _NEUTRAL_DBFS + level)
                else:
                    x = _set_level(whisperise(base, sr, rng), _WHISPER_DBFS + level)
                clean.append(_Clean(spk, u, mode, x))
    return clean


def _record(plan, clean):
    """Every clean utterance through every device chain (generator ``[seed, 5, di, ci]``)."""
    data, target, groups, mode_arr, utt = [], [], [], [], []
    for di, spec in enumerate(plan.devices):
        for ci, (spk, u, mode, x) in enumerate(clean):
            rng = np.random.default_rng([plan.seed, 5, di, ci])
            y = apply_device(x, spec, plan.sr, rng, variability=plan.variability).astype(np.float32)
            data.append(y)
            target.append(spec.name)
            groups.append(spk)
            mode_arr.append(mode)
            utt.append(f"{spk}_u{u + 1:02d}_{mode}")
    X = np.empty(len(data), dtype=object)
    X[:] = data
    return _Recordings(X, target, groups, mode_arr, utt)


def _corpus_descr(plan, speakers, recordings, random_state):
    """The corpus's DESCR."""
    lengths = np.array([len(x) for x in recordings.data]) / plan.sr
    return "\n".join(
        [
            "Parallel multi-device speech corpus made by devicepool.datasets.make_device_corpus",
            "",
            f"Source: {speakers.description}. Every utterance is recorded by every device; each device",
            "is a seeded chain: measured microphone impulse response (MicIRP collection,",
            "micirp.blogspot.com & Xaudia.com), band limits, noise floor, gain/clipping and a",
            "real libsndfile codec round trip.",
            "",
            f"- devices ({len(plan.devices)}): " + ", ".join(d.name for d in plan.devices),
            f"- speakers: {len(speakers.params)}, utterances per speaker and mode: {plan.n_utterances}",
            f"- modes: {', '.join(plan.modes)}",
            f"- recordings: {len(recordings.data)} ({lengths.min():.2f}-{lengths.max():.2f} s, "
            f"mean {lengths.mean():.2f} s) at {plan.sr} Hz",
            f"- variability: {plan.variability}, random_state: {random_state}",
        ]
        + [f"  * {d.name}: {d.description}" for d in plan.devices]
    )


def make_device_corpus(
    n_devices: int | None = None,
    n_speakers: int | None = None,
    n_utterances: int = 8,
    *,
    modes: str | Sequence[str] = ("neutral", "whisper"),
    sample_rate: int = 16000,
    source: PathLike | None = None,
    source_pattern: str = "{label}_{speaker}_{take}.wav",
    duration: float = 1.5,
    devices: Sequence[DeviceSpec] | None = None,
    variability: float = 1.0,
    random_state: int | None = 0,
    return_X_y: bool = False,
) -> Corpus | tuple[np.ndarray, np.ndarray]:
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
        Return ``(data, target)`` instead of the corpus.

    Returns
    -------
    corpus : Corpus
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
    sr = check_sample_rate(sample_rate, owner="make_device_corpus")
    validate_params(
        dict(n_devices=n_devices, n_speakers=n_speakers, n_utterances=n_utterances,
             modes=modes, sample_rate=sr, source=source, source_pattern=source_pattern,
             duration=duration, devices=devices, variability=variability,
             random_state=random_state, return_X_y=return_X_y),
        _CORPUS_CONSTRAINTS, owner="make_device_corpus",
    )
    plan = _CorpusPlan(
        sr=sr,
        devices=_check_devices(devices, n_devices),
        n_utterances=int(n_utterances),
        modes=_check_modes(modes),
        duration=duration,
        variability=variability,
        seed=_seed(random_state),
    )
    if source is None:
        speakers = _synthetic_speakers(n_speakers, plan.seed)
    else:
        speakers = _real_speakers(source, source_pattern, n_speakers)
    recordings = _record(plan, _clean_utterances(plan, speakers))
    return finish_corpus(
        data=recordings.data,
        target=recordings.target,
        groups=recordings.groups,
        mode=recordings.mode,
        utterance=recordings.utterance,
        sample_rate=sr,
        descr=_corpus_descr(plan, speakers, recordings, random_state),
        return_X_y=return_X_y,
        extra={
            "device_info": [d.as_dict() for d in plan.devices],
            "speaker_info": speakers.info,
        },
    )
