"""Figures of the paper: DA-CNN band weights, time-weight distributions, confusion matrices.

Matplotlib is the optional ``plot`` extra (``pip install devicepool[plot]``); it is only
imported when a plot function is called. The functions use the object API
(:class:`matplotlib.figure.Figure`), never :mod:`matplotlib.pyplot` state or ``show``,
so they work on headless machines. Each plot function takes ``ax=None`` (a new figure
is created) and returns the axes it drew on; save with ``ax.figure.savefig(path)``.

* :func:`plot_band_weights` -- Fig. 2a: mean band (frequency) attention weight per mel
  band, one curve per model (e.g. neutral, whisper).
* :func:`plot_time_weight_distribution` -- Fig. 2b/2c: how the time attention weights
  are distributed over voiced, unvoiced and silence frames. The numbers come from the
  pure-numpy helpers :func:`time_weight_histogram` and :func:`align_frame_labels`.
* :func:`plot_confusion_matrix` -- a device confusion matrix.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ._validation import Interval, StrOptions, validate_params, where
from .audio import SAMPLE_RATE, check_sample_rate
from .features import VOICING_CLASSES, mel_band_edges, voicing_codes

__all__ = [
    "VOICING_CLASSES",
    "align_frame_labels",
    "band_centre_frequencies",
    "plot_band_weights",
    "plot_confusion_matrix",
    "plot_time_weight_distribution",
    "time_weight_histogram",
]

_CLASS_COLOURS = {"voiced": "#1f77b4", "unvoiced": "#ff7f0e", "silence": "#7f7f7f"}


def _new_axes(ax, figsize):
    """Return ``ax``, or the axes of a new Agg-safe figure when ``ax`` is None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("devicepool.plotting needs matplotlib: pip install devicepool[plot]") from None
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _finish_axes(ax, title, grid_axis=None):
    """Light grid along ``grid_axis`` and a small legend (if given), then ``title``."""
    if grid_axis is not None:
        ax.grid(True, axis=grid_axis, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


#: Declared constraints of the parameters of this module's functions (by name).
_CONSTRAINTS = {
    "n_bands": [Interval(Integral, 1, None, closed="left")],
    "sample_rate": [SAMPLE_RATE, None],
    "f_min": [Interval(Real, 0, None, closed="left")],
    "f_max": [Interval(Real, 0, None, closed="neither"), None],
    "title": [str, None],
    "spread": [StrOptions({"std", "sem"})],
    "n_out": [Interval(Integral, 0, None, closed="left")],
    "factor": [Interval(Integral, 1, None, closed="left")],
    "n_levels": [Interval(Integral, 2, None, closed="left")],
    "normalize": ["boolean"],
}


def _validate(owner, **params):
    """Check ``params`` against :data:`_CONSTRAINTS`; return them (sample rate as an int)."""
    if params.get("sample_rate") is not None:
        params["sample_rate"] = check_sample_rate(params["sample_rate"], owner=owner)
    validate_params(params, _CONSTRAINTS, owner=owner)
    return params


# --------------------------------------------------------------------------- Fig. 2a


def band_centre_frequencies(n_bands=24, sample_rate=16000, f_min=20.0, f_max=None):
    """Centre frequencies (Hz) of the mel bands of :class:`~devicepool.features.FilterBank`.

    Band ``k`` peaks at the ``k + 1``-th of ``n_bands + 2`` points equally spaced on the
    HTK mel scale between ``f_min`` and ``f_max`` (default ``sample_rate / 2``).

    Parameters
    ----------
    n_bands : int, default=24
    sample_rate : int, default=16000
    f_min : float, default=20.0
    f_max : float or None, default=None

    Returns
    -------
    centres : ndarray of shape (n_bands,)

    Examples
    --------
    >>> c = band_centre_frequencies(24, 16000)
    >>> c.shape, bool(np.all(np.diff(c) > 0)), bool(c[-1] < 8000)
    ((24,), True, True)
    """
    sample_rate = _validate("band_centre_frequencies", n_bands=n_bands, sample_rate=sample_rate,
                            f_min=f_min, f_max=f_max)["sample_rate"]
    if f_max is None and sample_rate is None:
        raise ValueError("band_centre_frequencies needs sample_rate or f_max")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    return mel_band_edges(n_bands, f_min, f_max)[1:-1]


def _check_band_weights(weights):
    if not isinstance(weights, dict) or len(weights) == 0:
        raise TypeError(
            "weights must be a non-empty dict {label: array (n_bands,) or "
            f"(n_utterances, n_bands)}}, got {type(weights).__name__}"
        )
    out, n_bands = {}, None
    for key, value in weights.items():
        w = np.asarray(value, dtype=np.float64)
        if w.ndim not in (1, 2) or w.size == 0:
            raise ValueError(
                f"weights[{key!r}] must have shape (n_bands,) or (n_utterances, n_bands), "
                f"got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError(f"weights[{key!r}] contains NaN or infinite values")
        if n_bands is not None and w.shape[-1] != n_bands:
            raise ValueError(f"weights[{key!r}] has {w.shape[-1]} bands, the others have {n_bands}")
        n_bands = w.shape[-1]
        out[key] = w
    return out, n_bands


def plot_band_weights(
    weights,
    ax=None,
    labels=None,
    title=None,
    *,
    sample_rate=None,
    band_frequencies=None,
    spread="std",
):
    """Mean band attention weight per mel band, one curve per model (paper Fig. 2a).

    Parameters
    ----------
    weights : dict of {str: array-like of shape (n_bands,) or (n_utterances, n_bands)}
        Band weights per model, e.g. ``{"neutral": w_n, "whisper": w_w}``. A 2-D entry
        holds one row per utterance: its mean is drawn with a shaded band of
        +- ``spread`` around it.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made when None.
    labels : sequence of str or dict, optional
        Legend names, in the order of ``weights`` (or a dict key -> name). Defaults to
        the keys.
    title : str, optional
    sample_rate : int, optional
        When given (and ``band_frequencies`` is not), a top axis shows the centre
        frequencies of the FilterBank mel bands (``f_min = 20`` Hz, ``f_max`` = Nyquist)
        at that rate.
    band_frequencies : array-like of shape (n_bands,), optional
        Centre frequencies in Hz for the top axis.
    spread : {"std", "sem"}, default="std"
        Shading for 2-D entries: the standard deviation across utterances or the
        standard error of the mean.

    Returns
    -------
    ax : matplotlib Axes
        One line per model: x = band index 0..n_bands-1, y = mean weight.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ax = plot_band_weights({"neutral": rng.random((5, 24)), "whisper": rng.random(24)})
    >>> len(ax.get_lines())
    2
    """
    _validate("plot_band_weights", title=title, sample_rate=sample_rate, spread=spread)
    arrays, n_bands = _check_band_weights(weights)
    keys = list(arrays)
    if labels is None:
        names = [str(k) for k in keys]
    elif isinstance(labels, dict):
        names = [str(labels.get(k, k)) for k in keys]
    else:
        names = [str(n) for n in labels]
        if len(names) != len(keys):
            raise ValueError(f"labels has {len(names)} names for {len(keys)} weight sets")
    if band_frequencies is None and sample_rate is not None:
        band_frequencies = band_centre_frequencies(n_bands, sample_rate)
    if band_frequencies is not None:
        band_frequencies = np.asarray(band_frequencies, dtype=np.float64)
        if band_frequencies.shape != (n_bands,):
            raise ValueError(f"band_frequencies must have shape ({n_bands},), got {band_frequencies.shape}")

    ax = _new_axes(ax, (7.0, 4.0))
    x = np.arange(n_bands)
    markers = "osd^v<>"
    for i, (key, name) in enumerate(zip(keys, names)):
        w = arrays[key]
        if w.ndim == 2:
            mean = w.mean(axis=0)
            dev = w.std(axis=0, ddof=1) if w.shape[0] > 1 else np.zeros(n_bands)
            if spread == "sem":
                dev = dev / np.sqrt(w.shape[0])
            label = f"{name} (n={w.shape[0]})"
        else:
            mean, dev, label = w, None, name
        (line,) = ax.plot(x, mean, marker=markers[i % len(markers)], ms=4, lw=1.5, label=label)
        if dev is not None:
            ax.fill_between(x, mean - dev, mean + dev, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlim(-0.5, n_bands - 0.5)
    ax.set_xticks(x[:: 2 if n_bands > 12 else 1])
    ax.set_xlabel("mel band index")
    shaded = any(w.ndim == 2 for w in arrays.values())
    ax.set_ylabel("mean band weight" + (f" (shaded: ±1 {'s.e.m.' if spread == 'sem' else 'std'}"
                                        " over utterances)" if shaded else ""))
    _finish_axes(ax, title, grid_axis="both")
    if band_frequencies is not None:
        top = ax.secondary_xaxis("top")
        ticks = x[:: max(1, n_bands // 8)]
        top.set_xticks(ticks)
        top.set_xticklabels([f"{band_frequencies[t] / 1000:.1f}" for t in ticks])
        top.set_xlabel("band centre frequency (kHz)")
    return ax


# --------------------------------------------------------------------------- Fig. 2b, 2c


def align_frame_labels(labels, n_out, factor=4):
    """Map per-input-frame labels onto an output frame grid ``factor`` times coarser.

    Output frame ``j`` covers input frames ``[j * factor, (j + 1) * factor)``; its label
    is the majority among them. Ties go to ``"voiced"``, then ``"unvoiced"``, then
    ``"silence"`` (a block half voiced is counted as voiced). The last block may be
    partial (networks pooling with ceil mode); input frames beyond ``n_out * factor``
    (dropped by floor-mode pooling) are ignored.

    Parameters
    ----------
    labels : array-like of str or int, shape (n_in,)
        One of :data:`VOICING_CLASSES` per input (feature) frame, or its code
        (:func:`~devicepool.features.voicing_codes`).
    n_out : int
        Number of output frames, at most ``ceil(n_in / factor)``.
    factor : int, default=4
        Time reduction of the network (4 for two 2x poolings).

    Returns
    -------
    aligned : ndarray of str, shape (n_out,)
        Class names; int8 codes when ``labels`` are codes.

    Raises
    ------
    ValueError
        ``n_out`` needs more frames than there are, or an unknown label.

    Examples
    --------
    >>> align_frame_labels(["voiced", "silence", "silence", "voiced",
    ...                     "unvoiced", "unvoiced", "voiced", "silence"], 2).tolist()
    ['voiced', 'unvoiced']
    """
    codes = voicing_codes(labels, "labels")
    _validate("align_frame_labels", n_out=n_out, factor=factor)
    n_out, factor = int(n_out), int(factor)
    n_in = codes.shape[0]
    if n_out > -(-n_in // factor):
        raise ValueError(
            f"n_out={n_out} output frames need at least {(n_out - 1) * factor + 1} input "
            f"frames at factor {factor}, got {n_in}"
        )
    codes = codes[: n_out * factor]
    block = np.arange(codes.shape[0]) // factor
    counts = np.zeros((n_out, len(VOICING_CLASSES)), dtype=np.int64)
    np.add.at(counts, (block, codes), 1)
    # argmax returns the first maximum: VOICING_CLASSES order is the tie-break order
    aligned = np.argmax(counts, axis=1).astype(np.int8)
    if np.asarray(labels).dtype.kind in "iu":
        return aligned
    return np.asarray(VOICING_CLASSES, dtype="<U8")[aligned]


def time_weight_histogram(time_weights, frame_labels, n_levels=11, normalize=True):
    """Distribution of quantised time attention weights per frame class (Fig. 2b/2c data).

    Each utterance's weights are divided by that utterance's largest weight, so the
    most attended frame of every utterance is at 1 (attention weights sum to 1 over an
    utterance, so their raw scale depends on its length). They are then rounded to the
    nearest of ``n_levels`` equally spaced values ``0, 1/(n_levels-1), ..., 1`` (0, 0.1,
    ..., 1.0 for 11 levels) and counted per frame class.

    Parameters
    ----------
    time_weights : sequence of array-like, each of shape (n_frames_i,)
        Non-negative time weights per utterance.
    frame_labels : sequence of array-like of str or int, each of shape (n_frames_i,)
        The voicing class (or its code) of each weighted frame (aligned by the caller,
        e.g. with :func:`align_frame_labels`).
    n_levels : int, default=11
    normalize : bool, default=True
        Return, per class, the fraction of that class's frames at each level (each
        non-empty class sums to 1); else the counts.

    Returns
    -------
    histogram : dict of {str: ndarray of shape (n_levels,)}
        One entry per class of :data:`VOICING_CLASSES`, in that order.

    Raises
    ------
    ValueError
        Different numbers of utterances, an utterance whose weights and labels differ in
        length, negative or non-finite weights, unknown labels.

    Examples
    --------
    >>> h = time_weight_histogram([[0.1, 0.5, 0.4]], [["silence", "voiced", "voiced"]])
    >>> h["voiced"][[8, 10]].tolist(), h["silence"][2].item()
    ([0.5, 0.5], 1.0)
    """
    _validate("time_weight_histogram", n_levels=n_levels, normalize=normalize)
    n_levels = int(n_levels)
    time_weights, frame_labels = list(time_weights), list(frame_labels)
    if len(time_weights) != len(frame_labels):
        raise ValueError(f"{len(time_weights)} weight arrays but {len(frame_labels)} label arrays")
    if not time_weights:
        raise ValueError("time_weights is empty: need at least one utterance")
    counts = np.zeros((len(VOICING_CLASSES), n_levels), dtype=np.int64)
    for i, (w, lab) in enumerate(zip(time_weights, frame_labels)):
        w = np.asarray(w, dtype=np.float64)
        lab = voicing_codes(lab, where(i))
        if w.ndim != 1:
            raise ValueError(f"{where(i)}: time weights must be 1-D, got shape {w.shape}")
        if w.shape[0] != lab.shape[0]:
            raise ValueError(
                f"{where(i)}: {w.shape[0]} time weights but {lab.shape[0]} frame labels; "
                "align them first (align_frame_labels)"
            )
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"{where(i)}: time weights must be finite and >= 0")
        if w.size == 0:
            continue
        peak = w.max()
        scaled = w / peak if peak > 0 else w
        level = np.rint(scaled * (n_levels - 1)).astype(np.int64)
        for c in range(len(VOICING_CLASSES)):
            counts[c] += np.bincount(level[lab == c], minlength=n_levels)
    if not normalize:
        return {name: counts[c] for c, name in enumerate(VOICING_CLASSES)}
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return {name: fractions[c] for c, name in enumerate(VOICING_CLASSES)}


def plot_time_weight_distribution(time_weights, frame_labels, ax=None, n_levels=11, title=None):
    """Grouped bars: fraction of voiced / unvoiced / silence frames per weight level.

    Paper Fig. 2b (neutral model) and 2c (whisper model). The data are those of
    :func:`time_weight_histogram` (weights divided by each utterance's maximum, then
    quantised to ``n_levels`` values in [0, 1]).

    Parameters
    ----------
    time_weights : sequence of array-like, each of shape (n_frames_i,)
    frame_labels : sequence of array-like of str or int, each of shape (n_frames_i,)
    ax : matplotlib Axes, optional
    n_levels : int, default=11
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        ``n_levels`` bars per class (3 * n_levels bars); the legend gives each class's
        frame count.

    Examples
    --------
    >>> ax = plot_time_weight_distribution([[0.2, 0.9, 0.1]], [["voiced", "voiced", "silence"]])
    >>> len(ax.patches)
    33
    """
    _validate("plot_time_weight_distribution", n_levels=n_levels, title=title)
    counts = time_weight_histogram(time_weights, frame_labels, n_levels, normalize=False)
    fractions = time_weight_histogram(time_weights, frame_labels, n_levels, normalize=True)
    ax = _new_axes(ax, (7.0, 4.0))
    levels = np.linspace(0.0, 1.0, n_levels)
    step = 1.0 / (n_levels - 1)
    width = 0.8 * step / len(VOICING_CLASSES)
    for c, name in enumerate(VOICING_CLASSES):
        offset = (c - (len(VOICING_CLASSES) - 1) / 2) * width
        ax.bar(levels + offset, fractions[name], width=width, color=_CLASS_COLOURS[name],
               label=f"{name} ({int(counts[name].sum())} frames)")
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{v:.1f}" for v in levels])
    ax.set_xlim(-step / 2, 1 + step / 2)
    ax.set_xlabel("time weight (normalised per utterance, quantised)")
    ax.set_ylabel("fraction of the class's frames")
    return _finish_axes(ax, title, grid_axis="y")


# --------------------------------------------------------------------------- confusion


def _cell_text(value, count, normalize, n):
    """A cell's label: whole percentages without decimals ("100%", "0%": the widest label
    stays 5 characters), one decimal otherwise; the count below up to 8 classes."""
    if not normalize:
        return f"{count:g}"
    pct = f"{value:.0f}%" if n > 8 or round(value, 1) in (0.0, 100.0) else f"{value:.1f}%"
    return pct if n > 8 else f"{pct}\n({count:g})"


def _cell_fontsize(ax, n, chars):
    """A font size (points) at which ``chars`` characters fit a cell's width: 9 at most,
    4 at least (the axes' drawn width, divided among ``n`` cells)."""
    fig = ax.figure
    width_pt = ax.get_position().width * fig.get_figwidth() * 72.0
    fit = 0.85 * width_pt / n / (0.62 * max(chars, 1))  # a digit is about 0.6 em wide
    return float(max(4.0, min(9.0, fit)))


def plot_confusion_matrix(cm, labels, ax=None, normalize=True, title=None, *, cmap="Blues"):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted class).

    Parameters
    ----------
    cm : array-like of shape (n_classes, n_classes)
        Non-negative counts, e.g. from :func:`sklearn.metrics.confusion_matrix`.
    labels : sequence of str, length n_classes
        Class (device) names, in the order of the rows.
    ax : matplotlib Axes, optional
    normalize : bool, default=True
        Colour and annotate each row as percentages of the true class (with the count
        below); else colour and annotate the counts. Empty rows stay at 0.
    title : str, optional
    cmap : str, default="Blues"

    Returns
    -------
    ax : matplotlib Axes
        The image's data are the plotted values (``ax.images[0].get_array()``).

    Examples
    --------
    >>> ax = plot_confusion_matrix([[8, 2], [1, 9]], ["phone A", "phone B"])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['phone A', 'phone B']
    """
    _validate("plot_confusion_matrix", normalize=normalize, title=title)
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a square 2-D array, got shape {cm.shape}")
    if cm.dtype.kind not in "iuf" or not np.isfinite(cm).all() or (cm < 0).any():
        raise ValueError("cm must hold finite non-negative counts")
    labels = [str(name) for name in labels]
    n = cm.shape[0]
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} names for a {n}x{n} confusion matrix")
    cm = cm.astype(np.float64)
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        values = 100.0 * np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        vmax = 100.0
    else:
        values = cm
        vmax = max(cm.max(), 1.0)

    size = min(12.0, max(4.0, 0.5 * n + 2.5))
    ax = _new_axes(ax, (size + 1.0, size))
    im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalize else "count")
    ax.set_xticks(np.arange(n))
    ax.set_yticks(np.arange(n))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    texts = [[_cell_text(values[i, j], cm[i, j], normalize, n) for j in range(n)] for i in range(n)]
    fontsize = _cell_fontsize(ax, n, max(len(line) for row in texts for t in row for line in t.split("\n")))
    for i in range(n):
        for j in range(n):
            text = texts[i][j]
            dark = values[i, j] > 0.6 * vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    return _finish_axes(ax, title)
