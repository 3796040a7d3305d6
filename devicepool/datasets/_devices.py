"""Simulated recording devices built from real components.

A device is a seeded chain applied to a clean utterance:

1. **recording conditions** (per recording, scaled by ``variability``): ambient
   noise at a random SNR, a random first-order tilt and a smooth random EQ (room and
   talker placement), random gain; different for every recording;
2. **microphone**: convolution with a *measured* microphone impulse response shipped in
   ``devicepool/datasets/data/micirp`` (MicIRP collection, micirp.blogspot.com &
   Xaudia.com) or in any WAV file the spec names by path, normalised to 0 dB at 1 kHz;
3. **analogue band limits**: 2nd-order Butterworth high-pass / low-pass of the input stage;
   then the device's own parametric EQ (shelves, peaks, resonances; ``DeviceSpec.eq``);
4. **self-noise**: coloured noise (white, pink or brown) at the device's floor, jittered
   per recording, plus optional mains hum (50 Hz and harmonics);
5. **gain, AGC and clipping**: the recording gain, an optional automatic gain control
   (``DeviceSpec.agc``), then hard clipping at the converter's full scale (or a soft
   ``tanh`` overload);
6. **converter and codec**: resampling to the codec rate (8 kHz for narrow-band phones,
   with the polyphase anti-alias filter), then a real encode/decode round trip through
   libsndfile (via :mod:`soundfile`, in memory): 16-bit PCM, u-law, A-law, GSM 6.10,
   G.721/G.723 ADPCM, IMA/MS ADPCM, MP3, Vorbis or Opus; then resampling back to the
   corpus rate.
"""

from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .._validation import Interval, InvalidParameterError, StrOptions, validate_params

__all__ = [
    "DeviceSpec",
    "DEFAULT_DEVICES",
    "available_codecs",
    "codec_roundtrip",
    "apply_device",
    "microphone_names",
    "eq_response",
]

MIC_DIR = Path(__file__).resolve().parent / "data" / "micirp"

