"""A population of simulated recording devices: :func:`random_device`, :func:`random_devices`.

Each device is drawn from distributions over every part the synthesiser knows (see
:mod:`devicepool.datasets._devices`) and is rebuilt exactly from its seed:

===================  ==============================================================
microphone           uniform over the given measured impulse responses
parametric EQ        1-4 RBJ sections: low shelf (60-400 Hz, +/-6 dB), high shelf
                     (2-8 kHz, +/-8 dB), peaks (150 Hz-7 kHz, +/-8 dB, Q 0.5-3),
                     resonances (1-7 kHz, +3..+12 dB, Q 4-12)
band corners         high-pass 20-400 Hz (log-uniform); low-pass 2.8-3.9 kHz for a
                     narrow-band converter, 3.5-20 kHz otherwise (log-uniform)
codec and rate       uniform over the 13 codecs of ``CODECS`` (fixed list); the
                     telephone codecs (u-law, A-law, GSM, G.72x) at 8 kHz; the others
                     at 8, 11.025, 16, 22.05, 32 or 44.1 kHz or the corpus rate;
                     compression level U(0, 1) for MP3 / Vorbis / Opus
noise floor          -88 to -48 dBFS, white / pink / brown; mains hum (p = 0.2) at
                     -70 to -45 dBFS
gain and overload    gain N(0, 4) dB; converter full scale 1.0, or (p = 0.25)
                     U(0.3, 0.9); soft ``tanh`` overload with p = 0.3
AGC                  p = 0.3, target U(-30, -14) dBFS
===================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from pathlib import Path

import numpy as np

from .._validation import Interval, validate_params
from ._devices import CODECS, DEFAULT_DEVICES, DeviceSpec

__all__ = ["DEFAULT_MICROPHONES", "SIBLING_MICROPHONES", "microphone_files", "random_device",
           "random_devices", "speech_sources"]

#: The microphones of the default corpus (``DEFAULT_DEVICES``): a population meant for
#: devices never heard leaves them out by default.
DEFAULT_MICROPHONES = tuple(sorted({d.mic for d in DEFAULT_DEVICES}))
#: Other measurements of the default corpus's microphones in the MicIRP collection (the
#: same model with a high-pass setting, another unit, a faulty unit): left out too, so that
#: no evaluation microphone is heard in another guise.
SIBLING_MICROPHONES = ("EV_RE20_HPF", "IR_AKG_FaultyD12", "RCA_44BX_2", "Shure315_HPF")

_TELEPHONE = ("ulaw", "alaw", "gsm610", "g721", "g723_24", "g723_40")
_RATES = (8000, 11025, 16000, 22050, 32000, 44100, None)
_LOSSY = ("mp3", "vorbis", "opus")


def microphone_files(folder, exclude=DEFAULT_MICROPHONES + SIBLING_MICROPHONES):
    """The measured impulse responses (``*.wav``) of ``folder``, minus ``exclude`` (stems).

    Parameters
    ----------
    folder : str or os.PathLike
        A folder of impulse-response WAV files (e.g. ``shared/data/micirp``).
    exclude : sequence of str, default=DEFAULT_MICROPHONES + SIBLING_MICROPHONES
        Stems to leave out (by default the 12 microphones of the default corpus and the
        4 other measurements of them).

    Returns
    -------
    paths : list of str
        Sorted paths.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"microphone folder {str(root)!r} does not exist")
    paths = sorted(str(p) for p in root.glob("*.wav") if p.stem not in set(exclude))
    if not paths:
        raise ValueError(f"microphone folder {str(root)!r} has no WAV file outside {list(exclude)}")
    return paths


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _draw_eq(rng):
    sections = []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.choice(["lowshelf", "highshelf", "peak", "resonance"], p=[0.2, 0.25, 0.35, 0.2])
        if kind == "lowshelf":
            sections.append(("lowshelf", _log_uniform(rng, 60, 400), rng.uniform(-6, 6), 0.707))
        elif kind == "highshelf":
            sections.append(("highshelf", _log_uniform(rng, 2000, 8000), rng.uniform(-8, 8), 0.707))
        elif kind == "peak":
            sections.append(("peak", _log_uniform(rng, 150, 7000), rng.uniform(-8, 8),
                             rng.uniform(0.5, 3.0)))
        else:
            sections.append(("peak", _log_uniform(rng, 1000, 7000), rng.uniform(3, 12),
                             rng.uniform(4.0, 12.0)))
    return tuple((k, round(float(f), 2), round(float(g), 2), round(float(q), 3))
                 for k, f, g, q in sections)


