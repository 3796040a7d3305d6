"""Speech-like source-filter synthesiser used by :func:`make_device_corpus`.

The model is the classic source-filter model of speech production:

* **source**: a glottal pulse train at a time-varying fundamental frequency (declination,
  word accents, jitter and shimmer) for voiced sounds, white noise for unvoiced sounds
  (fricatives, bursts, aspiration) and for the whole of whispered speech;
* **filter**: a cascade of four formant resonances (the vocal tract) times a glottal /
  lip-radiation spectral tilt, applied frame by frame in the short-time Fourier
  domain (32 ms Hann frames, 75 % overlap, weighted overlap-add);
* **content**: an utterance is a sequence of words of 1-3 consonant-vowel(-consonant)
  syllables with pauses, drawn from a seed that depends only on the utterance index, so
  every speaker says the "same sentence" (as in wSPIRE or TIMIT SA sentences).

Speakers differ in mean pitch, vocal-tract length (all formants scaled), glottal
tilt, breathiness, speaking rate and loudness. Whisper replaces the glottal source by
noise (no pitch), raises the first formant by about 15 % (as measured for real
whisper), and is recorded about 12 dB quieter.

Everything is drawn from a :class:`numpy.random.Generator` passed in, so the output is
a deterministic function of the seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SpeakerParams", "draw_speaker", "synthesise_utterance"]

# Average formants (Hz) of American English vowels, adult male (Hillenbrand et al. 1995).
_VOWELS = {
    "i": (342, 2322, 3000, 3657),
    "I": (427, 2034, 2684, 3618),
    "e": (476, 2089, 2691, 3649),
    "E": (580, 1799, 2605, 3677),
    "ae": (588, 1952, 2601, 3624),
    "a": (768, 1333, 2522, 3687),
    "o": (497, 910, 2459, 3384),
    "U": (469, 1122, 2434, 3400),
    "u": (378, 997, 2343, 3357),
    "V": (623, 1200, 2550, 3557),
    "3": (474, 1379, 1710, 3334),
}
_VOWEL_BW = np.array([90.0, 110.0, 170.0, 250.0])

# Consonants: (kind, formant targets or noise centre, noise bandwidth, level)
_CONSONANTS = {
    "s": ("fric", 5500.0, 2000.0, 0.35),
    "S": ("fric", 2800.0, 1200.0, 0.40),
    "f": ("fric", 6000.0, 6000.0, 0.10),
    "T": ("fric", 5000.0, 5000.0, 0.08),
    "h": ("asp", None, None, 0.25),
    "p": ("stop", 1000.0, 2000.0, 0.30),
    "t": ("stop", 4000.0, 2500.0, 0.40),
    "k": ("stop", 2200.0, 1200.0, 0.40),
    "b": ("vstop", 900.0, 2000.0, 0.20),
    "d": ("vstop", 3500.0, 2500.0, 0.25),
    "g": ("vstop", 2000.0, 1200.0, 0.25),
    "m": ("nasal", (280, 1000, 2200, 3300), None, 0.30),
    "n": ("nasal", (280, 1600, 2600, 3300), None, 0.30),
    "l": ("approx", (360, 1300, 2700, 3400), None, 0.55),
    "r": ("approx", (330, 1100, 1450, 3200), None, 0.50),
    "w": ("approx", (300, 650, 2200, 3300), None, 0.50),
    "j": ("approx", (280, 2200, 2900, 3600), None, 0.50),
    "z": ("vfric", 5000.0, 2000.0, 0.25),
    "v": ("vfric", 5000.0, 5000.0, 0.08),
}
_ONSETS = list(_CONSONANTS)
_CODAS = ["s", "t", "n", "m", "k", "l", "r", "d", "z", "p", "S", "f"]


class SpeakerParams:
    """Parameters of one synthetic speaker (drawn by :func:`draw_speaker`)."""

    __slots__ = ("female", "f0", "vtl", "tilt_hz", "breath", "rate", "level_db", "jitter")

    def __init__(self, female, f0, vtl, tilt_hz, breath, rate, level_db, jitter):
        self.female = bool(female)
        self.f0 = float(f0)
        self.vtl = float(vtl)
        self.tilt_hz = float(tilt_hz)
        self.breath = float(breath)
        self.rate = float(rate)
        self.level_db = float(level_db)
        self.jitter = float(jitter)

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


def draw_speaker(rng, female=None):
    """Draw a speaker: pitch, vocal-tract scale, tilt, breathiness, rate, loudness."""
    if female is None:
        female = bool(rng.random() < 0.5)
    if female:
        f0 = rng.uniform(165.0, 245.0)
        vtl = rng.uniform(1.09, 1.22)  # formant scale factor (shorter tract)
    else:
        f0 = rng.uniform(88.0, 145.0)
        vtl = rng.uniform(0.90, 1.04)
    return SpeakerParams(
        female=female,
        f0=f0,
        vtl=vtl,
        tilt_hz=rng.uniform(120.0, 400.0),
        breath=rng.uniform(0.02, 0.15),
        rate=rng.uniform(0.85, 1.2),
        level_db=rng.normal(0.0, 2.0),
        jitter=rng.uniform(0.005, 0.02),
    )


def _plan_utterance(content_rng, duration):
    """Draw the phone sequence of one utterance: list of (phone, nominal seconds)."""
    phones = [("sil", content_rng.uniform(0.10, 0.20))]
    total = phones[0][1]
    vowels = list(_VOWELS)
    target = max(duration - 0.15, 0.2)
    while total < target:
        n_syll = int(content_rng.integers(1, 4))
        for s in range(n_syll):
            if s > 0 and sum(d for _, d in phones) >= target:
                break
            if content_rng.random() < 0.8:
                c = _ONSETS[int(content_rng.integers(len(_ONSETS)))]
                phones.append((c, content_rng.uniform(0.05, 0.10)))
            v = vowels[int(content_rng.integers(len(vowels)))]
            stressed = s == 0
            phones.append((v, content_rng.uniform(0.09, 0.16) * (1.35 if stressed else 1.0)))
            if content_rng.random() < 0.35:
                coda = _CODAS[int(content_rng.integers(len(_CODAS)))]
                phones.append((coda, content_rng.uniform(0.05, 0.09)))
        if content_rng.random() < 0.35:
            phones.append(("sil", content_rng.uniform(0.08, 0.22)))
        total = sum(d for _, d in phones)
    phones.append(("sil", content_rng.uniform(0.10, 0.20)))
    return phones


def _resonances(freqs, F, B):
    """Complex response of a cascade of causal 2-pole resonances (unit gain at 0 Hz).

    H(f) = prod_k F_k^2 / (F_k^2 - f^2 + j f B_k); freqs: (K,), F, B: (T, n) -> (T, K)
    """
    f = freqs[None, :]
    f2 = f * f
    H = None
    for k in range(F.shape[1]):
        Fk2 = (F[:, k] ** 2)[:, None]
        den = (Fk2 - f2) + 1j * (f * B[:, k][:, None])
        H = Fk2 / den if H is None else H * (Fk2 / den)
    return H


def _smooth(x, n):
    """Moving average over ``n`` frames along axis 0 (edges held)."""
    if n <= 1:
        return x
    pad = n // 2
    xp = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], n - 1 - pad, axis=0)])
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), xp]), axis=0)
    return (c[n:] - c[:-n]) / n


_HOP_S = 0.005  # control-frame hop (s)


class _Track(NamedTuple):
    """Control parameters of an utterance, one row per 5 ms control frame."""

    F: np.ndarray  # (T, 4) formant frequencies (Hz)
    av: np.ndarray  # (T,) voicing amplitude
    an: np.ndarray  # (T,) noise amplitude
    nc: np.ndarray  # (T,) frication noise centre (Hz)
    nb: np.ndarray  # (T,) frication noise bandwidth (Hz)
    kind: np.ndarray  # (T,) "sil", "vowel", "noise" or "asp"
    through: np.ndarray  # (T,) bool: the noise goes through the vocal tract (aspiration)


class _StftGrid(NamedTuple):
    """Frame geometry of the short-time Fourier synthesis (32 ms Hann, 75 % overlap)."""

    n_fft: int
    win: np.ndarray  # (n_fft,)
    idx: np.ndarray  # (n_frames, n_fft) sample indices of each frame in the padded signal
    total: int  # padded length
    freqs: np.ndarray  # (n_fft // 2 + 1,) bin frequencies (Hz)
    centres: np.ndarray  # (n_frames,) frame centres in control frames
    fi: np.ndarray  # (n_frames,) nearest control frame of each synthesis frame


def _phone_frames(phone, n):
    """``n`` control frames of one phone: (F(4), av, an, noise centre, noise bw, kind)."""
    if phone == "sil":
        return [((500, 1500, 2500, 3500), 0.0, 0.0, 0.0, 1.0, "sil")] * n
    if phone in _VOWELS:
        return [(_VOWELS[phone], 1.0, 0.0, 0.0, 1.0, "vowel")] * n
    kind, a, b, level = _CONSONANTS[phone]
    if kind in ("fric", "vfric"):
        av = 0.35 if kind == "vfric" else 0.0
        return [((400, 1600, 2500, 3500), av, level, a, b, "noise")] * n
    if kind in ("stop", "vstop"):
        n_clos = max(n - 4, 1)
        av = 0.08 if kind == "vstop" else 0.0
        return (
            [((400, 1600, 2500, 3500), av, 0.0, a, b, "sil")] * n_clos
            + [((400, 1600, 2500, 3500), 0.0, level * 1.5, a, b, "noise")] * 2
            + [((600, 1500, 2500, 3500), 0.0, level * 0.5, 0.0, 1.0, "asp")] * 2
        )
    if kind == "asp":
        return [((600, 1400, 2500, 3500), 0.0, level, 0.0, 1.0, "asp")] * n
    return [(a, level, 0.0, 0.0, 1.0, "vowel")] * n  # nasal / approximant: own formants


def _control_track(plan, speaker, whisper, rng):
    """The control track of a phone plan (durations jittered by ``rng``, scaled by rate)."""
    frames = []
    for phone, dur in plan:
        d = dur * rng.uniform(0.85, 1.15) / speaker.rate
        frames += _phone_frames(phone, max(int(round(d / _HOP_S)), 2))
    F = np.array([f[0] for f in frames], dtype=float) * speaker.vtl
    av = np.array([f[1] for f in frames], dtype=float)
    an = np.array([f[2] for f in frames], dtype=float)
    nc = np.array([f[3] for f in frames], dtype=float)
    nb = np.array([f[4] for f in frames], dtype=float)
    kind = np.array([f[5] for f in frames])
    nc = np.where(nc > 0, nc, 3000.0)
    nb = np.where(nb > 1, nb, 2000.0)
    # Aspiration follows the formants of its neighbours: smooth formants everywhere.
    F = _smooth(F, 7)  # ~35 ms transitions
    av = _smooth(av[:, None], 3)[:, 0]
    an = _smooth(an[:, None], 2)[:, 0]
    if whisper:
        # Whisper: all voicing becomes aspiration noise through the vocal tract.
        an = np.where(kind == "vowel", np.maximum(an, 0.5 * av), an)
        through = (kind == "vowel") | (kind == "asp")
        av = np.zeros_like(av)
        F[:, 0] *= 1.15
        F[:, 1] *= 1.05
    else:
        through = kind == "asp"
    return _Track(F, av, an, nc, nb, kind, through)


def _f0_contour(speaker, kind, rng):
    """F0 (Hz) per control frame: declination + accents on vowel onsets + jitter."""
    T = len(kind)
    t = np.arange(T) / T
    f0 = speaker.f0 * (1.1 - 0.2 * t)
    starts = np.flatnonzero((kind == "vowel") & np.r_[True, kind[:-1] != "vowel"])
    for s in starts:
        if rng.random() < 0.5:
            f0 *= 1.0 + rng.uniform(0.05, 0.18) * np.exp(-0.5 * ((np.arange(T) - s - 6) / 8.0) ** 2)
    f0 *= 1.0 + speaker.jitter * rng.standard_normal(T)
    return f0


def _excitations(f0, sr, hop, n_samples, rng):
    """Sample-level glottal pulse train (with shimmer, zero mean) and white noise."""
    ctrl_t = (np.arange(len(f0)) + 0.5) * hop
    s_idx = np.arange(n_samples)
    f0_s = np.interp(s_idx, ctrl_t, f0)
    phase = np.cumsum(f0_s / sr)
    pulses = np.zeros(n_samples)
    wraps = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    shimmer = 1.0 + 0.08 * rng.standard_normal(len(wraps))
    pulses[wraps] = shimmer
    pulses -= pulses.mean()
    noise = rng.standard_normal(n_samples)
    return pulses, noise


def _stft_grid(n_samples, sr, hop, T):
    """Synthesis frames covering ``n_samples`` (padded by half a frame on both sides)."""
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sr)))
    step = n_fft // 4
    n_frames = int(np.ceil((n_samples + n_fft) / step)) + 1
    centres = (np.arange(n_frames) * step - n_fft // 2 + n_fft // 2) / hop
    return _StftGrid(
        n_fft=n_fft,
        win=np.hanning(n_fft + 1)[:-1],
        idx=np.arange(n_fft)[None, :] + step * np.arange(n_frames)[:, None],
        total=(n_frames - 1) * step + n_fft,
        freqs=np.fft.rfftfreq(n_fft, 1.0 / sr),
        centres=centres,
        fi=np.clip(np.round(centres).astype(int), 0, T - 1),
    )


def _stft(x, grid):
    """Windowed spectra of ``x`` on ``grid``: (n_frames, n_fft // 2 + 1)."""
    from scipy import fft

    n_fft = grid.n_fft
    xp = np.pad(x, (n_fft // 2, grid.total - len(x) - n_fft // 2))
    return fft.rfft(xp[grid.idx] * grid.win, axis=1)


def _filter_spectra(P, N, grid, track, speaker, sr):
    """Shape the pulse (``P``) and noise (``N``) spectra by the per-frame envelopes."""
    freqs, fi, T = grid.freqs, grid.fi, len(track.kind)
    Ff = track.F[fi]
    Bf = np.broadcast_to(_VOWEL_BW * (1.0 + 0.3 * (speaker.vtl - 1.0)), (len(fi), 4))
    tract = _resonances(freqs, Ff, Bf)
    tilt = 1.0 / (1.0 + 1j * freqs / speaker.tilt_hz) ** 2  # glottal pulse, -12 dB/oct
    radiation = 1j * freqs / 1000.0 + 0.05  # lip radiation, +6 dB/oct
    upper = 1.0 / (1.0 + (freqs / min(7000.0, 0.45 * sr)) ** 8)  # above the 5th formant
    voiced_env = tract * (tilt * radiation * upper)[None, :]
    asp_env = tract * (np.sqrt(tilt) * radiation * upper)[None, :] * 0.02
    nc, nb = track.nc[fi, None], track.nb[fi, None]
    fric_env = (_resonances(freqs, nc, nb) * (freqs / np.maximum(nc, 1.0)) ** 2) * upper[None, :] * 0.3
    fric_env /= np.maximum(np.abs(fric_env).max(axis=1, keepdims=True), 1e-9)
    a_v = np.interp(grid.centres, np.arange(T), track.av)[:, None]
    a_n = np.interp(grid.centres, np.arange(T), track.an)[:, None]
    through = track.through[fi][:, None]
    asp_env = asp_env / np.maximum(np.abs(asp_env).max(axis=1, keepdims=True), 1e-9)
    noise_env = np.where(through, asp_env, fric_env)
    breath = speaker.breath * a_v * asp_env
    voiced_env = voiced_env / np.maximum(np.abs(voiced_env).max(), 1e-9)
    return P * voiced_env * a_v * 8.0 + N * (noise_env * a_n * 0.5 + breath * 0.3)


def _overlap_add(Y, grid, n_samples):
    """Weighted overlap-add of the spectra ``Y``; the ``n_samples`` of the unpadded signal."""
    from scipy import fft

    n_fft = grid.n_fft
    frames_out = fft.irfft(Y, n=n_fft, axis=1) * grid.win
    flat = grid.idx.ravel()
    out = np.bincount(flat, weights=frames_out.ravel(), minlength=grid.total)
    norm = np.bincount(flat, weights=np.broadcast_to(grid.win**2, grid.idx.shape).ravel(),
                       minlength=grid.total)
    out = out / np.maximum(norm, 1e-3)
    return out[n_fft // 2 : n_fft // 2 + n_samples]


def _speech_level(x, speaker, whisper, rng):
    """Scale to the mode's level (RMS over the active part) + speaker and random offsets."""
    active = np.abs(x) > 1e-4 * np.abs(x).max()
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0
    level_db = (-32.0 if whisper else -20.0) + speaker.level_db + rng.normal(0.0, 1.0)
    x = x * (10.0 ** (level_db / 20.0) / max(rms, 1e-12))
    peak = np.abs(x).max()
    return x * (0.9 / peak) if peak > 0.9 else x


def synthesise_utterance(speaker, utterance_index, mode, sample_rate, duration, rng):
    """Synthesise one utterance of ``speaker`` at ``sample_rate``.

    Parameters
    ----------
    speaker : SpeakerParams
    utterance_index : int
        Selects the sentence (phone sequence); the same index gives the same sentence
        for every speaker and mode.
    mode : {"neutral", "whisper"}
    sample_rate : int
    duration : float
        Nominal duration in seconds (the realised one varies with the speaking rate).
    rng : numpy.random.Generator
        Realisation randomness (timing jitter, excitation, pitch accents).

    Returns
    -------
    x : ndarray of shape (n_samples,), float64
        Level: about -20 dBFS RMS over speech for neutral, about -32 dBFS for whisper,
        shifted by the speaker's loudness.
    """
    sr = int(sample_rate)
    whisper = mode == "whisper"
    plan = _plan_utterance(np.random.default_rng([7919, int(utterance_index)]), duration)
    track = _control_track(plan, speaker, whisper, rng)
    f0 = _f0_contour(speaker, track.kind, rng)
    hop = sr * _HOP_S
    n_samples = int(round(len(track.kind) * hop))
    pulses, noise = _excitations(f0, sr, hop, n_samples, rng)
    grid = _stft_grid(n_samples, sr, hop, len(track.kind))
    Y = _filter_spectra(_stft(pulses, grid), _stft(noise, grid), grid, track, speaker, sr)
    return _speech_level(_overlap_add(Y, grid, n_samples), speaker, whisper, rng)
