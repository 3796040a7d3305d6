"""The protocol's results: the result object, Table 3, the paper's claims, the report.

:class:`ProtocolResult` holds what a run produced; :func:`write_report` writes Table 3
(Markdown, CSV), the per-fold table, confusion matrices, Fig. 2 and ``report.md``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, to_jsonable
from .conditions import CONDITIONS, PAPER_TABLE3
from .conditions import slug as _slug
from .registry import _label

__all__ = ["ProtocolResult", "chance_levels", "combine_results", "paper_claims", "write_report"]


@dataclass
class ProtocolResult:
    """Everything a protocol run produced.

    Attributes
    ----------
    records : list of dict
        One per finished (model, condition, fold): ``accuracy`` (fraction),
        ``n_train``, ``n_test``, ``test_speakers``, ``labels``, ``confusion_matrix``,
        ``seed``, ``model_params``, ``fit_seconds``, predictions, ``devicepool_version``
        (the version that made the fit; absent in older result files), ...
    summary : dict
        ``(model, condition) -> {"mean", "std", "n_folds", "accuracies"}`` in percent.
    confusion : dict
        ``(model, condition) -> {"labels": list, "matrix": ndarray}`` summed over folds
        (rows true device, columns predicted).
    attention : dict
        ``training mode ->`` :class:`~devicepool.features.AttentionWeights` (``band``
        ``(n, 24)``, ``time``, ``time_reduction``, ``utterance_index``, ``voicing``
        codes of the feature frames) from the attention models' fits, on held-out
        utterances of the training mode (the data of Fig. 2).
    models, conditions : list of str
    notes : list of str
        Conditions skipped and why, and other remarks.
    paths : dict
        Files written (report, tables, figures).
    config : dict
        Seeds, folds, corpus fingerprint, model parameters.
    """

    records: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    confusion: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    conditions: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def accuracy(self, model, condition):
        """Mean accuracy (%) over folds of ``model`` in ``condition``."""
        return self.summary[(model, condition)]["mean"]

    def table_rows(self, paper=False, own_corpus=False):
        """Table 3 as rows of strings (first row is the header); ``own_corpus``: neutral
        column titles (``"N (neutral-only corpus)"``, not ``"MOBI (Ex-1)"``)."""
        conds = [c for c in CONDITIONS if c in self.conditions]
        header = ["model"] + [_column_title(c, not own_corpus) for c in conds]
        rows = [header]
        for m in self.models:
            label = _label(m)
            row = [label]
            for c in conds:
                s = self.summary.get((m, c))
                cell = "-" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"
                if paper and m in PAPER_TABLE3 and c in PAPER_TABLE3[m]:
                    cell += f" ({PAPER_TABLE3[m][c]:.2f})"
                row.append(cell)
            rows.append(row)
        return rows

    def to_markdown(self, paper=True, own_corpus=False):
        """Table 3 as a Markdown table: mean ± std over folds (%), paper's value in ()
        (``own_corpus``: without it, under neutral titles)."""
        rows = self.table_rows(paper=paper and not own_corpus, own_corpus=own_corpus)
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines) + "\n"

    def to_csv(self, paper=True, own_corpus=False):
        """Table 3 as CSV text: one row per model, ``mean``/``std`` (and paper) columns."""
        paper = paper and not own_corpus
        conds = [c for c in CONDITIONS if c in self.conditions]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        head = ["model"]
        for c in conds:
            head += [f"{c} mean", f"{c} std", f"{c} folds"] + ([f"{c} paper"] if paper else [])
        w.writerow(head)
        for m in self.models:
            row = [m]
            for c in conds:
                s = self.summary.get((m, c))
                row += ["", "", 0] if s is None else [f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n_folds"]]
                if paper:
                    row.append(PAPER_TABLE3.get(m, {}).get(c, ""))
            w.writerow(row)
        return buf.getvalue()

    def to_frame(self):
        """Per-fold results as a pandas DataFrame (one row per model, condition and fold:
        ``accuracy`` in percent, sizes, seed, fit time); needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("ProtocolResult.to_frame needs pandas: pip install pandas") from None
        cols = ["model", "condition", "fold", "train_mode", "test_mode", "n_train", "n_test",
                "seed", "fit_seconds"]
        rows = [{**{k: r.get(k) for k in cols}, "accuracy": 100 * r["accuracy"]}
                for r in self.records]
        return pd.DataFrame(rows, columns=cols[:3] + ["accuracy"] + cols[3:])

    def folds_csv(self):
        """Per-fold accuracies as CSV text."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "condition", "fold", "accuracy", "n_train", "n_test", "seed",
                    "fit_seconds", "test_speakers"])
        for r in self.records:
            w.writerow([r["model"], r["condition"], r["fold"], f"{100 * r['accuracy']:.4f}",
                        r["n_train"], r["n_test"], r["seed"], f"{r['fit_seconds']:.2f}",
                        " ".join(map(str, r["test_speakers"]))])
        return buf.getvalue()


def _summarise(records, models, conditions, notes, attention, config, n_splits=None):
    res = ProtocolResult(models=list(models), conditions=list(conditions), notes=list(notes),
                         attention=attention, config=config)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    morder = {m: i for i, m in enumerate(models)}
    res.records = sorted(records, key=lambda r: (morder.get(r["model"], 99), order[r["condition"]],
                                                 r["fold"]))
    by = {}
    for r in res.records:
        by.setdefault((r["model"], r["condition"]), []).append(r)
    for key, recs in by.items():
        acc = np.array([100.0 * r["accuracy"] for r in recs])
        res.summary[key] = {"mean": float(acc.mean()), "std": float(acc.std()), "n_folds": len(recs),
                            "accuracies": acc.tolist()}
        labels = list(recs[0]["labels"])
        mat = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for r in recs:
            mat += np.asarray(r["confusion_matrix"], dtype=np.int64)
        res.confusion[key] = {"labels": labels, "matrix": mat}
        if n_splits is not None and len(recs) < n_splits:
            res.notes.append(f"{key[0]} {key[1]}: only {len(recs)} of {n_splits} folds finished")
    return res


def combine_results(*results):
    """Merge protocol results of different corpora (e.g. Ex-1 and Ex-2) into one table.

    Examples
    --------
    >>> combine_results(ProtocolResult(models=["a"]), ProtocolResult(models=["a"])).models
    ['a']
    """
    models, conditions, records, notes, attention, configs = [], [], [], [], {}, []
    seen = set()
    for r in results:
        models += [m for m in r.models if m not in models]
        conditions += [c for c in r.conditions if c not in conditions]
        for rec in r.records:
            key = (rec["model"], rec["condition"], rec["fold"])
            if key in seen:
                raise ValueError(f"results overlap: {key} appears in more than one result")
            seen.add(key)
            records.append(rec)
        notes += r.notes
        for k, v in r.attention.items():
            attention.setdefault(k, v)
        configs.append(r.config)
    conditions = [c for c in CONDITIONS if c in conditions]
    res = _summarise(records, models, conditions, [], attention, {"parts": configs})
    res.notes = notes
    return res


# --------------------------------------------------------------------------- report


def _figure(figsize=(5, 4)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def chance_levels(result):
    """``condition -> chance accuracy (%)``: 100 / the number of devices in its folds."""
    out = {}
    for r in result.records:
        out.setdefault(r["condition"], 100.0 / max(1, len(r["labels"])))
    return out


def paper_claims(result):
    """One Markdown line per claim of the paper, saying whether this run supports it.

    The claims (Naini, Singhal & Ghosh, Table 3 and its discussion): DA-CNN >= SA-CNN and
    DA-CNN >= the DFT-CNN baseline in matched conditions; whisper is classified at
    least as well as neutral speech (W >= N); accuracy drops when training and test
    modes differ (N/W < N, W/N < W). A claim is judged on the means over folds; when the
    difference is smaller than the larger of the two fold standard deviations, the line
    says so.
    """
    s = result.summary
    label = {m: _label(m) for m in result.models}

    def cell(m, c):
        v = s.get((m, c))
        return None if v is None else (v["mean"], v["std"])

    def verdict(a, b, holds_if_ge=True):
        (ma, sa), (mb, sb) = a, b
        holds = ma >= mb if holds_if_ge else ma < mb
        close = abs(ma - mb) < max(sa, sb)
        return ("supported" if holds else "not supported") + (
            " (difference within the fold spread)" if close else "")

    lines = []
    matched = [c for c in ("MOBI", "N", "W") if c in result.conditions]
    for a, b, text in (("da_cnn", "sa_cnn", "DA-CNN ≥ SA-CNN (matched modes)"),
                       ("da_cnn", "dft_cnn", "DA-CNN ≥ DFT-CNN baseline (matched modes)")):
        pairs = [(c, cell(a, c), cell(b, c)) for c in matched if cell(a, c) and cell(b, c)]
        for c, x, y in pairs:
            lines.append(f"- {text}, {c}: {x[0]:.1f} vs {y[0]:.1f} -> {verdict(x, y)}")
    for m in result.models:
        n, w = cell(m, "N"), cell(m, "W")
        if n and w:
            lines.append(f"- whisper ≥ neutral, {label[m]}: W {w[0]:.1f} vs N {n[0]:.1f} -> "
                         f"{verdict(w, n)}")
    for m in result.models:
        for cross, same in (("N/W", "N"), ("W/N", "W")):
            x, y = cell(m, cross), cell(m, same)
            if x and y:
                lines.append(f"- mismatch drop, {label[m]}: {cross} {x[0]:.1f} vs {same} {y[0]:.1f} "
                             f"-> {verdict(x, y, holds_if_ge=False)}")
    return lines


def _column_title(condition, paper):
    """A condition's column title; beside the paper's values "MOBI (Ex-1)", on a corpus of
    one's own (no paper values) what it is: neutral speech of a neutral-only corpus."""
    if condition == "MOBI" and not paper:
        return "N (neutral-only corpus)"
    return CONDITIONS[condition][2]