# Codec name -> (container format, libsndfile subtype, allowed rates or None for any).
CODECS = {
    "pcm16": ("WAV", "PCM_16", None),
    "pcm24": ("FLAC", "PCM_24", None),
    "ulaw": ("WAV", "ULAW", None),
    "alaw": ("WAV", "ALAW", None),
    "gsm610": ("WAV", "GSM610", None),
    "g721": ("WAV", "G721_32", None),
    "g723_24": ("AU", "G723_24", None),
    "g723_40": ("AU", "G723_40", None),
    "ima_adpcm": ("WAV", "IMA_ADPCM", None),
    "ms_adpcm": ("WAV", "MS_ADPCM", None),
    "mp3": ("MP3", "MPEG_LAYER_III", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "vorbis": ("OGG", "VORBIS", None),
    "opus": ("OGG", "OPUS", (8000, 12000, 16000, 24000, 48000)),
}


@dataclass(frozen=True)
class DeviceSpec:
    """Description of one simulated recording device.

    Parameters
    ----------
    name : str
        Label used as the class (``target``).
    mic : str
        Stem of a measured impulse response in ``datasets/data/micirp`` (see
        :func:`microphone_names`), or the path of a WAV file holding one (``.wav``).
    codec : str
        Key of the codec (``"pcm16"``, ``"ulaw"``, ``"alaw"``, ``"gsm610"``, ``"g721"``,
        ``"g723_24"``, ``"g723_40"``, ``"ima_adpcm"``, ``"ms_adpcm"``, ``"mp3"``,
        ``"vorbis"``, ``"opus"``, ``"pcm24"``).
    codec_rate : int or None
        Rate of the converter and codec in Hz (8000 = narrow-band telephone). ``None``
        uses the corpus rate (or the nearest rate the codec supports).
    band : (float, float)
        Analogue high-pass and low-pass corners in Hz (low-pass capped below Nyquist).
    noise_dbfs : float
        RMS level of the self-noise in dB re full scale.
    noise_color : {"white", "pink", "brown"}
    hum_dbfs : float or None
        Level of mains hum (50 Hz + 3 harmonics), or None.
    gain_db : float
        Mean recording gain in dB.
    clip : float or None
        Converter full scale (hard clip) as a fraction of 1.0, or None.
    soft_clip : bool
        Use ``tanh`` overload instead of hard clipping.
    compression_level : float or None
        libsndfile compression level (0 = best quality, 1 = smallest) for lossy codecs.
    description : str
        One line of prose for the docs.
    eq : tuple of (kind, freq, gain_db, q), default=()
        The device's parametric EQ after the microphone: RBJ biquad sections, ``kind``
        one of ``"peak"``, ``"lowshelf"``, ``"highshelf"``; ``freq`` in Hz, ``gain_db``
        in dB, ``q`` > 0 (a resonance is a peak of high ``q``).
    agc : float or None, default=None
        Automatic gain control: the target RMS level in dBFS of a slow gain control
        (20 ms frames, 50 ms attack, 500 ms release, at most +/-20 dB), applied after the
        recording gain and before clipping; None for none.
    """

    name: str
    mic: str
    codec: str = "pcm16"
    codec_rate: int | None = None
    band: tuple = (50.0, 20000.0)
    noise_dbfs: float = -75.0
    noise_color: str = "white"
    hum_dbfs: float | None = None
    gain_db: float = 0.0
    clip: float | None = 1.0
    soft_clip: bool = False
    compression_level: float | None = None
    description: str = ""
    eq: tuple = ()
    agc: float | None = None

    # a plain class attribute (no annotation), so not a dataclass field
    _parameter_constraints = {
        "name": [str],
        "mic": [str],
        "codec": [StrOptions(set(CODECS))],
        "codec_rate": [Interval(Integral, 4000, 192000, closed="both"), None],
        "band": ["array-like"],
        "noise_dbfs": [Interval(Real, None, None, closed="neither")],
        "noise_color": [StrOptions({"white", "pink", "brown"})],
        "hum_dbfs": [Interval(Real, None, None, closed="neither"), None],
        "gain_db": [Interval(Real, None, None, closed="neither")],
        "clip": [Interval(Real, 0, 1, closed="right"), None],
        "soft_clip": ["boolean"],
        "compression_level": [Interval(Real, 0, 1, closed="both"), None],
        "description": [str],
        "eq": [tuple, list],
        "agc": [Interval(Real, -80, 0, closed="both"), None],
    }

    def __post_init__(self):
        owner = f"DeviceSpec {self.name!r}"
        validate_params(asdict(self), self._parameter_constraints, owner=owner)
        if len(self.band) != 2 or not all(
            isinstance(b, Real) and not isinstance(b, bool) for b in self.band
        ) or not 0 <= self.band[0] < self.band[1]:
            raise InvalidParameterError(
                f"The 'band' parameter of {owner} must be (low, high) Hz with "
                f"0 <= low < high; got {self.band!r}."
            )
        for section in self.eq:
            _check_eq_section(section, owner)

    def as_dict(self):
        """The specification as a plain dict (``device_info`` entries)."""
        d = asdict(self)
        d["band"] = tuple(float(b) for b in self.band)
        # the parts added in 0.5 appear only when used, so older fingerprints still hold
        if self.eq:
            d["eq"] = [list(sec) for sec in self.eq]
        else:
            del d["eq"]
        if self.agc is None:
            del d["agc"]
        return d


_EQ_KINDS = ("peak", "lowshelf", "highshelf")


def _check_eq_section(section, owner):
    ok = (isinstance(section, (tuple, list)) and len(section) == 4 and section[0] in _EQ_KINDS
          and all(isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)
                  for v in section[1:]))
    if not ok or section[1] <= 0 or section[3] <= 0:
        raise InvalidParameterError(
            f"Each 'eq' section of {owner} must be (kind, freq, gain_db, q) with kind in "
            f"{_EQ_KINDS}, freq > 0 Hz and q > 0; got {section!r}."
        )


