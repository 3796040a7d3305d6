"""Generic loader for a parallel multi-device corpus stored as a folder of audio files."""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._validation import validate_params, where
from ..audio import SAMPLE_RATE, check_sample_rate
from ._base import (
    check_root,
    finish_corpus,
    natural_key,
    normalise_mode,
    probe_audio,
    summary_lines,
)

__all__ = ["load_audio_folder", "compile_pattern"]

_FIELD = re.compile(r"\{([^{}]*)\}")
_RESERVED = {
    "data", "target", "groups", "sample_rate", "DESCR", "devices", "target_names",
    "file_sample_rate", "utterance_label",
}


#: The declared constraints of :func:`load_audio_folder`'s parameters (also used by the
#: corpus loaders built on it).
_FOLDER_CONSTRAINTS = {
    "root": ["path-like"],
    "pattern": [str],
    "devices": [str, "array-like", None],
    "modes": [str, "array-like", None],
    "default_mode": [str],
    "strict": ["boolean"],
    "check_files": ["boolean"],
    "sample_rate": [SAMPLE_RATE, None],
    "return_X_y": ["boolean"],
    "name": [str],
}


def compile_pattern(pattern):
    """Compile a path pattern with named fields into a regular expression.

    Parameters
    ----------
    pattern : str
        Relative path with ``/`` separators and fields in braces, e.g.
        ``"{device}/{mode}/{speaker}_{utterance}.wav"``. A field matches one or more
        characters other than ``/`` (shortest match first, so ``{a}_{b}`` splits at the
        first ``_`` that lets the rest match). A field used twice must hold the same
        text both times. Everything outside braces is literal.

    Returns
    -------
    regex : re.Pattern
        Matches a whole relative path; ``regex.fullmatch(p).groupdict()`` gives the fields.
    fields : list of str
        Field names in order of first appearance.

    Raises
    ------
    TypeError
        ``pattern`` is not a string.
    ValueError
        Empty, absolute or ``..`` pattern, a field name that is not an identifier, two
        fields with nothing between them, or no ``{device}`` field.

    Examples
    --------
    >>> rx, fields = compile_pattern("{device}/{speaker}_{utterance}.wav")
    >>> fields
    ['device', 'speaker', 'utterance']
    >>> rx.fullmatch("iPhone 7/spk01_s05.wav").groupdict()["utterance"]
    's05'
    """
    regex, fields = _pattern_regex(pattern)
    if "device" not in fields:
        raise ValueError(f"pattern {pattern!r} has no {{device}} field (the class label)")
    if len(fields) == 1:
        raise ValueError(
            f"pattern {pattern!r} needs a field besides {{device}} (e.g. {{speaker}}, "
            "{utterance}) to tell the recordings of one device apart"
        )
    return regex, fields


def _pattern_regex(pattern):
    """Regex and field names of a pattern (no check of which fields it has)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ValueError(
            f"pattern {pattern!r} must be a non-empty relative path such as "
            "'{device}/{speaker}_{utterance}.wav'"
        )
    parts = _FIELD.split(pattern)  # literal, name, literal, name, ...
    regex, fields = "", []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if "{" in part or "}" in part:
                raise ValueError(f"pattern {pattern!r}: unbalanced brace in {part!r}")
            if i > 0 and i < len(parts) - 1 and part == "":
                raise ValueError(
                    f"pattern {pattern!r}: fields {{{parts[i - 1]}}} and {{{parts[i + 1]}}} "
                    "are adjacent; separate them with a literal such as '_'"
                )
            regex += re.escape(part)
            continue
        if not part.isidentifier():
            raise ValueError(
                f"pattern {pattern!r}: field name {part!r} is not a valid identifier"
            )
        if part in _RESERVED:
            raise ValueError(
                f"pattern {pattern!r}: field name {part!r} is reserved for the corpus; rename it"
            )
        if part in fields:
            regex += f"(?P={part})"
        else:
            fields.append(part)
            regex += f"(?P<{part}>[^/]+?)"
    return re.compile(regex), fields


def _walk(root):
    """Relative POSIX paths of every non-hidden file below ``root``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            out.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
    return out


def _show(paths, root, k=3):
    shown = ", ".join(repr(os.path.join(root, p)) for p in paths[:k])
    return shown + (f" and {len(paths) - k} more" if len(paths) > k else "")