def random_device(seed, microphones, *, name=None):
    """One simulated device, drawn reproducibly from ``seed``.

    Parameters
    ----------
    seed : int or sequence of int
        The device's seed (``numpy.random.default_rng(seed)``): the same seed gives the
        same device.
    microphones : sequence of str
        Microphones to draw from: stems of the shipped responses or WAV paths.
    name : str, optional
        The device's label; default ``"sim-<seed>"``.

    Returns
    -------
    device : DeviceSpec
    """
    rng = np.random.default_rng(seed)
    mic = str(microphones[int(rng.integers(len(microphones)))])
    # from the fixed codec list, not from what this machine's libsndfile can write: the same
    # seed gives the same device everywhere (a codec missing here fails when it records)
    codec = str(rng.choice(list(CODECS)))
    if codec in _TELEPHONE:
        rate = 8000
    else:
        rate = _RATES[int(rng.integers(len(_RATES)))]
    if rate == 8000:
        band_hi = rng.uniform(2800, 3900)
    else:
        band_hi = _log_uniform(rng, 3500, 20000)
    band = (round(_log_uniform(rng, 20, 400), 1), round(float(band_hi), 1))
    hum = float(rng.uniform(-70, -45)) if rng.random() < 0.2 else None
    clip = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.25 else 1.0
    agc = float(rng.uniform(-30, -14)) if rng.random() < 0.3 else None
    label = name if name is not None else "sim-" + "-".join(str(int(s)) for s in np.atleast_1d(seed))
    return DeviceSpec(
        name=label, mic=mic, codec=codec, codec_rate=rate, band=band,
        noise_dbfs=float(rng.uniform(-88, -48)),
        noise_color=str(rng.choice(["white", "pink", "brown"])),
        hum_dbfs=hum, gain_db=float(rng.normal(0, 4)), clip=clip,
        soft_clip=bool(rng.random() < 0.3),
        compression_level=float(rng.uniform(0, 1)) if codec in _LOSSY else None,
        description=f"simulated: {Path(mic).stem} + EQ, {codec} at {rate or 'corpus'} Hz",
        eq=_draw_eq(rng), agc=agc,
    )


def random_devices(n: int, random_state: int = 0, *, microphones: Sequence[str] | None = None,
                   start: int = 0) -> list[DeviceSpec]:
    """``n`` distinct simulated devices from a seeded population.

    Device ``i`` is ``random_device((random_state, start + i), microphones)``: it does not
    depend on ``n``, so a larger population extends a smaller one, and disjoint
    ``start`` ranges give disjoint devices (e.g. training and calibration populations).

    Parameters
    ----------
    n : int
        Number of devices.
    random_state : int, default=0
        The population's seed.
    microphones : sequence of str
        Microphones to draw from (stems or WAV paths, see :func:`microphone_files`).
        Required: the package ships only the 12 responses of the default corpus, which
        a population meant for unseen devices leaves out.
    start : int, default=0
        Index of the first device.

    Returns
    -------
    devices : list of DeviceSpec
        Named ``"sim-<random_state>-<index>"``.

    Examples
    --------
    >>> from devicepool.datasets import random_devices
    >>> a = random_devices(3, 7, microphones=["Toshiba_BK5", "Sony_C37Fet"])
    >>> b = random_devices(5, 7, microphones=["Toshiba_BK5", "Sony_C37Fet"])
    >>> a == b[:3], len({d.name for d in b})
    (True, 5)
    """
    validate_params({"n": n, "random_state": random_state, "start": start},
                    {"n": [Interval(Integral, 1, None, closed="left")],
                     "random_state": [Interval(Integral, 0, None, closed="left")],
                     "start": [Interval(Integral, 0, None, closed="left")]},
                    owner="random_devices")
    if microphones is None or len(microphones) == 0:
        raise ValueError(
            "random_devices: pass microphones= (e.g. microphone_files('shared/data/micirp')): "
            "the shipped responses are those of the default corpus, which a population of "
            "unseen devices leaves out"
        )
    mics = [str(m) for m in microphones]
    return [random_device((int(random_state), int(start) + i), mics) for i in range(int(n))]


