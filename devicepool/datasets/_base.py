"""Shared helpers of the corpus loaders: path checks, audio probing and Bunch assembly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._text import plain
from .._validation import where
from ..audio import soundfile_name

__all__ = ["check_root", "probe_audio", "finish_bunch", "normalise_mode", "natural_key"]

#: Spellings of the two speaking modes accepted in folder and file names.
MODE_ALIASES = {
    "neutral": "neutral",
    "normal": "neutral",
    "n": "neutral",
    "whisper": "whisper",
    "whispered": "whisper",
    "whispering": "whisper",
    "w": "whisper",
}


def check_root(root, what="corpus root"):
    """Return ``root`` as a :class:`~pathlib.Path` to an existing folder.

    Raises
    ------
    TypeError
        ``root`` is not a ``str`` or ``os.PathLike``.
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        ``root`` is a file, not a folder.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or os.PathLike, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    return path


def probe_audio(path):
    """Return ``(sample_rate, n_frames)`` of an audio file, or raise a ValueError naming it."""
    import soundfile as sf

    try:
        info = sf.info(soundfile_name(path))
    except Exception as exc:  # libsndfile raises its own error types
        raise ValueError(f"{where(path=path)}: unreadable or corrupt audio file ({exc})") from None
    if info.frames <= 0:
        raise ValueError(f"{where(path=path)}: holds no audio samples")
    return int(info.samplerate), int(info.frames)


def normalise_mode(value, context):
    """Map a mode spelling (``"Whispered"``, ``"normal"``, ...) to ``"neutral"``/``"whisper"``.

    ``context`` prefixes the error message: a parameter name (``"modes"``) or a
    location from :func:`devicepool._validation.where` (``"file 'a.wav'"``).
    """
    key = str(value).strip().lower()
    if key not in MODE_ALIASES:
        raise ValueError(
            f"{context}: unknown speaking mode {plain(value)!r}; expected one of "
            f"{sorted(set(MODE_ALIASES))} (neutral/whisper)"
        )
    return MODE_ALIASES[key]


def natural_key(text):
    """Sort key that orders ``speaker2`` before ``speaker10``."""
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def _object_array(values):
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def finish_bunch(
    *, data, target, groups, mode, utterance, sample_rate, descr, return_X_y, extra=None
):
    """Assemble the Bunch every loader returns (or ``(data, target)``)."""
    target = np.asarray(target, dtype=str)
    if return_X_y:
        return data, target
    devices = np.unique(target).tolist()  # the order of a fitted classifier's classes_
    bunch = Bunch(
        data=data,
        target=target,
        groups=np.asarray(groups, dtype=str),
        mode=np.asarray(mode, dtype=str),
        utterance=np.asarray(utterance, dtype=str),
        sample_rate=sample_rate,
        devices=devices,
        target_names=np.asarray(devices, dtype=str),
        DESCR=descr,
    )
    for key, value in (extra or {}).items():
        bunch[key] = value
    return bunch


def summary_lines(target, groups, mode, speakers_known=True):
    """Human-readable counts for a DESCR."""
    target = np.asarray(target, dtype=str)
    n_groups = len(set(np.asarray(groups, dtype=str)))
    lines = [
        f"- recordings: {len(target)}",
        f"- devices ({len(set(target))}): " + ", ".join(sorted(set(target), key=natural_key)),
        f"- speakers: {n_groups}" if speakers_known else
        f"- speakers: unknown (no {{speaker}} field; `groups` holds {n_groups} utterance ids)",
    ]
    modes, counts = np.unique(np.asarray(mode, dtype=str), return_counts=True)
    lines.append("- modes: " + ", ".join(f"{m} ({c})" for m, c in zip(modes, counts)))
    return lines
