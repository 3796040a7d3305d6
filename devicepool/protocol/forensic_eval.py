"""Measuring the fitted folds of the forensic protocol: per fold the LR system
(:class:`~devicepool.forensic.DeviceLR` on the stored embeddings) and the open-set
threshold (:class:`~devicepool.forensic.OpenSetClassifier` on the stored class log
probabilities); the result (:class:`ForensicResult`) and its files.

Which devices and speakers each step uses is in :mod:`devicepool.protocol.forensic`.
Values are stored as fractions (EER and rates in [0, 1], Cllr in bits); the Markdown
shows rates in percent. :mod:`devicepool.forensic` is imported when a fold is measured
(it pulls in scikit-learn's linear models), not with :mod:`devicepool.protocol`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, to_jsonable

__all__ = ["ForensicResult"]

#: measure -> (row title, shown in percent)
MEASURES = {
    "cllr": ("Cllr (bits)", False),
    "cllr_min": ("Cllr_min (bits)", False),
    "cllr_cal": ("Cllr_cal (bits)", False),
    "eer": ("EER (%)", True),
    "misleading_h1": ("same-device pairs with LR < 1, misleading (%)", True),
    "misleading_h2": ("different-device pairs with LR > 1, misleading (%)", True),
    "known_accuracy": ("open set: accuracy on known devices (%)", True),
    "unknown_rejection": ("open set: unknown devices rejected (%)", True),
    "far": ("open set: unknown devices accepted, FAR (%)", True),
    "known_rejection": ("open set: known-device recordings rejected (%)", True),
    "closed_set_accuracy": ("closed set: accuracy on known devices (%)", True),
}
_LR_KEYS = ("cllr", "cllr_min", "cllr_cal", "eer", "misleading_h1", "misleading_h2")
_OPEN_KEYS = ("known_accuracy", "unknown_rejection", "far", "known_rejection", "closed_set_accuracy")


class _Lookup:
    """A fitted classifier's class log probabilities, looked up by row (what
    :class:`OpenSetClassifier` reads: its ``X`` are row numbers)."""

    def __init__(self, log_proba, classes):
        self.log_proba = log_proba
        self.classes_ = classes

    def predict_log_proba(self, rows):
        return self.log_proba[np.asarray(rows, dtype=np.int64)]

    def predict_proba(self, rows):
        return np.exp(self.predict_log_proba(rows))


@dataclass
class ForensicResult:
    """What the forensic protocol measured for one system.

    Attributes
    ----------
    folds : list of dict
        Per fold: its composition (``unseen_devices``, ``seen_devices``,
        ``calibration_speakers``, ``test_speakers``, seeds), ``lr`` (``cllr``,
        ``cllr_min``, ``cllr_cal``, ``eer``, the rates of misleading evidence
        ``misleading_h1`` (same-device pairs with LR < 1) and ``misleading_h2``
        (different-device pairs with LR > 1), ``llr_range``, ``n_same``, ``n_diff``), ``open_set``
        (``known_accuracy``, ``unknown_rejection``, ``far``, ``known_rejection``,
        ``closed_set_accuracy``, ``threshold``, counts), ``cross_mode`` (with a corpus of
        both modes) and the fit's ``n_train`` and seconds.
    summary : dict
        ``measure -> {"mean", "std", "values"}`` over folds (population std,
        ``ddof=0``); cross-mode measures are named ``mismatched_<measure>``,
        ``matched_<measure>`` (the same pair construction in the protocol's mode) and
        ``mismatched_open_<measure>``.
    pooled : dict
        The LR measures of all folds' test pairs together.
    llr, y : ndarray of shape (n_pairs,)
        log10 LRs and hypotheses (1 = same device) of all folds' test pairs (the plots).
    settings : dict
        Corpus, model, system, seeds, threads, wall times.
    notes : list of str
    paths : dict
        Files written (with ``out_dir``).
    """

    folds: list
    summary: dict
    pooled: dict
    llr: np.ndarray
    y: np.ndarray
    settings: dict
    notes: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    #: :func:`~devicepool.protocol.pretrained_eval.evaluate_pretrained` on the same folds, when asked
    pretrained: dict | None = None

    def mean(self, measure):
        """Mean over folds of a measure (a fraction, or bits for Cllr)."""
        return self.summary[measure]["mean"]

    def to_dict(self):
        """Everything but the pooled pairs, as plain JSON values."""
        return to_jsonable({"settings": self.settings, "summary": self.summary,
                             "pooled": self.pooled, "folds": self.folds, "notes": self.notes,
                             "n_pairs": int(len(self.y)), "n_same": int(np.sum(self.y)),
                             **({"pretrained": self.pretrained} if self.pretrained else {})})

    def to_markdown(self, title=None):
        """The measures (mean ± std over folds, per fold), the folds and the settings."""
        return _markdown(self, title)


# --------------------------------------------------------------------------- one fold


def _rows(fits, out, devices, speakers, mode):
    """Rows of the fold's outputs holding utterances of these devices, speakers, mode."""
    idx = out.index
    keep = (np.isin(fits.devices[idx], list(devices)) & np.isin(fits.speakers[idx], list(speakers))
            & (fits.modes[idx] == mode))
    return np.flatnonzero(keep)


def _lr_measures(llr, y):
    from devicepool.forensic import cllr, cllr_min, eer

    h1, h2 = llr[y == 1], llr[y == 0]
    return {"cllr": cllr(llr, y), "cllr_min": cllr_min(llr, y),
            "cllr_cal": cllr(llr, y) - cllr_min(llr, y), "eer": eer(llr, y),
            "misleading_h1": float(np.mean(h1 < 0)), "misleading_h2": float(np.mean(h2 > 0)),
            "llr_range": [float(llr.min()), float(llr.max())],
            "n_same": int(len(h1)), "n_diff": int(len(h2))}


def _fit_lr(fits, k, system):
    """The fold's DeviceLR: scorer on the seen devices, calibrated on unseen-device pairs
    of the calibration speakers."""
    from devicepool.forensic import DeviceLR

    s, out = fits.splits[k], fits.outputs[k]
    dev, spk = fits.devices[out.index], fits.speakers[out.index]
    bg = _rows(fits, out, s.seen_devices, s.calibration_speakers, fits.mode)
    cal = _rows(fits, out, s.unseen_devices, s.calibration_speakers, fits.mode)
    lda = len(s.seen_devices) - 1 if system["lda_dim"] == "auto" else system["lda_dim"]
    lr = DeviceLR(scoring=system["scoring"], calibration=system["calibration"], lda_dim=lda,
                  n_references=system["n_references"], random_state=s.lr_seed)
    E = out.embeddings
    return lr.fit(E[cal], dev[cal], spk[cal], X_background=E[bg], devices_background=dev[bg])


def _open_set(fits, k, system, test_mode):
    """Threshold at ``far`` on unseen devices of the calibration speakers (protocol's
    mode); accuracy and rejection on the test speakers in ``test_mode``."""
    from devicepool.forensic import UNKNOWN, OpenSetClassifier

    s, out = fits.splits[k], fits.outputs[k]
    dev = fits.devices[out.index]
    known_cal = _rows(fits, out, s.seen_devices, s.calibration_speakers, fits.mode)
    unknown_cal = _rows(fits, out, s.unseen_devices, s.calibration_speakers, fits.mode)
    osc = OpenSetClassifier(_Lookup(out.log_proba, out.classes), far=system["far"],
                            score=system["open_set_score"]).calibrate(known_cal, unknown_cal)
    known = _rows(fits, out, s.seen_devices, s.test_speakers, test_mode)
    unknown = _rows(fits, out, s.unseen_devices, s.test_speakers, test_mode)
    said_known, said_unknown = osc.predict(known), osc.predict(unknown)
    closed = out.classes[np.argmax(out.log_proba[known], axis=1)]
    rejected = float(np.mean(said_unknown == UNKNOWN))
    return {"known_accuracy": float(np.mean(said_known == dev[known])),
            "unknown_rejection": rejected, "far": 1.0 - rejected,
            "known_rejection": float(np.mean(said_known == UNKNOWN)),
            "closed_set_accuracy": float(np.mean(closed == dev[known])),
            "threshold": osc.threshold_, "far_calibration": osc.far_,
            "n_known": len(known), "n_unknown": len(unknown)}


def cross_pairs(q_dev, q_spk, r_dev, r_spk, n_references, rng):
    """Each questioned recording against each reference device (references by other
    speakers): questioned rows, reference rows per pair, hypotheses."""
    qs, refs, y = [], [], []
    for i in range(len(q_dev)):
        for d in np.unique(r_dev):
            eligible = np.flatnonzero((r_dev == d) & (r_spk != q_spk[i]))
            if len(eligible):
                refs.append(rng.choice(eligible, min(n_references, len(eligible)), replace=False))
                qs.append(i)
                y.append(int(d == q_dev[i]))
    return np.asarray(qs, dtype=np.int64), refs, np.asarray(y, dtype=np.int64)


def _cross_llrs(lr, fits, k, q_rows, r_rows, n_references):
    """log10 LRs of questioned rows against references of the test speakers' devices."""
    out = fits.outputs[k]
    dev, spk = fits.devices[out.index], fits.speakers[out.index]
    rng = np.random.default_rng(fits.splits[k].lr_seed)
    qs, refs, y = cross_pairs(dev[q_rows], spk[q_rows], dev[r_rows], spk[r_rows], n_references, rng)
    Zq = lr.scorer_.transform(out.embeddings[q_rows])
    Zr = lr.scorer_.transform(out.embeddings[r_rows])
    means = np.stack([Zr[r].mean(axis=0) for r in refs])
    counts = np.array([len(r) for r in refs])
    return lr.calibrate_scores(lr.scorer_.score_transformed(Zq[qs], means, counts)), y


def _cross_mode(lr, fits, k, system, other):
    """Questioned recordings in ``other`` mode against references in the protocol's mode,
    beside the same construction in the protocol's mode; open set in ``other`` mode."""
    s, out = fits.splits[k], fits.outputs[k]
    refs = _rows(fits, out, s.unseen_devices, s.test_speakers, fits.mode)
    res = {"questioned_mode": other, "reference_mode": fits.mode}
    for name, q_mode in (("matched", fits.mode), ("mismatched", other)):
        q = _rows(fits, out, s.unseen_devices, s.test_speakers, q_mode)
        res[name] = _lr_measures(*_cross_llrs(lr, fits, k, q, refs, system["n_references"]))
    res["open_set"] = _open_set(fits, k, system, other)
    return res


def _evaluate_fold(fits, k, system):
    """One fold's record and its test pairs ``(llr, y)``."""
    s, out = fits.splits[k], fits.outputs[k]
    lr = _fit_lr(fits, k, system)
    test = _rows(fits, out, s.unseen_devices, s.test_speakers, fits.mode)
    llr, y = lr.pair_llrs(out.embeddings[test], fits.devices[out.index][test],
                          fits.speakers[out.index][test])
    rec = {**s.to_dict(), "n_train": out.n_train, "fit_seconds": out.fit_seconds,
           "embed_seconds": out.embed_seconds, "train_plan": out.train_plan,
           "fit_threads": out.threads,
           "n_calibration_pairs": [lr.n_same_pairs_, lr.n_diff_pairs_],
           "lr": _lr_measures(llr, y), "open_set": _open_set(fits, k, system, fits.mode)}
    others = [m for m in ("neutral", "whisper") if m != fits.mode and m in set(fits.modes[out.index])]
    if others:
        rec["cross_mode"] = _cross_mode(lr, fits, k, system, others[0])
    return rec, llr, y


# --------------------------------------------------------------------------- all folds


def _stats(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std()), "values": v.tolist()}


