"""Loader for MOBIPHONE: 21 mobile phones x 24 TIMIT speakers, one file per (phone, speaker)."""

from __future__ import annotations

import os
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

from .._text import plain
from .._validation import Interval, Options, validate_params, where
from ..audio import SAMPLE_RATE, check_sample_rate, read_audio_file
from ._base import finish_corpus, summary_lines
from .folder import load_audio_folder

__all__ = ["load_mobiphone", "split_utterances"]


def _frame_energy_db(x, sr, frame, hop):
    n_win = max(int(round(frame * sr)), 1)
    n_hop = max(int(round(hop * sr)), 1)
    if len(x) < n_win:
        return np.array([10 * np.log10(np.mean(x**2) + 1e-12)]), n_hop, n_win
    n = 1 + (len(x) - n_win) // n_hop
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(n) * n_hop
    e = (c[starts + n_win] - c[starts]) / n_win
    return 10 * np.log10(e + 1e-12), n_hop, n_win


def _runs(mask):
    """(start, stop) index pairs of the True runs of a boolean array."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def split_utterances(
    x,
    sample_rate,
    n_utterances=None,
    *,
    threshold_db=None,
    min_silence=0.3,
    min_speech=0.2,
    margin=0.1,
    frame=0.025,
    hop=0.010,
):
    """Split a recording of several utterances separated by silences.

    Energy-based: the log energy of 25 ms frames (10 ms hop) is compared with a
    threshold; runs of at least ``min_silence`` seconds below it are pauses between
    utterances. By default the threshold adapts to the file: ``floor + max(6 dB,
    0.3 (peak - floor))`` where ``floor`` and ``peak`` are the 5th and 99th
    percentiles of the frame energies (dB). Bursts above the threshold shorter than
    ``min_speech`` that stand alone are treated as noise. When ``n_utterances`` is
    given and more pauses are found than needed, only the ``n_utterances - 1``
    longest pauses are used as boundaries (pauses inside a sentence are shorter than
    pauses between sentences); if fewer are found, fewer segments are returned.
    Each segment keeps ``margin`` seconds of context on both sides.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    sample_rate : int
    n_utterances : int, optional
        Expected number of utterances.
    threshold_db : float, optional
        Absolute threshold in dB re full scale (frame mean power), instead of the
        adaptive one.
    min_silence : float, default=0.3
        Shortest pause (s) that separates two utterances.
    min_speech : float, default=0.2
        Shortest isolated sound (s) counted as speech.
    margin : float, default=0.1
        Silence kept before and after each utterance (s).
    frame, hop : float, default=0.025, 0.010
        Energy frame length and hop (s).

    Returns
    -------
    segments : list of (int, int)
        ``(start, stop)`` sample indices of each utterance, in time order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sil, tone = np.zeros(8000), 0.3 * np.sin(np.arange(8000) * 0.2)
    >>> x = np.concatenate([sil, tone, sil, tone, sil]) + 1e-4 * rng.standard_normal(40000)
    >>> [(round(a / 16000, 1), round(b / 16000, 1)) for a, b in split_utterances(x, 16000)]
    [(0.4, 1.1), (1.4, 2.1)]
    """
    x = np.asarray(x, dtype=np.float64)
    sr = int(sample_rate)
    e, n_hop, n_win = _frame_energy_db(x, sr, frame, hop)
    if threshold_db is None:
        floor, peak = np.percentile(e, [5, 99])
        thr = floor + max(6.0, 0.3 * (peak - floor))
    else:
        thr = float(threshold_db)
    active = e > thr
    if not active.any():
        return []
    min_sil = max(int(round(min_silence / hop)), 1)
    min_sp = max(int(round(min_speech / hop)), 1)
    # Drop isolated short bursts (clicks, breaths).
    starts, stops = _runs(active)
    for a, b in zip(starts, stops):
        if b - a < min_sp:
            left_gap = a - (stops[stops <= a].max() if (stops <= a).any() else -10**9)
            right_gap = (starts[starts >= b].min() if (starts >= b).any() else 10**9) - b
            if left_gap >= min_sil and right_gap >= min_sil:
                active[a:b] = False
    if not active.any():
        return []
    first, last = np.flatnonzero(active)[[0, -1]]
    inner = ~active[first : last + 1]
    g_starts, g_stops = _runs(inner)
    gaps = [(b - a, a + first, b + first) for a, b in zip(g_starts, g_stops) if b - a >= min_sil]
    if n_utterances is not None and len(gaps) > n_utterances - 1:
        gaps = sorted(gaps, key=lambda g: (-g[0], g[1]))[: max(n_utterances - 1, 0)]
    gaps = sorted(gaps, key=lambda g: g[1])
    bounds = [first] + [v for _, a, b in gaps for v in (a, b)] + [last + 1]
    pad = int(round(margin * sr))
    segments = []
    for a, b in zip(bounds[0::2], bounds[1::2]):
        start = max(a * n_hop - pad, 0)
        stop = min((b - 1) * n_hop + n_win + pad, len(x))
        segments.append((int(start), int(stop)))
    return segments


_MOBIPHONE_CONSTRAINTS = {
    "root": ["path-like"],
    "n_utterances_per_file": [Interval(Integral, 1, None, closed="left"), None],
    "split": ["boolean"],
    "sample_rate": [SAMPLE_RATE],
    "phones": [str, "array-like", None],
    "threshold_db": [Interval(Real, None, None, closed="neither"), None],
    "min_silence": [Interval(Real, 0, None, closed="left")],
    "margin": [Interval(Real, 0, None, closed="left")],
    "strict": ["boolean"],
    "dtype": [Options(np.dtype, {np.dtype(t) for t in (np.float32, np.float64, np.int16)})],
    "return_X_y": ["boolean"],
}


class _Segmenting(NamedTuple):
    """How :func:`load_mobiphone` splits each file (see :func:`split_utterances`)."""

    n_utterances: int | None  # expected per file (None: split at every long pause)
    threshold_db: float | None
    min_silence: float
    margin: float


class _Split(NamedTuple):
    """The utterances of the split files and where each one comes from."""

    data: np.ndarray  # object array of waveforms
    target: list
    groups: list
    utterance: list
    source_file: list
    segment: list  # (start, stop) sample indices in the source file


def _warn_speakers_differ(files, stacklevel):
    """Warn when the phones do not all hold the same speakers."""
    speakers_per_phone = {}
    for t, g in zip(files.target, files.groups):
        speakers_per_phone.setdefault(t, set()).add(g)
    all_speakers = set(files.groups)
    lacking = {p: sorted(all_speakers - s) for p, s in speakers_per_phone.items() if s != all_speakers}
    if lacking:
        warnings.warn(
            "MOBIPHONE speakers differ across phones: "
            + "; ".join(f"{plain(p)!r} lacks {plain(v)}" for p, v in sorted(lacking.items())),
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def _file_segments(x, path, sr, seg, stacklevel):
    """The utterance segments of one file; warn when their number is not the expected one."""
    segments = split_utterances(
        x, sr, seg.n_utterances, threshold_db=seg.threshold_db,
        min_silence=seg.min_silence, margin=seg.margin,
    )
    if not segments:
        raise ValueError(f"{where(path=path)}: no speech found (all frames below the threshold)")
    if seg.n_utterances is not None and len(segments) != seg.n_utterances:
        warnings.warn(
            f"{where(path=path)}: split into {len(segments)} utterances, expected "
            f"{seg.n_utterances} (check its pauses, or adjust min_silence/threshold_db)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return segments


def _as_dtype(w, dtype):
    """Samples in ``dtype``; int16 scales [-1, 1) to the full integer range."""
    if dtype == np.int16:
        return np.clip(np.round(w * 32768.0), -32768, 32767).astype(np.int16)
    return w.astype(dtype)


def _split_files(files, sr, dtype, seg, stacklevel):
    """Read every file of ``files`` at ``sr`` and split it into its utterances."""
    out = _Split([], [], [], [], [], [])
    for path, phone, speaker in zip(files.data, files.target, files.groups):
        x, _ = read_audio_file(path, sr)
        for k, (a, b) in enumerate(_file_segments(x, path, sr, seg, stacklevel + 1)):
            out.data.append(_as_dtype(x[a:b], dtype))
            out.target.append(phone)
            out.groups.append(speaker)
            out.utterance.append(f"{speaker}_u{k + 1:02d}")
            out.source_file.append(path)
            out.segment.append((a, b))
    X = np.empty(len(out.data), dtype=object)
    X[:] = out.data
    return out._replace(data=X)


def _mobiphone_header(root):
    """The first lines of the DESCR."""
    return [
        f"MOBIPHONE loaded from {os.fspath(root)!r}",
        "",
        "21 mobile phones recording 24 TIMIT speakers x 10 utterances (16 kHz). Each",
        "<phone>/<speaker>.wav file is one speaker's utterances back to back.",
    ]


def _split_descr(root, split, seg, sr):
    """The DESCR of the split corpus."""
    lengths = np.array([len(w) for w in split.data]) / sr
    return "\n".join(
        _mobiphone_header(root)
        + [
            f"Split by silence (n_utterances_per_file={seg.n_utterances}, "
            f"min_silence={seg.min_silence} s, margin={seg.margin} s); data are waveforms.",
            "",
        ]
        + summary_lines(split.target, split.groups, ["neutral"] * len(split.target))
        + [f"- utterance length: {lengths.min():.2f}-{lengths.max():.2f} s, mean {lengths.mean():.2f} s",
           f"- sample rate: {sr} Hz"]
    )


def load_mobiphone(
    root,
    *,
    n_utterances_per_file=10,
    split=True,
    sample_rate=16000,
    phones=None,
    threshold_db=None,
    min_silence=0.3,
    margin=0.1,
    strict=True,
    dtype=np.float32,
    return_X_y=False,
):
    """Load MOBIPHONE, split into utterances.

    The public MOBIPHONE layout is ``<root>/<phone model>/<speaker>.wav``: 21 phone
    folders (``HTC desire c``, ``LG GS290``, ...) with 24 files each; each file holds
    one TIMIT speaker's 10 utterances one after another at 16 kHz, and the same speaker
    file name in every phone folder holds the same utterances (the corpus was made by
    playing TIMIT through every phone). Each file is split into its utterances with
    :func:`split_utterances` (energy-based, adaptive threshold ``floor + max(6 dB,
    0.3 (peak - floor))``, pauses >= ``min_silence`` s, the ``n - 1`` longest pauses
    used as boundaries), so that the paper's utterance-level protocol works.

    ``data`` holds the split **waveforms** (not paths: an utterance is a part of a
    file), read at ``sample_rate``. The full corpus at 16 kHz in float32 takes about
    1 GB of memory; ``dtype=np.int16`` halves that (integer samples are scaled to
    [-1, 1) by the feature transformers).

    Parameters
    ----------
    root : str or os.PathLike
        MOBIPHONE folder.
    n_utterances_per_file : int or None, default=10
        Utterances expected in each file; a file that gives another number is kept
        with what was found and reported by a warning naming it. ``None``: split at
        every pause of at least ``min_silence`` seconds.
    split : bool, default=True
        If False, do not split: ``data`` holds one file path per (phone, speaker).
    sample_rate : int, default=16000
        Rate the files are read (and resampled) at.
    phones : sequence of str, optional
        Keep only these phone folders.
    threshold_db, min_silence, margin :
        Passed to :func:`split_utterances`.
    strict : bool, default=True
        A file not named ``<phone>/<speaker>.wav`` is an error (False: skipped).
    dtype : numpy dtype, default=np.float32
        Sample type of the waveforms (float32, float64 or int16).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the corpus.

    Returns
    -------
    corpus : Corpus
        ``data`` (1-D object ndarray of waveforms, or paths when ``split=False``),
        ``target`` (phone model), ``groups`` (speaker = file stem, the same across
        phones), ``mode`` (all ``"neutral"``), ``utterance`` (``"<speaker>_u03"``,
        shared by the 21 phones), ``sample_rate``, ``devices``, ``target_names``,
        ``source_file`` (the file each utterance comes from), ``segment`` (int array
        (n, 2) of start/stop samples in that file; absent when ``split=False``) and
        ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        Empty folder, files not named ``<phone>/<speaker>.wav``, unreadable files, a
        phone folder without files, a file in which no speech is found.

    Warns
    -----
    UserWarning
        A file does not give ``n_utterances_per_file`` utterances (named in the message).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "LG GS290"))
    >>> tone = 0.3 * np.sin(np.arange(16000) * 0.2)
    >>> x = np.concatenate([np.zeros(8000), tone, np.zeros(8000), tone, np.zeros(8000)])
    >>> sf.write(os.path.join(root, "LG GS290", "speaker1.wav"), x, 16000)
    >>> b = load_mobiphone(root, n_utterances_per_file=2)
    >>> b.utterance.tolist(), b.target.tolist()
    (['speaker1_u01', 'speaker1_u02'], ['LG GS290', 'LG GS290'])
    """
    sr = check_sample_rate(sample_rate, owner="load_mobiphone")
    dtype = np.dtype(dtype)
    validate_params(
        dict(root=root, n_utterances_per_file=n_utterances_per_file, split=split,
             sample_rate=sr, phones=phones, threshold_db=threshold_db,
             min_silence=min_silence, margin=margin, strict=strict, dtype=dtype,
             return_X_y=return_X_y),
        _MOBIPHONE_CONSTRAINTS, owner="load_mobiphone",
    )
    files = load_audio_folder(
        root, "{device}/{speaker}.wav", devices=phones, strict=strict, sample_rate=sr,
        name="MOBIPHONE",
    )
    _warn_speakers_differ(files, stacklevel=2)
    if not split:
        descr = "\n".join(_mobiphone_header(root) + ["", "Not split: one path per (phone, speaker) file."]
                          + summary_lines(files.target, files.groups, files.mode))
        return finish_corpus(
            data=files.data, target=files.target, groups=files.groups, mode=files.mode,
            utterance=files.utterance, sample_rate=sr, descr=descr, return_X_y=return_X_y,
            extra={"source_file": np.asarray(files.data, dtype=str)},
        )
    seg = _Segmenting(n_utterances_per_file, threshold_db, min_silence, margin)
    out = _split_files(files, sr, dtype, seg, stacklevel=2)
    return finish_corpus(
        data=out.data, target=out.target, groups=out.groups, mode=["neutral"] * len(out.target),
        utterance=out.utterance, sample_rate=sr, descr=_split_descr(root, out, seg, sr),
        return_X_y=return_X_y,
        extra={"source_file": np.asarray(out.source_file, dtype=str),
               "segment": np.asarray(out.segment, dtype=np.int64).reshape(-1, 2)},
    )