#: Default devices, in the order ``make_device_corpus(n_devices=k)`` takes them.
DEFAULT_DEVICES = (
    DeviceSpec(
        "studio_condenser", "Sony_C37Fet", "pcm16", None, (40.0, 20000.0), -80.0, "white",
        None, 0.0, 1.0, False, None,
        "Sony C-37 FET condenser mic, 16-bit PCM at the corpus rate, very low noise",
    ),
    DeviceSpec(
        "voice_recorder_adpcm", "Beyer_M260", "ima_adpcm", None, (120.0, 7000.0), -66.0, "pink",
        None, 4.0, 0.5, True, None,
        "Beyer M260 ribbon capsule, IMA ADPCM at the corpus rate, hot gain with soft overload",
    ),
    DeviceSpec(
        "phone_gsm", "Toshiba_BK5", "gsm610", 8000, (300.0, 3400.0), -62.0, "white",
        None, 0.0, 1.0, False, None,
        "Toshiba BK5 capsule, telephone band 300-3400 Hz, GSM 6.10 full-rate codec at 8 kHz",
    ),
    DeviceSpec(
        "landline_alaw", "IR_ResloCR600", "alaw", 8000, (300.0, 3400.0), -64.0, "brown",
        -58.0, 0.0, 1.0, False, None,
        "Reslo CR600 capsule, telephone band, G.711 A-law at 8 kHz, 50 Hz mains hum",
    ),
    DeviceSpec(
        "podcast_vorbis", "RCA_44BX_1", "vorbis", None, (60.0, 15000.0), -72.0, "pink",
        None, 0.0, 1.0, False, 0.5,
        "RCA 44-BX ribbon mic, Ogg Vorbis (quality 0.5)",
    ),
    DeviceSpec(
        "landline_ulaw", "Reslo_RB250", "ulaw", 8000, (300.0, 3400.0), -64.0, "brown",
        None, 0.0, 1.0, False, None,
        "Reslo RB250 ribbon capsule, telephone band, G.711 u-law at 8 kHz",
    ),
    DeviceSpec(
        "dect_g721", "IR_AKGD12", "g721", 8000, (200.0, 3600.0), -60.0, "white",
        None, 0.0, 1.0, False, None,
        "AKG D12 dynamic capsule, G.721 32 kbit/s ADPCM at 8 kHz (DECT-like)",
    ),
    DeviceSpec(
        "voice_memo_mp3", "Shure315_flat", "mp3", None, (80.0, 16000.0), -70.0, "pink",
        None, -2.0, 1.0, False, 0.6,
        "Shure 315 dynamic mic, MP3 (LAME, compression level 0.6) at the corpus rate",
    ),
    DeviceSpec(
        "voip_opus", "IR_OktavaMD57", "opus", 8000, (100.0, 3800.0), -60.0, "white",
        None, 0.0, 1.0, False, 0.5,
        "Oktava MD57 dynamic capsule, narrow-band Opus at 8 kHz (VoIP)",
    ),
    DeviceSpec(
        "laptop_ms_adpcm", "Telefunken_M201", "ms_adpcm", None, (150.0, 7500.0), -56.0, "white",
        None, 2.0, 1.0, False, None,
        "Telefunken M201 capsule, Microsoft ADPCM, noisy input (fan)",
    ),
    DeviceSpec(
        "intercom_g723", "IR_Shure510C", "g723_24", 8000, (250.0, 3400.0), -58.0, "pink",
        -60.0, 0.0, 1.0, False, None,
        "Shure 510C crystal mic, G.723 24 kbit/s ADPCM at 8 kHz, hum",
    ),
    DeviceSpec(
        "broadcast_flac", "EV_RE20_Flat", "pcm24", None, (45.0, 20000.0), -82.0, "pink",
        None, -3.0, 1.0, False, None,
        "Electro-Voice RE20 broadcast dynamic, 24-bit FLAC",
    ),
)