def write_report(result, out_dir, title="devicepool: Table 3 reproduction", figures=True, extra="",
                 wait=False, paper=True):
    """Write Table 3 (Markdown, CSV), per-fold CSV, confusion matrices, Fig. 2 and report.md.

    Parameters
    ----------
    result : ProtocolResult
    out_dir : str or path-like
    title : str
    figures : bool, default=True
        Also draw PNGs (confusion matrices, Fig. 2 a-c); needs matplotlib.
    extra : str
        Markdown appended to the report (e.g. timing).
    wait : bool, default=False
        The report is written holding the folder's lock (``out_dir/.lock``, as
        :func:`run_protocol` does): when another run holds it, wait for it to end
        instead of raising :class:`OutputLockedError` at once.
    paper : bool, default=True
        Set the run beside the paper: its Table 3 values in parentheses, the "MOBI (Ex-1)"
        column, the paper's claims judged. False for a corpus of one's own (``devicepool
        evaluate --corpus folder``): the figures alone, under neutral titles.

    Returns
    -------
    paths : dict
        Name -> written path (also stored in ``result.paths``).
    """
    from .lock import output_lock

    with output_lock(out_dir, wait=wait):
        return _write_report(result, out_dir, title, figures, extra, paper)


def _settings_lines(config):
    """The report's settings section: what a rerun needs."""
    parts = config.get("parts") or [config]
    out = []
    for cfg in parts:
        if not cfg.get("versions"):
            continue
        versions = ", ".join(f"{k} {v}" for k, v in cfg["versions"].items() if v)
        out.append(f"- {cfg.get('n_utterances')} utterances, {cfg.get('n_splits')} speaker folds, "
                   f"seed {cfg.get('random_state')}; torch threads {cfg.get('torch_threads')}; "
                   f"{versions}; python {cfg.get('python')}; command: `{cfg.get('command')}`")
    return ["## Settings", "", *out, ""] if out else []