class _Query(NamedTuple):
    """The validated arguments of one :func:`load_audio_folder` call."""

    root: Path
    pattern: str
    regex: re.Pattern
    fields: list  # field names in pattern order
    devices: list | None  # devices to keep (None: all)
    modes: set | None  # normalised modes to keep (None: all)
    default_mode: str
    name: str  # corpus name for messages and DESCR


class _Row(NamedTuple):
    """One selected file: its pattern fields, normalised mode, utterance id and path."""

    fields: dict
    mode: str
    utterance: str
    rel: str  # path relative to the root, "/"-separated


def _as_str_list(values):
    """A str or a sequence of them, as a list (None stays None)."""
    if values is None:
        return None
    return [values] if isinstance(values, str) else list(values)


def _make_query(root, pattern, devices, modes, default_mode, name):
    """Check the root and the pattern, normalise the selections."""
    root = check_root(root, f"{name} root")
    regex, fields = compile_pattern(pattern)
    default_mode = normalise_mode(default_mode, "default_mode")
    if modes is not None:
        modes = {normalise_mode(m, "modes") for m in _as_str_list(modes)}
    if devices is not None:
        devices = [str(d) for d in _as_str_list(devices)]
    return _Query(root, pattern, regex, fields, devices, modes, default_mode, name)


def _match_files(q, strict):
    """``(rel, fields)`` of every file below the root that matches the pattern."""
    root, pattern = q.root, q.pattern
    files = _walk(root)
    if not files:
        raise ValueError(f"{q.name} root {str(root)!r} is empty (no audio files)")
    records, unmatched = [], []
    for rel in files:
        m = q.regex.fullmatch(rel)
        if m is None:
            unmatched.append(rel)
            continue
        records.append((rel, m.groupdict()))
    if unmatched and strict:
        raise ValueError(
            f"{len(unmatched)} file(s) in {str(root)!r} do not match the pattern "
            f"{pattern!r}: {_show(unmatched, root)}; fix the pattern, move the files "
            "away, or pass strict=False to skip them"
        )
    if not records:
        raise ValueError(
            f"no file in {str(root)!r} matches the pattern {pattern!r} "
            f"(e.g. {_show(files, root, 2)})"
        )
    return records


def _check_device_folders(q, records):
    """With a pattern starting ``{device}/``, every (selected) sub-folder must hold a match."""
    first = q.pattern.split("/")[0]
    if not (first == "{device}" and "/" in q.pattern):
        return
    found = {fd["device"] for _, fd in records}
    for entry in sorted(os.listdir(q.root)):
        full = os.path.join(q.root, entry)
        if entry.startswith(".") or not os.path.isdir(full):
            continue
        if q.devices is not None and entry not in q.devices:
            continue
        if entry not in found:
            raise ValueError(
                f"device folder {full!r} holds no file matching the pattern {q.pattern!r}"
            )


def _select_rows(q, records):
    """The records of the selected devices and modes with their utterance ids, sorted."""
    rows = []
    for rel, fd in records:
        at = where(path=os.path.join(q.root, rel))
        mode = normalise_mode(fd["mode"], at) if "mode" in fd else q.default_mode
        if q.devices is not None and fd["device"] not in q.devices:
            continue
        if q.modes is not None and mode not in q.modes:
            continue
        # Utterance id: speaker first, then the other fields, then the mode.
        id_parts = [fd[f] for f in q.fields if f == "speaker"]
        id_parts += [fd[f] for f in q.fields if f not in ("device", "speaker", "mode")]
        id_parts += [mode] if "mode" in q.fields else []
        rows.append(_Row(fd, mode, "_".join(id_parts), rel))
    if q.devices is not None:
        have = {r.fields["device"] for r in rows}
        missing = [d for d in q.devices if d not in have]
        if missing:
            raise ValueError(
                f"device(s) {missing} have no file in {str(q.root)!r} matching the pattern "
                f"{q.pattern!r}" + (f" and modes {sorted(q.modes)}" if q.modes else "")
            )
    if not rows:
        raise ValueError(
            f"no file in {str(q.root)!r} is left after selecting modes {sorted(q.modes)}"
        )
    rows.sort(key=lambda r: (natural_key(r.fields["device"]), natural_key(r.utterance), r.rel))
    return rows


