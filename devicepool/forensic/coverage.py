"""Is a recording inside what a calibration covered? :func:`recording_conditions`, :func:`coverage_warnings`.

A likelihood ratio is only as valid as its calibration data: a 0.2 s clip, a (near)
silent file, a file at a rate the calibration never had, or whispered questioned
speech against neutral references (when the calibration held only same-mode pairs) lie
outside it. :func:`coverage_warnings` names each such recording and why, against the
conditions a calibration records (its ``coverage`` dict).
"""

from __future__ import annotations

import numpy as np

__all__ = ["recording_conditions", "coverage_of", "coverage_warnings", "reasons_to_abstain",
           "DEFAULT_COVERAGE", "MINIMAL_COVERAGE", "ABSTAIN"]

#: What the shipped calibration covers (``docs/pretrained.md``): about 1.5-2.5 s
#: recordings, both modes, any level above the silence floor.
DEFAULT_COVERAGE = {"min_duration_s": 1.0, "max_duration_s": 30.0, "min_level_dbfs": -60.0,
                    "min_rate_hz": 8000, "modes": ["neutral", "whisper"], "cross_mode": True}


#: What any calibration is assumed to cover when it recorded nothing (files of 0.4 and
#: earlier): only the silence and minimum-length checks apply.
MINIMAL_COVERAGE = {"min_duration_s": 0.5, "max_duration_s": float("inf"), "min_level_dbfs": -60.0,
                    "min_rate_hz": 0, "modes": ["neutral", "whisper"], "cross_mode": True}


def coverage_of(durations, modes, native_rates=()):
    """The coverage a calibration set gives (for :func:`coverage_warnings`).

    Parameters
    ----------
    durations : array-like of float
        Seconds of each calibration recording.
    modes : array-like of str
        Speaking mode of each (``"neutral"``/``"whisper"``).
    native_rates : array-like of int, optional
        The files' own sample rates.

    Returns
    -------
    coverage : dict
        Durations from 0.8x the shortest to 1.25x the longest, the modes present,
        ``cross_mode`` when both are (the calibration pairs then mix them), the lowest rate.
    """
    durations = np.asarray(durations, dtype=float)
    present = sorted({str(m) for m in modes})
    rates = [int(r) for r in native_rates if r]
    return {"min_duration_s": float(0.8 * durations.min()), "max_duration_s": float(1.25 * durations.max()),
            "min_level_dbfs": -60.0, "min_rate_hz": min(rates) if rates else 0, "modes": present,
            "cross_mode": len(present) > 1}


def recording_conditions(item, sample_rate=16000, *, return_waveform=False):
    """Duration, level, native rate and speaking mode of one recording (path or waveform).

    With ``return_waveform``, also the waveform measured, at ``sample_rate`` (a file is
    read once for both).

    Returns
    -------
    conditions : dict
        ``duration_s``, ``level_dbfs`` (RMS over non-silent frames, or of the whole file
        when all are silent), ``native_rate`` (files; None for arrays), ``clipped_fraction``
        (samples at full scale, ``|x| >= 0.999``, before any resampling), ``voiced_fraction``
        (voiced frames among non-silent ones) and ``mode`` (``"whisper"`` below 10 % voiced,
        else ``"neutral"``; ``"silence"`` when no frame is above the silence floor).
    """
    from ..audio import as_waveform, read_audio_file, resample

    native = None
    if isinstance(item, str) or hasattr(item, "__fspath__"):
        x, native = read_audio_file(item)
        clipped = float(np.mean(np.abs(x) >= 0.999)) if len(x) else 0.0
        x = resample(x, native, sample_rate) if native != sample_rate else x
    else:
        x = as_waveform(item, sample_rate)
        clipped = float(np.mean(np.abs(x) >= 0.999)) if len(x) else 0.0
    out = {"duration_s": len(x) / sample_rate, "native_rate": native, "clipped_fraction": clipped}
    out = _measure(x, sample_rate, out)
    return (out, x) if return_waveform else out


def _measure(x, sample_rate, out):
    """``out`` with the level, voiced fraction and mode of the waveform ``x``."""
    from ..features import voicing_labels

    if len(x) < int(0.025 * sample_rate):
        return dict(out, level_dbfs=float(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12)),
                    voiced_fraction=0.0, mode="silence")
    labels, feats = voicing_labels(x, sample_rate, return_features=True)
    active = labels != "silence"
    level = feats["level_db"][active] if active.any() else feats["level_db"]
    out["level_dbfs"] = float(10 * np.log10(np.mean(10 ** (level / 10)) + 1e-12))
    out["voiced_fraction"] = float(np.mean(labels[active] == "voiced")) if active.any() else 0.0
    if not active.any():
        out["mode"] = "silence"
    else:
        out["mode"] = "whisper" if out["voiced_fraction"] < 0.10 else "neutral"
    return out