def _write_report(result, out_dir, title="devicepool: Table 3 reproduction", figures=True, extra="",
                  paper=True):
    """:func:`write_report`'s work, for a caller that holds the folder's lock."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}

    def put(name, text):
        path = os.path.join(out_dir, name)
        atomic_write_text(path, text)
        paths[name] = path

    put("table3.md", result.to_markdown(own_corpus=not paper))
    put("table3.csv", result.to_csv(own_corpus=not paper))
    put("folds.csv", result.folds_csv())
    cm_json = {f"{m} {c}": v for (m, c), v in result.confusion.items()}
    put("confusion_matrices.json", json.dumps(to_jsonable(cm_json), indent=1) + "\n")

    figs = []
    if figures:
        try:
            figs = _draw_figures(result, out_dir)
        except ImportError as exc:  # matplotlib missing: tables only
            result.notes.append(f"figures not drawn: {exc}")
    for name, path, _caption in figs:
        paths[name] = path

    lines = [f"# {title}", ""]
    if paper:
        lines += ["## Table 3: utterance-level device classification accuracy (%)", "",
                  "Mean ± std over speaker-disjoint folds; the paper's value in parentheses.", ""]
    else:
        lines += ["## Utterance-level device classification accuracy (%)", "",
                  "Mean ± std over speaker-disjoint folds.", ""]
    lines += [result.to_markdown(own_corpus=not paper), ""]
    lines += [("Conditions: MOBI = Ex-1, neutral speech of a neutral-only corpus" if paper else
               "Conditions: N (neutral-only corpus) = neutral speech of a corpus without whisper")
              + "; N = neutral -> neutral; W = whisper -> whisper; N/W = train neutral, test whisper "
              "of the held-out speakers; W/N = the reverse.", ""]
    chance = chance_levels(result)
    if chance:
        lines += ["Chance level (one over the number of devices): " + ", ".join(
            f"{c} {v:.1f} %" for c, v in chance.items()) + ".", ""]
    claims = paper_claims(result) if paper else []
    if claims:
        lines += ["## The paper's claims in this run", "",
                  "Judged on the means over folds (the paper's own values are in Table 3's "
                  "parentheses).", ""] + claims + [""]
    fig2 = [f for f in figs if f[0].startswith("fig2")]
    cms = [f for f in figs if not f[0].startswith("fig2")]
    if fig2:
        lines += ["## Fig. 2: DA-CNN attention on held-out utterances", ""]
        for name, _path, caption in fig2:
            lines += [f"**{caption}**", "", f"![{caption}]({name})", ""]
    if cms:
        lines += ["## Confusion matrices (rows: true device, columns: predicted; summed over folds)", ""]
        for name, _path, caption in cms:
            lines += [f"![{caption}]({name})"]
        lines.append("")
    lines += _settings_lines(result.config)
    lines += ["## Per fold", "", "| model | condition | fold | accuracy (%) | n train | n test | seed |",
              "|---|---|---|---|---|---|---|"]
    for r in result.records:
        lines.append(f"| {r['model']} | {r['condition']} | {r['fold']} | {100 * r['accuracy']:.2f} | "
                     f"{r['n_train']} | {r['n_test']} | {r['seed']} |")
    lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    if extra:
        lines += [extra, ""]
    lines += ["Files: `table3.md`, `table3.csv`, `folds.csv`, `confusion_matrices.json`; "
              "per-fold results in `results/`.", ""]
    put("report.md", "\n".join(lines))
    result.paths.update(paths)
    return paths


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _draw_figures(result, out_dir):
    from devicepool import plotting

    figs = []
    for (m, c), cm in result.confusion.items():
        fig, ax = _figure((5.5, 4.5))
        plotting.plot_confusion_matrix(cm["matrix"], cm["labels"], ax=ax,
                                       title=f"{_label(m)}, {c}")
        name = f"confusion-{m}-{_slug(c)}.png"
        figs.append((name, _save(fig, out_dir, name), f"Confusion matrix, {m}, {c}"))
    att = {k: v for k, v in result.attention.items() if v is not None}
    bands = {f"{k} model": v.band for k, v in sorted(att.items()) if v.band is not None and len(v.band)}
    if bands:
        fig, ax = _figure((6, 4))
        rate = (result.config.get("sample_rate")
                or next((p.get("sample_rate") for p in result.config.get("parts", [])), None))
        plotting.plot_band_weights(bands, ax=ax, sample_rate=rate,
                                   title="Fig. 2(a): DA-CNN mean band weights (held-out utterances)")
        figs.append(("fig2a-band-weights.png", _save(fig, out_dir, "fig2a-band-weights.png"),
                     "Fig. 2(a): mean DA-CNN band weights, "
                     + " and ".join(name.removesuffix(" model") for name in bands)
                     + (" models" if len(bands) > 1 else " model")))
    for panel, train_mode in (("b", "neutral"), ("c", "whisper")):
        v = att.get(train_mode)
        if v is None or not len(v) or v.voicing is None:
            continue
        codes = [plotting.align_frame_labels(c, len(tw), factor=r)
                 for tw, c, r in zip(v.time, v.voicing, v.time_reductions)]
        fig, ax = _figure((6, 4))
        plotting.plot_time_weight_distribution(
            v.time, codes, ax=ax,
            title=f"Fig. 2({panel}): DA-CNN time weights, {train_mode} model")
        name = f"fig2{panel}-time-weights-{train_mode}.png"
        figs.append((name, _save(fig, out_dir, name),
                     f"Fig. 2({panel}): distribution of DA-CNN time weights over voiced / unvoiced / "
                     f"silence frames, {train_mode} model"))
    return figs