def _extra_fields(q, rows):
    """One str array per field besides device, speaker and mode.

    The ``{utterance}`` field is stored as ``utterance_label``: ``corpus.utterance`` is the
    cross-device id built from all fields.
    """
    return {
        ("utterance_label" if f == "utterance" else f): np.asarray(
            [r.fields[f] for r in rows], dtype=str
        )
        for f in q.fields
        if f not in ("device", "speaker", "mode")
    }


def _file_rates(paths, sample_rate):
    """Every file's own rate, and the corpus rate (``sample_rate``, or the files' one)."""
    rates = np.array([probe_audio(p)[0] for p in paths], dtype=int)
    if sample_rate is not None:
        return rates, sample_rate
    distinct = np.unique(rates)
    if len(distinct) > 1:
        a = paths[int(np.flatnonzero(rates == distinct[0])[0])]
        b = paths[int(np.flatnonzero(rates == distinct[1])[0])]
        raise ValueError(
            f"files have different sample rates ({distinct.tolist()} Hz, e.g. "
            f"{a!r} at {distinct[0]} Hz and {b!r} at {distinct[1]} Hz); pass "
            "sample_rate=... (the command line's --sample-rate HZ) to choose the rate they are "
            "read at"
        )
    return rates, int(distinct[0])


def _warn_if_not_parallel(q, target, utterance, stacklevel):
    """Warn when the devices do not all hold the same utterance ids."""
    by_device = defaultdict(set)
    for t, u in zip(target, utterance):
        by_device[t].add(u)
    union = set().union(*by_device.values())
    short = {d: len(union - s) for d, s in by_device.items() if s != union}
    if short and len(by_device) > 1:
        lacks = (f"device {d!r} lacks {n} of {len(union)} utterance ids" for d, n in sorted(short.items()))
        warnings.warn(
            f"{q.name} {str(q.root)!r} is not fully parallel: " + ", ".join(lacks),
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def _folder_descr(q, target, groups, mode, rate, speakers_known=True):
    """The corpus's DESCR."""
    per_device = Counter(target)
    return "\n".join(
        [
            f"{q.name} loaded from {str(q.root)!r}",
            "",
            f"Pattern: {q.pattern!r}; one file per (device, utterance). `data` holds file",
            "paths; read them with devicepool.audio.read_audio_file or pass them straight",
            "to devicepool.features.FilterBank.",
            "",
            *summary_lines(target, groups, mode, speakers_known),
            "- files per device: "
            + ", ".join(f"{d}: {per_device[d]}" for d in sorted(per_device, key=natural_key)),
            f"- sample rate: {rate} Hz",
        ]
    )


def load_audio_folder(
    root,
    pattern="{device}/{speaker}_{utterance}.wav",
    *,
    devices=None,
    modes=None,
    default_mode="neutral",
    strict=True,
    check_files=True,
    sample_rate=None,
    return_X_y=False,
    name="audio folder",
):
    """Load a parallel multi-device corpus whose file paths follow a pattern.

    Each file is one recording of one utterance by one device. The path of every file
    below ``root`` (relative, ``/``-separated) is matched against ``pattern``; the
    named fields become the labels. Hidden files and folders (name starting with
    ``.``) are ignored.

    Field meaning:

    * ``{device}`` (required): the class label (``target``).
    * ``{speaker}``: the speaker id (``groups``). Without it, ``groups`` is the
      utterance id, so the parallel recordings of one utterance stay in one fold.
    * ``{mode}``: the speaking mode; ``neutral``/``normal`` and
      ``whisper``/``whispered`` (any case) are accepted. Without it every file gets
      ``default_mode``.
    * any other field (``{session}``, ``{take}``, ...): kept as an extra string array
      of that name in the corpus's ``extra`` (also an attribute); the ``{utterance}`` field itself is kept as
      ``utterance_label`` (``utterance`` holds the cross-device id below).

    The utterance id (``utterance``) joins with ``_`` the speaker, the other fields
    except ``{device}`` in pattern order, and the normalised mode, e.g.
    ``"spk03_s07_whisper"`` for ``"{device}/{mode}/{speaker}_{utterance}.wav"``. The
    parallel recordings of one utterance by different devices share it.

    Parameters
    ----------
    root : str or os.PathLike
        Corpus folder.
    pattern : str, default="{device}/{speaker}_{utterance}.wav"
        Relative path pattern, see :func:`compile_pattern`.
    devices : sequence of str, optional
        Keep only these devices; each must have at least one file.
    modes : sequence of {"neutral", "whisper"}, optional
        Keep only these modes.
    default_mode : {"neutral", "whisper"}, default="neutral"
        Mode of every file when the pattern has no ``{mode}`` field.
    strict : bool, default=True
        If True, a non-hidden file that does not match ``pattern`` is an error (it
        usually means a wrong pattern). If False such files are skipped.
    check_files : bool, default=True
        Open every matched file's header (fast) to reject unreadable files early and
        find the sample rate. Set False to skip for very large corpora.
    sample_rate : int, optional
        Rate (Hz) to report in ``sample_rate``. ``None`` uses the files' own rate, which
        must then be the same for all files. The files are not resampled here;
        readers such as :class:`devicepool.features.FilterBank` resample on reading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the corpus.
    name : str, default="audio folder"
        Corpus name used in ``DESCR``.

    Returns
    -------
    corpus : Corpus
        ``data`` (ndarray of str, file paths), ``target`` (device names), ``groups``
        (speaker ids), ``mode``, ``utterance`` (ids shared across devices),
        ``sample_rate``, ``devices`` (device names sorted like a classifier's
        ``classes_``), ``target_names`` (the same
        as an array), ``file_sample_rate`` (int array, when ``check_files``),
        ``utterance_label`` (the ``{utterance}`` field, if any), one str array per extra
        field, and ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        ``root`` is empty or has no file matching ``pattern``; a file does not match
        (``strict=True``); a file is unreadable; a device folder or a requested device
        has no files; unknown mode; mixed sample rates with ``sample_rate=None``.

    Warns
    -----
    UserWarning
        When the devices do not all hold the same set of utterance ids (the corpus
        is not fully parallel).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> for dev in ["phoneA", "phoneB"]:
    ...     os.makedirs(os.path.join(root, dev))
    ...     for spk in ["s1", "s2"]:
    ...         sf.write(os.path.join(root, dev, f"{spk}_u1.wav"), np.zeros(1600), 16000)
    >>> b = load_audio_folder(root)
    >>> b.target.tolist(), b.groups.tolist(), b.utterance.tolist()
    (['phoneA', 'phoneA', 'phoneB', 'phoneB'], ['s1', 's2', 's1', 's2'], ['s1_u1', 's2_u1', 's1_u1', 's2_u1'])
    """
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate, owner="load_audio_folder")
    validate_params(
        dict(root=root, pattern=pattern, devices=devices, modes=modes,
             default_mode=default_mode, strict=strict, check_files=check_files,
             sample_rate=sample_rate, return_X_y=return_X_y, name=name),
        _FOLDER_CONSTRAINTS, owner="load_audio_folder",
    )
    q = _make_query(root, pattern, devices, modes, default_mode, name)
    records = _match_files(q, strict)
    _check_device_folders(q, records)
    rows = _select_rows(q, records)

    paths = [os.path.join(q.root, r.rel) for r in rows]
    target = [r.fields["device"] for r in rows]
    utterance = [r.utterance for r in rows]
    mode = [r.mode for r in rows]
    speakers_known = "speaker" in q.fields
    groups = [r.fields["speaker"] for r in rows] if speakers_known else list(utterance)
    extra = _extra_fields(q, rows)
    if not speakers_known:
        extra["speakers_known"] = False
        warnings.warn(
            f"pattern {pattern!r} has no {{speaker}} field: the speakers are unknown, so "
            "`groups` holds utterance ids (parallel recordings of one utterance stay in one "
            "fold) and speaker-disjoint evaluation is impossible; the protocol refuses "
            "this corpus unless allow_unknown_speakers=True", UserWarning, stacklevel=2)
    rate = sample_rate
    if check_files:
        extra["file_sample_rate"], rate = _file_rates(paths, sample_rate)
    _warn_if_not_parallel(q, target, utterance, stacklevel=2)
    return finish_corpus(
        data=np.asarray(paths, dtype=object),
        target=target,
        groups=groups,
        mode=mode,
        utterance=utterance,
        sample_rate=rate,
        descr=_folder_descr(q, target, groups, mode, rate, speakers_known),
        return_X_y=return_X_y,
        extra=extra,
    )