def _summary(folds):
    out = {m: _stats([f["lr"][m] for f in folds]) for m in _LR_KEYS}
    out.update({m: _stats([f["open_set"][m] for f in folds]) for m in _OPEN_KEYS})
    if all("cross_mode" in f for f in folds):
        for part in ("matched", "mismatched"):
            out.update({f"{part}_{m}": _stats([f["cross_mode"][part][m] for f in folds])
                        for m in _LR_KEYS})
        out.update({f"mismatched_open_{m}": _stats([f["cross_mode"]["open_set"][m] for f in folds])
                    for m in _OPEN_KEYS})
    return out


def evaluate_fits(fits, system):
    """Every fold of ``fits`` measured with ``system`` -> :class:`ForensicResult`.

    BLAS runs one thread here: the matrices are at most the embedding width square
    (960 for DA-CNN), where threads gain little on an idle machine and lose up to 50x on a
    busy one (OpenBLAS threads spinning for cores that are not free; measured: ``eigh`` of
    960 x 960, 8.7 s with 2 threads against 0.17 s with one, at a load average of 5).
    """
    from threadpoolctl import threadpool_limits

    folds, llrs, ys = [], [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(len(fits.splits)):
            rec, llr, y = _evaluate_fold(fits, k, system)
            folds.append(rec)
            llrs.append(llr)
            ys.append(y)
    llr, y = np.concatenate(llrs), np.concatenate(ys)
    settings = {**fits.settings, "system": dict(system)}
    notes = []
    if "cross_mode" not in folds[0]:
        notes.append("no cross-mode measures: the corpus has one speaking mode")
    return ForensicResult(to_jsonable(folds), _summary(folds), _lr_measures(llr, y), llr, y,
                          to_jsonable(settings), notes)


# --------------------------------------------------------------------------- report


def _cell(stats, percent, digits):
    scale = 100.0 if percent else 1.0
    return (f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}",
            ", ".join(f"{scale * v:.{digits}f}" for v in stats["values"]))