def microphone_names():
    """Stems of the shipped measured microphone impulse responses."""
    return sorted(p.stem for p in MIC_DIR.glob("*.wav"))


@functools.lru_cache(maxsize=64)
def _mic_ir(name, sample_rate):
    import soundfile as sf

    from ..audio import resample

    path = Path(name) if name.lower().endswith(".wav") else MIC_DIR / f"{name}.wav"
    if not path.is_file():
        raise ValueError(
            f"unknown microphone {name!r}: no impulse response {str(path)!r}; choose one of "
            f"{microphone_names()} or name a WAV file by its path"
        )
    h, rate = sf.read(str(path), dtype="float64")
    if h.ndim > 1:
        h = h.mean(axis=1)
    h = resample(h, int(rate), int(sample_rate))
    # Normalise to 0 dB at 1 kHz so that the device keeps the response's colouration
    # but not an arbitrary overall gain.
    n = 1 << int(np.ceil(np.log2(max(len(h), 256) * 4)))
    H = np.abs(np.fft.rfft(h, n))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    ref = H[(f > 800) & (f < 1250)].mean()
    h = h / ref
    h.setflags(write=False)
    return h


def available_codecs():
    """Codec keys that this libsndfile can write and read back (checked once).

    Returns
    -------
    codecs : list of str
    """
    return list(_working_codecs())


@functools.lru_cache(maxsize=1)
def _working_codecs():
    out = []
    x = 0.1 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000.0)
    for key in CODECS:
        try:
            y = codec_roundtrip(x, 8000, key)
        except Exception:
            continue
        if len(y) == len(x) and np.isfinite(y).all():
            out.append(key)
    return tuple(out)


def _codec_rate(codec, rate):
    allowed = CODECS[codec][2]
    if allowed is None or rate in allowed:
        return int(rate)
    higher = [r for r in allowed if r >= rate]
    return int(min(higher) if higher else max(allowed))


def codec_roundtrip(x, rate, codec, compression_level=None):
    """Encode ``x`` with a libsndfile codec in memory and decode it back.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        Samples in [-1, 1] (clipped to that range first, like a converter).
    rate : int
        Sample rate in Hz; must be one the codec supports (see ``CODECS``).
    codec : str
        Key of ``CODECS``.
    compression_level : float, optional
        0 (best) to 1 (smallest) for MP3/Vorbis/Opus/FLAC.

    Returns
    -------
    y : ndarray of shape (n_samples,), float64
        Decoded samples, trimmed or zero-padded to the input length.

    Examples
    --------
    >>> import numpy as np
    >>> x = 0.3 * np.sin(np.arange(800) * 0.3)
    >>> y = codec_roundtrip(x, 8000, "ulaw")
    >>> y.shape, bool(np.abs(y - x).max() < 0.02)
    ((800,), True)
    """
    import soundfile as sf

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    fmt, subtype, _ = CODECS[codec]
    buf = io.BytesIO()
    kw = {}
    if compression_level is not None:
        kw["compression_level"] = float(compression_level)
    sf.write(buf, np.clip(x, -1.0, 1.0), int(rate), format=fmt, subtype=subtype, **kw)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float64")
    if y.ndim > 1:
        y = y.mean(axis=1)
    n = len(x)
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - len(y))])


def _colored_noise(n, color, rng):
    """Unit-variance white, pink (-3 dB/oct) or brown (-6 dB/oct) noise."""
    from scipy.signal import lfilter

    w = rng.standard_normal(n + 2048)
    if color == "pink":
        # 3-pole/3-zero approximation of a 1/f spectrum (within 0.5 dB above 10 Hz at
        # 44.1 kHz; the slope holds at other rates).
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1.0, -2.494956002, 2.017265875, -0.522189400]
        y = lfilter(b, a, w)
    elif color == "brown":
        y = lfilter([1.0], [1.0, -0.995], w)
    else:
        y = w
    y = y[2048:]  # skip the filter's start-up
    y = y - y.mean()
    return y / max(np.std(y), 1e-12)