def coverage_warnings(questioned, references, coverage=None, sample_rate=16000):
    """Warnings for recordings outside what a calibration covered.

    Parameters
    ----------
    questioned, references : sequence of paths or waveforms
    coverage : dict, optional
        ``min_duration_s``, ``max_duration_s``, ``min_level_dbfs``, ``min_rate_hz``,
        ``modes`` (speaking modes the calibration held), ``cross_mode`` (whether it held
        questioned and references of different modes); :func:`coverage_of` makes one.
        Default :data:`DEFAULT_COVERAGE` (the shipped calibration's).
    sample_rate : int, default=16000

    Returns
    -------
    warnings : list of str
        One line per problem, naming the recording (``questioned[i]`` / ``reference[i]``
        or its path) and the rule.
    conditions : dict
        ``{"questioned": [...], "references": [...]}``, the :func:`recording_conditions`.
    """
    cov = dict(DEFAULT_COVERAGE, **(coverage or {}))
    found = {"questioned": [recording_conditions(q, sample_rate) for q in questioned],
             "references": [recording_conditions(r, sample_rate) for r in references]}
    warnings = []
    for role, items in (("questioned", questioned), ("references", references)):
        for i, (item, c) in enumerate(zip(items, found[role])):
            name = str(item) if isinstance(item, str) or hasattr(item, "__fspath__") else f"{role}[{i}]"
            if c["mode"] == "silence" or c["level_dbfs"] < cov["min_level_dbfs"]:
                warnings.append(f"{name}: (near) silent, {c['level_dbfs']:.0f} dBFS (calibration covers "
                                f"speech above {cov['min_level_dbfs']:.0f} dBFS): the LR is not meaningful")
            if c["duration_s"] < cov["min_duration_s"]:
                warnings.append(f"{name}: {c['duration_s']:.2f} s long; the calibration covers "
                                f"{cov['min_duration_s']:.1f}-{cov['max_duration_s']:.0f} s recordings "
                                "(shorter ones give weaker, less reliable evidence)")
            elif c["duration_s"] > cov["max_duration_s"]:
                warnings.append(f"{name}: {c['duration_s']:.0f} s long; the calibration covers up to "
                                f"{cov['max_duration_s']:.0f} s")
            if c["native_rate"] is not None and c["native_rate"] < cov["min_rate_hz"]:
                warnings.append(f"{name}: recorded at {c['native_rate']} Hz, below the "
                                f"{cov['min_rate_hz']} Hz the calibration covers")
            if c["mode"] not in ("silence",) and c["mode"] not in cov["modes"]:
                warnings.append(f"{name}: {c['mode']} speech, but the calibration held only "
                                f"{'/'.join(cov['modes'])} speech")
    q_modes = {c["mode"] for c in found["questioned"]} - {"silence"}
    r_modes = {c["mode"] for c in found["references"]} - {"silence"}
    if q_modes and r_modes and q_modes != r_modes and not cov["cross_mode"]:
        warnings.append(f"questioned speech looks {'/'.join(sorted(q_modes))} and the references "
                        f"{'/'.join(sorted(r_modes))}; the calibration held no cross-mode pairs")
    return warnings, found


#: When a device classifier should answer "unknown" rather than name a device
#: (:func:`reasons_to_abstain`): shorter than half a second (the networks train on 1 s
#: crops), (near) silent, more than 1 % of samples at full scale, or recorded at a lower
#: rate than the model's (upsampling leaves the band above the file's Nyquist empty,
#: which the model never saw: the channel it judges is not the device's).
ABSTAIN = {"min_duration_s": 0.5, "min_level_dbfs": -60.0, "max_clipped_fraction": 0.01}


def reasons_to_abstain(conditions, model_rate=None, **limits):
    """Why a device classifier cannot judge a recording: an empty list when it can.

    Parameters
    ----------
    conditions : dict
        Of :func:`recording_conditions`.
    model_rate : int, optional
        The rate the model was trained at; a file at a lower native rate is refused.
    **limits
        Replace those of :data:`ABSTAIN` (``min_duration_s``, ``min_level_dbfs``,
        ``max_clipped_fraction``; None turns a check off).

    Returns
    -------
    reasons : list of str
        One short phrase per problem, e.g. ``"too short: 0.10 s (the model needs at least
        0.50 s)"``.

    Examples
    --------
    >>> c = {"duration_s": 0.1, "level_dbfs": -20.0, "mode": "neutral", "native_rate": 8000,
    ...      "clipped_fraction": 0.0}
    >>> for reason in reasons_to_abstain(c, model_rate=16000):
    ...     print(reason)
    too short: 0.10 s (the model needs at least 0.50 s)
    recorded at 8000 Hz, below the model's 16000 Hz (resampling cannot restore the missing band)
    """
    unknown = sorted(set(limits) - set(ABSTAIN))
    if unknown:
        raise TypeError(f"reasons_to_abstain: unknown limit(s) {unknown} (known: {sorted(ABSTAIN)})")
    lim = dict(ABSTAIN, **limits)
    c, reasons = conditions, []
    if lim["min_duration_s"] is not None and c["duration_s"] < lim["min_duration_s"]:
        reasons.append(f"too short: {c['duration_s']:.2f} s (the model needs at least "
                       f"{lim['min_duration_s']:.2f} s)")
    floor = lim["min_level_dbfs"]
    if floor is not None and (c["mode"] == "silence" or c["level_dbfs"] < floor):
        reasons.append(f"(near) silent: {c['level_dbfs']:.0f} dBFS (below {lim['min_level_dbfs']:.0f} dBFS "
                       "there is no channel to judge)")
    clipped = c.get("clipped_fraction", 0.0)
    if lim["max_clipped_fraction"] is not None and clipped > lim["max_clipped_fraction"]:
        reasons.append(f"clipped: {100 * clipped:.1f} % of samples at full scale (the clipping, "
                       "not the device, shapes the spectrum)")
    native = c.get("native_rate")
    if model_rate is not None and native is not None and native < model_rate:
        reasons.append(f"recorded at {native} Hz, below the model's {model_rate} Hz (resampling "
                       "cannot restore the missing band)")
    return reasons