def _measure_rows(summary):
    rows = []
    for prefix, label in (("", ""), ("matched_", "cross-mode, matched: "),
                          ("mismatched_", "cross-mode, mismatched: "),
                          ("mismatched_open_", "mismatched mode, ")):
        for key, (title, percent) in MEASURES.items():
            if prefix + key in summary:
                mean, per = _cell(summary[prefix + key], percent, 1 if percent else 3)
                rows.append(f"| {label}{title} | {mean} | {per} |")
    return rows


def _settings_line(st):
    sysm, c = st["system"], st["corpus"]
    return (f"Model `{st['model']}` ({st['model_params'] or 'library defaults'}), mode "
            f"`{st['mode']}`, scorer `{sysm['scoring']}` (lda_dim {sysm['lda_dim']}), calibration "
            f"`{sysm['calibration']}`, {sysm['n_references']} references per pair, open-set score "
            f"`{sysm['open_set_score']}` at FAR {sysm['far']}; {st['n_splits']} device folds, seed "
            f"{st['random_state']}; corpus: {c['n_utterances']} recordings, {c['n_devices']} devices, "
            f"{c['n_speakers']} speakers, modes {c['modes']}; torch threads {st['torch_threads']}, "
            f"n_jobs {st['n_jobs']}.")


def _markdown(result, title=None):
    lines = [f"## {title or 'Forensic validation'}", "", _settings_line(result.settings), "",
             "| measure | mean ± std over folds | per fold |", "|---|---|---|",
             *_measure_rows(result.summary), "",
             f"Pooled over folds: Cllr {result.pooled['cllr']:.3f}, Cllr_min "
             f"{result.pooled['cllr_min']:.3f}, EER {100 * result.pooled['eer']:.1f} % "
             f"({result.pooled['n_same']} same-device and {result.pooled['n_diff']} "
             f"different-device test pairs; log10 LRs from {result.pooled['llr_range'][0]:.1f} to "
             f"{result.pooled['llr_range'][1]:.1f}).", "",
             "| fold | unseen devices (LR test, unknown) | calibration speakers | test speakers "
             "| test pairs H1 / H2 | fit s |", "|---|---|---|---|---|---|"]
    for f in result.folds:
        lines.append(f"| {f['fold']} | {', '.join(f['unseen_devices'])} | "
                     f"{', '.join(f['calibration_speakers'])} | {', '.join(f['test_speakers'])} | "
                     f"{f['lr']['n_same']} / {f['lr']['n_diff']} | {f['fit_seconds']:.1f} |")
    lines += [""] + [f"Note: {n}" for n in result.notes] + ([""] if result.notes else [])
    if result.pretrained:
        sm = result.pretrained["summary"]
        lines += ["### The pretrained embedding on the same folds (nothing trained on the corpus)", "",
                  "| measure | mean ± std over folds |", "|---|---|"]
        for key, (mean, std) in sm.items():
            lines.append(f"| {key} | {mean:.4f} ± {std:.4f} |")
        lines.append("")
    return "\n".join(lines)