@functools.lru_cache(maxsize=256)
def _butter(freq, kind, sr):
    from scipy.signal import butter

    return butter(2, freq, kind, fs=sr, output="sos")


def _random_eq(freqs, rng, depth_db):
    """Smooth random gain curve (dB) on ``freqs``: octave points 125 Hz-8 kHz, interpolated."""
    centres = 125.0 * 2.0 ** np.arange(7)
    gains = rng.normal(0.0, depth_db, len(centres))
    lf = np.log2(np.maximum(freqs, 1.0))
    return np.interp(lf, np.log2(centres), gains)


def _biquad(kind, freq, gain_db, q, sr):
    """RBJ audio-EQ-cookbook biquad ``(b, a)`` (normalised, a[0] = 1)."""
    A = 10 ** (gain_db / 40.0)
    w = 2 * np.pi * min(freq, 0.49 * sr) / sr
    cw, alpha = np.cos(w), np.sin(w) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * A, -2 * cw, 1 - alpha * A]
        a = [1 + alpha / A, -2 * cw, 1 - alpha / A]
    else:
        sign = 1.0 if kind == "lowshelf" else -1.0
        sq = 2 * np.sqrt(A) * alpha
        b = [A * ((A + 1) - sign * (A - 1) * cw + sq), sign * 2 * A * ((A - 1) - sign * (A + 1) * cw),
             A * ((A + 1) - sign * (A - 1) * cw - sq)]
        a = [(A + 1) + sign * (A - 1) * cw + sq, -sign * 2 * ((A - 1) + sign * (A + 1) * cw),
             (A + 1) + sign * (A - 1) * cw - sq]
    return np.asarray(b) / a[0], np.asarray(a) / a[0]


def eq_response(eq, freqs, sr):
    """Complex response of the EQ sections ``eq`` (see :class:`DeviceSpec`) at ``freqs`` Hz."""
    z = np.exp(-1j * 2 * np.pi * np.asarray(freqs, dtype=float) / sr)
    H = np.ones(len(z), dtype=complex)
    for kind, freq, gain_db, q in eq:
        b, a = _biquad(kind, float(freq), float(gain_db), float(q), sr)
        H *= (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)
    return H