def speech_sources(n_synthetic: int = 400, utterances_per_speaker: int = 4, *,
                   source=None, source_pattern: str = "{label}_{speaker}_{take}.wav",
                   source_speakers: Sequence[str] | None = None, n_real: int = 300,
                   whisper_fraction: float = 0.4, vocalise_fraction: float = 0.1,
                   duration: float = 2.0, sample_rate: int = 16000, random_state: int = 0):
    """Clean (device-free) speech for a device population: synthetic and real, both modes.

    * ``n_synthetic`` synthesiser speakers (alternately male and female), each saying
      ``utterances_per_speaker`` sentences numbered from 1000 (the embedded corpus uses
      the first ones), a fraction ``whisper_fraction`` of them whispered;
    * ``n_real`` utterances per speaker of a real-speech folder (``source``; speakers
      ``source_speakers``, default all), made as :func:`make_device_corpus` makes them,
      a fraction ``whisper_fraction`` whisperised (:func:`whisperise`);
    * a fraction ``vocalise_fraction`` of the whispered utterances of either kind also
      gives a vocalised copy (:func:`vocalise`, pitched again: neutral-like).

    Levels: neutral about -20 dBFS, whisper about -32 dBFS, jittered N(0, 3) dB.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``data`` (object array of float64 waveforms at ``sample_rate``), ``speaker``,
        ``mode`` (``"neutral"``/``"whisper"``), ``kind`` (``"synthetic"``, ``"real"``,
        ``"vocalised"``), ``sample_rate``.
    """
    from sklearn.utils import Bunch

    from ._modes import vocalise, whisperise
    from ._synth import draw_speaker, synthesise_utterance
    from .corpus import _real_utterance, _set_level, _source_speakers

    sr = int(sample_rate)
    rows = []  # (x, speaker, mode, kind)
    spk_rng = np.random.default_rng([random_state, 101])
    for i in range(int(n_synthetic)):
        params = draw_speaker(spk_rng, female=bool(i % 2))
        for u in range(int(utterances_per_speaker)):
            rng = np.random.default_rng([random_state, 102, i, u])
            mode = "whisper" if rng.random() < whisper_fraction else "neutral"
            rows.append((synthesise_utterance(params, 1000 + (i * 7 + u) % 5000, mode, sr, duration, rng),
                         f"synth{i:04d}", mode, "synthetic"))
    if source is not None:
        by_speaker = _source_speakers(source, source_pattern)
        names = sorted(by_speaker) if source_speakers is None else list(source_speakers)
        missing = [s for s in names if s not in by_speaker]
        if missing:
            raise ValueError(f"speech_sources: speakers {missing} are not in {str(source)!r} "
                             f"(it has {sorted(by_speaker)})")
        for si, spk in enumerate(names):
            for u in range(int(n_real)):
                rng = np.random.default_rng([random_state, 103, si, u])
                base = _real_utterance(by_speaker[spk], sr, duration, rng)
                level = rng.normal(0.0, 3.0)
                if rng.random() < whisper_fraction:
                    x = _set_level(whisperise(base, sr, rng), -32.0 + level)
                    rows.append((x, spk, "whisper", "real"))
                else:
                    rows.append((_set_level(base, -20.0 + level), spk, "neutral", "real"))
    for j, (x, spk, mode, _kind) in enumerate(list(rows)):
        rng = np.random.default_rng([random_state, 104, j])
        if mode == "whisper" and rng.random() < vocalise_fraction:
            rows.append((_set_level(vocalise(x, sr, rng), -20.0 + rng.normal(0, 3)), spk, "neutral",
                         "vocalised"))
    data = np.empty(len(rows), dtype=object)
    data[:] = [r[0] for r in rows]
    return Bunch(data=data, speaker=np.array([r[1] for r in rows]), mode=np.array([r[2] for r in rows]),
                 kind=np.array([r[3] for r in rows]), sample_rate=sr)
