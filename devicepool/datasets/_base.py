"""The :class:`Corpus` every loader returns, and the loaders' shared helpers (path checks, audio probing)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._text import plain
from .._validation import where
from ..audio import soundfile_name

__all__ = ["Corpus", "check_root", "probe_audio", "finish_corpus", "normalise_mode", "natural_key"]

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


#: The fields every :class:`Corpus` has, in the order ``keys()`` lists them.
_FIELDS = ("data", "target", "groups", "mode", "utterance", "sample_rate", "devices", "target_names",
           "DESCR", "speakers_known")


@dataclass(frozen=True, slots=True, eq=False)
class Corpus:
    """A corpus of device recordings: what every loader returns.

    Parameters
    ----------
    data : sequence of shape (n,)
        One item per recording: a waveform (1-D array) or an audio file path.
    target : array-like of str, shape (n,)
        The device of each recording.
    groups : array-like of str, shape (n,)
        The speaker of each recording (utterance ids when ``speakers_known`` is False).
    mode : array-like of {"neutral", "whisper"}, shape (n,)
        The speaking mode of each recording.
    utterance : array-like of str, shape (n,), optional
        An id shared by the parallel recordings of one utterance on every device.
    sample_rate : int, optional
        Rate (Hz) of the waveforms, or the rate paths are to be read at.
    DESCR : str, default=""
        A description with counts.
    speakers_known : bool, default=True
        False when ``groups`` are not speakers (a folder pattern without ``{speaker}``).
    extra : mapping, default={}
        The loader's other fields (``device_info``, ``file_sample_rate``, a pattern's
        extra fields, ...), also readable as attributes.

    Attributes
    ----------
    devices : list of str
        The sorted device names (the order of a fitted classifier's ``classes_``).
    target_names : ndarray of str, shape (n_devices,)
        ``devices`` as an array.

    Notes
    -----
    The label arrays are stored as numpy str arrays. ``corpus["data"]``,
    ``"data" in corpus`` and ``corpus.keys()`` read it like the ``sklearn.utils.Bunch``
    the loaders returned before; it is immutable (``dataclasses.replace`` makes a changed
    copy).

    Examples
    --------
    >>> c = Corpus.from_bunch({"data": [[0.0, 0.1]] * 2, "target": ["a", "b"], "groups": [1, 2]})
    >>> len(c), c.groups.tolist(), c.mode.tolist(), c.devices, c["target"].tolist()
    (2, ['1', '2'], ['neutral', 'neutral'], ['a', 'b'], ['a', 'b'])
    """

    data: Any
    target: np.ndarray
    groups: np.ndarray
    mode: np.ndarray
    utterance: np.ndarray | None = None
    sample_rate: int | None = None
    DESCR: str = ""
    speakers_known: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.data)
        for name in ("target", "groups", "mode", "utterance"):
            value = getattr(self, name)
            if value is None and name == "utterance":
                continue
            arr = np.asarray(value, dtype=str)
            if arr.shape != (n,):
                raise ValueError(f"Corpus.{name} must have one entry per recording of data ({n}), "
                                 f"got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        bad = sorted(set(self.mode.tolist()) - {"neutral", "whisper"})
        if bad:
            raise ValueError(f"Corpus.mode values must be 'neutral' or 'whisper', got {bad}")
        if not isinstance(self.speakers_known, (bool, np.bool_)):
            raise TypeError(f"Corpus.speakers_known must be a bool, got {type(self.speakers_known).__name__}")
        object.__setattr__(self, "extra", dict(self.extra))
        if self.sample_rate is not None:
            object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @classmethod
    def from_bunch(cls, bunch):
        """A :class:`Corpus` from a ``Bunch``, mapping or object with ``data``, ``target``, ``groups``.

        ``mode`` defaults to ``"neutral"`` for every recording; the other keys of
        :class:`Corpus` are taken when present and any further key goes to ``extra``.
        A :class:`Corpus` is returned as it is.

        Raises
        ------
        TypeError
            ``bunch`` lacks ``data``, ``target`` or ``groups``.
        ValueError
            A label array's length differs from ``data``'s; a mode is not neutral/whisper.
        """
        if isinstance(bunch, cls):
            return bunch
        given = dict(bunch) if isinstance(bunch, Mapping) else {
            k: getattr(bunch, k) for k in _FIELDS if hasattr(bunch, k)}  # e.g. a named tuple
        missing = [k for k in ("data", "target", "groups") if k not in given]
        if missing:
            raise TypeError(f"a corpus needs data, target and groups (and mode, sample_rate); "
                            f"missing {', '.join(map(repr, missing))}")
        fields = {k: given.pop(k) for k in ("data", "target", "groups", "mode", "utterance", "sample_rate",
                                            "DESCR", "speakers_known") if k in given}
        if fields.get("mode") is None:
            fields["mode"] = ["neutral"] * len(fields["data"])
        for k in ("devices", "target_names"):
            given.pop(k, None)
        return cls(**fields, extra=given)

    @property
    def devices(self):
        return np.unique(self.target).tolist()

    @property
    def target_names(self):
        return np.asarray(self.devices, dtype=str)

    def __len__(self):
        return len(self.data)

    def __getattr__(self, name):  # the loader's extra fields
        if name != "extra" and not name.startswith("__"):
            try:
                return self.extra[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def keys(self):
        """The field names, as a ``Bunch`` lists them."""
        return list(_FIELDS) + list(self.extra)

    def __contains__(self, key):
        return key in self.keys()

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)


def finish_corpus(
    *, data, target, groups, mode, utterance, sample_rate, descr, return_X_y, extra=None
):
    """The :class:`Corpus` every loader returns (or ``(data, target)``)."""
    target = np.asarray(target, dtype=str)
    if return_X_y:
        return data, target
    extra = dict(extra or {})
    return Corpus(data=data, target=target, groups=groups, mode=mode, utterance=utterance,
                  sample_rate=sample_rate, DESCR=descr, speakers_known=extra.pop("speakers_known", True),
                  extra=extra)


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