def _agc(y, target_dbfs, sr):
    """Feedback-free AGC: per-20-ms-frame gain toward ``target_dbfs``, smoothed with a 50 ms
    attack (gain going down) and 500 ms release (going up), limited to +/-20 dB."""
    hop = max(int(0.02 * sr), 1)
    m = -(-len(y) // hop)
    pad = np.zeros(m * hop)
    pad[: len(y)] = y
    rms = np.sqrt(np.mean(pad.reshape(m, hop) ** 2, axis=1)) + 1e-9
    want = np.clip(target_dbfs - 20 * np.log10(rms), -20.0, 20.0)
    # frames quieter than -60 dBFS (pauses) hold the gain instead of pumping noise up
    hold = 20 * np.log10(rms) < -60.0
    a_att, a_rel = np.exp(-0.02 / 0.05), np.exp(-0.02 / 0.5)
    g = np.empty(m)
    cur = 0.0
    for i in range(m):
        if not hold[i]:
            k = a_att if want[i] < cur else a_rel
            cur = k * cur + (1 - k) * want[i]
        g[i] = cur
    gains = np.interp(np.arange(len(y)), np.arange(m) * hop + hop / 2, g)
    return y * 10 ** (gains / 20.0)


def apply_device(x, spec, sample_rate, rng, *, variability=1.0):
    """Record the clean utterance ``x`` "through" the device ``spec``.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        Clean utterance at ``sample_rate``.
    spec : DeviceSpec
    sample_rate : int
    rng : numpy.random.Generator
        Randomness of this recording (placement, room, noise, gain jitter).
    variability : float, default=1.0
        Scale of the per-recording conditions that do not belong to the device:
        ambient noise at an SNR drawn from U(40 - 20 v, 50 - 10 v) dB (none for
        ``v = 0``), a smooth random room/placement EQ (octave points 125 Hz-8 kHz,
        N(0, 3 v) dB), a first-order tilt, gain jitter N(0, 3 v) dB and a uniform
        +/-4 v dB jitter of the device's noise floor. ``0`` gives the bare device chain.

    Returns
    -------
    y : ndarray of shape (n_samples,), float64
        Samples in [-1, 1].
    """
    from scipy import fft
    from scipy.signal import lfilter, sosfilt

    from ..audio import resample

    sr = int(sample_rate)
    n = len(x)
    v = float(variability)
    # 1. recording conditions: ambient noise at the talker's position, placement tilt.
    if v > 0:
        active = np.abs(x) > 1e-3 * max(np.abs(x).max(), 1e-12)
        speech_rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 0.0
        snr = rng.uniform(40.0 - 20.0 * v, 50.0 - 10.0 * v)
        amb = _colored_noise(n, "pink" if rng.random() < 0.5 else "brown", rng)
        x = x + speech_rms * 10 ** (-snr / 20.0) * amb
        c = rng.uniform(-0.35, 0.35) * min(v, 2.0)
        a = np.exp(-2 * np.pi * 1000.0 / sr)
        x = x + c * lfilter([(1 + a) / 2, -(1 + a) / 2], [1, -a], x)
    # 2. microphone (measured IR) and room/placement EQ, in one FFT product.
    h = _mic_ir(spec.mic, sr)
    m = fft.next_fast_len(n + len(h) - 1, real=True)
    H = fft.rfft(h, m)
    if v > 0:
        H = H * 10 ** (_random_eq(np.arange(len(H)) * sr / m, rng, 3.0 * v) / 20.0)
    if spec.eq:
        H = H * eq_response(spec.eq, np.arange(len(H)) * sr / m, sr)
    y = fft.irfft(fft.rfft(x, m) * H, m)[:n]
    # 3. analogue band limits.
    lo, hi = float(spec.band[0]), min(float(spec.band[1]), 0.45 * sr)
    if lo > 0:
        y = sosfilt(_butter(lo, "highpass", sr), y)
    if spec.band[1] < 0.5 * sr:
        y = sosfilt(_butter(hi, "lowpass", sr), y)
    # 4. self-noise and hum (input-referred, before the gain stage).
    level = spec.noise_dbfs + rng.uniform(-4.0, 4.0) * v
    y = y + 10 ** (level / 20.0) * _colored_noise(n, spec.noise_color, rng)
    if spec.hum_dbfs is not None:
        t = np.arange(n) / sr
        ph = rng.uniform(0, 2 * np.pi)
        hum = sum(np.sin(2 * np.pi * 50.0 * k * t + k * ph) / k for k in (1, 2, 3, 4))
        y = y + 10 ** (spec.hum_dbfs / 20.0) * hum / np.sqrt(np.mean(hum**2))
    # 5. gain and clipping.
    y = y * 10 ** ((spec.gain_db + rng.normal(0.0, 3.0) * v) / 20.0)
    if spec.agc is not None:
        y = _agc(y, float(spec.agc), sr)
    if spec.clip is not None:
        if spec.soft_clip:
            y = spec.clip * np.tanh(y / spec.clip)
        else:
            y = np.clip(y, -spec.clip, spec.clip)
    # 6. converter rate and codec round trip.
    rate = _codec_rate(spec.codec, int(spec.codec_rate) if spec.codec_rate else sr)
    z = resample(y, sr, rate) if rate != sr else y
    z = codec_roundtrip(z, rate, spec.codec, spec.compression_level)
    if rate != sr:
        z = resample(z, rate, sr)
    if len(z) < n:
        z = np.concatenate([z, np.zeros(n - len(z))])
    # A file holds samples in [-1, 1]; resampling back can overshoot slightly.
    return np.clip(z[:n], -1.0, 1.0)