def _save_plot(draw, llr, y, path, title):
    ax = draw(llr, y, title=title)
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def write_forensic_outputs(result, out_dir):
    """``forensic.json``, ``forensic.md``, ``llr.npz`` and the three plots (atomic writes;
    the plots are skipped, with a note, without matplotlib)."""
    paths = {name: os.path.join(out_dir, name)
             for name in ("forensic.json", "forensic.md", "llr.npz")}
    buf = io.BytesIO()
    np.savez(buf, llr=result.llr, y=result.y)
    atomic_write_bytes(paths["llr.npz"], buf.getvalue())
    try:
        from devicepool.forensic import plot_det, plot_ece, plot_tippett

        for name, label, draw in (("tippett", "Tippett", plot_tippett), ("det", "DET", plot_det),
                                  ("ece", "ECE", plot_ece)):
            paths[f"{name}.png"] = os.path.join(out_dir, f"{name}.png")
            _save_plot(draw, result.llr, result.y, paths[f"{name}.png"], f"{label}: "
                       f"{result.settings['model']}, {result.settings['mode']}, unseen devices")
    except ImportError:
        result.notes.append("plots not drawn: matplotlib is not installed")
    result.paths.update(paths)
    atomic_write_text(paths["forensic.json"], json.dumps(result.to_dict(), indent=1) + "\n")
    atomic_write_text(paths["forensic.md"], result.to_markdown() + "\n")
    return paths
